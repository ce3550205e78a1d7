package proxy

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// backend is an httptest server that names itself in X-Backend and echoes
// what the proxy sent in X-Seen-* headers.
type backend struct {
	*httptest.Server
	name string
	hits atomic.Int64
	url  *url.URL
}

func newBackend(t *testing.T, name string) *backend {
	t.Helper()
	b := &backend{name: name}
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		w.Header().Set("X-Backend", name)
		w.Header().Set("X-Seen-Host", r.Host)
		w.Header().Set("X-Seen-Path", r.URL.RequestURI())
		w.Header().Set("X-Seen-XFF", r.Header.Get("X-Forwarded-For"))
		w.Header().Set("X-Seen-Proto", r.Header.Get("X-Forwarded-Proto"))
		w.Header().Set("X-Seen-XFH", r.Header.Get("X-Forwarded-Host"))
		n, _ := io.Copy(io.Discard, r.Body)
		w.Header().Set("X-Seen-Body", strconv.FormatInt(n, 10))
		io.WriteString(w, "hello from "+name)
	}))
	t.Cleanup(b.Close)
	b.url = mustURL(t, b.URL)
	return b
}

func mustURL(t testing.TB, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// closedURL returns an http URL on a loopback port nothing listens on.
func closedURL(t testing.TB) *url.URL {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return mustURL(t, "http://"+addr)
}

// newHandler builds a Handler that Cleanup closes.
func newHandler(t testing.TB, cfg Config) *Handler {
	t.Helper()
	if os.Getenv("EDGE_TEST_VIA_REVERSEPROXY") != "" {
		// make test runs the package a second time so: every test then
		// holds httputil.ReverseProxy's path where it held the direct one.
		cfg.viaReverseProxy = true
	}
	ctx := t.Context()
	h, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// simpleConfig is one site (example.com) with "/" to pool "web".
func simpleConfig(backends ...*url.URL) Config {
	return Config{
		Sites: []SiteConfig{{Name: "example.com", Hosts: []string{"example.com"}, Routes: []RouteConfig{{Path: "/", Pool: "web"}}}},
		Pools: []PoolConfig{{Name: "web", Backends: backends, Selector: First{}}},
	}
}

// dialReadTimeout serves h on a net/http test server with the given
// ReadTimeout and returns a connection to it, closed at the test's end.
func dialReadTimeout(t *testing.T, h http.Handler, readTimeout time.Duration) net.Conn {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ReadTimeout = readTimeout
	srv.Start()
	t.Cleanup(srv.Close)
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// serve runs one request through handler h and returns the recorded response.
func serve(h http.Handler, method, target string, mod ...func(*http.Request)) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, nil)
	for _, m := range mod {
		m(r)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// eventually polls cond until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
