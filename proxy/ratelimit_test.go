package proxy

import (
	"net/http"
	"net/netip"
	"strconv"
	"testing"
	"time"
)

func TestRateLimitResolve(t *testing.T) {
	tests := []struct {
		name    string
		in      RateLimit
		want    RateLimit
		wantErr bool
	}{
		{"zero", RateLimit{}, RateLimit{}, false},
		{"interval alone limits nothing", RateLimit{Interval: time.Second, Burst: 3}, RateLimit{}, false},
		{"burst defaults to events", RateLimit{Events: 5, Interval: time.Second}, RateLimit{Events: 5, Interval: time.Second, Burst: 5}, false},
		{"burst kept", RateLimit{Events: 5, Interval: time.Minute, Burst: 1}, RateLimit{Events: 5, Interval: time.Minute, Burst: 1}, false},
		{"no interval", RateLimit{Events: 5}, RateLimit{}, true},
		{"negative events", RateLimit{Events: -1, Interval: time.Second}, RateLimit{}, true},
		{"negative burst", RateLimit{Events: 1, Interval: time.Second, Burst: -1}, RateLimit{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.in.resolve()
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if err == nil && got != tc.want {
				t.Errorf("resolve = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestRetryAfter(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want int64
	}{
		{time.Nanosecond, 1}, {100 * time.Millisecond, 1}, {time.Second, 1},
		{time.Second + 1, 2}, {59*time.Minute + 59*time.Second + 1, 3600},
	} {
		if got := retryAfter(tc.d); got != tc.want {
			t.Errorf("retryAfter(%v) = %d, want %d", tc.d, got, tc.want)
		}
	}
}

// TestRateLimit sends requests from clients and checks which get 429, with
// what Retry-After, and that the backend never sees them.
func TestRateLimit(t *testing.T) {
	type req struct {
		remote, xff string
		wantCode    int
		wantRetry   string // "" for none
	}
	const (
		a = "203.0.113.1:1000"
		b = "203.0.113.2:1000"
		// the same client as a, from another source port
		a2 = "203.0.113.1:2000"
		// a trusted proxy
		lb = "192.0.2.10:4000"
	)
	tests := []struct {
		name string
		rate RateLimit
		reqs []req
	}{
		{"no limit", RateLimit{}, []req{{a, "", 200, ""}, {a, "", 200, ""}, {a, "", 200, ""}}},
		{"burst then 429", RateLimit{Events: 1, Interval: time.Hour, Burst: 2}, []req{
			{a, "", 200, ""}, {a2, "", 200, ""}, {a, "", 429, "3600"}, {a, "", 429, "3600"},
			{b, "", 200, ""}, {b, "", 200, ""}, {b, "", 429, "3600"},
		}},
		{"burst defaults to events", RateLimit{Events: 2, Interval: time.Minute}, []req{
			{a, "", 200, ""}, {a, "", 200, ""}, {a, "", 429, "30"},
		}},
		{"short wait rounds up to one second", RateLimit{Events: 10, Interval: time.Second, Burst: 1}, []req{
			{a, "", 200, ""}, {a, "", 429, "1"},
		}},
		{"clients behind a trusted proxy are told apart", RateLimit{Events: 1, Interval: time.Hour, Burst: 1}, []req{
			{lb, "198.51.100.1", 200, ""}, {lb, "198.51.100.2", 200, ""},
			{lb, "198.51.100.1", 429, "3600"}, {lb, "6.6.6.6, 198.51.100.2", 429, "3600"},
			{lb, "", 200, ""}, // the proxy's own request
		}},
		{"an untrusted peer cannot dodge with X-Forwarded-For", RateLimit{Events: 1, Interval: time.Hour, Burst: 1}, []req{
			{b, "198.51.100.1", 200, ""}, {b, "198.51.100.2", 429, "3600"},
		}},
		{"ipv4-mapped is the same client", RateLimit{Events: 1, Interval: time.Hour, Burst: 1}, []req{
			{a, "", 200, ""}, {"[::ffff:203.0.113.1]:3000", "", 429, "3600"},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			be := newBackend(t, "b")
			m, reg := newTestMetrics(t)
			cfg := simpleConfig(be.url)
			cfg.Metrics = m
			cfg.TrustedProxies = testTrusted
			cfg.Sites[0].Rate = tc.rate
			h := newHandler(t, cfg)
			want200, want429 := 0, 0
			for i, rq := range tc.reqs {
				hits := be.hits.Load()
				w := serve(h, "GET", "https://example.com/", func(r *http.Request) {
					r.RemoteAddr = rq.remote
					if rq.xff != "" {
						r.Header.Set("X-Forwarded-For", rq.xff)
					}
				})
				if w.Code != rq.wantCode {
					t.Fatalf("request %d from %s (%q): code %d, want %d", i, rq.remote, rq.xff, w.Code, rq.wantCode)
				}
				if got := w.Header().Get("Retry-After"); got != rq.wantRetry {
					t.Errorf("request %d: Retry-After %q, want %q", i, got, rq.wantRetry)
				}
				reached := be.hits.Load() > hits
				if reached != (rq.wantCode == 200) {
					t.Errorf("request %d: backend reached = %v", i, reached)
				}
				if rq.wantCode == 200 {
					want200++
				} else {
					want429++
				}
			}
			if got := metricValue(t, reg, "edge_http_requests_total", "site", "example.com", "pool", "", "code", "429"); got != float64(want429) {
				t.Errorf("edge_http_requests_total{pool=\"\",code=\"429\"} = %v, want %d", got, want429)
			}
			if got := metricValue(t, reg, "edge_http_requests_total", "site", "example.com", "pool", "web", "code", "200"); got != float64(want200) {
				t.Errorf("edge_http_requests_total{pool=\"web\",code=\"200\"} = %v, want %d", got, want200)
			}
		})
	}
}

// TestRateLimitPlainHTTP: the limit holds on the plain-HTTP listener too,
// but redirects to https are not limited.
func TestRateLimitPlainHTTP(t *testing.T) {
	be := newBackend(t, "b")
	cfg := simpleConfig(be.url)
	cfg.Sites = append(cfg.Sites, SiteConfig{Name: "redirect.example.com", Hosts: []string{"redirect.example.com"},
		RedirectHTTP: true, Routes: []RouteConfig{{Path: "/", Pool: "web"}}, Rate: RateLimit{Events: 1, Interval: time.Hour}})
	cfg.Sites[0].Rate = RateLimit{Events: 1, Interval: time.Hour}
	h := newHandler(t, cfg)
	hh := h.HTTPHandler()
	for i, want := range []int{200, 429} {
		if w := serve(hh, "GET", "http://example.com/"); w.Code != want {
			t.Errorf("proxied request %d: code %d, want %d", i, w.Code, want)
		}
	}
	for i := range 3 {
		if w := serve(hh, "GET", "http://redirect.example.com/"); w.Code != http.StatusPermanentRedirect {
			t.Errorf("redirect %d: code %d", i, w.Code)
		}
	}
}

// TestRateLimitSurvivesReload: a Handler built on the same State with the
// same site and rate goes on with the buckets; a changed rate starts afresh,
// and the last Handler's Close drops them.
func TestRateLimitSurvivesReload(t *testing.T) {
	be := newBackend(t, "b")
	st := NewState()
	cfg := simpleConfig(be.url)
	cfg.State = st
	cfg.Sites[0].Rate = RateLimit{Events: 1, Interval: time.Hour}
	h1 := newHandler(t, cfg)
	if w := serve(h1, "GET", "https://example.com/"); w.Code != 200 {
		t.Fatalf("first request: %d", w.Code)
	}
	h2 := newHandler(t, cfg)
	h1.Close()
	if w := serve(h2, "GET", "https://example.com/"); w.Code != 429 {
		t.Fatalf("after a reload that changes nothing: %d, want 429", w.Code)
	}
	changed := cfg
	changed.Sites = []SiteConfig{cfg.Sites[0]}
	changed.Sites[0].Rate.Burst = 2
	h3 := newHandler(t, changed)
	h2.Close()
	if w := serve(h3, "GET", "https://example.com/"); w.Code != 200 {
		t.Fatalf("after a reload that changes the rate: %d, want 200", w.Code)
	}
	h3.Close()
	st.mu.Lock()
	n := len(st.limiters)
	st.mu.Unlock()
	if n != 0 {
		t.Errorf("%d rate-limit tables left after the last Close", n)
	}
	if err := Check(cfg); err != nil {
		t.Fatal(err)
	}
	bad := cfg
	bad.Sites = []SiteConfig{cfg.Sites[0]}
	bad.Sites[0].Rate = RateLimit{Events: 3}
	if err := Check(bad); err == nil {
		t.Error("Check accepted a rate without an interval")
	}
}

// TestRateTableBounded: the table forgets idle clients (their buckets are
// full) and, at its cap, the least recently seen one, never refusing room to
// a new client.
func TestRateTableBounded(t *testing.T) {
	rl := RateLimit{Events: 1, Interval: time.Second, Burst: 1} // refills in 1s
	addr := func(i int) string { return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}).String() }
	t0 := time.Now()

	t.Run("cap", func(t *testing.T) {
		const maxClients = rateShards * 4
		tab := newRateTable(rl, maxClients)
		for i := range 10 * maxClients {
			if d := tab.delay(addr(i), t0); d != 0 {
				t.Fatalf("new client %d refused (%v)", i, d)
			}
			if n := tab.len(); n > maxClients {
				t.Fatalf("after %d clients the table holds %d, cap %d", i+1, n, maxClients)
			}
		}
		// Touch the newest client again: it is still limited.
		if d := tab.delay(addr(10*maxClients-1), t0); d == 0 {
			t.Error("the most recent client was forgotten")
		}
	})

	t.Run("least recently used goes first", func(t *testing.T) {
		tab := newRateTable(rl, rateShards) // one entry per shard
		a := "10.0.0.1"
		sh := &tab.shards[shardOf(netip.MustParseAddr(a))]
		// Another address of a's shard.
		var b string
		for i := 2; b == ""; i++ {
			if &tab.shards[shardOf(netip.MustParseAddr(addr(i)))] == sh {
				b = addr(i)
			}
		}
		tab.delay(a, t0)
		tab.delay(b, t0) // evicts a
		if d := tab.delay(b, t0); d == 0 {
			t.Error("b forgotten though most recent")
		}
		if d := tab.delay(a, t0); d != 0 {
			t.Errorf("a remembered (%v) though evicted", d)
		}
	})

	t.Run("idle entries are swept", func(t *testing.T) {
		tab := newRateTable(rl, 1<<10)
		for i := range 200 {
			tab.delay(addr(i), t0)
		}
		if n := tab.len(); n != 200 {
			t.Fatalf("table holds %d, want 200", n)
		}
		// Past a full refill every bucket is full: touching each shard once
		// sweeps it down to the new entry.
		later := t0.Add(1100 * time.Millisecond)
		for i := range 1000 {
			tab.delay(strconv.Itoa(i%256)+".1.1.1", later)
		}
		if n := tab.len(); n > 256 {
			t.Errorf("table holds %d after the refill, want at most the 256 new clients", n)
		}
		for i := range 200 {
			if d := tab.delay(addr(i), later); d != 0 {
				t.Fatalf("client %d still limited after a full refill", i)
			}
		}
	})
}
