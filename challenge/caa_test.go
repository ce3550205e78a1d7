package challenge

import (
	"strings"
	"testing"

	"github.com/miekg/dns"
)

func caaRR(t *testing.T, s string) *dns.CAA {
	t.Helper()
	rr, err := dns.NewRR(s)
	if err != nil {
		t.Fatalf("%s: %v", s, err)
	}
	return rr.(*dns.CAA)
}

func TestMatchCAA(t *testing.T) {
	le := CAACA{Domain: "letsencrypt.org", AccountURI: "https://acme.test/acct/1", Methods: []string{"http-01", "tls-alpn-01"}}
	tests := []struct {
		name    string
		host    string
		rrs     []string
		ca      CAACA
		ok      bool
		detail  string
		warning string
	}{
		{"no CAA", "a.example.com", nil, le, true, "no CAA record", ""},
		{"allows the CA", "a.example.com", []string{`example.com. CAA 0 issue "letsencrypt.org"`}, le, true, `example.com CAA 0 issue "letsencrypt.org" allows letsencrypt.org`, ""},
		{"domain case-insensitive", "a.example.com", []string{`example.com. CAA 0 issue "LetsEncrypt.org"`}, le, true, "allows", ""},
		{"names another CA", "a.example.com", []string{`example.com. CAA 0 issue "sectigo.com"`}, le, false, `example.com CAA 0 issue "sectigo.com" does not allow letsencrypt.org`, ""},
		{"one of several allows", "a.example.com", []string{`example.com. CAA 0 issue "sectigo.com"`, `example.com. CAA 0 issue "letsencrypt.org"`}, le, true, "allows", ""},
		{"empty issue forbids all", "a.example.com", []string{`example.com. CAA 0 issue ";"`}, le, false, `does not allow letsencrypt.org`, ""},
		{"only iodef: no restriction", "a.example.com", []string{`example.com. CAA 0 iodef "mailto:x@example.com"`}, le, true, "no issue property", ""},
		{"right accounturi", "a.example.com", []string{`example.com. CAA 0 issue "letsencrypt.org; accounturi=https://acme.test/acct/1"`}, le, true, "allows", ""},
		{"wrong accounturi", "a.example.com", []string{`example.com. CAA 0 issue "letsencrypt.org; accounturi=https://acme.test/acct/9"`}, le, false, `allows only the account https://acme.test/acct/9, not edge's https://acme.test/acct/1`, ""},
		{"accounturi, no account yet", "a.example.com", []string{`example.com. CAA 0 issue "letsencrypt.org; accounturi=https://acme.test/acct/9"`}, CAACA{Domain: "letsencrypt.org"}, true, "allows", "no account at this CA yet"},
		{"validationmethods excludes edge's", "a.example.com", []string{`example.com. CAA 0 issue "letsencrypt.org; validationmethods=dns-01"`}, le, false, "allows validation methods dns-01 only, edge uses http-01, tls-alpn-01", ""},
		{"validationmethods includes edge's", "a.example.com", []string{`example.com. CAA 0 issue "letsencrypt.org; validationmethods=dns-01,http-01"`}, le, true, "allows", ""},
		{"wildcard uses issuewild", "*.example.com", []string{`example.com. CAA 0 issue "letsencrypt.org"`, `example.com. CAA 0 issuewild ";"`}, le, false, `example.com CAA 0 issuewild ";" does not allow`, ""},
		{"wildcard without issuewild uses issue", "*.example.com", []string{`example.com. CAA 0 issue "letsencrypt.org"`}, le, true, "allows", ""},
		{"non-wildcard ignores issuewild", "a.example.com", []string{`example.com. CAA 0 issuewild "sectigo.com"`}, le, true, "no issue property", ""},
		{"unknown critical property", "a.example.com", []string{`example.com. CAA 128 future "x"`, `example.com. CAA 0 issue "letsencrypt.org"`}, le, false, `unknown critical property "future"`, ""},
		{"unknown non-critical property ignored", "a.example.com", []string{`example.com. CAA 0 future "x"`, `example.com. CAA 0 issue "letsencrypt.org"`}, le, true, "allows", ""},
		{"CA without a CAA domain", "a.example.com", []string{`example.com. CAA 0 issue "letsencrypt.org"`}, CAACA{}, false, "CAA issuer domain is not known", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var rrs []*dns.CAA
			for _, s := range tc.rrs {
				rrs = append(rrs, caaRR(t, s))
			}
			r := MatchCAA(tc.host, "example.com", rrs, tc.ca)
			if r.OK != tc.ok || !strings.Contains(r.Detail, tc.detail) || !strings.Contains(r.Warning, tc.warning) || (tc.warning == "" && r.Warning != "") {
				t.Errorf("MatchCAA = %+v, want ok %v, detail containing %q, warning %q", r, tc.ok, tc.detail, tc.warning)
			}
		})
	}
}
