package e2e

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/farmedge/edge/internal/testenv"
)

// odHandshake makes a TLS connection for serverName, verified against
// roots, within timeout.
func odHandshake(addr, serverName string, roots *x509.CertPool, timeout time.Duration) (*x509.Certificate, error) {
	d := &net.Dialer{Timeout: timeout}
	conn, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{ServerName: serverName, RootCAs: roots, NextProtos: []string{"http/1.1"}})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0], nil
}

// randomName is a fresh name under zone.
func randomName(zone string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b) + "." + zone
}

// askEndpoint is an on_demand.ask server that allows the names in yes.
func askEndpoint(t *testing.T, yes ...string) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var asks atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asks.Add(1)
		if !slices.Contains(yes, r.URL.Query().Get("domain")) {
			http.Error(w, "no", http.StatusForbidden)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, &asks
}

// parallel runs f(i) for i in [0, n) on workers goroutines.
func parallel(n, workers int, f func(i int)) {
	var wg sync.WaitGroup
	next := atomic.Int64{}
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				f(i)
			}
		})
	}
	wg.Wait()
}

// TestOnDemandAsk: with an ask endpoint that allows two names, 1,000
// handshakes for random names start no order and fail fast; the two
// allowed names get a certificate each at their first handshake (one order
// each, however many handshakes race for it) and are served by the
// catch-all site; /readyz and the certificate list leave them out.
func TestOnDemandAsk(t *testing.T) {
	ports := testenv.FreePorts(t, 3)
	peb := startPebbleHTTP01(t, ports[0])
	ask, asks := askEndpoint(t, "ok1.test", "ok2.test")
	b := testenv.NewBackend(t, 1, 0)
	conf := pConf{
		httpPort: ports[0], httpsPort: ports[1], adminPort: ports[2],
		peb: peb, storage: filepath.Join(t.TempDir(), "storage"),
		sites: []pSite{{hosts: []string{"static.test"}}, {hosts: []string{"*"}}},
		pools: []pPool{{name: "web", backends: []string{b.URL}}},
		extra: fmt.Sprintf("on_demand: {ask: %q, ask_timeout: 2s, ask_cache: 1m}\n", ask.URL+"/allowed"),
	}
	e, roots := startServing(t, peb, conf.yaml())
	before := peb.Stats().Orders

	const n = 1000
	var refused, slow atomic.Int64
	start := time.Now()
	parallel(n, 16, func(int) {
		t0 := time.Now()
		if _, err := odHandshake(e.HTTPSAddr, randomName("random.test"), roots, 10*time.Second); err != nil {
			refused.Add(1)
		}
		if time.Since(t0) > 5*time.Second {
			slow.Add(1)
		}
	})
	t.Logf("%d handshakes for random names in %v: %d refused, %d took over 5 s; %d asks",
		n, time.Since(start).Round(time.Millisecond), refused.Load(), slow.Load(), asks.Load())
	if refused.Load() != n {
		t.Errorf("%d of %d handshakes for names the ask endpoint refuses succeeded", n-refused.Load(), n)
	}
	if slow.Load() > 0 {
		t.Errorf("%d refusals took over 5 s: a refused name should fail its handshake at once", slow.Load())
	}
	if got := peb.Stats().Orders - before; got != 0 {
		t.Errorf("%d orders for refused names, want 0", got)
	}
	m, err := e.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Sum("edge_on_demand_decisions_total", "result", "refused"); got != n {
		t.Errorf("edge_on_demand_decisions_total{result=refused} = %v, want %d\n%s", got, n, m.Dump("edge_on_demand_decisions_total"))
	}

	// Two allowed names, five racing handshakes each: one order each.
	for _, name := range []string{"ok1.test", "ok2.test"} {
		var ok atomic.Int64
		parallel(5, 5, func(int) {
			leaf, err := odHandshake(e.HTTPSAddr, name, roots, 60*time.Second)
			if err != nil {
				t.Errorf("handshake for allowed %s: %v", name, err)
				return
			}
			if !slices.Equal(leaf.DNSNames, []string{name}) {
				t.Errorf("certificate for %s names %q", name, leaf.DNSNames)
				return
			}
			ok.Add(1)
		})
		if ok.Load() != 5 {
			t.Fatalf("%d of 5 handshakes for %s got its certificate", ok.Load(), name)
		}
		resp, err := testenv.HTTPSClient(roots, e.HTTPSAddr).Get("https://" + name + "/")
		if err != nil {
			t.Fatalf("GET https://%s/: %v", name, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET https://%s/ through the catch-all site: %d", name, resp.StatusCode)
		}
	}
	if got := peb.Stats().Orders - before; got != 2 {
		t.Errorf("%d orders for the two allowed names, want 2", got)
	}
	if code, err := e.Readyz(); err != nil || code != http.StatusOK {
		t.Errorf("/readyz = %d, %v", code, err)
	}
	certs, err := e.Certificates()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range certs {
		for _, n := range c.Names {
			if n != "static.test" {
				t.Errorf("/api/certificates lists %s: on-demand names are not managed names", n)
			}
		}
	}
	m, err = e.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Sum("edge_acme_orders_total", "result", "success"); got != 3 {
		t.Errorf("edge_acme_orders_total{result=success} = %v, want 3 (static.test and the two on demand)", got)
	}
}

// TestOnDemandRate: 20 names the allow list takes, at rate 5/m: at most 5
// orders in the first minute, the rest refused fast; with the ask endpoint
// down, a name the allow list does not take is refused fast, no order.
func TestOnDemandRate(t *testing.T) {
	ports := testenv.FreePorts(t, 4)
	peb := startPebbleHTTP01(t, ports[0])
	b := testenv.NewBackend(t, 1, 0)
	down := testenv.Addr(ports[3]) // nothing listens there
	conf := pConf{
		httpPort: ports[0], httpsPort: ports[1], adminPort: ports[2],
		peb: peb, storage: filepath.Join(t.TempDir(), "storage"),
		sites: []pSite{{hosts: []string{"static.test"}}, {hosts: []string{"*"}}},
		pools: []pPool{{name: "web", backends: []string{b.URL}}},
		extra: fmt.Sprintf("on_demand: {allow: [\"*.rate.test\"], ask: \"http://%s/ask\", rate: 5/m}\n", down),
	}
	e, roots := startServing(t, peb, conf.yaml())
	before := peb.Stats().Orders
	start := time.Now()

	var served atomic.Int64
	parallel(20, 20, func(i int) {
		if _, err := odHandshake(e.HTTPSAddr, fmt.Sprintf("n%02d.rate.test", i), roots, 60*time.Second); err == nil {
			served.Add(1)
		}
	})
	orders := peb.Stats().Orders - before
	took := time.Since(start)
	t.Logf("20 allowed names at 5/m: %d served, %d orders, in %v", served.Load(), orders, took.Round(time.Millisecond))
	if took < time.Minute && orders > 5 {
		t.Errorf("%d orders within %v at rate 5/m", orders, took)
	}
	if served.Load() != 5 {
		t.Errorf("%d names served, want the 5 the rate lets through", served.Load())
	}

	t0 := time.Now()
	if _, err := odHandshake(e.HTTPSAddr, "other.test", roots, 10*time.Second); err == nil {
		t.Error("a name not in allow was served with the ask endpoint down")
	}
	if took := time.Since(t0); took > 5*time.Second {
		t.Errorf("the refusal with the ask endpoint down took %v", took)
	}
	if got := peb.Stats().Orders - before; got != orders {
		t.Errorf("%d more orders with the ask endpoint down", got-orders)
	}
	m, err := e.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	for result, want := range map[string]float64{"allowed": 5, "rate_limited": 15, "ask_failed": 1} {
		if got := m.Sum("edge_on_demand_decisions_total", "result", result); got != want {
			t.Errorf("edge_on_demand_decisions_total{result=%s} = %v, want %v", result, got, want)
		}
	}
}
