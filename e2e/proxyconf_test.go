package e2e

// proxyconf_test.go holds what the reload and hardening tests share: a
// config renderer with several pools, per-site HSTS and DNS-01, limits and
// log.access; a reader of edge's log from an offset (the access log under
// load makes re-reading the whole file on every poll too slow); raw HTTP/1.1
// over TLS; and a bounded HTTPS load.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/farmedge/edge/internal/testenv"
)

// pSite is one sites: entry.
type pSite struct {
	hosts []string
	pool  string // "" is "web"
	hsts  int    // 0: leave the key out
	dns   string // provider name under acme.dns ("lan"); "" is HTTP-01
	plain bool   // redirect_http: false (plain HTTP is proxied too)
	rate  string // sites[].rate, "" leaves it out
	extra string // more keys of the site, each line indented by four spaces
}

// pPool is one pools: entry with active and passive health checks.
type pPool struct {
	name     string
	backends []string
	retries  int
	policy   string // "" is round_robin
	extra    string // more keys of the pool, each line indented by four spaces
}

// pConf renders an edge config for these tests. Every backend is checked
// actively (GET /healthz every 250 ms; one failure marks it down, one pass
// up) and passively (one failure ejects it for 30 s).
type pConf struct {
	httpPort, httpsPort, adminPort int
	peb                            *testenv.Pebble
	bind                           *testenv.BIND // set: acme.dns.lan is rfc2136 into it, and it is the resolver
	storage                        string
	limits                         string // a YAML flow mapping, "" none
	access                         bool   // log.access
	sites                          []pSite
	pools                          []pPool
	extra                          string // appended verbatim (for an invalid key)
}

func (c pConf) yaml() string {
	var b strings.Builder
	fmt.Fprintf(&b, "listen: {http: %q, https: %q}\n", testenv.Addr(c.httpPort), testenv.Addr(c.httpsPort))
	fmt.Fprintf(&b, "admin: {listen: %q}\n", testenv.Addr(c.adminPort))
	fmt.Fprintf(&b, "acme:\n  email: test@example.com\n  ca: %q\n  ca_root_file: %q\n  challenges: [http-01]\n",
		c.peb.DirectoryURL, c.peb.MinicaRootFile)
	if c.bind != nil {
		fmt.Fprintf(&b, "  dns_resolvers: [%q]\n  dns_propagation_timeout: 30s\n", c.bind.Addr)
		fmt.Fprintf(&b, "  dns:\n    lan: {provider: rfc2136, server: %q, key_name: %s, key_alg: %s, key: %q}\n",
			c.bind.Addr, c.bind.KeyName, c.bind.KeyAlg, c.bind.KeySecret)
	}
	fmt.Fprintf(&b, "storage: {type: file, path: %q}\n", c.storage)
	if c.limits != "" {
		fmt.Fprintf(&b, "limits: %s\n", c.limits)
	}
	fmt.Fprintf(&b, "log: {level: info, format: json, access: %t}\n", c.access)
	b.WriteString("sites:\n")
	for _, s := range c.sites {
		quoted := make([]string, len(s.hosts))
		for i, h := range s.hosts {
			quoted[i] = fmt.Sprintf("%q", h)
		}
		fmt.Fprintf(&b, "  - hosts: [%s]\n", strings.Join(quoted, ", "))
		if s.hsts != 0 {
			fmt.Fprintf(&b, "    hsts: %d\n", s.hsts)
		}
		if s.dns != "" {
			fmt.Fprintf(&b, "    dns: %s\n", s.dns)
		}
		if s.plain {
			b.WriteString("    redirect_http: false\n")
		}
		if s.rate != "" {
			fmt.Fprintf(&b, "    rate: %q\n", s.rate)
		}
		b.WriteString(s.extra)
		pool := s.pool
		if pool == "" {
			pool = "web"
		}
		fmt.Fprintf(&b, "    routes: [{path: /, pool: %s}]\n", pool)
	}
	b.WriteString("pools:\n")
	for _, p := range c.pools {
		quoted := make([]string, len(p.backends))
		for i, u := range p.backends {
			quoted[i] = fmt.Sprintf("%q", u)
		}
		policy := p.policy
		if policy == "" {
			policy = "round_robin"
		}
		fmt.Fprintf(&b, "  %s:\n    policy: %s\n    backends: [%s]\n", p.name, policy, strings.Join(quoted, ", "))
		b.WriteString(p.extra)
		b.WriteString("    health: {path: /healthz, interval: 250ms, timeout: 200ms, fails: 1, passes: 1}\n")
		b.WriteString("    passive: {fails: 1, window: 10s, cooldown: 30s}\n")
		fmt.Fprintf(&b, "    retries: %d\n", p.retries)
	}
	b.WriteString(c.extra)
	return b.String()
}

// startPebbleHTTP01 starts challtestsrv (every name is 127.0.0.1) and a
// Pebble that validates HTTP-01 on httpPort, edge's plain-HTTP listener.
func startPebbleHTTP01(t *testing.T, httpPort int) *testenv.Pebble {
	t.Helper()
	cts := testenv.StartChallTestSrv(t)
	return testenv.StartPebble(t, testenv.PebbleOptions{HTTPPort: httpPort, DNSServer: cts.DNSAddr})
}

// startServing starts edge with cfg, waits until every name has its
// certificate from peb, and returns edge and peb's issuing roots.
func startServing(t *testing.T, peb *testenv.Pebble, cfg string) (*testenv.Edge, *x509.CertPool) {
	t.Helper()
	e := testenv.StartEdge(t, cfg)
	if err := e.WaitReady(readyTimeout); err != nil {
		t.Fatal(err)
	}
	roots, err := peb.IssuingRoots()
	if err != nil {
		t.Fatal(err)
	}
	return e, roots
}

// writeConfig replaces path atomically (a temp file renamed over it), so the
// file watcher never reads a half-written file.
func writeConfig(t *testing.T, path, text string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), ".edge.yaml.tmp")
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// logReader reads a process log from where it last stopped.
type logReader struct {
	path string
	off  int64
}

// next returns the complete lines written since the last call.
func (l *logReader) next() []string {
	f, err := os.Open(l.path)
	if err != nil {
		return nil
	}
	defer f.Close()
	if _, err := f.Seek(l.off, io.SeekStart); err != nil {
		return nil
	}
	b, _ := io.ReadAll(f)
	end := strings.LastIndexByte(string(b), '\n')
	if end < 0 {
		return nil
	}
	l.off += int64(end + 1)
	return strings.Split(string(b[:end]), "\n")
}

// waitLine waits until a new line contains every string of want, and
// returns it; other lines read on the way are returned too, for checks
// that nothing else happened.
func (l *logReader) waitLine(want []string, timeout time.Duration) (string, []string, error) {
	deadline := time.Now().Add(timeout)
	var seen []string
	for {
		for _, line := range l.next() {
			seen = append(seen, line)
			if containsAll(line, want) {
				return line, seen, nil
			}
		}
		if time.Now().After(deadline) {
			return "", seen, fmt.Errorf("no log line with %q within %s", want, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// tlsDial makes a TLS connection to addr with SNI serverName, verified
// against roots, offering protos by ALPN.
func tlsDial(addr, serverName string, roots *x509.CertPool, protos ...string) (*tls.Conn, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	return tls.DialWithDialer(d, "tcp", addr, &tls.Config{ServerName: serverName, RootCAs: roots, NextProtos: protos})
}

// rawGet sends "GET path" with Host host on an HTTP/1.1 connection and
// reads the response.
func rawGet(conn net.Conn, br *bufio.Reader, host, path string) (int, string, error) {
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	defer conn.SetDeadline(time.Time{})
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: e2e-raw\r\n\r\n", path, host); err != nil {
		return 0, "", err
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// loadResult is what a bounded load saw.
type loadResult struct {
	ok, failed int64
	errs       []string // the first few failures
}

// load sends GET url from workers clients (each its own keep-alive
// connection; mk makes them) until stop is closed, max requests were sent,
// or limit passed, whichever comes first. Only a 200 whose body comes from
// a testenv backend counts as ok.
type load struct {
	ok, failed, sent atomic.Int64
	mu               sync.Mutex
	errs             []string
	stop             chan struct{}
	stopOnce         sync.Once
	wg               sync.WaitGroup
}

func startLoad(ctx context.Context, workers int, mk func(i int) *http.Client, url string, max int64, limit time.Duration) *load {
	l := &load{stop: make(chan struct{})}
	deadline := time.Now().Add(limit)
	for i := range workers {
		c := mk(i)
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			defer c.CloseIdleConnections()
			for {
				select {
				case <-l.stop:
					return
				case <-ctx.Done():
					return
				default:
				}
				if time.Now().After(deadline) || l.sent.Add(1) > max {
					return
				}
				if err := getOK(c, url); err != nil {
					l.failed.Add(1)
					l.mu.Lock()
					if len(l.errs) < 10 {
						l.errs = append(l.errs, err.Error())
					}
					l.mu.Unlock()
					continue
				}
				l.ok.Add(1)
			}
		}()
	}
	return l
}

// Stop ends the load, waits for the workers and returns what they saw.
func (l *load) Stop() loadResult {
	l.stopOnce.Do(func() { close(l.stop) })
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return loadResult{ok: l.ok.Load(), failed: l.failed.Load(), errs: append([]string(nil), l.errs...)}
}

func getOK(c *http.Client, url string) error {
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("%s: reading body: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(string(b), "hello from backend") {
		return fmt.Errorf("%s: %d %q", url, resp.StatusCode, b)
	}
	return nil
}

// poolBackendUp returns edge_backend_up for backend in pool (-1 when absent).
func poolBackendUp(m testenv.Metrics, pool, backend string) float64 {
	v, ok := m.Get("edge_backend_up", "pool", pool, "backend", backend)
	if !ok {
		return -1
	}
	return v
}

// waitBackendUp polls /metrics until edge_backend_up{pool,backend} is want.
func waitBackendUp(t *testing.T, e *testenv.Edge, pool, backend string, want float64, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		m, err := e.Metrics()
		if err != nil {
			t.Fatal(err)
		}
		if poolBackendUp(m, pool, backend) == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("edge_backend_up{pool=%q,backend=%q} is not %g after %s:\n%s", pool, backend, want, timeout, m.Dump("edge_backend_up"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// featureBackend is a backend for TestProxyFeatures: /healthz, /big (a
// 6 KB HTML page) and anything else "hello from backend N", each naming
// itself in X-Backend.
func featureBackend(t *testing.T, n int) (*httptest.Server, *atomic.Int64) {
	var hits atomic.Int64
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			io.WriteString(w, "ok\n")
			return
		}
		hits.Add(1)
		w.Header().Set("X-Backend", fmt.Sprint(n))
		w.Header().Set("X-Seen-Host", r.Host)
		w.Header().Set("X-Seen-Client", r.Header.Get("X-Edge-Client"))
		w.Header().Set("X-Seen-Debug", r.Header.Get("X-Debug"))
		w.Header().Set("X-Powered-By", "backend")
		if r.URL.Path == "/big" {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Header().Set("Content-Length", fmt.Sprint(len(bigPage)))
			io.WriteString(w, bigPage)
			return
		}
		fmt.Fprintf(w, "hello from backend %d\n", n)
	}))
	t.Cleanup(s.Close)
	return s, &hits
}

var bigPage = "<!doctype html><title>edge</title>" + strings.Repeat("<p>a page long enough to be compressed</p>\n", 140)

// TestProxyFeatures runs edge with compress: true and policy hash by a
// header, and checks through its HTTPS listener (HTTP/2): zstd and gzip
// bodies that decode to the backend's page with Vary, small answers
// untouched, one session id on one backend while ids spread over both,
// the REST drain by host:port; request and response header rules with
// placeholders, host_header, and a site in maintenance from the start,
// whose certificate still came by HTTP-01 from Pebble and whose requests
// get 503 with Retry-After and never reach the backend.
func TestProxyFeatures(t *testing.T) {
	ports := testenv.FreePorts(t, 3)
	peb := startPebbleHTTP01(t, ports[0])
	b1, hits1 := featureBackend(t, 1)
	b2, hits2 := featureBackend(t, 2)
	conf := pConf{
		httpPort: ports[0], httpsPort: ports[1], adminPort: ports[2],
		peb: peb, storage: filepath.Join(t.TempDir(), "storage"),
		sites: []pSite{
			{hosts: []string{"a.test"}, extra: "    compress: true\n" +
				"    headers:\n" +
				"      request: {set: {X-Edge-Client: \"{client_ip} via {scheme}\"}, remove: [X-Debug]}\n" +
				"      response: {set: {X-Frame-Options: DENY}, remove: [X-Powered-By]}\n"},
			// In maintenance from the start: its certificate still comes
			// by HTTP-01 (startServing waits for every name's).
			{hosts: []string{"m.test"}, pool: "internal", extra: "    maintenance: true\n"},
			{hosts: []string{"h.test"}, pool: "internal"},
		},
		pools: []pPool{
			{name: "web", backends: []string{b1.URL, b2.URL}, policy: "hash", extra: "    hash: {header: X-Session-Id}\n"},
			{name: "internal", backends: []string{b1.URL}, extra: "    host_header: intranet.local\n"},
		},
	}
	e, roots := startServing(t, peb, conf.yaml())
	client := testenv.HTTPSClient(roots, e.HTTPSAddr)
	getHost := func(host, path string, header ...string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), "GET", "https://"+host+path, nil)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatal(err)
		}
		return res, b
	}
	get := func(path string, header ...string) (*http.Response, []byte) {
		t.Helper()
		return getHost("a.test", path, header...)
	}

	t.Run("header rules", func(t *testing.T) {
		res, _ := get("/", "X-Debug", "1")
		switch {
		case res.Header.Get("X-Seen-Client") != "127.0.0.1 via https":
			t.Errorf("the backend saw X-Edge-Client %q, want \"127.0.0.1 via https\"", res.Header.Get("X-Seen-Client"))
		case res.Header.Get("X-Seen-Debug") != "":
			t.Errorf("X-Debug reached the backend: %q", res.Header.Get("X-Seen-Debug"))
		case res.Header.Get("X-Frame-Options") != "DENY" || res.Header.Get("X-Powered-By") != "":
			t.Errorf("response headers: X-Frame-Options %q, X-Powered-By %q", res.Header.Get("X-Frame-Options"), res.Header.Get("X-Powered-By"))
		case res.Header.Get("X-Seen-Host") != "a.test":
			t.Errorf("the backend saw Host %q, want the public a.test", res.Header.Get("X-Seen-Host"))
		}
		if res, _ := getHost("h.test", "/"); res.Header.Get("X-Seen-Host") != "intranet.local" {
			t.Errorf("host_header: the backend saw Host %q, want intranet.local", res.Header.Get("X-Seen-Host"))
		}
	})

	t.Run("maintenance", func(t *testing.T) {
		before := hits1.Load()
		res, body := getHost("m.test", "/")
		if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" || !strings.Contains(string(body), "503") {
			t.Fatalf("maintenance: %d, Retry-After %q, body %q", res.StatusCode, res.Header.Get("Retry-After"), body)
		}
		if hits1.Load() != before {
			t.Errorf("a request to a site in maintenance reached the backend")
		}
	})

	t.Run("compression", func(t *testing.T) {
		for _, ce := range []string{"zstd", "gzip"} {
			res, body := get("/big", "Accept-Encoding", "gzip, "+ce)
			if res.Proto != "HTTP/2.0" || res.Header.Get("Content-Encoding") != ce || !strings.Contains(res.Header.Get("Vary"), "Accept-Encoding") {
				t.Fatalf("%s: %s, Content-Encoding %q, Vary %q", ce, res.Proto, res.Header.Get("Content-Encoding"), res.Header.Get("Vary"))
			}
			var zr io.Reader
			if ce == "zstd" {
				d, err := zstd.NewReader(bytes.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				defer d.Close()
				zr = d
			} else {
				g, err := gzip.NewReader(bytes.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				zr = g
			}
			plain, err := io.ReadAll(zr)
			if err != nil || string(plain) != bigPage {
				t.Fatalf("%s: %d bytes decode to %d (%v), want the %d of the page", ce, len(body), len(plain), err, len(bigPage))
			}
			t.Logf("%s: %d bytes for a %d-byte page", ce, len(body), len(bigPage))
		}
		res, body := get("/", "Accept-Encoding", "zstd, gzip")
		if res.Header.Get("Content-Encoding") != "" || !strings.HasPrefix(string(body), "hello from backend") {
			t.Errorf("a 21-byte answer: Content-Encoding %q, body %q", res.Header.Get("Content-Encoding"), body)
		}
	})

	t.Run("hash by header", func(t *testing.T) {
		backends := map[string]bool{}
		for i := range 40 {
			id := fmt.Sprint("session-", i)
			res, _ := get("/", "X-Session-Id", id)
			first := res.Header.Get("X-Backend")
			for range 5 {
				if res, _ := get("/", "X-Session-Id", id); res.Header.Get("X-Backend") != first {
					t.Fatalf("%s went to backend %s, then %s", id, first, res.Header.Get("X-Backend"))
				}
			}
			backends[first] = true
		}
		if len(backends) != 2 {
			t.Errorf("40 session ids used backends %v, want both", backends)
		}
	})

	t.Run("drain by REST path and host:port", func(t *testing.T) {
		host := strings.TrimPrefix(b1.URL, "http://")
		post := func(action string) int {
			req, _ := http.NewRequest("POST", e.AdminURL+"/api/pools/web/backends/"+host+"/"+action, nil)
			req.Header.Set("X-Edge-Admin", "test")
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			return res.StatusCode
		}
		if code := post("drain"); code != 200 {
			t.Fatalf("drain: %d", code)
		}
		before := hits1.Load()
		for i := range 20 {
			if res, _ := get("/", "X-Session-Id", fmt.Sprint("drained-", i)); res.Header.Get("X-Backend") != "2" {
				t.Fatalf("a request went to backend %s while 1 is drained", res.Header.Get("X-Backend"))
			}
		}
		if hits1.Load() != before {
			t.Errorf("the drained backend got %d requests", hits1.Load()-before)
		}
		if code := post("undrain"); code != 200 {
			t.Fatalf("undrain: %d", code)
		}
		req, _ := http.NewRequest("POST", e.AdminURL+"/api/pools/web/backends/127.0.0.1:1/drain", nil)
		req.Header.Set("X-Edge-Admin", "test")
		if res, err := http.DefaultClient.Do(req); err != nil || res.StatusCode != 404 {
			t.Errorf("an unknown backend: %v %v, want 404", res, err)
		}
		t.Logf("backend requests: %d and %d", hits1.Load(), hits2.Load())
	})
}
