package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/farmedge/edge/internal/testenv"
)

// TestPreflightCAA: BIND serves three zones: allow.test's CAA allows the
// CA (found from www.allow.test by climbing to the parent), other.test's
// names another CA, acct.test's allows the CA for another account only
// (RFC 8657 accounturi). edge preflight, after edge registered its account
// at Pebble (CAA identity "pebble.test", set with caa: in acme.ca), passes
// the first, and fails the other two naming the record and what is wrong.
func TestPreflightCAA(t *testing.T) {
	ports := testenv.FreePorts(t, 3)
	cts := testenv.StartChallTestSrv(t)
	peb := testenv.StartPebble(t, testenv.PebbleOptions{HTTPPort: ports[0], DNSServer: cts.DNSAddr})
	wrongAcct := strings.TrimSuffix(peb.DirectoryURL, "/dir") + "/my-account/999"
	bind := testenv.StartBIND(t, testenv.BINDOptions{
		Zones: []string{"allow.test", "other.test", "acct.test"},
		Records: map[string][]string{
			"allow.test": {`@ CAA 0 issue "pebble.test"`, `@ CAA 0 iodef "mailto:ops@allow.test"`, `www A 127.0.0.1`},
			"other.test": {`@ CAA 0 issue "sectigo.com"`},
			"acct.test":  {fmt.Sprintf(`@ CAA 0 issue "pebble.test; accounturi=%s"`, wrongAcct)},
		},
	})
	b := testenv.NewBackend(t, 1, 0)
	conf := pConf{
		httpPort: ports[0], httpsPort: ports[1], adminPort: ports[2],
		peb: peb, bind: bind, storage: filepath.Join(t.TempDir(), "storage"),
		sites: []pSite{{hosts: []string{"www.allow.test", "other.test", "acct.test"}}},
		pools: []pPool{{name: "web", backends: []string{b.URL}}},
	}
	withCAA := func(y string) string {
		out := strings.Replace(y, fmt.Sprintf("  ca: %q\n", peb.DirectoryURL), fmt.Sprintf("  ca: {url: %q, caa: pebble.test}\n", peb.DirectoryURL), 1)
		if out == y {
			t.Fatalf("acme.ca not replaced in:\n%s", y)
		}
		return out
	}
	e, _ := startServing(t, peb, withCAA(conf.yaml())) // registers the account, obtains the certificates
	dir := t.TempDir()
	run := func(file, y string) (string, int) {
		path := filepath.Join(dir, file)
		if err := os.WriteFile(path, []byte(y), 0o644); err != nil {
			t.Fatal(err)
		}
		_, all, code := runPreflight(t, "-config", path, "-attempts", "1", "-connect", testenv.Addr(ports[0]))
		return all, code
	}
	out, code := run("all.yaml", withCAA(conf.yaml()))
	t.Logf("edge preflight (exit %d):\n%s", code, out)
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	for _, want := range []string{
		`www.allow.test: ok: CAA for ` + peb.DirectoryURL + `: allow.test CAA 0 issue "pebble.test" allows pebble.test`,
		`other.test: FAIL: CAA for ` + peb.DirectoryURL + `: other.test CAA 0 issue "sectigo.com" does not allow pebble.test`,
		`acct.test: FAIL: CAA for ` + peb.DirectoryURL + `: acct.test CAA 0 issue "pebble.test; accounturi=` + wrongAcct + `" allows only the account ` + wrongAcct + `, not edge's ` + strings.TrimSuffix(peb.DirectoryURL, "/dir") + `/my-account/`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("preflight output lacks %q", want)
		}
	}
	conf.sites = []pSite{{hosts: []string{"www.allow.test"}}}
	out, code = run("allowed.yaml", withCAA(conf.yaml()))
	if code != 0 {
		t.Errorf("preflight of the allowed name alone: exit %d, want 0:\n%s", code, out)
	}
	_ = e
}
