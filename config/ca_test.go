package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCAList(t *testing.T) {
	hmac := filepath.Join(t.TempDir(), "zerossl.hmac")
	if err := os.WriteFile(hmac, []byte("c2VjcmV0LWZyb20temVyb3NzbA\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Run("single name: as before", func(t *testing.T) {
		c := mustParse(t, `acme: {ca: letsencrypt-staging, eab: {key_id: k1, hmac_key: aG1hYy1rZXktb25l}}`+site("a.example.com"), noEnv)
		if c.ACME.CAs != nil || c.ACME.CA != "letsencrypt-staging" || c.ACME.CADirectory != LetsEncryptStagingDirectory {
			t.Fatalf("CA %q, CADirectory %q, CAs %v", c.ACME.CA, c.ACME.CADirectory, c.ACME.CAs)
		}
		l := c.ACME.CAList()
		if len(l) != 1 || l[0].Directory != LetsEncryptStagingDirectory || l[0].EAB.KeyID != "k1" || l[0].CAA != "letsencrypt.org" {
			t.Fatalf("CAList() = %+v", l)
		}
	})
	t.Run("list of names, URLs and mappings", func(t *testing.T) {
		c := mustParse(t, `acme:
  email: ops@example.com
  ca_root_file: /etc/edge/roots.pem
  ca:
    - letsencrypt
    - {url: zerossl, eab: {key_id: zk, hmac_key_file: `+hmac+`}}
    - {url: "https://ca.internal/dir", profile: tlsserver, ca_root_file: /etc/edge/internal.pem, caa: ca.internal}
`+site("a.example.com"), noEnv)
		if c.ACME.CA != "letsencrypt" || c.ACME.CADirectory != LetsEncryptDirectory {
			t.Errorf("CA %q, CADirectory %q: want the first CA", c.ACME.CA, c.ACME.CADirectory)
		}
		l := c.ACME.CAList()
		if len(l) != 3 {
			t.Fatalf("CAList() = %+v", l)
		}
		want := []CA{
			{URL: "letsencrypt", Directory: LetsEncryptDirectory, CARootFile: "/etc/edge/roots.pem", CAA: "letsencrypt.org"},
			{URL: "zerossl", Directory: ZeroSSLDirectory, EAB: EAB{KeyID: "zk", HMACKey: "c2VjcmV0LWZyb20temVyb3NzbA", HMACKeyFile: hmac}, CARootFile: "/etc/edge/roots.pem", CAA: "sectigo.com"},
			{URL: "https://ca.internal/dir", Directory: "https://ca.internal/dir", Profile: "tlsserver", CARootFile: "/etc/edge/internal.pem", CAA: "ca.internal"},
		}
		for i := range want {
			if l[i] != want[i] {
				t.Errorf("CAList()[%d] = %+v, want %+v", i, l[i], want[i])
			}
		}
		eff, err := c.Redact().Effective()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(eff), "ca:\n    - url: letsencrypt") || strings.Contains(string(eff), "ca: letsencrypt") {
			t.Errorf("Effective() does not show the list:\n%s", eff)
		}
	})
	t.Run("one mapping", func(t *testing.T) {
		c := mustParse(t, `acme: {ca: {url: "https://127.0.0.1:14000/dir", caa: pebble.test}}`+site("a.example.com"), noEnv)
		l := c.ACME.CAList()
		if len(l) != 1 || l[0].CAA != "pebble.test" || c.ACME.CA != "https://127.0.0.1:14000/dir" {
			t.Fatalf("CAList() = %+v, CA %q", l, c.ACME.CA)
		}
	})
	for _, tc := range []struct{ name, acme, want string }{
		{"unknown name in a list", `{ca: [letsencrypt, zerossll]}`, `1:26: unknown CA "zerossll": expected letsencrypt, letsencrypt-staging, zerossl or an https directory URL (did you mean "zerossl"?)`},
		{"bad URL in a mapping", `{ca: [{url: "http://ca.internal/dir"}]}`, `1:19: unknown CA "http://ca.internal/dir"`},
		{"listed twice", `{email: a@example.com, ca: [letsencrypt, "https://acme-v02.api.letsencrypt.org/directory"]}`, `1:48: CA "https://acme-v02.api.letsencrypt.org/directory" is listed twice (first at line 1)`},
		{"no url", `{ca: [{profile: classic}]}`, `1:13: a CA needs url`},
		{"eab without hmac", `{ca: [letsencrypt, {url: zerossl, eab: {key_id: zk}}]}`, `1:46: eab.key_id needs hmac_key or hmac_key_file`},
		{"zerossl without eab or email", `{ca: [letsencrypt, zerossl]}`, `1:26: zerossl needs external account binding`},
		{"unknown key in a CA", `{ca: [{url: letsencrypt, eab_key: x}]}`, `1:32: unknown key "eab_key"`},
		{"placeholder secret in a CA's eab", `{ca: [{url: zerossl, eab: {key_id: zk, hmac_key: change-me}}]}`, `1:56: acme.ca[0].eab.hmac_key is`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkProblems(t, problems(t, `acme: `+tc.acme+site("a.example.com"), noEnv), []string{tc.want})
		})
	}
}
