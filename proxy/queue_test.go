package proxy

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// gateBackend is a backend whose requests block until a token on release
// (or its close) lets them answer. It records how many it had at once.
type gateBackend struct {
	url      *url.URL
	cur      atomic.Int64
	peak     atomic.Int64
	seen     atomic.Int64
	release  chan struct{}
	closeRel sync.Once
}

func newGateBackend(t *testing.T) *gateBackend {
	t.Helper()
	g := &gateBackend{release: make(chan struct{})}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := g.cur.Add(1)
		defer g.cur.Add(-1)
		g.seen.Add(1)
		for {
			p := g.peak.Load()
			if n <= p || g.peak.CompareAndSwap(p, n) {
				break
			}
		}
		select {
		case <-g.release:
		case <-r.Context().Done():
			return
		}
		io.WriteString(w, "ok")
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(g.open) // before srv.Close: nothing stays blocked
	g.url = mustURL(t, srv.URL)
	return g
}

// open lets every request through from now on.
func (g *gateBackend) open() { g.closeRel.Do(func() { close(g.release) }) }

// result is the outcome of one request run in the background.
type result struct {
	code  int
	delay time.Duration
}

// goServe runs a GET through h in the background; ctx may cancel it.
func goServe(ctx context.Context, h http.Handler, target string) <-chan result {
	ch := make(chan result, 1)
	go func() {
		start := time.Now()
		r := httptest.NewRequest("GET", target, nil).WithContext(ctx)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		ch <- result{w.Code, time.Since(start)}
	}()
	return ch
}

func queued(h *Handler) int64 { return h.poolList[0].queue.n.Load() }

// TestMaxConnsQueue: one backend, MaxConns 2, Queue 4, seven clients at
// once against a backend that blocks: two in flight, four queued, the
// seventh 503 at once; the backend never sees a third; releasing lets the
// queued ones through.
func TestMaxConnsQueue(t *testing.T) {
	g := newGateBackend(t)
	m, reg := newTestMetrics(t)
	cfg := simpleConfig(g.url)
	cfg.Metrics = m
	cfg.Pools[0].MaxConns, cfg.Pools[0].Queue = 2, 4
	h := newHandler(t, cfg)

	done := make(chan result, 7)
	for range 7 {
		go func() { done <- <-goServe(t.Context(), h, "https://example.com/") }()
	}
	// The seventh (whichever it is) is answered without waiting.
	select {
	case r := <-done:
		if r.code != http.StatusServiceUnavailable {
			t.Fatalf("first answer: %d, want 503", r.code)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no request was rejected")
	}
	eventually(t, 5*time.Second, "2 in flight and 4 queued", func() bool { return g.cur.Load() == 2 && queued(h) == 4 })
	select {
	case r := <-done:
		t.Fatalf("another answer (%d) while the backend holds two", r.code)
	default:
	}
	if got := metricValue(t, reg, "edge_pool_queue_requests", "pool", "web"); got != 4 {
		t.Errorf("edge_pool_queue_requests = %v, want 4", got)
	}
	if got := metricValue(t, reg, "edge_pool_queue_rejected_total", "pool", "web", "reason", "full"); got != 1 {
		t.Errorf("edge_pool_queue_rejected_total{reason=full} = %v, want 1", got)
	}
	if st := h.Status()[0].Backends[0]; !st.Up || st.InFlight != 2 {
		t.Errorf("status = %+v, want up with 2 in flight", st)
	}
	// Let them through one at a time: each frees a slot for a waiter.
	for range 6 {
		g.release <- struct{}{}
	}
	ok := 0
	for range 6 {
		select {
		case r := <-done:
			if r.code == 200 {
				ok++
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a queued request never finished")
		}
	}
	if ok != 6 {
		t.Errorf("%d requests answered 200, want 6", ok)
	}
	if p := g.peak.Load(); p != 2 {
		t.Errorf("backend saw %d requests at once, want 2", p)
	}
	if got := metricValue(t, reg, "edge_pool_queue_requests", "pool", "web"); got != 0 {
		t.Errorf("edge_pool_queue_requests = %v after the rush, want 0", got)
	}
	if got := metricValue(t, reg, "edge_http_requests_total", "pool", "web", "code", "503"); got != 1 {
		t.Errorf("edge_http_requests_total{code=503} = %v, want 1", got)
	}
}

// TestQueueOutcomes: what a request gets when the one backend is at its
// cap, by queue settings.
func TestQueueOutcomes(t *testing.T) {
	tests := []struct {
		name      string
		queue     int
		timeout   time.Duration
		cancel    bool // the client goes away while queued
		release   bool // the blocking request finishes while the second waits
		wantCode  int
		wantAfter time.Duration // at least
		reason    string        // edge_pool_queue_rejected_total reason counted, "" none
	}{
		{name: "no queue", queue: 0, wantCode: 503, reason: "full"},
		{name: "queue timeout", queue: 1, timeout: 150 * time.Millisecond, wantCode: 503, wantAfter: 150 * time.Millisecond, reason: "timeout"},
		{name: "served when a slot frees", queue: 1, timeout: 10 * time.Second, release: true, wantCode: 200},
		{name: "no timeout: served when a slot frees", queue: 1, release: true, wantCode: 200},
		{name: "client goes away", queue: 1, cancel: true, wantCode: 200 /* nothing written: 499 is not sent */},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := newGateBackend(t)
			m, reg := newTestMetrics(t)
			cfg := simpleConfig(g.url)
			cfg.Metrics = m
			cfg.Pools[0].MaxConns, cfg.Pools[0].Queue, cfg.Pools[0].QueueTimeout = 1, tc.queue, tc.timeout
			h := newHandler(t, cfg)
			first := goServe(t.Context(), h, "https://example.com/")
			eventually(t, 5*time.Second, "the first request at the backend", func() bool { return g.cur.Load() == 1 })
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			second := goServe(ctx, h, "https://example.com/")
			if tc.queue > 0 {
				eventually(t, 5*time.Second, "the second request queued", func() bool { return queued(h) == 1 })
			}
			if tc.release {
				g.open()
			}
			if tc.cancel {
				cancel()
			}
			r := <-second
			if r.code != tc.wantCode {
				t.Errorf("code = %d, want %d", r.code, tc.wantCode)
			}
			if r.delay < tc.wantAfter {
				t.Errorf("answered after %v, want at least %v", r.delay, tc.wantAfter)
			}
			if tc.cancel {
				if got := metricValue(t, reg, "edge_http_requests_total", "code", "499"); got != 1 {
					t.Errorf("edge_http_requests_total{code=499} = %v, want 1", got)
				}
			}
			for _, reason := range []string{"full", "timeout"} {
				want := 0.0
				if reason == tc.reason {
					want = 1
				}
				if got := metricValue(t, reg, "edge_pool_queue_rejected_total", "pool", "web", "reason", reason); got != want {
					t.Errorf("edge_pool_queue_rejected_total{reason=%s} = %v, want %v", reason, got, want)
				}
			}
			if q := queued(h); q != 0 {
				t.Errorf("%d still queued", q)
			}
			g.open()
			if r := <-first; r.code != 200 {
				t.Errorf("first request: %d", r.code)
			}
			if p := g.peak.Load(); p != 1 {
				t.Errorf("backend saw %d at once, want 1", p)
			}
		})
	}
}

// TestMaxConnsRetry: a retry to another backend waits for its cap too.
func TestMaxConnsRetry(t *testing.T) {
	g := newGateBackend(t)
	cfg := simpleConfig(closedURL(t), g.url)
	cfg.Pools[0].MaxConns, cfg.Pools[0].Queue, cfg.Pools[0].Retries = 1, 2, 1
	cfg.Pools[0].Selector = First{}
	h := newHandler(t, cfg)
	// The dead backend first fails the blocker over to g, then the second
	// request, whose retry must wait for g's slot.
	first := goServe(t.Context(), h, "https://example.com/")
	eventually(t, 5*time.Second, "the first request at the backend", func() bool { return g.cur.Load() == 1 })
	second := goServe(t.Context(), h, "https://example.com/")
	eventually(t, 5*time.Second, "the retry queued", func() bool { return queued(h) == 1 })
	g.open()
	for i, ch := range []<-chan result{first, second} {
		if r := <-ch; r.code != 200 {
			t.Errorf("request %d: %d", i, r.code)
		}
	}
	if p := g.peak.Load(); p != 1 {
		t.Errorf("backend saw %d at once, want 1", p)
	}
}

// TestMaxConnsAcrossReload: two Handlers on one State share the backends'
// in-flight counts and the queue: the backend never sees more than the
// smaller cap, and a request queued on the old Handler is woken by a slot
// the new one frees.
func TestMaxConnsAcrossReload(t *testing.T) {
	g := newGateBackend(t)
	st := NewState()
	cfg := simpleConfig(g.url)
	cfg.State = st
	cfg.Pools[0].MaxConns, cfg.Pools[0].Queue = 3, 10
	old := newHandler(t, cfg)
	cfg.Pools = []PoolConfig{cfg.Pools[0]}
	cfg.Pools[0].MaxConns = 2
	cur := newHandler(t, cfg)

	var results []<-chan result
	results = append(results, goServe(t.Context(), cur, "https://example.com/"), goServe(t.Context(), cur, "https://example.com/"))
	eventually(t, 5*time.Second, "two at the backend", func() bool { return g.cur.Load() == 2 })
	// The old Handler's cap (3) does not let a third through.
	results = append(results, goServe(t.Context(), old, "https://example.com/"))
	eventually(t, 5*time.Second, "the old Handler's request queued", func() bool { return queued(old) == 1 })
	results = append(results, goServe(t.Context(), cur, "https://example.com/"))
	eventually(t, 5*time.Second, "two queued", func() bool { return queued(cur) == 2 })
	if g.cur.Load() != 2 {
		t.Fatalf("backend has %d", g.cur.Load())
	}
	for range 4 {
		g.release <- struct{}{}
	}
	for i, ch := range results {
		select {
		case r := <-ch:
			if r.code != 200 {
				t.Errorf("request %d: %d", i, r.code)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("request %d never finished", i)
		}
	}
	if p := g.peak.Load(); p != 2 {
		t.Errorf("backend saw %d at once, want 2", p)
	}
	// Closing the Handler with the smaller cap raises it to the other's.
	cur.Close()
	if got := old.poolList[0].upstreams[0].maxConns.Load(); got != 3 {
		t.Errorf("cap after the close = %d, want 3", got)
	}
}

// TestSelectorsSkipFullBackends: every policy passes over a backend at its
// MaxConns, and none returns one when all are full.
func TestSelectorsSkipFullBackends(t *testing.T) {
	for _, name := range Policies() {
		t.Run(name, func(t *testing.T) {
			sel, err := NewSelector(name)
			if err != nil {
				t.Fatal(err)
			}
			pool := fixturePool(t, 3)
			for _, u := range pool {
				u.maxConns.Store(2)
			}
			pool[0].inFlight.Store(2)
			pool[1].inFlight.Store(5) // over: a lowered cap
			for i := range 50 {
				if got := sel.Select(pool, reqFrom("192.0.2."+strconv.Itoa(i)+":1"), httptest.NewRecorder()); got != pool[2] {
					t.Fatalf("picked %v, want the one below its cap", got)
				}
			}
			if !pool[0].up() || pool[0].Available() {
				t.Error("a full backend must be up but not available")
			}
			pool[2].inFlight.Store(2)
			if got := sel.Select(pool, reqFrom("192.0.2.1:1"), nil); got != nil {
				t.Errorf("all full: picked %v", got)
			}
		})
	}
}

// TestAcquireNeverExceeds: concurrent acquires on one backend never take
// more slots than its cap.
func TestAcquireNeverExceeds(t *testing.T) {
	u := fixturePool(t, 1)[0]
	u.maxConns.Store(3)
	var wg sync.WaitGroup
	var got atomic.Int64
	for range 64 {
		wg.Go(func() {
			if u.acquire() {
				got.Add(1)
			}
		})
	}
	wg.Wait()
	if got.Load() != 3 || u.InFlight() != 3 {
		t.Errorf("acquired %d, in flight %d, want 3", got.Load(), u.InFlight())
	}
}
