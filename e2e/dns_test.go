package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/farmedge/edge/challenge"
	"github.com/farmedge/edge/internal/cffake"
	"github.com/farmedge/edge/internal/testenv"
)

// dnsTimeout bounds the wait for DNS-01 certificates: certmagic's
// propagation check alone takes about 2 s per certificate.
const dnsTimeout = 40 * time.Second

// dnsSite is one sites: entry that gets its certificates through DNS-01.
type dnsSite struct {
	hosts    []string
	dns      string // provider name under acme.dns
	delegate string
}

// dnsConf renders an edge config for the DNS-01 tests: providers lan
// (rfc2136 into BIND), cf (the fake Cloudflare, right token) and cfbad
// (the fake Cloudflare, wrong token), resolvers = BIND.
type dnsConf struct {
	httpPort, httpsPort, adminPort int
	peb                            *testenv.Pebble
	bind                           *testenv.BIND
	cfURL                          string
	storage                        string
	sites                          []dnsSite
	backend                        string
}

func (c dnsConf) yaml() string {
	var b strings.Builder
	fmt.Fprintf(&b, "listen: {http: %q, https: %q}\n", testenv.Addr(c.httpPort), testenv.Addr(c.httpsPort))
	fmt.Fprintf(&b, "admin: {listen: %q}\n", testenv.Addr(c.adminPort))
	fmt.Fprintf(&b, "acme:\n  email: test@example.com\n  ca: %q\n  ca_root_file: %q\n  challenges: [http-01]\n",
		c.peb.DirectoryURL, c.peb.MinicaRootFile)
	fmt.Fprintf(&b, "  dns_resolvers: [%q]\n  dns_propagation_timeout: 30s\n", c.bind.Addr)
	b.WriteString("  dns:\n")
	fmt.Fprintf(&b, "    lan: {provider: rfc2136, server: %q, key_name: %s, key_alg: %s, key: %q}\n",
		c.bind.Addr, c.bind.KeyName, c.bind.KeyAlg, c.bind.KeySecret)
	fmt.Fprintf(&b, "    cf: {provider: cloudflare, api_token: %q, api_url: %q}\n", cfToken, c.cfURL)
	fmt.Fprintf(&b, "    cfbad: {provider: cloudflare, api_token: %q, api_url: %q}\n", "not-the-token", c.cfURL)
	fmt.Fprintf(&b, "storage: {type: file, path: %q}\n", c.storage)
	b.WriteString("log: {level: debug, format: json}\nsites:\n")
	for _, s := range c.sites {
		quoted := make([]string, len(s.hosts))
		for i, h := range s.hosts {
			quoted[i] = fmt.Sprintf("%q", h)
		}
		fmt.Fprintf(&b, "  - hosts: [%s]\n    dns: %s\n", strings.Join(quoted, ", "), s.dns)
		if s.delegate != "" {
			fmt.Fprintf(&b, "    delegate: %q\n", s.delegate)
		}
		b.WriteString("    routes: [{path: /, pool: web}]\n")
	}
	fmt.Fprintf(&b, "pools:\n  web:\n    backends: [%q]\n", c.backend)
	return b.String()
}

const cfToken = "cf-test-token-0123456789"

// testZones are the zones BIND serves: app.test (rfc2136), deleg.test whose
// _acme-challenge is a CNAME into other.test, and cf.test (behind the fake
// Cloudflare).
var testZones = []string{"app.test", "other.test", "deleg.test", "cf.test"}

// TestDNS01 obtains certificates from Pebble through DNS-01 with a real
// BIND as the DNS (Pebble's -dnsserver and edge's resolver): app.test and
// *.app.test by RFC 2136, a name whose _acme-challenge is delegated by CNAME
// into another zone, and a name behind the fake Cloudflare API. After each,
// no _acme-challenge TXT record is left in any zone. A wrong Cloudflare
// token fails with an error naming the provider and the zone.
func TestDNS01(t *testing.T) {
	bind := testenv.StartBIND(t, testenv.BINDOptions{
		Zones: testZones,
		Records: map[string][]string{
			"deleg.test": {"_acme-challenge CNAME _acme-challenge.d.other.test."},
		},
	})
	fake := cffake.New(cffake.Options{
		Token: cfToken, Zones: map[string]string{"cf.test": "9a7806061c88ada191ed06f989cc3dac"},
		DNSServer: bind.Addr, TSIGName: bind.KeyName, TSIGSecret: bind.KeySecret,
	})
	t.Cleanup(fake.Close)
	// BIND is the root zone's primary: a name in no test zone is answered
	// NXDOMAIN from there, authoritatively, without asking anyone else.
	if in, err := bind.Query("example.com", dns.TypeA); err != nil || in.Rcode != dns.RcodeNameError || !in.Authoritative {
		t.Fatalf("BIND on example.com A: %v %v; want an authoritative NXDOMAIN from its root zone", in, err)
	}
	peb := testenv.StartPebble(t, testenv.PebbleOptions{DNSServer: bind.Addr})
	backend := testenv.NewBackend(t, 1, 0)

	// startDNSEdge starts an edge for sites with fresh storage.
	startDNSEdge := func(t *testing.T, sites ...dnsSite) *testenv.Edge {
		t.Helper()
		ports := testenv.FreePorts(t, 3)
		conf := dnsConf{
			httpPort: ports[0], httpsPort: ports[1], adminPort: ports[2],
			peb: peb, bind: bind, cfURL: fake.APIURL(),
			storage: filepath.Join(t.TempDir(), "storage"),
			sites:   sites, backend: backend.URL,
		}
		return testenv.StartEdge(t, conf.yaml())
	}

	// run starts an edge for sites, waits for every name's certificate,
	// logs how long each took and checks the zones are clean again.
	run := func(t *testing.T, sites ...dnsSite) *testenv.Edge {
		t.Helper()
		start := time.Now()
		e := startDNSEdge(t, sites...)
		var names []string
		for _, s := range sites {
			names = append(names, s.hosts...)
		}
		took := waitValid(t, e, names, start, dnsTimeout)
		for _, n := range names {
			t.Logf("obtained %s in %s", n, took[n].Round(time.Millisecond))
		}
		checkCertificates(t, e, peb, names)
		checkNoChallengeTXT(t, bind)
		return e
	}

	t.Run("rfc2136 name and wildcard", func(t *testing.T) {
		run(t, dnsSite{hosts: []string{"app.test", "*.app.test"}, dns: "lan"})
		if st := peb.Stats(); st.HTTPAttempts != 0 {
			t.Errorf("pebble made %d HTTP-01 requests, want none", st.HTTPAttempts)
		}
	})

	t.Run("delegated by CNAME", func(t *testing.T) {
		const target = "_acme-challenge.d.other.test"
		if err := challenge.CheckDelegation(t.Context(), bind.Addr, "deleg.test", target); err != nil {
			t.Fatalf("CheckDelegation: %v", err)
		}
		run(t, dnsSite{hosts: []string{"deleg.test"}, dns: "lan", delegate: target})
	})

	// edge validate -check-dns asks the first dns_resolvers entry for each
	// delegate: CNAME before anything is ordered.
	t.Run("validate -check-dns", func(t *testing.T) {
		ports := testenv.FreePorts(t, 3)
		check := func(sites ...dnsSite) (string, error) {
			conf := dnsConf{
				httpPort: ports[0], httpsPort: ports[1], adminPort: ports[2],
				peb: peb, bind: bind, cfURL: fake.APIURL(),
				storage: filepath.Join(t.TempDir(), "storage"), sites: sites, backend: backend.URL,
			}
			path := filepath.Join(t.TempDir(), "edge.yaml")
			if err := os.WriteFile(path, []byte(conf.yaml()), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(testenv.BuildEdge(t), "validate", "-check-dns", "-config", path).CombinedOutput()
			return string(out), err
		}
		out, err := check(dnsSite{hosts: []string{"deleg.test"}, dns: "lan", delegate: "_acme-challenge.d.other.test"})
		if err != nil || !strings.Contains(out, "deleg.test: ok") {
			t.Errorf("delegation in place: %v\n%s", err, out)
		}
		out, err = check(dnsSite{hosts: []string{"broken.deleg.test"}, dns: "lan", delegate: "_acme-challenge.broken.other.test"})
		if testenv.ExitCode(err) != 1 || !strings.Contains(out, "broken.deleg.test: FAIL") {
			t.Errorf("missing delegation: exit %d, want 1 naming the host:\n%s", testenv.ExitCode(err), out)
		}
	})

	// The TXT record goes to the delegated name, but _acme-challenge.NAME
	// has no CNAME there, so Pebble finds nothing: the order fails and the
	// record must still be removed.
	t.Run("failed order cleans up", func(t *testing.T) {
		e := startDNSEdge(t, dnsSite{hosts: []string{"broken.deleg.test"}, dns: "lan", delegate: "_acme-challenge.broken.other.test"})
		last := waitLastError(t, e, "broken.deleg.test", []string{"broken.deleg.test", "urn:ietf:params:acme:error"})
		t.Logf("last_error: %s", last)
		// edge's own line for the failure (tlsmgr/explain.go): the
		// challenge, the name, where to look.
		waitLog(t, e, []string{`"msg":"certificate order failed"`, `"reason":"challenge_failed"`, "dns-01 for broken.deleg.test", "_acme-challenge.broken.deleg.test", "next attempt in "})
		checkNoChallengeTXT(t, bind)
		// It was there: BIND logs each update.
		for _, w := range []string{"adding an RR at '_acme-challenge.broken.other.test' TXT", "deleting an RR at _acme-challenge.broken.other.test TXT"} {
			if !strings.Contains(bind.Log(), w) {
				t.Errorf("BIND's log does not say %q", w)
			}
		}
	})

	t.Run("cloudflare", func(t *testing.T) {
		before := fake.Calls()
		run(t, dnsSite{hosts: []string{"www.cf.test"}, dns: "cf"})
		if fake.Calls() == before {
			t.Errorf("the fake Cloudflare API was not called")
		}
		if recs := fake.Records("cf.test"); len(recs) != 0 {
			t.Errorf("the fake still holds %+v", recs)
		}
	})

	t.Run("cloudflare wrong token", func(t *testing.T) {
		e := startDNSEdge(t, dnsSite{hosts: []string{"bad.cf.test"}, dns: "cfbad"})
		want := []string{`dns provider "cfbad" (cloudflare)`, `zone "cf.test"`, "Invalid access token"}
		last := waitLastError(t, e, "bad.cf.test", want)
		t.Logf("last_error: %s", last)
		// The log is JSON, where the quotes are escaped.
		var wantLog []string
		for _, w := range want {
			wantLog = append(wantLog, strings.ReplaceAll(w, `"`, `\"`))
		}
		if !containsAll(e.Log(), wantLog) {
			t.Errorf("edge's log does not contain %q", wantLog)
		}
		waitLog(t, e, []string{`"reason":"dns_provider"`, "DNS-01 for bad.cf.test: the DNS provider did not take the TXT record", "Invalid access token"})
		if code, err := e.Readyz(); err != nil || code == 200 {
			t.Errorf("/readyz = %d, %v; want not ready", code, err)
		}
		checkNoChallengeTXT(t, bind)
	})
}

// waitLog polls edge's log until it contains every string of want in one
// line, and returns that line.
func waitLog(t *testing.T, e *testenv.Edge, want []string) string {
	t.Helper()
	deadline := time.Now().Add(dnsTimeout)
	for {
		for _, line := range strings.Split(e.Log(), "\n") {
			if containsAll(line, want) {
				t.Logf("edge: %s", line)
				return line
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("edge's log has no line with %q\n%s", want, e.Tail(30))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitLastError polls /api/certificates until name's last_error contains
// every string of want, and returns it.
func waitLastError(t *testing.T, e *testenv.Edge, name string, want []string) string {
	t.Helper()
	var last string
	deadline := time.Now().Add(dnsTimeout)
	for !containsAll(last, want) {
		if time.Now().After(deadline) {
			t.Fatalf("/api/certificates last_error for %s = %q, want it to contain %q\n%s", name, last, want, e.Tail(30))
		}
		time.Sleep(100 * time.Millisecond)
		certs, err := e.Certificates()
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range certs {
			if slices.Contains(c.Names, name) {
				last = c.LastError
			}
		}
	}
	return last
}

// waitValid polls /api/certificates until every name is valid and returns,
// by name, how long after start it first was.
func waitValid(t *testing.T, e *testenv.Edge, names []string, start time.Time, timeout time.Duration) map[string]time.Duration {
	t.Helper()
	took := map[string]time.Duration{}
	deadline := start.Add(timeout)
	state := map[string]string{}
	for len(took) < len(names) {
		if time.Now().After(deadline) {
			t.Fatalf("after %s certificates are %v (obtained: %v)\n%s", timeout, state, took, e.Tail(40))
		}
		certs, err := e.Certificates()
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range certs {
			for _, n := range c.Names {
				state[n] = c.State
				if c.LastError != "" {
					state[n] += " (" + c.LastError + ")"
				}
				if _, done := took[n]; !done && c.State == "valid" {
					took[n] = time.Since(start)
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return took
}

// checkNoChallengeTXT fails if any test zone still holds an _acme-challenge
// TXT record. certmagic deletes them right after validation; a short wait
// covers a deletion still on its way.
func checkNoChallengeTXT(t *testing.T, bind *testenv.BIND) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var left []string
		for _, z := range testZones {
			recs, err := bind.ChallengeTXT(z)
			if err != nil {
				t.Fatalf("%v", err)
			}
			left = append(left, recs...)
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("_acme-challenge TXT records left in BIND: %q", left)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func containsAll(s string, subs []string) bool {
	for _, w := range subs {
		if !strings.Contains(s, w) {
			return false
		}
	}
	return s != ""
}
