package challenge

// dns.go: the DNS-01 providers (Cloudflare, RFC 2136) wrapped so that every
// error names the provider and the zone, and the check that a delegated
// _acme-challenge CNAME is in place.

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/libdns/cloudflare"
	"github.com/libdns/libdns"
	"github.com/libdns/rfc2136"
	"github.com/miekg/dns"
)

// DNSProvider is what certmagic's DNS01Solver needs: add the challenge TXT
// record, then delete it. Implementations MUST be safe for concurrent use
// (certmagic solves a name and its wildcard at the same time) and honor
// context cancellation.
type DNSProvider interface {
	libdns.RecordAppender
	libdns.RecordDeleter
}

// Errors of the DNS-01 part of this package.
var (
	// ErrDelegationMissing: _acme-challenge.NAME has no CNAME.
	ErrDelegationMissing = errors.New("no CNAME for the delegated challenge name")
	// ErrDelegationMismatch: _acme-challenge.NAME is a CNAME to another name.
	ErrDelegationMismatch = errors.New("CNAME points elsewhere")
)

// Provider kinds, as in the config's provider: key.
const (
	KindCloudflare = "cloudflare"
	KindRFC2136    = "rfc2136"
)

// ProviderError is an error of a DNS provider, with what edge was doing.
// Its text reads
//
//	dns provider "cf" (cloudflare): zone "app.test": appending TXT record "_acme-challenge": <cause>
type ProviderError struct {
	Provider string // the config name, "cf"
	Kind     string // cloudflare | rfc2136
	Zone     string // without the trailing dot
	Op       string // "appending TXT record \"_acme-challenge\""
	Err      error
}

func (e *ProviderError) Error() string {
	return fmt.Sprintf("dns provider %q (%s): zone %q: %s: %v", e.Provider, e.Kind, e.Zone, e.Op, e.Err)
}

func (e *ProviderError) Unwrap() error { return e.Err }

// namedProvider wraps a libdns provider so its errors are ProviderErrors.
// It is safe for concurrent use when the wrapped provider is.
type namedProvider struct {
	name, kind string
	p          DNSProvider
	// bareZone passes the zone without its trailing dot: Cloudflare names
	// zones "example.com", certmagic passes "example.com.".
	bareZone bool
	// hint, if non-nil, may add advice to an error.
	hint func(error) string
}

var _ DNSProvider = (*namedProvider)(nil)

func (n *namedProvider) zone(z string) string {
	if n.bareZone {
		return strings.TrimSuffix(z, ".")
	}
	return z
}

// AppendRecords adds records to zone.
func (n *namedProvider) AppendRecords(ctx context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	out, err := n.p.AppendRecords(ctx, n.zone(zone), recs)
	if err != nil {
		return out, n.wrap(zone, "appending", recs, err)
	}
	return out, nil
}

// DeleteRecords removes records from zone.
func (n *namedProvider) DeleteRecords(ctx context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	out, err := n.p.DeleteRecords(ctx, n.zone(zone), recs)
	if err != nil {
		return out, n.wrap(zone, "deleting", recs, err)
	}
	return out, nil
}

// String names the provider for logs: cf (cloudflare).
func (n *namedProvider) String() string { return fmt.Sprintf("%s (%s)", n.name, n.kind) }

func (n *namedProvider) wrap(zone, verb string, recs []libdns.Record, err error) error {
	op := verb + " records"
	if len(recs) == 1 {
		rr := recs[0].RR()
		op = fmt.Sprintf("%s %s record %q", verb, rr.Type, rr.Name)
	}
	if n.hint != nil {
		if h := n.hint(err); h != "" {
			err = fmt.Errorf("%w (%s)", err, h)
		}
	}
	return &ProviderError{Provider: n.name, Kind: n.kind, Zone: strings.TrimSuffix(zone, "."), Op: op, Err: err}
}

// CloudflareAPI is Cloudflare's v4 API base URL, which libdns/cloudflare
// v0.2.2 has built in.
const CloudflareAPI = "https://" + cloudflareHost + cloudflarePath

const (
	cloudflareHost = "api.cloudflare.com"
	cloudflarePath = "/client/v4"
)

// cloudflareTimeout bounds one API call when HTTPClient is nil.
const cloudflareTimeout = 30 * time.Second

// CloudflareOptions configure NewCloudflare.
type CloudflareOptions struct {
	// APIToken is a scoped API token with Zone.DNS:Edit (required). It may
	// be limited to one zone when ZoneToken is set.
	APIToken string
	// ZoneToken, optional, is a Zone:Read token used only to look zones up.
	ZoneToken string
	// BaseURL replaces CloudflareAPI ("" keeps it), for an API proxy or a
	// test server. It must be https, or http on a loopback address.
	BaseURL string
	// HTTPClient sends the API calls; nil means a client of this package's
	// own with a 30 s timeout (never http.DefaultClient).
	HTTPClient *http.Client
}

// NewCloudflare returns a DNS provider for Cloudflare (libdns/cloudflare)
// whose errors name the provider (name is its config name, "cf") and the
// zone. The result is safe for concurrent use.
func NewCloudflare(name string, o CloudflareOptions) (DNSProvider, error) {
	if err := checkToken("api_token", o.APIToken, true); err != nil {
		return nil, fmt.Errorf("dns provider %q (cloudflare): %w", name, err)
	}
	if err := checkToken("zone_token", o.ZoneToken, false); err != nil {
		return nil, fmt.Errorf("dns provider %q (cloudflare): %w", name, err)
	}
	client := o.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: cloudflareTimeout, Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	var doer cloudflare.HTTPClient = client
	if o.BaseURL != "" && strings.TrimSuffix(o.BaseURL, "/") != CloudflareAPI {
		base, err := parseBaseURL(o.BaseURL)
		if err != nil {
			return nil, fmt.Errorf("dns provider %q (cloudflare): api_url: %w", name, err)
		}
		doer = &rebaser{base: base, c: client}
	}
	p := &cloudflare.Provider{APIToken: o.APIToken, ZoneToken: o.ZoneToken, HTTPClient: doer}
	return &namedProvider{name: name, kind: KindCloudflare, p: p, bareZone: true, hint: cloudflareHint}, nil
}

func checkToken(key, tok string, required bool) error {
	if tok == "" {
		if required {
			return fmt.Errorf("%s is required (a scoped API token with Zone.DNS:Edit)", key)
		}
		return nil
	}
	if strings.ContainsAny(tok, " \t\r\n") {
		return fmt.Errorf("%s contains white space (a stray newline from a file?)", key)
	}
	return nil
}

// cloudflareHint explains the authentication failures libdns/cloudflare
// reports as "got error status: HTTP 403: [{Code:9109 ...}]".
func cloudflareHint(err error) string {
	s := err.Error()
	if strings.Contains(s, "HTTP 401") || strings.Contains(s, "HTTP 403") {
		return "Cloudflare refused the API token: check api_token, and that it has Zone:Read and DNS:Edit on this zone"
	}
	return ""
}

func parseBaseURL(s string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimSuffix(s, "/"))
	if err != nil {
		return nil, err
	}
	switch {
	case u.Host == "":
		return nil, fmt.Errorf("%q has no host", s)
	case u.Scheme == "https":
	case u.Scheme == "http" && isLoopback(u.Hostname()):
	default:
		return nil, fmt.Errorf("%q: must be https (http only on a loopback address)", s)
	}
	return u, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// rebaser sends libdns/cloudflare's requests, addressed to CloudflareAPI,
// to base instead.
type rebaser struct {
	base *url.URL
	c    *http.Client
}

var _ cloudflare.HTTPClient = (*rebaser)(nil)

func (r *rebaser) Do(req *http.Request) (*http.Response, error) {
	if req.URL.Host == cloudflareHost && strings.HasPrefix(req.URL.Path, cloudflarePath) {
		req = req.Clone(req.Context())
		req.URL.Scheme = r.base.Scheme
		req.URL.Host = r.base.Host
		req.URL.Path = r.base.Path + strings.TrimPrefix(req.URL.Path, cloudflarePath)
		req.URL.RawPath = ""
		req.Host = ""
	}
	return r.c.Do(req)
}

// RFC2136Options configure NewRFC2136 (dynamic updates signed with TSIG,
// RFC 2136 and RFC 8945).
type RFC2136Options struct {
	// Server is the primary's "host:port"; a missing port means 53.
	Server string
	// KeyName is the TSIG key's name, KeyAlg its algorithm (hmac-sha1,
	// hmac-sha224, hmac-sha256, hmac-sha384, hmac-sha512) and Key its
	// base64 secret. All are required (the config holds the default
	// algorithm).
	KeyName, KeyAlg, Key string
}

// tsigAlgorithms are those miekg/dns signs with (hmac-md5 is no longer
// supported there).
var tsigAlgorithms = map[string]string{
	"hmac-sha1":   dns.HmacSHA1,
	"hmac-sha224": dns.HmacSHA224,
	"hmac-sha256": dns.HmacSHA256,
	"hmac-sha384": dns.HmacSHA384,
	"hmac-sha512": dns.HmacSHA512,
}

// NewRFC2136 returns a DNS provider that sends TSIG-signed dynamic updates
// (libdns/rfc2136, over TCP) and whose errors name the provider and the
// zone. The result is safe for concurrent use.
func NewRFC2136(name string, o RFC2136Options) (DNSProvider, error) {
	var errs []error
	server, err := withPort(o.Server, "53")
	if err != nil {
		errs = append(errs, fmt.Errorf("server: %w", err))
	}
	if o.KeyName == "" {
		errs = append(errs, errors.New("key_name is required"))
	}
	alg := strings.ToLower(strings.TrimSuffix(o.KeyAlg, "."))
	if _, ok := tsigAlgorithms[alg]; !ok {
		errs = append(errs, fmt.Errorf("key_alg %q is not supported (hmac-sha256, hmac-sha512, hmac-sha384, hmac-sha224, hmac-sha1)", o.KeyAlg))
	}
	if o.Key == "" {
		errs = append(errs, errors.New("key is required (the TSIG secret, base64)"))
	} else if _, err := base64.StdEncoding.DecodeString(o.Key); err != nil {
		errs = append(errs, fmt.Errorf("key is not valid base64: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("dns provider %q (rfc2136): %w", name, err)
	}
	p := &rfc2136.Provider{Server: server, KeyName: o.KeyName, KeyAlg: alg, Key: o.Key}
	return &namedProvider{name: name, kind: KindRFC2136, p: p, hint: rfc2136Hint}, nil
}

// rfc2136Hint explains miekg/dns's terse "dns: bad authentication", which is
// what a TSIG failure and a zone the server is not primary for (an
// unsigned NOTAUTH) both look like.
func rfc2136Hint(err error) string {
	if errors.Is(err, dns.ErrAuth) {
		return "the server refused the TSIG key or is not the primary of this zone: check key_name, key_alg, key, the clocks and the server's update-policy"
	}
	return ""
}

// withPort adds port to an address that has none ("ns1" -> "ns1:53",
// "::1" -> "[::1]:53").
func withPort(addr, port string) (string, error) {
	if addr == "" {
		return "", errors.New("is required (host:port of the DNS server)")
	}
	if _, p, err := net.SplitHostPort(addr); err == nil {
		if p == "" {
			return "", fmt.Errorf("%q has an empty port", addr)
		}
		return addr, nil
	}
	host := strings.TrimSuffix(strings.TrimPrefix(addr, "["), "]")
	if strings.ContainsAny(host, "/ ") {
		return "", fmt.Errorf("%q is not a host or host:port", addr)
	}
	return net.JoinHostPort(host, port), nil
}

// CheckDelegation asks resolver ("host:port", port 53 if missing) for the
// CNAME of _acme-challenge.NAME (a wildcard's "*." is dropped, since its
// challenge lives at the base name) and returns nil when it is target. It
// returns an error wrapping ErrDelegationMissing or ErrDelegationMismatch
// when the CNAME is absent or points elsewhere, and a plain error when the
// resolver cannot be asked. ctx bounds the whole check.
func CheckDelegation(ctx context.Context, resolver, name, target string) error {
	server, err := withPort(resolver, "53")
	if err != nil {
		return fmt.Errorf("checking delegation of %s: resolver: %w", name, err)
	}
	qname := dns.Fqdn("_acme-challenge." + strings.TrimPrefix(strings.ToLower(name), "*."))
	want := strings.ToLower(dns.Fqdn(target))

	in, err := query(ctx, server, qname, dns.TypeCNAME, 5*time.Second)
	if err != nil {
		return fmt.Errorf("checking delegation of %s: asking %s for %s CNAME: %w", name, server, qname, err)
	}
	if in.Rcode != dns.RcodeSuccess && in.Rcode != dns.RcodeNameError {
		return fmt.Errorf("checking delegation of %s: %s answered %s for %s CNAME", name, server, dns.RcodeToString[in.Rcode], qname)
	}
	for _, rr := range in.Answer {
		cn, ok := rr.(*dns.CNAME)
		if !ok || !strings.EqualFold(cn.Hdr.Name, qname) {
			continue
		}
		if got := strings.ToLower(cn.Target); got != want {
			return fmt.Errorf("checking delegation of %s: %s says %s is a CNAME to %s, want %s: %w",
				name, server, strings.TrimSuffix(qname, "."), strings.TrimSuffix(got, "."), strings.TrimSuffix(want, "."), ErrDelegationMismatch)
		}
		return nil
	}
	return fmt.Errorf("checking delegation of %s: %s has no CNAME at %s (%s), want one to %s: %w",
		name, server, strings.TrimSuffix(qname, "."), dns.RcodeToString[in.Rcode], strings.TrimSuffix(want, "."), ErrDelegationMissing)
}

// query asks server (host:port) one recursive question over UDP, again over
// TCP when the answer is truncated.
func query(ctx context.Context, server, qname string, qtype uint16, timeout time.Duration) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(qname, qtype)
	m.RecursionDesired = true
	c := &dns.Client{Net: "udp", Timeout: timeout}
	in, _, err := c.ExchangeContext(ctx, m, server)
	if err == nil && in.Truncated {
		c.Net = "tcp"
		in, _, err = c.ExchangeContext(ctx, m, server)
	}
	return in, err
}
