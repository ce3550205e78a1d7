package proxy

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"testing"
	"time"
)

// The request path's pieces, one benchmark each, so that a change to one
// shows in its own allocs/op (BenchmarkProxy measures them together).
// `go test -run '^$' -bench . -benchmem ./proxy`.

// benchHandler builds a handler of three sites (two exact, one wildcard)
// over one pool of four backends that are never contacted.
func benchHandler(b *testing.B, sel Selector, metrics bool) *Handler {
	b.Helper()
	var backends []*url.URL
	for i := range 4 {
		backends = append(backends, mustURL(b, "http://127.0.0.1:"+strconv.Itoa(1+i)))
	}
	cfg := Config{
		Sites: []SiteConfig{
			{Name: "shop", Hosts: []string{"shop.example.com", "www.shop.example.com"}, Routes: []RouteConfig{
				{Path: "/api/", Pool: "web"}, {Path: "/static/", Pool: "web"}, {Path: "/", Pool: "web"},
			}},
			{Name: "apps", Hosts: []string{"*.apps.example.com"}, Routes: []RouteConfig{{Path: "/", Pool: "web"}}},
			{Name: "admin", Hosts: []string{"admin.example.com"}, Routes: []RouteConfig{{Path: "/", Pool: "web"}}},
		},
		Pools: []PoolConfig{{Name: "web", Backends: backends, Selector: sel}},
	}
	if metrics {
		m, err := NewMetrics(nil)
		if err != nil {
			b.Fatal(err)
		}
		cfg.Metrics = m
	}
	return newHandler(b, cfg)
}

func BenchmarkRouteMatch(b *testing.B) {
	h := benchHandler(b, nil, false)
	for _, bc := range []struct{ name, host, path string }{
		{"exact", "shop.example.com", "/static/app.css"},
		{"exact-port-upper", "Shop.Example.com:443", "/"},
		{"wildcard", "tenant7.apps.example.com", "/x"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				s := h.router.lookup(bc.host)
				if s == nil || s.route(bc.path) == nil {
					b.Fatal("no route")
				}
			}
		})
	}
}

func BenchmarkPolicySelect(b *testing.B) {
	for _, bc := range []struct {
		name    string
		sel     Selector
		weights []int
	}{
		{"round_robin", new(RoundRobin), nil},
		{"round_robin-weighted", new(RoundRobin), []int{3, 1, 1, 1}},
		{"least_conn", LeastConn{}, nil},
		{"random", Random{}, nil},
		{"ip_hash", IPHash{}, nil},
		{"cookie", Cookie{}, nil},
	} {
		b.Run(bc.name, func(b *testing.B) {
			h := benchHandler(b, bc.sel, false)
			p := h.poolList[0]
			if bc.weights != nil {
				for i, u := range p.upstreams {
					u.weight = bc.weights[i]
				}
				p.ring = weightedRing(p.upstreams)
			}
			r := httptest.NewRequest("GET", "https://shop.example.com/", nil)
			r.RemoteAddr = "192.0.2.7:40000"
			w := &discardWriter{h: make(http.Header)}
			b.ReportAllocs()
			for b.Loop() {
				if p.selector.Select(p.ring, r, w) == nil {
					b.Fatal("no backend")
				}
				clear(w.h)
			}
		})
	}
}

func BenchmarkHeaderRules(b *testing.B) {
	rules, err := HeaderRules{
		Set:    map[string]string{"X-Client": "{client_ip}", "X-Farm": "web", "X-Origin": "{scheme}://{host}"},
		Add:    map[string]string{"X-Via": "edge"},
		Remove: []string{"X-Debug"},
	}.resolve()
	if err != nil {
		b.Fatal(err)
	}
	r := httptest.NewRequest("GET", "https://shop.example.com/", nil)
	base := http.Header{"Accept": {"*/*"}, "X-Debug": {"1"}, "User-Agent": {"bench"}}
	h := make(http.Header)
	b.ReportAllocs()
	for b.Loop() {
		clear(h)
		for k, v := range base {
			h[k] = v
		}
		rules.apply(h, r, "192.0.2.7")
	}
}

func BenchmarkForwardedHeaders(b *testing.B) {
	h := benchHandler(b, nil, false)
	in := httptest.NewRequest("GET", "https://shop.example.com/", nil)
	in.RemoteAddr = "192.0.2.7:40000"
	in.Header.Set("X-Forwarded-For", "198.51.100.1")
	b.ReportAllocs()
	for b.Loop() {
		h.setForwarded(in, http.Header{"X-Forwarded-For": {"198.51.100.1"}})
	}
}

func BenchmarkMetricsRecord(b *testing.B) {
	h := benchHandler(b, nil, true)
	s := h.router.lookup("shop.example.com")
	rt := s.route("/")
	r := httptest.NewRequest("GET", "https://shop.example.com/", nil)
	start := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		h.account(r, rt.stats, s.name, http.StatusOK, 1024, h.poolList[0].upstreams[0], time.Millisecond, start)
	}
}
