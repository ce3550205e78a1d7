package testenv_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log/slog"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/farmedge/edge/internal/testenv"
	"github.com/mholt/acmez/v3"
	"github.com/mholt/acmez/v3/acme"
)

func TestParseMetrics(t *testing.T) {
	m, err := testenv.ParseMetrics(`# HELP x y
# TYPE edge_acme_orders_total counter
edge_acme_orders_total{issuer="pebble",result="success"} 2
edge_acme_orders_total{issuer="pebble",result="failure"} 1
edge_certificate_not_after_timestamp_seconds{issuer="a \"q\"",name="a.test"} 1.7e+09
edge_http_requests_in_flight 3
`)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Sum("edge_acme_orders_total"); got != 3 {
		t.Errorf("Sum = %g, want 3", got)
	}
	if v, ok := m.Get("edge_acme_orders_total", "result", "success"); !ok || v != 2 {
		t.Errorf("Get success = %g %v", v, ok)
	}
	if v, ok := m.Get("edge_certificate_not_after_timestamp_seconds", "name", "a.test"); !ok || v != 1.7e9 {
		t.Errorf("not_after = %g %v", v, ok)
	}
	if s := m.Find("edge_certificate_not_after_timestamp_seconds"); len(s) != 1 || s[0].Labels["issuer"] != `a "q"` {
		t.Errorf("escaped label: %+v", s)
	}
	if v, ok := m.Get("edge_http_requests_in_flight"); !ok || v != 3 {
		t.Errorf("unlabelled = %g %v", v, ok)
	}
}

// keyAuthServer answers HTTP-01 requests from a shared challenge, and
// counts them.
type keyAuthServer struct {
	chal *atomic.Pointer[acme.Challenge]
	hits atomic.Int64
}

func (s *keyAuthServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c := s.chal.Load()
	if c == nil || r.URL.Path != c.HTTP01ResourcePath() {
		http.NotFound(w, r)
		return
	}
	s.hits.Add(1)
	io.WriteString(w, c.KeyAuthorization)
}

type sharedSolver struct {
	chal *atomic.Pointer[acme.Challenge]
}

func (s sharedSolver) Present(_ context.Context, c acme.Challenge) error {
	s.chal.Store(&c)
	return nil
}

func (s sharedSolver) CleanUp(context.Context, acme.Challenge) error {
	s.chal.Store(nil)
	return nil
}

// TestHarnessPebbleBehindHAProxy checks the harness without edge: an ACME
// client orders from Pebble while two HTTP-01 responders sit behind HAProxy
// round robin on Pebble's httpPort. Pebble's three validation requests
// reach both, which is what the web-farm e2e test relies on.
func TestHarnessPebbleBehindHAProxy(t *testing.T) {
	cts := testenv.StartChallTestSrv(t)
	var chal atomic.Pointer[acme.Challenge]
	responders := []*keyAuthServer{{chal: &chal}, {chal: &chal}}
	var backends []string
	for _, r := range responders {
		port := testenv.FreePort(t)
		srv := &http.Server{Addr: testenv.Addr(port), Handler: r}
		go srv.ListenAndServe()
		t.Cleanup(func() { srv.Close() })
		if err := testenv.WaitTCP(srv.Addr, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		backends = append(backends, srv.Addr)
	}
	lb := testenv.StartHAProxy(t, testenv.HAProxyOptions{Backends: backends, Mode: "tcp"})
	peb := testenv.StartPebble(t, testenv.PebbleOptions{HTTPPort: lb.Port, DNSServer: cts.DNSAddr})

	minica, err := testenv.CertPoolFromFile(peb.MinicaRootFile)
	if err != nil {
		t.Fatal(err)
	}
	client := acmez.Client{
		Client: &acme.Client{
			Directory:  peb.DirectoryURL,
			HTTPClient: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: minica}}},
			Logger:     slog.New(slog.DiscardHandler),
		},
		ChallengeSolvers: map[string]acmez.Solver{acme.ChallengeTypeHTTP01: sharedSolver{&chal}},
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	accountKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	account, err := client.NewAccount(ctx, acme.Account{TermsOfServiceAgreed: true, Contact: []string{"mailto:test@example.com"}, PrivateKey: accountKey})
	if err != nil {
		t.Fatalf("new account: %v", err)
	}
	certKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	certs, err := client.ObtainCertificateForSANs(ctx, account, certKey, []string{"harness.test"})
	if err != nil {
		t.Fatalf("obtaining: %v", err)
	}

	roots, err := peb.IssuingRoots()
	if err != nil {
		t.Fatal(err)
	}
	var chain []*x509.Certificate
	rest := certs[0].ChainPEM
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		chain = append(chain, c)
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := chain[0].Verify(x509.VerifyOptions{DNSName: "harness.test", Roots: roots, Intermediates: inter}); err != nil {
		t.Errorf("chain does not verify against /roots/0: %v", err)
	}
	if _, err := chain[0].Verify(x509.VerifyOptions{DNSName: "harness.test", Roots: minica, Intermediates: inter}); err == nil {
		t.Errorf("chain verifies against minica; IssuingRoots should differ from the API's root")
	}

	st := peb.Stats()
	if st.Orders != 1 || st.Issued != 1 || st.AuthzValid != 1 || st.HTTPAttempts != 3 {
		t.Errorf("pebble stats = %+v, want 1 order, 1 issued, 1 valid authz, 3 HTTP attempts", st)
	}
	for i, r := range responders {
		if r.hits.Load() == 0 {
			t.Errorf("responder %d behind HAProxy got no validation request (hits %d, %d)", i, responders[0].hits.Load(), responders[1].hits.Load())
		}
	}
	t.Logf("validation requests: responder0=%d responder1=%d", responders[0].hits.Load(), responders[1].hits.Load())
}

func TestBackendAndClient(t *testing.T) {
	b := testenv.NewBackend(t, 7, 0)
	resp, err := testenv.HTTPClient(b.Addr).Get("http://any.test/x")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "hello from backend 7\n" {
		t.Errorf("body %q", body)
	}
	b.Close()
	if _, err := testenv.HTTPClient(b.Addr).Get("http://any.test/x"); err == nil {
		t.Errorf("closed backend still answers")
	}
}

func TestProcessStop(t *testing.T) {
	p := testenv.Start(t, testenv.Cmd{Name: "sleep", Path: "/bin/sh", Args: []string{"-c", "echo started; trap 'echo bye; exit 0' TERM; while :; do sleep 0.1; done"}})
	if err := p.WaitLog("started", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := p.Stop(); err != nil {
		t.Errorf("Stop: %v", err)
	}
	if err := p.WaitLog("bye", time.Second); err != nil {
		t.Error(err)
	}
}
