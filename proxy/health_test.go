package proxy

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// flipBackend answers its health path with 200 or 503 as told, and counts
// the probes.
type flipBackend struct {
	*httptest.Server
	url    *url.URL
	fail   atomic.Bool
	probes atomic.Int64
}

func newFlipBackend(t *testing.T) *flipBackend {
	t.Helper()
	f := &flipBackend{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			f.probes.Add(1)
			if f.fail.Load() {
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
		}
		w.Header().Set("X-Backend", "flip")
	}))
	t.Cleanup(f.Close)
	f.url = mustURL(t, f.URL)
	return f
}

// testPool builds a pool without starting its health checker, so a test can
// drive probes one by one.
func testPool(t *testing.T, c PoolConfig) *pool {
	t.Helper()
	h := &Handler{log: discardLogger(), buffers: newBufferPool(), state: NewState()}
	p, err := newPool(c, h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.transport.CloseIdleConnections)
	return p
}

func TestActiveHealthThresholds(t *testing.T) {
	f := newFlipBackend(t)
	p := testPool(t, PoolConfig{Name: "web", Backends: []*url.URL{f.url},
		Health: &HealthCheck{Path: "/healthz", Interval: time.Hour, Timeout: time.Second, Expect: 200, Fails: 2, Passes: 3}})
	u := p.upstreams[0]
	steps := []struct {
		fail bool
		want bool // Available after the probe
	}{
		{false, true},
		{true, true}, // 1 of 2 failures
		{false, true},
		{true, true},
		{true, false}, // 2 consecutive: down
		{true, false},
		{false, false}, // 1 of 3 passes
		{false, false},
		{true, false}, // resets the passes
		{false, false},
		{false, false},
		{false, true}, // 3 consecutive: up
	}
	if !u.Available() {
		t.Fatal("backends must start up")
	}
	for i, s := range steps {
		f.fail.Store(s.fail)
		p.probe(t.Context(), u, false)
		if got := u.Available(); got != s.want {
			t.Fatalf("step %d (fail=%v): available = %v, want %v", i, s.fail, got, s.want)
		}
	}
}

func TestActiveHealthExpectAndTimeout(t *testing.T) {
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(2 * time.Second):
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(slow.Close)
	teapot := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusTeapot)
	}))
	t.Cleanup(teapot.Close)
	tests := []struct {
		name   string
		url    string
		expect int
		want   bool
	}{
		{"slow backend times out", slow.URL, 200, false},
		{"unexpected status", teapot.URL, 200, false},
		{"expected status", teapot.URL, http.StatusTeapot, true},
		{"refused", closedURL(t).String(), 200, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := testPool(t, PoolConfig{Name: "p", Backends: []*url.URL{mustURL(t, tc.url)},
				Health: &HealthCheck{Interval: time.Hour, Timeout: 100 * time.Millisecond, Expect: tc.expect, Fails: 1, Passes: 1}})
			start := time.Now()
			p.probe(t.Context(), p.upstreams[0], false)
			if got := p.upstreams[0].Available(); got != tc.want {
				t.Errorf("available = %v, want %v", got, tc.want)
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("probe took %v despite a 100ms timeout", d)
			}
		})
	}
}

func TestActiveHealthLoop(t *testing.T) {
	f := newFlipBackend(t)
	other := newBackend(t, "other")
	cfg := simpleConfig(f.url, other.url)
	cfg.Pools[0].Health = &HealthCheck{Path: "/healthz", Interval: 10 * time.Millisecond, Timeout: time.Second, Fails: 2, Passes: 2}
	h := newHandler(t, cfg)
	u := h.poolList[0].upstreams[0]

	f.fail.Store(true)
	eventually(t, 5*time.Second, "backend down", func() bool { return !u.Available() })
	// Traffic goes to the other backend (policy first would prefer flip).
	if w := serve(h, "GET", "https://example.com/"); w.Header().Get("X-Backend") != "other" {
		t.Errorf("request went to %q while flip is down", w.Header().Get("X-Backend"))
	}
	if st := h.Status()[0].Backends[0]; st.Up || st.Healthy || st.Fails == 0 {
		t.Errorf("status of a down backend: %+v", st)
	}
	f.fail.Store(false)
	eventually(t, 5*time.Second, "backend up", u.Available)
}

func TestCloseStopsHealthChecks(t *testing.T) {
	f := newFlipBackend(t)
	cfg := simpleConfig(f.url)
	cfg.Pools[0].Health = &HealthCheck{Path: "/healthz", Interval: 5 * time.Millisecond, Timeout: time.Second}
	h, err := New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "probes", func() bool { return f.probes.Load() >= 3 })
	h.Close()
	// A probe cancelled by Close may still reach the server just after.
	time.Sleep(10 * time.Millisecond)
	after := f.probes.Load()
	time.Sleep(50 * time.Millisecond) // 10 intervals
	if got := f.probes.Load(); got != after {
		t.Errorf("%d probes arrived after Close", got-after)
	}
	h.Close() // idempotent
}

func TestContextStopsHealthChecks(t *testing.T) {
	f := newFlipBackend(t)
	cfg := simpleConfig(f.url)
	cfg.Pools[0].Health = &HealthCheck{Path: "/healthz", Interval: 5 * time.Millisecond, Timeout: time.Second}
	ctx, cancel := context.WithCancel(t.Context())
	h, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "probes", func() bool { return f.probes.Load() >= 2 })
	cancel()
	done := make(chan struct{})
	go func() { h.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return after the context was cancelled")
	}
}

func TestPassiveEjection(t *testing.T) {
	c := PassiveCheck{Fails: 3, Window: time.Second, Cooldown: 50 * time.Millisecond}
	t0 := time.Now()
	tests := []struct {
		name      string
		failures  []time.Duration // offsets from t0
		reason    string
		wantEject bool
	}{
		{"below threshold", []time.Duration{0, 100 * time.Millisecond}, reasonConnect, false},
		{"at threshold", []time.Duration{0, 100 * time.Millisecond, 200 * time.Millisecond}, reasonConnect, true},
		{"timeouts count", []time.Duration{0, 1, 2}, reasonTimeout, true},
		{"protocol errors do not", []time.Duration{0, 1, 2}, reasonProtocol, false},
		{"spread beyond window", []time.Duration{0, 600 * time.Millisecond, 1200 * time.Millisecond}, reasonConnect, false},
		{"window slides", []time.Duration{0, 600 * time.Millisecond, 1200 * time.Millisecond, 1300 * time.Millisecond}, reasonConnect, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := testPool(t, PoolConfig{Name: "p", Backends: []*url.URL{mustURL(t, "http://10.0.0.1")}, Passive: c})
			u := p.upstreams[0]
			// Shift so the last failure is now: ejection lasts Cooldown from it.
			shift := time.Since(t0) - tc.failures[len(tc.failures)-1]
			for _, off := range tc.failures {
				u.recordFailure(tc.reason, t0.Add(off+shift))
			}
			if got := !u.Available(); got != tc.wantEject {
				t.Fatalf("ejected = %v, want %v", got, tc.wantEject)
			}
			if !tc.wantEject {
				return
			}
			if !u.Ejected() || !u.Healthy() {
				t.Errorf("ejected backend: Ejected() = %v, Healthy() = %v", u.Ejected(), u.Healthy())
			}
			eventually(t, time.Second, "cooldown to pass", u.Available)
			// A fresh start: one more failure does not eject again.
			u.recordFailure(tc.reason, time.Now())
			if !u.Available() {
				t.Error("ejected again by a single failure after the cooldown")
			}
		})
	}
}

func TestPassiveDisabled(t *testing.T) {
	p := testPool(t, PoolConfig{Name: "p", Backends: []*url.URL{mustURL(t, "http://10.0.0.1")}})
	u := p.upstreams[0]
	for range 100 {
		u.recordFailure(reasonConnect, time.Now())
	}
	if !u.Available() {
		t.Error("ejected with passive checks off")
	}
	if u.fails.Load() != 100 {
		t.Errorf("fails = %d, want 100", u.fails.Load())
	}
}

// TestActiveHealthHost checks the Host header of the probes: the backend's
// address by default, HealthCheck.Host when set (for backends that route by
// name, such as IIS sites bound to a host name).
func TestActiveHealthHost(t *testing.T) {
	const name = "www.example.com"
	// The backend answers 404 to any other Host, as a site bound by name.
	var seen atomic.Value
	back := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Store(r.Host)
		if h, _, _ := strings.Cut(r.Host, ":"); h != name {
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	t.Cleanup(back.Close)
	bu := mustURL(t, back.URL)
	tests := []struct {
		name     string
		host     string
		wantHost string
		wantOK   bool
	}{
		{"default is the backend's address", "", bu.Host, false},
		{"name", name, name, true},
		{"name and port", name + ":8080", name + ":8080", true},
		{"other name", "other.example.com", "other.example.com", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := testPool(t, PoolConfig{Name: "web", Backends: []*url.URL{bu},
				Health: &HealthCheck{Path: "/healthz", Host: tc.host, Interval: time.Hour}})
			err := p.check(t.Context(), p.upstreams[0])
			if got := seen.Load(); got != tc.wantHost {
				t.Errorf("probe Host = %q, want %q", got, tc.wantHost)
			}
			if (err == nil) != tc.wantOK {
				t.Errorf("check = %v, want success %v", err, tc.wantOK)
			}
		})
	}
}

func TestActiveHealthHostInvalid(t *testing.T) {
	for _, host := range []string{"www.example.com/x", "a b", "user@host", "host\r\nX: y", "ex?ample"} {
		t.Run(host, func(t *testing.T) {
			cfg := simpleConfig(mustURL(t, "http://127.0.0.1:1"))
			cfg.Pools[0].Health = &HealthCheck{Host: host, Interval: time.Hour}
			if h, err := New(t.Context(), cfg); err == nil {
				h.Close()
				t.Fatalf("New accepted health check host %q", host)
			} else if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "health check host") {
				t.Errorf("error %v", err)
			}
		})
	}
	for _, host := range []string{"www.example.com", "www.example.com:8080", "[2001:db8::1]:80", "192.0.2.1"} {
		if !validHostHeader(host) {
			t.Errorf("validHostHeader(%q) = false", host)
		}
	}
}
