package proxy

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"testing"
	"time"
)

// fixturePool returns n upstreams, those listed in down made unavailable
// (alternately by the active check and by passive ejection).
func fixturePool(t *testing.T, n int, down ...int) []*Upstream {
	t.Helper()
	pool := make([]*Upstream, n)
	for i := range pool {
		pool[i] = newUpstream(mustURL(t, "http://10.0.0."+strconv.Itoa(i+1)+":8080"))
	}
	for k, i := range down {
		if k%2 == 0 {
			pool[i].down.Store(true)
		} else {
			pool[i].ejectedUntil.Store(time.Now().Add(time.Hour).UnixNano())
		}
	}
	return pool
}

func indexOf(pool []*Upstream, u *Upstream) int {
	for i, x := range pool {
		if x == u {
			return i
		}
	}
	return -1
}

func reqFrom(remote string) *http.Request {
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = remote
	return r
}

func TestNewSelector(t *testing.T) {
	for _, name := range []string{"", "round_robin", "least_conn", "random", "ip_hash", "cookie", "first"} {
		s, err := NewSelector(name)
		if err != nil || s == nil {
			t.Errorf("NewSelector(%q) = %v, %v", name, s, err)
		}
	}
	if _, err := NewSelector("weighted"); err == nil {
		t.Error("NewSelector accepted an unknown policy")
	}
}

func TestRoundRobin(t *testing.T) {
	tests := []struct {
		name string
		n    int
		down []int
		want []int
	}{
		{"all up", 3, nil, []int{0, 1, 2, 0, 1, 2}},
		{"skips down", 3, []int{1}, []int{0, 0, 2, 0, 2, 2}}, // the down one's turns alternate
		{"one left", 3, []int{0, 2}, []int{1, 1, 1}},
		{"none", 3, []int{0, 1, 2}, []int{-1, -1}},
		{"empty", 0, nil, []int{-1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pool := fixturePool(t, tc.n, tc.down...)
			s := new(RoundRobin)
			for i, want := range tc.want {
				if got := indexOf(pool, s.Select(pool, nil, nil)); got != want {
					t.Fatalf("pick %d = %d, want %d", i, got, want)
				}
			}
		})
	}
}

// TestRoundRobinFairAfterEjection: the turns of a backend that is down are
// spread over the others, not handed to its neighbour in the ring.
func TestRoundRobinFairAfterEjection(t *testing.T) {
	for _, tc := range []struct {
		n    int
		down []int
	}{{3, []int{0}}, {3, []int{1}}, {4, []int{1}}, {5, []int{0, 3}}, {6, []int{1, 2, 3}}} {
		pool := fixturePool(t, tc.n, tc.down...)
		s := new(RoundRobin)
		counts := make([]int, tc.n)
		const picks = 6000
		for range picks {
			counts[indexOf(pool, s.Select(pool, nil, nil))]++
		}
		alive := tc.n - len(tc.down)
		for i, c := range counts {
			want := picks / alive
			if slices.Contains(tc.down, i) {
				want = 0
			}
			if d := c - want; d < -tc.n || d > tc.n {
				t.Errorf("n=%d down=%v: backend %d got %d of %d picks, want %d: %v", tc.n, tc.down, i, c, picks, want, counts)
			}
		}
	}
}

func TestFirst(t *testing.T) {
	tests := []struct {
		name string
		down []int
		want int
	}{
		{"primary", nil, 0},
		{"fail-over", []int{0}, 1},
		{"second fail-over", []int{0, 1}, 2},
		{"none", []int{0, 1, 2}, -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pool := fixturePool(t, 3, tc.down...)
			if got := indexOf(pool, First{}.Select(pool, nil, nil)); got != tc.want {
				t.Errorf("got %d, want %d", got, tc.want)
			}
		})
	}
}

func TestLeastConn(t *testing.T) {
	tests := []struct {
		name     string
		inFlight []int64
		down     []int
		want     []int // acceptable picks
	}{
		{"fewest", []int64{5, 1, 3}, nil, []int{1}},
		{"fewest is down", []int64{5, 1, 3}, []int{1}, []int{2}},
		{"ties spread", []int64{2, 2, 7}, nil, []int{0, 1}},
		{"none", []int64{0, 0, 0}, []int{0, 1, 2}, []int{-1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pool := fixturePool(t, len(tc.inFlight), tc.down...)
			for i, n := range tc.inFlight {
				pool[i].inFlight.Store(n)
			}
			seen := map[int]bool{}
			for range 200 {
				got := indexOf(pool, LeastConn{}.Select(pool, nil, nil))
				seen[got] = true
			}
			if len(seen) != len(tc.want) {
				t.Errorf("picked %v, want each of %v", seen, tc.want)
			}
			for _, w := range tc.want {
				if !seen[w] {
					t.Errorf("never picked %d (picked %v)", w, seen)
				}
			}
		})
	}
}

func TestRandom(t *testing.T) {
	tests := []struct {
		name string
		down []int
		want []int
	}{
		{"all up", nil, []int{0, 1, 2}},
		{"skips down", []int{0}, []int{1, 2}},
		{"none", []int{0, 1, 2}, []int{-1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pool := fixturePool(t, 3, tc.down...)
			seen := map[int]bool{}
			for range 300 {
				seen[indexOf(pool, Random{}.Select(pool, nil, nil))] = true
			}
			if len(seen) != len(tc.want) {
				t.Errorf("picked %v, want each of %v", seen, tc.want)
			}
			for _, w := range tc.want {
				if !seen[w] {
					t.Errorf("never picked %d", w)
				}
			}
		})
	}
}

func TestIPHash(t *testing.T) {
	pool := fixturePool(t, 4)
	// Stable per client, spread over clients.
	picks := map[int]bool{}
	for i := range 64 {
		r := reqFrom("192.0.2." + strconv.Itoa(i) + ":1234")
		first := IPHash{}.Select(pool, r, nil)
		r.RemoteAddr = "192.0.2." + strconv.Itoa(i) + ":9999" // another source port
		if again := (IPHash{}).Select(pool, r, nil); again != first {
			t.Fatalf("client %d moved from %s to %s", i, first, again)
		}
		picks[indexOf(pool, first)] = true
	}
	if len(picks) != 4 {
		t.Errorf("64 clients used %d of 4 backends", len(picks))
	}
	// When a backend goes down only its clients move.
	before := map[string]*Upstream{}
	for i := range 64 {
		ip := "198.51.100." + strconv.Itoa(i) + ":1"
		before[ip] = IPHash{}.Select(pool, reqFrom(ip), nil)
	}
	pool[2].down.Store(true)
	for ip, was := range before {
		now := IPHash{}.Select(pool, reqFrom(ip), nil)
		if now == pool[2] {
			t.Fatalf("%s sent to a down backend", ip)
		}
		if was != pool[2] && now != was {
			t.Errorf("%s moved from %s to %s though its backend is up", ip, was, now)
		}
	}
	if got := (IPHash{}).Select(fixturePool(t, 2, 0, 1), reqFrom("192.0.2.1:1"), nil); got != nil {
		t.Errorf("all down: got %s", got)
	}
}

func TestCookie(t *testing.T) {
	tests := []struct {
		name       string
		down       []int
		cookie     int // index of the pinned backend, -1 none
		want       []int
		wantCookie bool
	}{
		{"pinned", nil, 2, []int{2}, false},
		{"no cookie", nil, -1, []int{0, 1, 2}, true},
		{"pinned is down", []int{2}, 2, []int{0, 1}, true},
		{"all down", []int{0, 1, 2}, 1, []int{-1}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pool := fixturePool(t, 3, tc.down...)
			for range 30 {
				r := httptest.NewRequest("GET", "https://example.com/", nil)
				if tc.cookie >= 0 {
					r.AddCookie(&http.Cookie{Name: CookieName, Value: pool[tc.cookie].cookie})
				}
				w := httptest.NewRecorder()
				got := indexOf(pool, Cookie{}.Select(pool, r, w))
				ok := false
				for _, want := range tc.want {
					ok = ok || got == want
				}
				if !ok {
					t.Fatalf("picked %d, want one of %v", got, tc.want)
				}
				cookies := w.Result().Cookies()
				if (len(cookies) > 0) != tc.wantCookie {
					t.Fatalf("Set-Cookie %v, want one: %v", cookies, tc.wantCookie)
				}
				if len(cookies) > 0 {
					c := cookies[0]
					if c.Name != CookieName || c.Value != pool[got].cookie || !c.HttpOnly || !c.Secure || c.Path != "/" {
						t.Errorf("cookie %+v does not pin backend %d", c, got)
					}
				}
			}
		})
	}
}

func TestCookieNameFor(t *testing.T) {
	tests := []struct {
		pool, want string
	}{
		{"web", "edge_backend_web"},
		{"api-v2.internal", "edge_backend_api-v2.internal"},
		{"a b;c=d/e", "edge_backend_a_b_c_d_e"},
		{`"quoted",(x)`, "edge_backend__quoted___x_"},
		{"café", "edge_backend_caf__"}, // two bytes
		{"", "edge_backend_"},
	}
	for _, tc := range tests {
		t.Run(tc.pool, func(t *testing.T) {
			got := CookieNameFor(tc.pool)
			if got != tc.want {
				t.Errorf("CookieNameFor(%q) = %q, want %q", tc.pool, got, tc.want)
			}
			if err := (&http.Cookie{Name: got, Value: "x"}).Valid(); err != nil {
				t.Errorf("%q is not a valid cookie name: %v", got, err)
			}
		})
	}
}

// TestCookiePerPool checks that two cookie pools of one site each pin the
// client with a cookie of their own: neither overwrites nor reads the
// other's.
func TestCookiePerPool(t *testing.T) {
	a1, a2, b1, b2 := newBackend(t, "a1"), newBackend(t, "a2"), newBackend(t, "b1"), newBackend(t, "b2")
	shared, err := NewSelector("cookie") // one Selector for both pools, as a caller may do
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Sites: []SiteConfig{{Name: "example.com", Hosts: []string{"example.com"}, Routes: []RouteConfig{
			{Path: "/a/", Pool: "pool a"}, {Path: "/b/", Pool: "b"},
		}}},
		Pools: []PoolConfig{
			{Name: "pool a", Backends: []*url.URL{a1.url, a2.url}, Selector: shared},
			{Name: "b", Backends: []*url.URL{b1.url, b2.url}, Selector: shared},
		},
	}
	h := newHandler(t, cfg)
	up := func(pool, i int) string { return h.poolList[pool].upstreams[i].cookie }
	const nameA, nameB = "edge_backend_pool_a", "edge_backend_b"
	tests := []struct {
		name        string
		path        string
		cookies     map[string]string
		wantBackend []string // acceptable
		wantSet     string   // name of the cookie set, "" for none
	}{
		{"a without cookie", "/a/", nil, []string{"a1", "a2"}, nameA},
		{"b without cookie", "/b/", nil, []string{"b1", "b2"}, nameB},
		{"a pinned", "/a/", map[string]string{nameA: up(0, 1)}, []string{"a2"}, ""},
		{"b pinned", "/b/", map[string]string{nameB: up(1, 0)}, []string{"b1"}, ""},
		{"both pinned, a", "/a/", map[string]string{nameA: up(0, 0), nameB: up(1, 1)}, []string{"a1"}, ""},
		{"both pinned, b", "/b/", map[string]string{nameA: up(0, 0), nameB: up(1, 1)}, []string{"b2"}, ""},
		{"b ignores a's cookie", "/b/", map[string]string{nameA: up(0, 1)}, []string{"b1", "b2"}, nameB},
		{"shared name ignored", "/a/", map[string]string{CookieName: up(0, 1)}, []string{"a1", "a2"}, nameA},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := serve(h, "GET", "https://example.com"+tc.path, func(r *http.Request) {
				for k, v := range tc.cookies {
					r.AddCookie(&http.Cookie{Name: k, Value: v})
				}
			})
			if w.Code != 200 {
				t.Fatalf("code = %d", w.Code)
			}
			got := w.Header().Get("X-Backend")
			if !slices.Contains(tc.wantBackend, got) {
				t.Errorf("backend %s, want one of %v", got, tc.wantBackend)
			}
			set := w.Result().Cookies()
			switch {
			case tc.wantSet == "" && len(set) > 0:
				t.Errorf("Set-Cookie %v, want none", set)
			case tc.wantSet != "" && (len(set) != 1 || set[0].Name != tc.wantSet || set[0].Path != "/"):
				t.Errorf("Set-Cookie %v, want one %s with Path=/", set, tc.wantSet)
			}
		})
	}
	for _, ps := range h.Status() {
		if ps.Policy != "cookie" {
			t.Errorf("pool %s: policy %q, want cookie", ps.Name, ps.Policy)
		}
	}
}
