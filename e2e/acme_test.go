package e2e

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/farmedge/edge/internal/testenv"
)

// TestHTTP01TwoSites: one edge, two sites of two names each, certificates
// from Pebble through HTTP-01 on edge's plain-HTTP listener; then the
// traffic checks: balancing, redirects, the challenge path, 421, a killed
// backend, and a clean exit on SIGTERM.
func TestHTTP01TwoSites(t *testing.T) {
	cts := testenv.StartChallTestSrv(t)
	ports := testenv.FreePorts(t, 3)
	peb := testenv.StartPebble(t, testenv.PebbleOptions{HTTPPort: ports[0], DNSServer: cts.DNSAddr})
	b1 := testenv.NewBackend(t, 1, 0)
	b2 := testenv.NewBackend(t, 2, 0)
	b3 := testenv.NewBackend(t, 3, 0)
	conf := edgeConf{
		httpPort: ports[0], httpsPort: ports[1], adminPort: ports[2],
		ca: peb.DirectoryURL, caRoot: peb.MinicaRootFile,
		challenges: []string{"http-01"},
		storage:    filepath.Join(t.TempDir(), "storage"),
		sites:      []site{{hosts: []string{"a.test", "www.a.test"}}, {hosts: []string{"b.test", "www.b.test"}}},
		backends:   []string{b1.URL, b2.URL, b3.URL},
	}
	names := conf.names()
	e := testenv.StartEdge(t, conf.yaml())

	// Issuance takes a second or more for four names, so right after
	// /healthz edge cannot be ready yet.
	if code, err := e.Readyz(); err != nil || code != http.StatusServiceUnavailable {
		t.Errorf("/readyz right after start = %d, %v; want 503 before any certificate", code, err)
	}
	start := time.Now()
	if err := e.WaitReady(readyTimeout); err != nil {
		t.Fatalf("%v", err)
	}
	t.Logf("ready %s after /healthz", time.Since(start).Round(time.Millisecond))

	t.Run("certificates", func(t *testing.T) {
		checkCertificates(t, e, peb, names)
		m, err := e.Metrics()
		if err != nil {
			t.Fatal(err)
		}
		if got := m.Sum("edge_acme_challenges_total", "type", "http-01", "result", "success"); int(got) != len(names) {
			t.Errorf("edge_acme_challenges_total{type=http-01,result=success} = %g, want %d:\n%s", got, len(names), m.Dump("edge_acme_challenges_total"))
		}
		if got := m.Sum("edge_acme_orders_total", "result", "success"); int(got) != len(names) {
			t.Errorf("edge_acme_orders_total{result=success} = %g, want %d:\n%s", got, len(names), m.Dump("edge_acme_orders_total"))
		}
		st := peb.Stats()
		if st.Issued != len(names) || st.AuthzValid != len(names) || st.HTTPAttempts != 3*len(names) {
			t.Errorf("pebble: %d issued, %d valid authz, %d HTTP-01 requests; want %d, %d, %d",
				st.Issued, st.AuthzValid, st.HTTPAttempts, len(names), len(names), 3*len(names))
		}
		if got := m.Sum("edge_acme_challenge_requests_total", "source", "local"); int(got) != 3*len(names) {
			t.Errorf("edge_acme_challenge_requests_total{source=local} = %g, want %d:\n%s", got, 3*len(names), m.Dump("edge_acme_challenge_requests_total"))
		}
	})

	roots, err := peb.IssuingRoots()
	if err != nil {
		t.Fatal(err)
	}
	client := testenv.HTTPSClient(roots, e.HTTPSAddr)
	plain := testenv.HTTPClient(e.HTTPAddr)

	t.Run("balanced", func(t *testing.T) {
		seen := map[string]int{}
		for _, name := range names {
			for range 6 {
				body, code, err := fetch(client, "https://"+name+"/")
				if err != nil || code != http.StatusOK {
					t.Fatalf("GET https://%s/: %d %v %q", name, code, err, body)
				}
				seen[strings.TrimSpace(body)]++
			}
		}
		if len(seen) != 3 {
			t.Errorf("responses by body = %v, want all three backends", seen)
		}
		m, err := e.Metrics()
		if err != nil {
			t.Fatal(err)
		}
		if got := m.Sum("edge_http_requests_total", "pool", "web", "code", "200"); got < 24 {
			t.Errorf("edge_http_requests_total{pool=web,code=200} = %g, want >= 24:\n%s", got, m.Dump("edge_http_requests_total"))
		}
		for _, b := range []*testenv.Backend{b1, b2, b3} {
			if v, ok := backendUp(m, b); !ok || v != 1 {
				t.Errorf("edge_backend_up for %s = %g (found %v), want 1:\n%s", b.URL, v, ok, m.Dump("edge_backend_up"))
			}
		}
	})

	t.Run("http redirects", func(t *testing.T) {
		resp, err := plain.Get("http://a.test/some/path?x=1")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc := resp.Header.Get("Location")
		if resp.StatusCode != http.StatusPermanentRedirect {
			t.Errorf("GET http://a.test/some/path?x=1: %s, want 308", resp.Status)
		}
		// With https on a non-443 port edge may keep or drop the port; the
		// scheme, host and request URI must be there.
		if !strings.HasPrefix(loc, "https://a.test") || !strings.HasSuffix(loc, "/some/path?x=1") {
			t.Errorf("Location %q, want https://a.test[:port]/some/path?x=1", loc)
		}
	})

	t.Run("challenge path not redirected", func(t *testing.T) {
		for _, host := range []string{"a.test", "unknown.test"} {
			resp, err := plain.Get("http://" + host + "/.well-known/acme-challenge/no-such-token")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusNotFound {
				t.Errorf("unknown token on %s: %s (Location %q), want 404", host, resp.Status, resp.Header.Get("Location"))
			}
		}
		m, err := e.Metrics()
		if err != nil {
			t.Fatal(err)
		}
		if got := m.Sum("edge_acme_challenge_requests_total", "source", "unknown"); got < 2 {
			t.Errorf("edge_acme_challenge_requests_total{source=unknown} = %g, want >= 2", got)
		}
	})

	t.Run("unknown host", func(t *testing.T) {
		// A known SNI with an unknown Host: misdirected.
		req, _ := http.NewRequest("GET", "https://a.test/", nil)
		req.Host = "other.test"
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMisdirectedRequest {
			t.Errorf("Host other.test over SNI a.test: %s, want 421", resp.Status)
		}
		// An unknown SNI: the handshake fails and no order starts.
		before := peb.Stats().Orders
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", e.HTTPSAddr,
			&tls.Config{ServerName: "unmanaged.test", InsecureSkipVerify: true})
		if err == nil {
			cert := conn.ConnectionState().PeerCertificates[0]
			conn.Close()
			t.Errorf("handshake for unmanaged.test succeeded with a certificate for %v", cert.DNSNames)
		}
		time.Sleep(500 * time.Millisecond)
		if after := peb.Stats().Orders; after != before {
			t.Errorf("a handshake for an unmanaged name made %d new orders", after-before)
		}
	})

	// One backend is killed per protocol: round robin reaches it within
	// three requests, the connection is refused, and edge must retry the
	// GET on a live backend (retries: 2) and eject the dead one.
	killed := []struct {
		proto   string
		client  *http.Client
		backend *testenv.Backend
	}{
		{"HTTP/1.1", testenv.HTTPS1Client(roots, e.HTTPSAddr), b3},
		{"HTTP/2.0", client, b2},
	}
	for _, k := range killed {
		t.Run("killed backend "+k.proto, func(t *testing.T) {
			k.backend.Close()
			for i := range 12 {
				resp, err := k.client.Get("https://b.test/")
				if err != nil {
					t.Errorf("request %d after killing backend %d: %v", i, k.backend.N, err)
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.Proto != k.proto {
					t.Fatalf("response over %s, want %s", resp.Proto, k.proto)
				}
				if resp.StatusCode != http.StatusOK || !strings.HasPrefix(string(body), "hello from backend") ||
					strings.TrimSpace(string(body)) == fmt.Sprintf("hello from backend %d", k.backend.N) {
					t.Errorf("request %d after killing backend %d: %s %q", i, k.backend.N, resp.Status, body)
				}
			}
			deadline := time.Now().Add(5 * time.Second)
			for {
				m, err := e.Metrics()
				if err != nil {
					t.Fatal(err)
				}
				v, ok := backendUp(m, k.backend)
				if ok && v == 0 {
					// The dead backend was tried (and the request retried),
					// not skipped by an active check that happened first.
					if f := backendSum(m, "edge_backend_failures_total", k.backend); f < 1 {
						t.Logf("no edge_backend_failures_total for %s: the retry path was not exercised", k.backend.URL)
					}
					break
				}
				if time.Now().After(deadline) {
					t.Errorf("edge_backend_up for killed %s = %g (found %v), want 0:\n%s", k.backend.URL, v, ok, m.Dump("edge_backend_up"))
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
		})
	}

	t.Run("sigterm", func(t *testing.T) {
		if err := e.Stop(); err != nil {
			t.Errorf("edge on SIGTERM: %v", err)
		}
	})
}

// TestTLSALPN01: the same issuance with only TLS-ALPN-01 enabled; Pebble
// dials edge's https listener and makes no HTTP-01 request.
func TestTLSALPN01(t *testing.T) {
	cts := testenv.StartChallTestSrv(t)
	ports := testenv.FreePorts(t, 3)
	// Pebble's httpPort is left to an unused port: nothing listens there.
	peb := testenv.StartPebble(t, testenv.PebbleOptions{TLSPort: ports[1], DNSServer: cts.DNSAddr})
	b1 := testenv.NewBackend(t, 1, 0)
	conf := edgeConf{
		httpPort: ports[0], httpsPort: ports[1], adminPort: ports[2],
		ca: peb.DirectoryURL, caRoot: peb.MinicaRootFile,
		challenges: []string{"tls-alpn-01"},
		storage:    filepath.Join(t.TempDir(), "storage"),
		sites:      []site{{hosts: []string{"alpn.test", "www.alpn.test"}}},
		backends:   []string{b1.URL},
	}
	names := conf.names()
	e := testenv.StartEdge(t, conf.yaml())
	if err := e.WaitReady(readyTimeout); err != nil {
		t.Fatalf("%v", err)
	}
	checkCertificates(t, e, peb, names)

	st := peb.Stats()
	if st.Issued != len(names) || st.HTTPAttempts != 0 {
		t.Errorf("pebble: %d issued, %d HTTP-01 requests; want %d and 0", st.Issued, st.HTTPAttempts, len(names))
	}
	if st.AuthzValid != len(names) {
		t.Errorf("pebble validated %d authorizations, want %d", st.AuthzValid, len(names))
	}
	// Pebble does not log the challenge type; certmagic (in edge's debug
	// log) logs each key authentication certificate it serves.
	if n := strings.Count(e.Log(), `"challenge":"tls-alpn-01"`); n < 3*len(names) {
		t.Errorf("edge's log shows %d TLS-ALPN-01 validation handshakes, want >= %d", n, 3*len(names))
	}
	m, err := e.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Sum("edge_acme_orders_total", "result", "success"); int(got) != len(names) {
		t.Errorf("edge_acme_orders_total{result=success} = %g, want %d", got, len(names))
	}
	roots, _ := peb.IssuingRoots()
	body, code, err := fetch(testenv.HTTPSClient(roots, e.HTTPSAddr), "https://www.alpn.test/")
	if err != nil || code != http.StatusOK || strings.TrimSpace(body) != "hello from backend 1" {
		t.Errorf("GET https://www.alpn.test/: %d %v %q", code, err, body)
	}
	if err := e.Stop(); err != nil {
		t.Errorf("edge on SIGTERM: %v", err)
	}
}

func fetch(c *http.Client, url string) (string, int, error) {
	resp, err := c.Get(url)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), resp.StatusCode, err
}

// backendSum adds up the samples of name for b in pool web.
func backendSum(m testenv.Metrics, name string, b *testenv.Backend) float64 {
	var t float64
	for _, s := range m.Find(name, "pool", "web") {
		if l := s.Labels["backend"]; l == b.URL || l == b.Addr {
			t += s.Value
		}
	}
	return t
}

// backendUp finds edge_backend_up for b in pool web, whether edge labels
// the backend by URL or by host:port.
func backendUp(m testenv.Metrics, b *testenv.Backend) (float64, bool) {
	for _, s := range m.Find("edge_backend_up", "pool", "web") {
		if l := s.Labels["backend"]; l == b.URL || l == b.Addr {
			return s.Value, true
		}
	}
	return 0, false
}
