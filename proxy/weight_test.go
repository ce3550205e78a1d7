package proxy

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
)

func TestWeightedRing(t *testing.T) {
	mk := func(weights ...int) []*Upstream {
		var ups []*Upstream
		for i, w := range weights {
			u := newUpstream(&url.URL{Scheme: "http", Host: string(rune('a'+i)) + ".test"})
			u.weight = w
			ups = append(ups, u)
		}
		return ups
	}
	names := func(ring []*Upstream) string {
		var b strings.Builder
		for _, u := range ring {
			b.WriteByte(u.url.Host[0])
		}
		return b.String()
	}
	for _, tc := range []struct {
		weights []int
		want    string
	}{
		{[]int{5, 1, 1}, "aabacaa"}, // nginx's smooth weighted round robin
		{[]int{3, 1}, "aaba"},
		{[]int{2, 2, 2}, "abc"}, // equal: the upstreams themselves
		{[]int{4, 2}, "aba"},    // divided by the gcd
		{[]int{1, 3}, "babb"},
	} {
		if got := names(weightedRing(mk(tc.weights...))); got != tc.want {
			t.Errorf("weights %v: ring %q, want %q", tc.weights, got, tc.want)
		}
	}
}

// TestWeightedBalancing: weights 3:1 over 4,000 requests give each backend
// its share within 3 %, for round_robin and random (least_conn: see
// TestWeightedLeastConn).
func TestWeightedBalancing(t *testing.T) {
	var hits [2]atomic.Int64
	var backends []*url.URL
	for i := range 2 {
		b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits[i].Add(1) }))
		t.Cleanup(b.Close)
		backends = append(backends, mustURL(t, b.URL))
	}
	for _, policy := range []string{"round_robin", "random"} {
		t.Run(policy, func(t *testing.T) {
			hits[0].Store(0)
			hits[1].Store(0)
			sel, err := NewSelector(policy)
			if err != nil {
				t.Fatal(err)
			}
			cfg := simpleConfig(backends...)
			cfg.Pools[0].Selector, cfg.Pools[0].Weights = sel, []int{3, 1}
			h := newHandler(t, cfg)
			const n = 4000
			for range n {
				if w := serve(h, "GET", "https://example.com/"); w.Code != 200 {
					t.Fatalf("code %d", w.Code)
				}
			}
			share := float64(hits[0].Load()) / n
			t.Logf("%s 3:1: %d / %d", policy, hits[0].Load(), hits[1].Load())
			if share < 0.72 || share > 0.78 {
				t.Errorf("the weight-3 backend got %.3f of the requests, want 0.75 ± 0.03", share)
			}
		})
	}
}

// TestWeightedLeastConn: with weights 3:1, the weight-3 backend is chosen
// until it has three times the other's requests in flight.
func TestWeightedLeastConn(t *testing.T) {
	a := newUpstream(&url.URL{Scheme: "http", Host: "a.test"})
	b := newUpstream(&url.URL{Scheme: "http", Host: "b.test"})
	a.weight, b.weight = 3, 1
	pool := []*Upstream{a, b}
	var got strings.Builder
	for range 8 {
		u := LeastConn{}.Select(pool, nil, nil)
		got.WriteByte(u.url.Host[0])
		u.inFlight.Add(1) // still in flight
	}
	// In flight (a, b) after each pick: the lower of a/3 and b/1 goes next.
	if s := got.String(); strings.Count(s, "a") != 6 || strings.Count(s, "b") != 2 {
		t.Errorf("picks %q, want six a and two b", s)
	}
}
