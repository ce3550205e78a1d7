// Package e2e runs the real edge binary against real Pebble,
// pebble-challtestsrv and HAProxy processes, all on 127.0.0.1.
//
// Run with `go test ./e2e` (or `make test`); the tools come from
// `make deps`. Outside CI a missing tool skips a test; with CI set it fails.
package e2e

import (
	"crypto/x509"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/farmedge/edge/internal/testenv"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.RemoveBuild()
	os.Exit(code)
}

// readyTimeout bounds the wait for every certificate. Pebble issues in about
// half a second; certmagic's first retry after a failure is a minute away,
// so a failed order shows up as this timeout.
const readyTimeout = 40 * time.Second

// site is one sites: entry routed to the pool "web".
type site struct {
	hosts []string
}

// edgeConf renders an edge config for the tests.
type edgeConf struct {
	httpPort, httpsPort, adminPort int
	ca, caRoot                     string
	challenges                     []string
	storage                        string
	sites                          []site
	backends                       []string // URLs of pool "web"
}

func (c edgeConf) yaml() string {
	var b strings.Builder
	fmt.Fprintf(&b, "listen: {http: %q, https: %q}\n", testenv.Addr(c.httpPort), testenv.Addr(c.httpsPort))
	fmt.Fprintf(&b, "admin: {listen: %q}\n", testenv.Addr(c.adminPort))
	fmt.Fprintf(&b, "acme:\n  email: test@example.com\n  ca: %q\n  ca_root_file: %q\n  challenges: [%s]\n",
		c.ca, c.caRoot, strings.Join(c.challenges, ", "))
	fmt.Fprintf(&b, "storage: {type: file, path: %q}\n", c.storage)
	b.WriteString("log: {level: debug, format: json}\nsites:\n")
	for _, s := range c.sites {
		fmt.Fprintf(&b, "  - hosts: [%s]\n    routes: [{path: /, pool: web}]\n", strings.Join(s.hosts, ", "))
	}
	b.WriteString("pools:\n  web:\n    policy: round_robin\n    backends: [")
	for i, u := range c.backends {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%q", u)
	}
	b.WriteString("]\n")
	b.WriteString("    health: {path: /healthz, interval: 500ms, timeout: 300ms, fails: 1, passes: 1}\n")
	b.WriteString("    passive: {fails: 1, window: 10s, cooldown: 30s}\n")
	b.WriteString("    retries: 2\n")
	return b.String()
}

func (c edgeConf) names() []string {
	var out []string
	for _, s := range c.sites {
		out = append(out, s.hosts...)
	}
	return out
}

// checkCertificates verifies, for every name, the chain edge presents
// against Pebble's issuing root, and /metrics and /api/certificates against
// the leaf. It returns the leaves by name.
func checkCertificates(t *testing.T, e *testenv.Edge, peb *testenv.Pebble, names []string) map[string]*x509.Certificate {
	t.Helper()
	roots, err := peb.IssuingRoots()
	if err != nil {
		t.Fatalf("pebble issuing root: %v", err)
	}
	leaves := map[string]*x509.Certificate{}
	for _, name := range names {
		st, err := testenv.Handshake(e.HTTPSAddr, name, roots)
		if err != nil {
			t.Errorf("chain for %s does not verify against Pebble's /roots/0: %v", name, err)
			continue
		}
		leaf := st.PeerCertificates[0]
		if err := leaf.VerifyHostname(name); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if len(st.VerifiedChains) == 0 || len(st.VerifiedChains[0]) < 3 {
			t.Errorf("%s: verified chain %d long, want leaf, intermediate, root", name, len(st.VerifiedChains[0]))
		}
		if st.NegotiatedProtocol != "h2" {
			t.Errorf("%s: ALPN %q, want h2", name, st.NegotiatedProtocol)
		}
		leaves[name] = leaf
	}

	m, err := e.Metrics()
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	for name, leaf := range leaves {
		got, ok := m.Get("edge_certificate_not_after_timestamp_seconds", "name", name)
		if !ok {
			t.Errorf("/metrics: no single edge_certificate_not_after_timestamp_seconds{name=%q}:\n%s", name,
				m.Dump("edge_certificate_not_after_timestamp_seconds"))
		} else if int64(got) != leaf.NotAfter.Unix() {
			t.Errorf("/metrics: not_after{name=%q} = %d, leaf says %d (%s)", name, int64(got), leaf.NotAfter.Unix(), leaf.NotAfter)
		}
		if v, ok := m.Get("edge_certificate_ready", "name", name); !ok || v != 1 {
			t.Errorf("/metrics: edge_certificate_ready{name=%q} = %g (found %v), want 1", name, v, ok)
		}
	}

	certs, err := e.Certificates()
	if err != nil {
		t.Fatalf("%v", err)
	}
	byName := map[string]testenv.CertificateStatus{}
	for _, c := range certs {
		for _, n := range c.Names {
			byName[n] = c
		}
	}
	for name, leaf := range leaves {
		c, ok := byName[name]
		switch {
		case !ok:
			t.Errorf("/api/certificates: %s missing: %+v", name, certs)
		case c.State != "valid":
			t.Errorf("/api/certificates: %s state %q (last_error %q), want valid", name, c.State, c.LastError)
		case !c.NotAfter.Equal(leaf.NotAfter) || !c.NotBefore.Equal(leaf.NotBefore):
			t.Errorf("/api/certificates: %s not_before/not_after %s/%s, leaf %s/%s", name, c.NotBefore, c.NotAfter, leaf.NotBefore, leaf.NotAfter)
		case c.Issuer == "":
			t.Errorf("/api/certificates: %s has no issuer", name)
		}
	}
	return leaves
}
