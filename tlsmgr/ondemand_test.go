package tlsmgr

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// askServer answers 200 for the names in yes and 403 otherwise, counting
// the asks.
func askServer(t *testing.T, yes ...string) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var asks atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asks.Add(1)
		for _, n := range yes {
			if r.URL.Query().Get("domain") == n {
				return
			}
		}
		w.WriteHeader(http.StatusForbidden)
	}))
	t.Cleanup(srv.Close)
	return srv, &asks
}

func TestDeciderOrder(t *testing.T) {
	srv, asks := askServer(t, "yes.test")
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	d := newDecider(OnDemand{Allow: []string{"*.allowed.test", "exact.test"}, Ask: srv.URL + "/check?x=1", AskTimeout: time.Second, AskCache: time.Minute}, m)
	for _, tc := range []struct {
		name   string
		ok     bool
		asked  int64 // asks so far
		result string
	}{
		{"a.allowed.test", true, 0, decisionAllowed},
		{"exact.test", true, 0, decisionAllowed},
		{"b.a.allowed.test", false, 1, decisionRefused}, // a wildcard covers one label
		{"yes.test", true, 2, decisionAskYes},
		{"yes.test", true, 2, decisionAskYes}, // cached
		{"no.test", false, 3, decisionRefused},
		{"no.test", false, 3, decisionRefused}, // a no is cached too
	} {
		err := d.decide(t.Context(), tc.name)
		if (err == nil) != tc.ok {
			t.Errorf("decide(%s) = %v, want ok=%v", tc.name, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrOnDemandRefused) {
			t.Errorf("decide(%s) = %v, want ErrOnDemandRefused", tc.name, err)
		}
		if got := asks.Load(); got != tc.asked {
			t.Errorf("after %s: %d asks, want %d", tc.name, got, tc.asked)
		}
	}
	for result, want := range map[string]float64{decisionAllowed: 2, decisionAskYes: 2, decisionRefused: 3} {
		if got := testutil.ToFloat64(m.decisions.WithLabelValues(result)); got != want {
			t.Errorf("edge_on_demand_decisions_total{result=%q} = %v, want %v", result, got, want)
		}
	}
}

func TestDeciderAskDown(t *testing.T) {
	// A port nothing listens on: refused fast, never cached.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	d := newDecider(OnDemand{Ask: "http://" + addr + "/ask", AskTimeout: 2 * time.Second, AskCache: time.Minute}, nil)
	start := time.Now()
	if err := d.decide(t.Context(), "a.test"); !errors.Is(err, ErrOnDemandRefused) {
		t.Fatalf("decide with the ask endpoint down = %v", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("refusal took %v with the endpoint down", took)
	}
	if _, ok := d.cached("a.test"); ok {
		t.Error("an ask error was cached")
	}

	// An endpoint that never answers: refused at AskTimeout.
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	t.Cleanup(hang.Close)
	d = newDecider(OnDemand{Ask: hang.URL, AskTimeout: 200 * time.Millisecond}, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := d.decide(ctx, "a.test"); !errors.Is(err, ErrOnDemandRefused) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("decide with a hanging ask = %v", err)
	}
}

func TestDeciderRateWindow(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	d := newDecider(OnDemand{Allow: []string{"*.test"}, RateEvents: 5, RateInterval: time.Minute}, nil)
	d.now = func() time.Time { return now }
	allowed := 0
	for i := range 20 {
		if d.decide(t.Context(), string(rune('a'+i))+".test") == nil {
			allowed++
		}
		now = now.Add(2 * time.Second) // 20 names over 40 s
	}
	if allowed != 5 {
		t.Errorf("%d of 20 names allowed within a minute at 5/m, want 5", allowed)
	}
	// A name already let through is not charged again.
	if err := d.decide(t.Context(), "a.test"); err != nil {
		t.Errorf("a granted name again: %v", err)
	}
	// A minute after the first grant, one more may go.
	now = time.Unix(1_000_000, 0).Add(time.Minute)
	if err := d.decide(t.Context(), "new.test"); err != nil {
		t.Errorf("after the window: %v", err)
	}
	if err := d.decide(t.Context(), "newer.test"); !errors.Is(err, ErrOnDemandRateLimited) {
		t.Errorf("second after the window = %v, want rate limited", err)
	}
}

func TestDeciderBurstSpreads(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	d := newDecider(OnDemand{Allow: []string{"*.test"}, RateEvents: 6, RateInterval: time.Minute, Burst: 2}, nil)
	d.now = func() time.Time { return now }
	got := 0
	for _, n := range []string{"a.test", "b.test", "c.test"} {
		if d.decide(t.Context(), n) == nil {
			got++
		}
	}
	if got != 2 {
		t.Errorf("%d allowed at once with burst 2", got)
	}
	now = now.Add(10 * time.Second) // one token per 10 s
	if err := d.decide(t.Context(), "d.test"); err != nil {
		t.Errorf("after 10 s: %v", err)
	}
}

func TestDeciderCacheBounded(t *testing.T) {
	srv, _ := askServer(t)
	d := newDecider(OnDemand{Ask: srv.URL, AskCache: time.Hour}, nil)
	for i := range maxDecisionCache + 10 {
		d.remember(string(rune(i))+".test", false)
	}
	if n := len(d.answers); n > maxDecisionCache {
		t.Errorf("%d cached answers, bound %d", n, maxDecisionCache)
	}
}

func TestOnDemandEqual(t *testing.T) {
	a := &OnDemand{Ask: "http://x/", Client: &http.Client{}}
	b := &OnDemand{Ask: "http://x/"}
	if !a.equal(b) || (*OnDemand)(nil).equal(b) || !(*OnDemand)(nil).equal(nil) {
		t.Error("equal")
	}
	b.Allow = []string{"a.test"}
	if a.equal(b) {
		t.Error("different Allow compared equal")
	}
}

func TestRenewCheckInterval(t *testing.T) {
	for life, want := range map[time.Duration]time.Duration{
		0:                   maxRenewCheck,
		90 * time.Second:    4500 * time.Millisecond,
		10 * time.Second:    minRenewCheck,
		160 * time.Hour:     maxRenewCheck, // six days: a twentieth is 8 h, certmagic's 10 min is enough
		90 * 24 * time.Hour: maxRenewCheck,
		2 * time.Hour:       6 * time.Minute,
	} {
		if got := renewCheckInterval(life); got != want {
			t.Errorf("lifetime %v: interval %v, want %v", life, got, want)
		}
	}
}
