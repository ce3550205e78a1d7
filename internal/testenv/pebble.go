package testenv

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// ChallTestSrv is a running pebble-challtestsrv used as Pebble's DNS server.
// Its default A answer is 127.0.0.1 for every name and it gives no AAAA
// answers (Pebble dials the first AAAA answer when there is one).
type ChallTestSrv struct {
	*Process
	// DNSAddr is "127.0.0.1:port", served over UDP and TCP.
	DNSAddr string
	// ManagementURL is "http://127.0.0.1:port" (add-a, set-txt, ...).
	ManagementURL string
}

// StartChallTestSrv starts pebble-challtestsrv with only its DNS server and
// management API enabled.
func StartChallTestSrv(tb TB) *ChallTestSrv {
	tb.Helper()
	bin := RequireTool(tb, "pebble-challtestsrv")
	ports := FreePorts(tb, 2)
	dns, mgmt := Addr(ports[0]), Addr(ports[1])
	p := Start(tb, Cmd{
		Name: "challtestsrv",
		Path: bin,
		Args: []string{
			"-defaultIPv4", "127.0.0.1",
			"-defaultIPv6", "",
			"-dnsserver", dns,
			"-http01", "",
			"-https01", "",
			"-tlsalpn01", "",
			"-doh", "",
			"-management", mgmt,
		},
	})
	for _, a := range []string{dns, mgmt} {
		if err := waitTCPOrExit(p, a, 20*time.Second); err != nil {
			tb.Fatalf("challtestsrv: %v\n%s", err, p.Tail(20))
		}
	}
	return &ChallTestSrv{Process: p, DNSAddr: dns, ManagementURL: "http://" + mgmt}
}

// AddA makes host resolve to addr (on top of the default 127.0.0.1).
func (c *ChallTestSrv) AddA(host string, addrs ...string) error {
	body, _ := json.Marshal(map[string]any{"host": host, "addresses": addrs})
	resp, err := http.Post(c.ManagementURL+"/add-a", "application/json", bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("challtestsrv add-a %s: %w", host, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("challtestsrv add-a %s: %s", host, resp.Status)
	}
	return nil
}

// PebbleOptions configures StartPebble.
type PebbleOptions struct {
	// HTTPPort is the single port Pebble's validator dials for HTTP-01 (on
	// whatever the name resolves to, 127.0.0.1 here). 0 picks an unused port.
	HTTPPort int
	// TLSPort is the port it dials for TLS-ALPN-01. 0 picks an unused port.
	TLSPort int
	// DNSServer is the resolver Pebble uses ("127.0.0.1:port", over TCP),
	// normally ChallTestSrv.DNSAddr. Required.
	DNSServer string
	// ValidityPeriod is the default profile's certificate lifetime; 0 means
	// Pebble's usual 90 days.
	ValidityPeriod time.Duration
	// Profiles are ACME profiles offered beside "default" (which
	// ValidityPeriod sets), each name with its certificates' lifetime, such
	// as {"shortlived": 2 * time.Minute}. An order naming none gets default.
	Profiles map[string]time.Duration
	// AlwaysValid skips validation (PEBBLE_VA_ALWAYS_VALID=1), for tests that
	// are not about challenges.
	AlwaysValid bool
	// ListenPort and ManagementPort fix the ACME and management listeners'
	// ports (on 127.0.0.1), so that a Pebble started again answers at the
	// same directory URL (with a fresh state: a new root, no accounts).
	// 0 picks unused ports.
	ListenPort, ManagementPort int
}

// Pebble is a running Pebble ACME server.
type Pebble struct {
	*Process
	// DirectoryURL is "https://127.0.0.1:port/dir".
	DirectoryURL string
	// ManagementURL is "https://127.0.0.1:port" (roots, intermediates,
	// set-renewal-info), served with the minica certificate.
	ManagementURL string
	// MinicaRootFile is the PEM file that signs Pebble's own HTTPS
	// certificate: what a client of the ACME API must trust (ca_root_file).
	MinicaRootFile string
	HTTPPort       int
	TLSPort        int

	client *http.Client
}

// StartPebble writes a Pebble config and starts Pebble v2 with
// PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 PEBBLE_AUTHZREUSE=0 and no
// retryAfter (each issuance then takes about half a second). It returns once
// the directory answers.
func StartPebble(tb TB, opts PebbleOptions) *Pebble {
	tb.Helper()
	bin := RequireTool(tb, "pebble")
	if opts.DNSServer == "" {
		tb.Fatalf("StartPebble: DNSServer is required (use StartChallTestSrv)")
	}
	ports := FreePorts(tb, 4)
	if opts.ListenPort != 0 {
		ports[0] = opts.ListenPort
	}
	if opts.ManagementPort != 0 {
		ports[1] = opts.ManagementPort
	}
	listen, mgmt := Addr(ports[0]), Addr(ports[1])
	if opts.HTTPPort == 0 {
		opts.HTTPPort = ports[2]
	}
	if opts.TLSPort == 0 {
		opts.TLSPort = ports[3]
	}
	validity := int64(7776000)
	if opts.ValidityPeriod > 0 {
		validity = int64(opts.ValidityPeriod / time.Second)
	}
	minica := TestdataPath(tb, "pebble.minica.pem")
	profiles := map[string]any{
		"default": map[string]any{
			"description":    "test profile",
			"validityPeriod": validity,
		},
	}
	for name, life := range opts.Profiles {
		profiles[name] = map[string]any{
			"description":    "test profile " + name,
			"validityPeriod": int64(life / time.Second),
		}
	}
	cfg := map[string]any{
		"pebble": map[string]any{
			"listenAddress":                  listen,
			"managementListenAddress":        mgmt,
			"certificate":                    TestdataPath(tb, "pebble-localhost.cert.pem"),
			"privateKey":                     TestdataPath(tb, "pebble-localhost.key.pem"),
			"httpPort":                       opts.HTTPPort,
			"tlsPort":                        opts.TLSPort,
			"ocspResponderURL":               "",
			"externalAccountBindingRequired": false,
			"domainBlocklist":                []string{"blocked-domain.example"},
			"keyAlgorithm":                   "ecdsa",
			"profiles":                       profiles,
		},
	}
	b, _ := json.MarshalIndent(cfg, "", "  ")
	cfgPath := filepath.Join(tb.TempDir(), "pebble-config.json")
	if err := os.WriteFile(cfgPath, b, 0o644); err != nil {
		tb.Fatalf("writing pebble config: %v", err)
	}
	env := []string{"PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0", "PEBBLE_AUTHZREUSE=0"}
	if opts.AlwaysValid {
		env = append(env, "PEBBLE_VA_ALWAYS_VALID=1")
	}
	p := Start(tb, Cmd{
		Name: "pebble",
		Path: bin,
		Args: []string{"-config", cfgPath, "-dnsserver", opts.DNSServer},
		Env:  env,
	})
	pool, err := CertPoolFromFile(minica)
	if err != nil {
		tb.Fatalf("%v", err)
	}
	peb := &Pebble{
		Process:        p,
		DirectoryURL:   "https://" + listen + "/dir",
		ManagementURL:  "https://" + mgmt,
		MinicaRootFile: minica,
		HTTPPort:       opts.HTTPPort,
		TLSPort:        opts.TLSPort,
		client: &http.Client{
			Timeout:   10 * time.Second,
			Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
		},
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := peb.client.Get(peb.DirectoryURL)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if p.Exited() || time.Now().After(deadline) {
			tb.Fatalf("pebble directory %s not answering (err %v)\n%s", peb.DirectoryURL, err, p.Tail(30))
		}
		time.Sleep(50 * time.Millisecond)
	}
	return peb
}

// IssuingRoots fetches the root Pebble signs with (/roots/0 on the
// management listener); it changes on every start of Pebble.
func (p *Pebble) IssuingRoots() (*x509.CertPool, error) {
	b, err := p.get("/roots/0")
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("pebble /roots/0: no PEM certificate in %q", b)
	}
	return pool, nil
}

// IssuingRootPEM returns /roots/0 as PEM.
func (p *Pebble) IssuingRootPEM() ([]byte, error) { return p.get("/roots/0") }

func (p *Pebble) get(path string) ([]byte, error) {
	resp, err := p.client.Get(p.ManagementURL + path)
	if err != nil {
		return nil, fmt.Errorf("pebble %s: %w", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("pebble %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("pebble %s: %s: %s", path, resp.Status, b)
	}
	return b, nil
}

// PebbleStats are counts taken from Pebble's log; Pebble has no API that
// lists orders across accounts.
type PebbleStats struct {
	Orders        int // "Added order"
	Issued        int // "Issued certificate serial"
	AuthzValid    int // "set VALID by completed challenge"
	AuthzInvalid  int // "set INVALID by completed challenge"
	HTTPAttempts  int // "Attempting to validate w/ HTTP" (one per validation request)
	Accounts      int // the last "There are now N accounts in memory"
	ValidationURL []string
}

// Stats counts orders, issued certificates and validations in Pebble's log.
func (p *Pebble) Stats() PebbleStats {
	var s PebbleStats
	for _, line := range strings.Split(p.Log(), "\n") {
		switch {
		case strings.Contains(line, "Added order"):
			s.Orders++
		case strings.Contains(line, "Issued certificate serial"):
			s.Issued++
		case strings.Contains(line, "set VALID by completed challenge"):
			s.AuthzValid++
		case strings.Contains(line, "set INVALID by completed challenge"):
			s.AuthzInvalid++
		case strings.Contains(line, "Attempting to validate w/ HTTP: "):
			s.HTTPAttempts++
			s.ValidationURL = append(s.ValidationURL, strings.TrimSpace(line[strings.Index(line, "HTTP: ")+len("HTTP: "):]))
		case strings.Contains(line, "accounts in memory"):
			var n int
			if i := strings.Index(line, "There are now "); i >= 0 {
				fmt.Sscanf(line[i:], "There are now %d accounts", &n)
				s.Accounts = n
			}
		}
	}
	return s
}

// CertPoolFromFile reads PEM certificates into a pool.
func CertPoolFromFile(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading roots: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("reading roots: no PEM certificate in %s", path)
	}
	return pool, nil
}

func waitTCPOrExit(p *Process, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if err := WaitTCP(addr, 200*time.Millisecond); err == nil {
			return nil
		}
		if p.Exited() {
			return fmt.Errorf("%s exited before listening on %s: %v", p.Name, addr, p.err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not listening on %s after %s", p.Name, addr, timeout)
		}
	}
}

// PebbleCertStatus is Pebble's record of one certificate (management API
// /cert-status-by-serial/).
type PebbleCertStatus struct {
	Status    string // "Valid" or "Revoked"
	Serial    string
	Reason    *uint // RFC 5280 reason code of a revocation
	RevokedAt string
}

// CertStatus asks Pebble about the certificate with serial (hex).
func (p *Pebble) CertStatus(serial string) (PebbleCertStatus, error) {
	var s PebbleCertStatus
	b, err := p.get("/cert-status-by-serial/" + serial)
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("pebble cert-status-by-serial %s: %w", serial, err)
	}
	return s, nil
}

// SetRenewalInfo makes Pebble answer ARI (RFC 9773) for the certificate
// certPEM (its serial) with a suggested window from start to end
// (management API /set-renewal-info/; Pebble still sends Retry-After 6h).
func (p *Pebble) SetRenewalInfo(certPEM []byte, start, end time.Time) error {
	ari, _ := json.Marshal(map[string]any{"suggestedWindow": map[string]time.Time{"start": start.UTC(), "end": end.UTC()}})
	body, _ := json.Marshal(map[string]string{"Certificate": string(certPEM), "ARIResponse": string(ari)})
	resp, err := p.client.Post(p.ManagementURL+"/set-renewal-info/", "application/json", bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("pebble set-renewal-info: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("pebble set-renewal-info: %s: %s", resp.Status, b)
	}
	return nil
}

// Replacements returns, from Pebble's log, each order Pebble accepted as
// the replacement of an earlier one ("ARI: order X is a replacement of
// Y": the new order's "replaces" named the certificate Y issued), new
// order ID to replaced order ID.
func (p *Pebble) Replacements() map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(p.Log(), "\n") {
		var n, o string
		if i := strings.Index(line, "ARI: order "); i >= 0 {
			if _, err := fmt.Sscanf(line[i:], "ARI: order %q is a replacement of %q", &n, &o); err == nil {
				out[n] = o
			}
		}
	}
	return out
}

// IssuedOrder returns the ID of the order that Pebble issued the
// certificate with serial (hex, any case) for, from its log ("Issued
// certificate serial S for order O"); "" if none.
func (p *Pebble) IssuedOrder(serial string) string {
	for _, line := range strings.Split(p.Log(), "\n") {
		var s, o string
		if i := strings.Index(line, "Issued certificate serial "); i >= 0 {
			if _, err := fmt.Sscanf(line[i:], "Issued certificate serial %s for order %s", &s, &o); err == nil &&
				strings.EqualFold(strings.TrimLeft(s, "0"), strings.TrimLeft(serial, "0")) {
				return o
			}
		}
	}
	return ""
}
