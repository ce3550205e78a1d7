package challenge

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// CAACA is a CA as the CAA check sees it.
type CAACA struct {
	// Domain is the CA's issuer domain name in CAA records (RFC 8659
	// section 4.2): letsencrypt.org, sectigo.com. "": the CA is unknown to
	// CAA and the check says so.
	Domain string
	// AccountURI is the URI of edge's ACME account at the CA (RFC 8657
	// accounturi); "" when it is not registered yet.
	AccountURI string
	// Methods are the ACME challenge types edge uses for the name
	// (http-01, tls-alpn-01, dns-01), checked against validationmethods.
	Methods []string
}

// CAAResult is the verdict for one name and one CA.
type CAAResult struct {
	Name string `json:"name"`
	CA   string `json:"ca"`
	// OK: the CA may issue for the name (Warning may still be set).
	OK bool `json:"ok"`
	// Record is the CAA property that decided, "NAME CAA FLAGS TAG VALUE",
	// or "" when there is none (no CAA record: any CA may issue).
	Record  string `json:"record,omitempty"`
	Detail  string `json:"detail"`
	Warning string `json:"warning,omitempty"`
}

// ErrDNSSEC is returned when the resolver answers SERVFAIL to a CAA
// question asked with the DO bit: what a validating resolver answers for a
// zone whose DNSSEC signatures do not validate (RFC 4035 section 5.5). The
// CA's own validating resolver then refuses to issue.
var ErrDNSSEC = errors.New("DNSSEC validation failed")

// FindCAA returns the relevant CAA RRset of name (RFC 8659 section 3):
// the CAA records at name or, when there are none, at its parent, and so
// on up to (not including) the root. CNAMEs are followed by the resolver,
// which answers with the target's records. at is where they were found.
// The questions carry the DO bit (EDNS0), so a validating resolver checks
// DNSSEC; its SERVFAIL is reported as ErrDNSSEC.
func FindCAA(ctx context.Context, resolver, name string) (at string, rrs []*dns.CAA, err error) {
	server, err := withPort(resolver, "53")
	if err != nil {
		return "", nil, err
	}
	x := strings.TrimSuffix(strings.ToLower(strings.TrimPrefix(name, "*.")), ".")
	for x != "" {
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(x), dns.TypeCAA)
		m.RecursionDesired = true
		m.SetEdns0(4096, true)
		c := &dns.Client{Net: "udp", Timeout: 5 * time.Second}
		in, _, err := c.ExchangeContext(ctx, m, server)
		if err == nil && in.Truncated {
			c.Net = "tcp"
			in, _, err = c.ExchangeContext(ctx, m, server)
		}
		if err != nil {
			return x, nil, fmt.Errorf("asking %s for %s CAA: %w", server, x, err)
		}
		switch in.Rcode {
		case dns.RcodeSuccess, dns.RcodeNameError:
		case dns.RcodeServerFailure:
			return x, nil, fmt.Errorf("%w for %s (%s answered SERVFAIL to CAA with DNSSEC OK)", ErrDNSSEC, x, server)
		default:
			return x, nil, fmt.Errorf("asking %s for %s CAA: %s", server, x, dns.RcodeToString[in.Rcode])
		}
		for _, rr := range in.Answer {
			if caa, ok := rr.(*dns.CAA); ok {
				rrs = append(rrs, caa)
			}
		}
		if len(rrs) > 0 {
			return x, rrs, nil
		}
		_, parent, _ := strings.Cut(x, ".")
		x = parent
	}
	return "", nil, nil
}

// MatchCAA decides whether ca may issue for name (a wildcard "*.x" looks
// at issuewild first) under the relevant RRset rrs found at at, by RFC
// 8659 section 4 and RFC 8657: an unknown property with the critical flag
// forbids issuance; without issue (or, for a wildcard, issuewild)
// properties anyone may issue; else one property must name the CA's
// domain and, where it sets accounturi, edge's account, and where it sets
// validationmethods, one of edge's challenge types.
func MatchCAA(name, at string, rrs []*dns.CAA, ca CAACA) CAAResult {
	r := CAAResult{Name: name, CA: ca.Domain}
	if len(rrs) == 0 {
		r.OK, r.Detail = true, "no CAA record at "+name+" or its parents: any CA may issue"
		return r
	}
	for _, rr := range rrs {
		switch strings.ToLower(rr.Tag) {
		case "issue", "issuewild", "iodef", "issuemail", "issuevmc", "contactemail", "contactphone":
		default:
			if rr.Flag&128 != 0 {
				r.Record = caaRecord(at, rr)
				r.Detail = fmt.Sprintf("%s has an unknown critical property %q: no CA may issue", r.Record, rr.Tag)
				return r
			}
		}
	}
	tag := "issue"
	if strings.HasPrefix(name, "*.") && slices.ContainsFunc(rrs, func(rr *dns.CAA) bool { return strings.EqualFold(rr.Tag, "issuewild") }) {
		tag = "issuewild"
	}
	var props []*dns.CAA
	for _, rr := range rrs {
		if strings.EqualFold(rr.Tag, tag) {
			props = append(props, rr)
		}
	}
	if len(props) == 0 {
		r.OK, r.Detail = true, fmt.Sprintf("the CAA records at %s have no %s property: any CA may issue", at, tag)
		return r
	}
	if ca.Domain == "" {
		r.Record = caaRecord(at, props[0])
		r.Detail = fmt.Sprintf("%s restricts issuance, and this CA's CAA issuer domain is not known: set caa: for it in acme.ca", r.Record)
		return r
	}
	var why []string
	for _, rr := range props {
		domain, params := parseCAAValue(rr.Value)
		rec := caaRecord(at, rr)
		if !strings.EqualFold(domain, ca.Domain) {
			continue
		}
		if acct, ok := params["accounturi"]; ok {
			if ca.AccountURI == "" {
				r.OK, r.Record = true, rec
				r.Detail = fmt.Sprintf("%s allows %s", rec, ca.Domain)
				r.Warning = fmt.Sprintf("%s allows only the account %s, and edge has no account at this CA yet: check it once registered", rec, acct)
				return r
			}
			if acct != ca.AccountURI {
				why = append(why, fmt.Sprintf("%s allows only the account %s, not edge's %s", rec, acct, ca.AccountURI))
				continue
			}
		}
		if vm, ok := params["validationmethods"]; ok && len(ca.Methods) > 0 {
			allowed := strings.Split(vm, ",")
			if !slices.ContainsFunc(ca.Methods, func(m string) bool { return slices.Contains(allowed, m) }) {
				why = append(why, fmt.Sprintf("%s allows validation methods %s only, edge uses %s", rec, vm, strings.Join(ca.Methods, ", ")))
				continue
			}
		}
		r.OK, r.Record = true, rec
		r.Detail = fmt.Sprintf("%s allows %s", rec, ca.Domain)
		return r
	}
	if len(why) > 0 {
		r.Record = caaRecord(at, props[0])
		r.Detail = strings.Join(why, "; ")
		return r
	}
	recs := make([]string, len(props))
	for i, rr := range props {
		recs[i] = caaRecord(at, rr)
	}
	r.Record = recs[0]
	r.Detail = fmt.Sprintf("%s does not allow %s", strings.Join(recs, ", "), ca.Domain)
	return r
}

// parseCAAValue splits an issue value, "letsencrypt.org; accounturi=...;
// validationmethods=http-01" (RFC 8659 section 4.2), into the domain
// (lowercase; "" for ";", which allows no CA) and the parameters.
func parseCAAValue(v string) (string, map[string]string) {
	parts := strings.Split(v, ";")
	params := map[string]string{}
	for _, p := range parts[1:] {
		k, val, ok := strings.Cut(strings.TrimSpace(p), "=")
		if ok {
			params[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(val)
		}
	}
	return strings.ToLower(strings.TrimSpace(parts[0])), params
}

func caaRecord(at string, rr *dns.CAA) string {
	return fmt.Sprintf("%s CAA %d %s %q", at, rr.Flag, rr.Tag, rr.Value)
}

// CheckCAA finds the relevant CAA RRset of name through resolver and
// matches it against ca. A SERVFAIL (ErrDNSSEC) fails; a resolver that
// cannot be asked leaves the name unchecked, with a warning saying why.
func CheckCAA(ctx context.Context, resolver, name string, ca CAACA) CAAResult {
	at, rrs, err := FindCAA(ctx, resolver, name)
	if errors.Is(err, ErrDNSSEC) {
		return CAAResult{Name: name, CA: ca.Domain, Detail: err.Error()}
	}
	if err != nil {
		return CAAResult{Name: name, CA: ca.Domain, OK: true, Detail: "not checked", Warning: "CAA not checked: " + err.Error()}
	}
	return MatchCAA(name, at, rrs, ca)
}
