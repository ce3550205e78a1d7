package testenv

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// Backend is a demo web server on 127.0.0.1: "/" answers
// "hello from backend N" and /healthz answers "ok". It is safe for
// concurrent use.
type Backend struct {
	N    int
	Addr string // "127.0.0.1:port"
	URL  string // "http://127.0.0.1:port"

	srv      *http.Server
	requests atomic.Int64
	healthz  atomic.Int64
}

// NewBackend starts backend n on port (0 picks a free one). The listener
// exists when it returns. It is closed in Cleanup.
func NewBackend(tb TB, n, port int) *Backend {
	tb.Helper()
	b, err := ServeBackend(n, Addr(port))
	if err != nil {
		tb.Fatalf("%v", err)
	}
	tb.Cleanup(b.Close)
	return b
}

// ServeBackend starts backend n on addr ("127.0.0.1:0" picks a port).
func ServeBackend(n int, addr string) (*Backend, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("backend %d: %w", n, err)
	}
	b := &Backend{N: n, Addr: ln.Addr().String()}
	b.URL = "http://" + b.Addr
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		b.healthz.Add(1)
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		b.requests.Add(1)
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("X-Backend", fmt.Sprint(n))
		fmt.Fprintf(w, "hello from backend %d\n", n)
	})
	b.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go b.srv.Serve(ln)
	return b, nil
}

// Requests is how many non-health requests it answered.
func (b *Backend) Requests() int64 { return b.requests.Load() }

// HealthChecks is how many /healthz requests it answered.
func (b *Backend) HealthChecks() int64 { return b.healthz.Load() }

// Close stops it at once, as if killed: the listener and every open
// connection are closed, so new connections are refused.
func (b *Backend) Close() {
	b.srv.Close()
}

// Shutdown stops it gracefully.
func (b *Backend) Shutdown(ctx context.Context) error { return b.srv.Shutdown(ctx) }
