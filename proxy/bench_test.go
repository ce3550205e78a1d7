package proxy

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// discardWriter is a minimal ResponseWriter, so that the benchmark measures
// the proxy and not httptest.ResponseRecorder.
type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) WriteHeader(code int)        { w.code = code }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }

// BenchmarkProxy sends GET requests through the handler (routing, policy,
// ReverseProxy, metrics) to a local backend answering 1 KiB.
func BenchmarkProxy(b *testing.B) {
	body := strings.Repeat("x", 1024)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte(body))
	}))
	b.Cleanup(backend.Close)
	for _, bc := range []struct {
		name    string
		metrics bool
	}{
		{"plain", false},
		{"metrics", true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			cfg := simpleConfig(mustURL(b, backend.URL))
			cfg.Pools[0].Selector = new(RoundRobin)
			if bc.metrics {
				m, err := NewMetrics(nil)
				if err != nil {
					b.Fatal(err)
				}
				cfg.Metrics = m
			}
			h := newHandler(b, cfg)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				r := httptest.NewRequest("GET", "https://example.com/bench", nil)
				w := &discardWriter{h: make(http.Header)}
				for pb.Next() {
					clear(w.h)
					h.ServeHTTP(w, r)
					if w.code != 200 {
						b.Fatalf("code %d", w.code)
					}
				}
			})
		})
	}
}
