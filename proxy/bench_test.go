package proxy

import (
	"bytes"
	"io"
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
	body := []byte(strings.Repeat("x", 1024))
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Content-Type"] = []string{"text/plain"} // the backend's allocations are not ours
		w.Write(body)
	}))
	b.Cleanup(backend.Close)
	for _, bc := range []struct {
		name     string
		metrics  bool
		inMemory bool
	}{
		{"plain", false, false},
		{"metrics", true, false},
		// No network, no backend: the cost of edge's code and ReverseProxy
		// (not the direct path, which has no Transport to replace).
		{"in-memory-backend", true, true},
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
			if bc.inMemory {
				for _, u := range h.poolList[0].upstreams {
					u.proxy.Transport = cannedTransport(body)
					u.direct = false // the canned Transport is ReverseProxy's
				}
			}
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

// cannedTransport answers every request with 200 and body, from memory.
type cannedTransport []byte

func (c cannedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{
		StatusCode:    200,
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        http.Header{"Content-Type": {"text/plain"}},
		Body:          io.NopCloser(bytes.NewReader(c)),
		ContentLength: int64(len(c)),
		Request:       r,
	}, nil
}
