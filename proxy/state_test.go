package proxy

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// healthBackend is a backend whose /healthz answers 200 or 503 at will.
func healthBackend(t *testing.T) (*url.URL, *atomic.Bool) {
	t.Helper()
	var sick atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" && sick.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok")
	}))
	t.Cleanup(srv.Close)
	return mustURL(t, srv.URL), &sick
}

// twoPools is one site with /a/ to pool a and / to pool b, both checked
// every hour (so only the first probe of New runs).
func twoPools(st *State, m *Metrics, a, b []*url.URL) Config {
	hc := &HealthCheck{Path: "/healthz", Interval: time.Hour, Timeout: time.Second, Fails: 2, Passes: 2}
	return Config{
		State:   st,
		Metrics: m,
		Sites: []SiteConfig{{Name: "example.com", Hosts: []string{"example.com"},
			Routes: []RouteConfig{{Path: "/a/", Pool: "a"}, {Path: "/", Pool: "b"}}}},
		Pools: []PoolConfig{
			{Name: "a", Backends: a, Health: hc},
			{Name: "b", Backends: b, Health: hc},
		},
	}
}

func upstreamOf(t *testing.T, h *Handler, pool, backend string) *Upstream {
	t.Helper()
	for _, p := range h.poolList {
		if p.name != pool {
			continue
		}
		for _, u := range p.upstreams {
			if u.name == backend {
				return u
			}
		}
	}
	t.Fatalf("no backend %s in pool %s", backend, pool)
	return nil
}

// TestStateSurvivesReload: a reload that changes one pool leaves the other
// pool's backends as they were (down stays down, ejected stays ejected,
// in-flight counts carry over), and a backend the reload adds starts as its
// first probe says.
func TestStateSurvivesReload(t *testing.T) {
	a1, _ := healthBackend(t)
	b1, sick1 := healthBackend(t)
	b2, _ := healthBackend(t)
	added, sickAdded := healthBackend(t)
	sick1.Store(true)
	sickAdded.Store(true)
	st := NewState()

	h1 := newHandler(t, twoPools(st, nil, []*url.URL{a1}, []*url.URL{b1, b2}))
	down := upstreamOf(t, h1, "b", b1.String())
	if down.Available() {
		t.Fatal("b1 fails its first probe but starts up")
	}
	ejected := upstreamOf(t, h1, "b", b2.String())
	ejected.ejectedUntil.Store(time.Now().Add(time.Hour).UnixNano())
	ejected.inFlight.Add(3)

	// The reload changes pool a only: it gains a backend that is down.
	h2 := newHandler(t, twoPools(st, nil, []*url.URL{a1, added}, []*url.URL{b1, b2}))
	h1.Close()
	if u := upstreamOf(t, h2, "b", b1.String()); u.Available() || u.Healthy() {
		t.Error("reload brought a down backend back into rotation")
	}
	u := upstreamOf(t, h2, "b", b2.String())
	if !u.Ejected() || u.InFlight() != 3 {
		t.Errorf("ejected backend after reload: ejected=%v in flight=%d, want true, 3", u.Ejected(), u.InFlight())
	}
	if u := upstreamOf(t, h2, "a", added.String()); u.Available() {
		t.Error("an added backend that fails its first probe starts up")
	}
	if u := upstreamOf(t, h2, "a", a1.String()); !u.Available() {
		t.Error("a healthy kept backend went down")
	}
	// Pool a's requests all go to its live backend; pool b has none left.
	for i := range 20 {
		if w := serve(h2, "GET", "https://example.com/a/"); w.Code != http.StatusOK {
			t.Fatalf("request %d to pool a: %d", i, w.Code)
		}
	}
	if w := serve(h2, "GET", "https://example.com/"); w.Code != http.StatusServiceUnavailable {
		t.Errorf("pool b with one backend down and one ejected: %d, want 503", w.Code)
	}
}

// TestStateSameConfigIsNoOp: rebuilding the same config (a touch of the
// file) changes no backend's state and keeps the round robin position.
func TestStateSameConfigIsNoOp(t *testing.T) {
	b1, b2 := newBackend(t, "b1"), newBackend(t, "b2")
	st := NewState()
	cfg := Config{State: st,
		Sites: []SiteConfig{{Name: "example.com", Hosts: []string{"example.com"}, Routes: []RouteConfig{{Path: "/", Pool: "web"}}}},
		Pools: []PoolConfig{{Name: "web", Backends: []*url.URL{b1.url, b2.url}, Selector: new(RoundRobin)}},
	}
	h1 := newHandler(t, cfg)
	first := serve(h1, "GET", "https://example.com/").Header().Get("X-Backend")
	cfg.Pools[0].Selector = new(RoundRobin) // as a reload builds it
	h2 := newHandler(t, cfg)
	h1.Close()
	next := serve(h2, "GET", "https://example.com/").Header().Get("X-Backend")
	if first == next {
		t.Errorf("round robin restarted after a reload: %s then %s", first, next)
	}
	if h2.poolList[0].selector != h1.poolList[0].selector {
		t.Error("reload replaced the pool's selector")
	}
}

// TestStateRemovedBackendSeries: a backend a reload removes leaves the State
// and its series leave the registry; the kept one's stay.
func TestStateRemovedBackendSeries(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	keep, gone := newBackend(t, "keep"), newBackend(t, "gone")
	st := NewState()
	cfg := func(bs ...*url.URL) Config {
		return Config{State: st, Metrics: m,
			Sites: []SiteConfig{{Name: "example.com", Hosts: []string{"example.com"}, Routes: []RouteConfig{{Path: "/", Pool: "web"}}}},
			Pools: []PoolConfig{{Name: "web", Backends: bs, Selector: new(RoundRobin)}},
		}
	}
	h1 := newHandler(t, cfg(keep.url, gone.url))
	for range 4 {
		serve(h1, "GET", "https://example.com/")
	}
	if got := metricValue(t, reg, "edge_backend_requests_total", "backend", gone.URL); got != 2 {
		t.Fatalf("gone backend requests = %v, want 2", got)
	}
	h2 := newHandler(t, cfg(keep.url))
	h1.Close()
	if n := st.len(); n != 1 {
		t.Errorf("state holds %d backends, want 1", n)
	}
	if got := metricValue(t, reg, "edge_backend_requests_total", "backend", keep.URL); got != 2 {
		t.Errorf("kept backend requests = %v, want 2 (kept across the reload)", got)
	}
	if strings.Contains(gatherText(t, reg), gone.URL) {
		t.Errorf("series of the removed backend %s still exported", gone.URL)
	}
	h2.Close()
	if n := st.len(); n != 0 {
		t.Errorf("state holds %d backends after the last handler closed", n)
	}
}

// TestStateHealthTurnedOff: a pool whose active check is removed by a
// reload does not keep its backends down forever.
func TestStateHealthTurnedOff(t *testing.T) {
	b, sick := healthBackend(t)
	sick.Store(true)
	st := NewState()
	cfg := simpleConfig(b)
	cfg.State = st
	cfg.Pools[0].Health = &HealthCheck{Path: "/healthz", Interval: time.Hour}
	h1 := newHandler(t, cfg)
	if h1.poolList[0].upstreams[0].Available() {
		t.Fatal("sick backend starts up")
	}
	cfg.Pools[0].Health = nil
	h2 := newHandler(t, cfg)
	h1.Close()
	if !h2.poolList[0].upstreams[0].Available() {
		t.Error("backend still down after its pool's health check was removed")
	}
}

func gatherText(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprint(mfs)
}

// TestMisdirected: a Host that differs from the TLS server name is 421
// unless the connection's certificate covers it (HTTP/2 coalescing).
func TestMisdirected(t *testing.T) {
	b := newBackend(t, "b")
	cfg := Config{
		Sites: []SiteConfig{
			{Name: "a.test", Hosts: []string{"a.test"}, Routes: []RouteConfig{{Path: "/", Pool: "web"}}},
			{Name: "b.test", Hosts: []string{"b.test"}, Routes: []RouteConfig{{Path: "/", Pool: "web"}}},
			{Name: "x.wild.test", Hosts: []string{"x.wild.test", "y.wild.test"}, Routes: []RouteConfig{{Path: "/", Pool: "web"}}},
		},
		Pools: []PoolConfig{{Name: "web", Backends: []*url.URL{b.url}}},
		// One wildcard certificate covers x and y.
		CertCovers: func(sni, host string) bool {
			return MatchHost("*.wild.test", sni) && MatchHost("*.wild.test", host)
		},
	}
	h := newHandler(t, cfg)
	for _, tc := range []struct {
		sni, host string
		want      int
	}{
		{"a.test", "a.test", 200},
		{"a.test", "A.test:443", 200},
		{"a.test", "b.test", 421},
		{"b.test", "a.test", 421},
		{"x.wild.test", "y.wild.test", 200},
		{"x.wild.test", "a.test", 421},
		{"", "a.test", 200}, // no SNI: nothing to compare
	} {
		w := serve(h, "GET", "https://"+tc.host+"/", func(r *http.Request) {
			r.TLS = &tls.ConnectionState{HandshakeComplete: true, ServerName: tc.sni}
		})
		if w.Code != tc.want {
			t.Errorf("SNI %q Host %q: %d, want %d", tc.sni, tc.host, w.Code, tc.want)
		}
	}
}

// TestBodyReadTimeout: a body trickled slower than the server's read
// timeout is cut with 408 and the connection closed, while other clients
// are served meanwhile.
func TestBodyReadTimeout(t *testing.T) {
	b := newBackend(t, "b")
	h := newHandler(t, simpleConfig(b.url))
	conn := dialReadTimeout(t, h.HTTPHandler(), 700*time.Millisecond)
	fmt.Fprintf(conn, "POST /up HTTP/1.1\r\nHost: example.com\r\nContent-Length: 100\r\n\r\n")
	done := make(chan string, 1)
	go func() {
		buf, _ := io.ReadAll(conn) // until the server closes
		done <- string(buf)
	}()
	start := time.Now()
	// Trickle one byte every 100 ms; the server must cut it long before
	// the 100 bytes are sent.
	for i := 0; i < 100; i++ {
		if _, err := conn.Write([]byte("x")); err != nil {
			break
		}
		if i == 2 {
			// Another client is served while the trickle goes on.
			res, err := http.Get("http://" + conn.RemoteAddr().String() + "/")
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != http.StatusNotFound && res.StatusCode != http.StatusOK {
				t.Errorf("other client: %d", res.StatusCode)
			}
		}
		select {
		case out := <-done:
			if !strings.HasPrefix(out, "HTTP/1.1 408") {
				t.Errorf("trickled body got %q, want 408", out)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("cut after %v", d)
			}
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Fatal("the trickled body was not cut")
}

// TestWriteTimeoutCountsFromTheResponse: a backend slower than the write
// timeout still gets its answer to the client; the deadline counts the
// client's writes, not the backend's time.
func TestWriteTimeoutCountsFromTheResponse(t *testing.T) {
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(400 * time.Millisecond)
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(slow.Close)
	cfg := simpleConfig(mustURL(t, slow.URL))
	cfg.WriteTimeout = 150 * time.Millisecond
	h := newHandler(t, cfg)
	srv := httptest.NewServer(h.HTTPHandler())
	t.Cleanup(srv.Close)
	req, _ := http.NewRequest("GET", srv.URL+"/", nil)
	req.Host = "example.com"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("slow backend behind a 150 ms write timeout: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Errorf("status %d, want 204", resp.StatusCode)
	}
}
