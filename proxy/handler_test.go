package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/websocket"
)

func TestRetries(t *testing.T) {
	live := newBackend(t, "live")
	dead1, dead2 := closedURL(t), closedURL(t)
	tests := []struct {
		name      string
		method    string
		body      string
		retries   int
		backends  []*url.URL
		wantCode  int
		wantFails []uint64 // per backend
	}{
		{"GET retried", "GET", "", 1, []*url.URL{dead1, live.url}, 200, []uint64{1, 0}},
		{"HEAD retried", "HEAD", "", 1, []*url.URL{dead1, live.url}, 200, []uint64{1, 0}},
		{"DELETE retried", "DELETE", "", 1, []*url.URL{dead1, live.url}, 200, []uint64{1, 0}},
		{"two retries", "GET", "", 2, []*url.URL{dead1, dead2, live.url}, 200, []uint64{1, 1, 0}},
		{"retries exhausted", "GET", "", 1, []*url.URL{dead1, dead2, live.url}, 502, []uint64{1, 1, 0}},
		{"no retries", "GET", "", 0, []*url.URL{dead1, live.url}, 502, []uint64{1, 0}},
		{"POST without a body retried on connect", "POST", "", 1, []*url.URL{dead1, live.url}, 200, []uint64{1, 0}},
		{"POST with a body not retried", "POST", "form=1", 1, []*url.URL{dead1, live.url}, 502, []uint64{1, 0}},
		{"PUT with a body not retried", "PUT", "data", 1, []*url.URL{dead1, live.url}, 502, []uint64{1, 0}},
		{"no other backend", "GET", "", 3, []*url.URL{dead1}, 502, []uint64{1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := simpleConfig(tc.backends...)
			cfg.Pools[0].Retries = tc.retries
			h := newHandler(t, cfg)
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			r := httptest.NewRequest(tc.method, "https://example.com/", body)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.wantCode {
				t.Fatalf("code = %d, want %d", w.Code, tc.wantCode)
			}
			for i, st := range h.Status()[0].Backends {
				if st.Fails != tc.wantFails[i] {
					t.Errorf("backend %d: fails = %d, want %d", i, st.Fails, tc.wantFails[i])
				}
			}
		})
	}
}

func TestPassiveEjectsDeadBackend(t *testing.T) {
	live := newBackend(t, "live")
	cfg := simpleConfig(closedURL(t), live.url)
	cfg.Pools[0].Selector = new(RoundRobin)
	cfg.Pools[0].Retries = 1
	cfg.Pools[0].Passive = PassiveCheck{Fails: 2, Window: time.Minute, Cooldown: time.Minute}
	h := newHandler(t, cfg)
	for i := range 10 {
		if w := serve(h, "GET", "https://example.com/"); w.Code != 200 {
			t.Fatalf("request %d: code %d", i, w.Code)
		}
	}
	st := h.Status()[0].Backends
	if !st[0].Ejected || st[0].Up || st[0].Fails != 2 {
		t.Errorf("dead backend not ejected after 2 failures: %+v", st[0])
	}
	if live.hits.Load() != 10 {
		t.Errorf("live backend got %d of 10 requests", live.hits.Load())
	}
}

func TestNoBackendAvailable(t *testing.T) {
	b := newBackend(t, "b")
	cfg := simpleConfig(closedURL(t), closedURL(t))
	cfg.Pools[0].Health = &HealthCheck{Interval: 5 * time.Millisecond, Fails: 1, Passes: 1}
	cfg.Pools[0].Timeouts.Connect = 5 * time.Second
	cfg.Pools[0].Retries = 1
	h := newHandler(t, cfg)
	eventually(t, 5*time.Second, "all backends down", func() bool {
		for _, st := range h.Status()[0].Backends {
			if st.Up {
				return false
			}
		}
		return true
	})
	start := time.Now()
	w := serve(h, "GET", "https://example.com/")
	if w.Code != http.StatusServiceUnavailable {
		t.Errorf("code = %d, want 503", w.Code)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("503 took %v, want at once", d)
	}
	_ = b
}

func TestTimeouts(t *testing.T) {
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(5 * time.Second):
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(slow.Close)
	cfg := simpleConfig(mustURL(t, slow.URL))
	cfg.Pools[0].Timeouts.ResponseHeader = 50 * time.Millisecond
	h := newHandler(t, cfg)
	if w := serve(h, "GET", "https://example.com/"); w.Code != http.StatusGatewayTimeout {
		t.Errorf("response header timeout: code = %d, want 504", w.Code)
	}
	if st := h.Status()[0].Backends[0]; st.Fails != 1 {
		t.Errorf("fails = %d, want 1", st.Fails)
	}
}

func TestClientCanceled(t *testing.T) {
	started := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-r.Context().Done()
	}))
	t.Cleanup(slow.Close)
	m, reg := newTestMetrics(t)
	cfg := simpleConfig(mustURL(t, slow.URL))
	cfg.Metrics = m
	h := newHandler(t, cfg)
	ctx, cancel := context.WithCancel(t.Context())
	go func() { <-started; cancel() }()
	w := serve(h, "GET", "https://example.com/", func(r *http.Request) { *r = *r.WithContext(ctx) })
	if w.Flushed || w.Body.Len() > 0 || w.Result().Header.Get("Content-Type") != "" {
		t.Errorf("something was sent to a client that went away: %d %q", w.Code, w.Body)
	}
	if got := metricValue(t, reg, "edge_http_requests_total", "code", "499"); got != 1 {
		t.Errorf("requests with code 499 = %v, want 1", got)
	}
	if got := metricValue(t, reg, "edge_backend_failures_total"); got != 0 {
		t.Errorf("a client cancel counted as %v backend failures", got)
	}
}

func TestXForwarded(t *testing.T) {
	b := newBackend(t, "b")
	trusted := []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8::/32")}
	tests := []struct {
		name      string
		plainHTTP bool
		remote    string
		inXFF     string
		inProto   string
		wantXFF   string
		wantProto string
	}{
		{"untrusted replaced", false, "203.0.113.7:4000", "1.2.3.4", "", "203.0.113.7", "https"},
		{"untrusted proto replaced", false, "203.0.113.7:4000", "", "http", "203.0.113.7", "https"},
		{"untrusted plain http", true, "203.0.113.7:4000", "1.2.3.4", "https", "203.0.113.7", "http"},
		{"trusted appended", false, "192.0.2.10:4000", "1.2.3.4", "", "1.2.3.4, 192.0.2.10", "https"},
		{"trusted chain appended", false, "192.0.2.10:4000", "1.2.3.4, 10.1.1.1", "", "1.2.3.4, 10.1.1.1, 192.0.2.10", "https"},
		{"trusted without header", false, "192.0.2.10:4000", "", "", "192.0.2.10", "https"},
		{"trusted proto kept", true, "192.0.2.10:4000", "1.2.3.4", "https", "1.2.3.4, 192.0.2.10", "https"},
		{"trusted ipv6", false, "[2001:db8::5]:4000", "1.2.3.4", "", "1.2.3.4, 2001:db8::5", "https"},
	}
	cfg := simpleConfig(b.url)
	cfg.TrustedProxies = trusted
	h := newHandler(t, cfg)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var hh http.Handler = h
			target := "https://example.com/"
			if tc.plainHTTP {
				hh, target = h.HTTPHandler(), "http://example.com/"
			}
			w := serve(hh, "GET", target, func(r *http.Request) {
				r.RemoteAddr = tc.remote
				if tc.inXFF != "" {
					r.Header.Set("X-Forwarded-For", tc.inXFF)
				}
				if tc.inProto != "" {
					r.Header.Set("X-Forwarded-Proto", tc.inProto)
				}
			})
			if w.Code != 200 {
				t.Fatalf("code = %d", w.Code)
			}
			if got := w.Header().Get("X-Seen-XFF"); got != tc.wantXFF {
				t.Errorf("X-Forwarded-For = %q, want %q", got, tc.wantXFF)
			}
			if got := w.Header().Get("X-Seen-Proto"); got != tc.wantProto {
				t.Errorf("X-Forwarded-Proto = %q, want %q", got, tc.wantProto)
			}
			if got := w.Header().Get("X-Seen-XFH"); got != "example.com" {
				t.Errorf("X-Forwarded-Host = %q, want example.com", got)
			}
		})
	}
}

// chunked hides the length of a body so that it is sent chunked.
type chunked struct{ io.Reader }

func TestMaxBody(t *testing.T) {
	b := newBackend(t, "b")
	cfg := simpleConfig(b.url)
	cfg.Sites[0].Routes = append(cfg.Sites[0].Routes, RouteConfig{Path: "/upload/", Pool: "web", MaxBody: 10})
	h := newHandler(t, cfg)
	tests := []struct {
		name     string
		path     string
		body     io.Reader
		wantCode int
		wantSeen string
	}{
		{"under the limit", "/upload/x", strings.NewReader("12345"), 200, "5"},
		{"at the limit", "/upload/x", strings.NewReader("1234567890"), 200, "10"},
		{"over, with length", "/upload/x", strings.NewReader(strings.Repeat("x", 20)), 413, ""},
		{"over, chunked", "/upload/x", chunked{strings.NewReader(strings.Repeat("x", 100000))}, 413, ""},
		{"other route unlimited", "/big", strings.NewReader(strings.Repeat("x", 20)), 200, "20"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "https://example.com"+tc.path, tc.body)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.wantCode {
				t.Fatalf("code = %d, want %d", w.Code, tc.wantCode)
			}
			if got := w.Header().Get("X-Seen-Body"); got != tc.wantSeen {
				t.Errorf("backend saw %q bytes, want %q", got, tc.wantSeen)
			}
		})
	}
}

func TestWebSocket(t *testing.T) {
	echo := httptest.NewServer(websocket.Handler(func(c *websocket.Conn) {
		io.Copy(c, c)
	}))
	t.Cleanup(echo.Close)
	m, reg := newTestMetrics(t)
	cfg := simpleConfig(mustURL(t, echo.URL))
	cfg.Sites[0].Hosts = []string{"127.0.0.1"}
	cfg.Metrics = m
	h := newHandler(t, cfg)
	front := httptest.NewTLSServer(h)
	t.Cleanup(front.Close)

	wsURL := "wss" + strings.TrimPrefix(front.URL, "https") + "/ws"
	wc, err := websocket.NewConfig(wsURL, "https://127.0.0.1/")
	if err != nil {
		t.Fatal(err)
	}
	wc.TlsConfig = &tls.Config{InsecureSkipVerify: true}
	conn, err := websocket.DialConfig(wc)
	if err != nil {
		t.Fatal(err)
	}
	for _, msg := range []string{"hello", "through", "edge"} {
		if err := websocket.Message.Send(conn, msg); err != nil {
			t.Fatal(err)
		}
		var got string
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		if err := websocket.Message.Receive(conn, &got); err != nil {
			t.Fatal(err)
		}
		if got != msg {
			t.Errorf("echo %q, want %q", got, msg)
		}
	}
	if n := h.Status()[0].Backends[0].InFlight; n != 1 {
		t.Errorf("in flight during the session = %d, want 1", n)
	}
	conn.Close()
	eventually(t, 5*time.Second, "session end", func() bool { return h.Status()[0].Backends[0].InFlight == 0 })
	eventually(t, 5*time.Second, "101 counted", func() bool {
		return metricValue(t, reg, "edge_http_requests_total", "code", "101") == 1
	})
}

func TestMetrics(t *testing.T) {
	b := newBackend(t, "b")
	m, reg := newTestMetrics(t)
	if _, err := NewMetrics(reg); err == nil {
		t.Error("registering the metrics twice succeeded")
	}
	dead := closedURL(t)
	cfg := simpleConfig(dead, b.url)
	cfg.Pools[0].Retries = 1
	cfg.Metrics = m
	h := newHandler(t, cfg)
	for range 3 {
		serve(h, "GET", "https://example.com/")
	}
	serve(h, "GET", "https://unknown.example/")
	serve(h.HTTPHandler(), "GET", "http://unknown.example/")

	checks := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"edge_http_requests_total", []string{"site", "example.com", "pool", "web", "code", "200"}, 3},
		{"edge_http_requests_total", []string{"site", "", "pool", "", "code", "421"}, 1},
		{"edge_http_requests_total", []string{"site", "", "pool", "", "code", "404"}, 1},
		{"edge_http_request_duration_seconds", []string{"site", "example.com", "pool", "web"}, 3},
		{"edge_http_requests_in_flight", nil, 0},
		{"edge_backend_requests_total", []string{"backend", b.URL, "code", "200"}, 3},
		{"edge_backend_failures_total", []string{"backend", dead.String(), "reason", "connect"}, 3},
		{"edge_backend_failures_total", []string{"backend", b.URL}, 0},
		{"edge_backend_up", []string{"pool", "web", "backend", b.URL}, 1},
	}
	for _, c := range checks {
		if got := metricValue(t, reg, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}

	// A reload: both generations live at once must not break the scrape.
	h2 := newHandler(t, cfg)
	h2.poolList[0].upstreams[1].down.Store(true)
	if got := metricValue(t, reg, "edge_backend_up", "backend", b.URL); got != 0 {
		t.Errorf("edge_backend_up during overlap = %v, want the newest generation's 0", got)
	}
	h2.Close()
	h.Close()
	if n := seriesCount(t, reg, "edge_backend_up"); n != 0 {
		t.Errorf("%d edge_backend_up series after Close, want 0", n)
	}
}

func TestAccessLog(t *testing.T) {
	b := newBackend(t, "b")
	tests := []struct {
		name   string
		access bool
		level  slog.Level
		want   int
	}{
		{"on", true, slog.LevelInfo, 1},
		{"off", false, slog.LevelInfo, 0},
		{"level above info", true, slog.LevelWarn, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			cfg := simpleConfig(b.url)
			cfg.Logger = slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: tc.level}))
			cfg.AccessLog = tc.access
			h := newHandler(t, cfg)
			serve(h, "GET", "https://example.com/some/path?q=1")
			lines := 0
			for line := range strings.Lines(buf.String()) {
				var rec map[string]any
				if err := json.Unmarshal([]byte(line), &rec); err != nil {
					t.Fatal(err)
				}
				if rec["msg"] != "request" {
					continue
				}
				lines++
				for k, want := range map[string]any{"method": "GET", "host": "example.com", "path": "/some/path", "status": 200.0, "backend": b.URL, "bytes": 12.0, "site": "example.com"} {
					if rec[k] != want {
						t.Errorf("%s = %v, want %v", k, rec[k], want)
					}
				}
				if _, ok := rec["duration"]; !ok {
					t.Error("no duration")
				}
			}
			if lines != tc.want {
				t.Errorf("%d access lines, want %d", lines, tc.want)
			}
		})
	}
}

func TestStatusJSON(t *testing.T) {
	b := newBackend(t, "b")
	h := newHandler(t, simpleConfig(b.url))
	out, err := json.Marshal(h.Status())
	if err != nil {
		t.Fatal(err)
	}
	want := `[{"name":"web","policy":"first","backends":[{"url":"` + b.URL + `","up":true,"healthy":true,"ejected":false,"drained":false,"in_flight":0,"fails":0,"recent_requests":0,"recent_errors":0,"error_rate":0}]}]`
	if string(out) != want {
		t.Errorf("Status JSON\n got %s\nwant %s", out, want)
	}
}

// TestConcurrent runs requests, health checks and status reads at once, for
// the race detector.
func TestConcurrent(t *testing.T) {
	a, b := newFlipBackend(t), newBackend(t, "b")
	for _, policy := range []string{"round_robin", "least_conn", "random", "ip_hash", "cookie", "first"} {
		t.Run(policy, func(t *testing.T) {
			sel, err := NewSelector(policy)
			if err != nil {
				t.Fatal(err)
			}
			m, _ := newTestMetrics(t)
			cfg := simpleConfig(a.url, b.url, closedURL(t))
			cfg.Metrics = m
			cfg.Pools[0].Selector = sel
			cfg.Pools[0].Retries = 2
			cfg.Pools[0].Passive = PassiveCheck{Fails: 2, Window: time.Second, Cooldown: 20 * time.Millisecond}
			cfg.Pools[0].Health = &HealthCheck{Path: "/healthz", Interval: 20 * time.Millisecond, Timeout: 20 * time.Millisecond, Fails: 1, Passes: 1}
			h := newHandler(t, cfg)
			var wg sync.WaitGroup
			for i := range 8 {
				wg.Go(func() {
					for j := range 50 {
						a.fail.Store(j%10 == 0)
						w := serve(h, "GET", "https://example.com/", func(r *http.Request) {
							r.RemoteAddr = "192.0.2." + strconv.Itoa(i) + ":1"
						})
						if w.Code != 200 && w.Code != 502 && w.Code != 503 {
							t.Errorf("code %d: %+v", w.Code, h.Status())
						}
						_ = h.Status()
					}
				})
			}
			wg.Wait()
		})
	}
}

// TestNoneAvailableAnswersAtOnce checks that a pool whose backends are all
// down or ejected answers 503 without trying any of them, retries or not.
func TestNoneAvailableAnswersAtOnce(t *testing.T) {
	tests := []struct {
		name    string
		down    []int // marked down by the active check
		ejected []int // ejected by the passive check
		retries int
	}{
		{"all down", []int{0, 1}, nil, 0},
		{"all ejected", nil, []int{0, 1}, 0},
		{"all ejected, retries", nil, []int{0, 1}, 3},
		{"down and ejected", []int{0}, []int{1}, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, b := newBackend(t, "a"), newBackend(t, "b")
			cfg := simpleConfig(a.url, b.url)
			cfg.Pools[0].Retries = tc.retries
			h := newHandler(t, cfg)
			ups := h.poolList[0].upstreams
			for _, i := range tc.down {
				ups[i].down.Store(true)
			}
			for _, i := range tc.ejected {
				ups[i].ejectedUntil.Store(time.Now().Add(time.Hour).UnixNano())
			}
			start := time.Now()
			w := serve(h, "GET", "https://example.com/")
			if w.Code != http.StatusServiceUnavailable {
				t.Errorf("code = %d, want 503", w.Code)
			}
			if d := time.Since(start); d > 100*time.Millisecond {
				t.Errorf("503 took %v, want at once", d)
			}
			if n := a.hits.Load() + b.hits.Load(); n != 0 {
				t.Errorf("%d requests reached unavailable backends", n)
			}
		})
	}
}

// TestReloadDoesNotLeak builds handler generations as reloads do, with
// health checks and traffic, closes each, and expects every goroutine of
// theirs (checkers, idle backend connections) to be gone.
func TestReloadDoesNotLeak(t *testing.T) {
	f := newFlipBackend(t)
	b := newBackend(t, "b")
	before := runtime.NumGoroutine()
	m, _ := newTestMetrics(t)
	for gen := range 5 {
		cfg := simpleConfig(f.url, b.url)
		cfg.Metrics = m
		cfg.Pools[0].Selector = new(RoundRobin)
		cfg.Pools[0].Health = &HealthCheck{Path: "/healthz", Interval: 5 * time.Millisecond, Timeout: time.Second}
		h, err := New(t.Context(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		for range 10 {
			if w := serve(h, "GET", "https://example.com/"); w.Code != 200 {
				t.Fatalf("generation %d: code %d", gen, w.Code)
			}
		}
		h.Close()
	}
	eventually(t, 5*time.Second, "goroutines of closed handlers to exit", func() bool {
		return runtime.NumGoroutine() <= before
	})
}
