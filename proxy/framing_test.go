package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/farmedge/edge/h1"
)

// TestSmugglingVectorsCloseTheConnection sends the request-smuggling
// vectors of RFC 9112 section 6.1 on one connection each, with a second
// request hidden where a Content-Length-framing device would see body: the
// first is answered, the connection closed, and the backend never sees the
// hidden request.
func TestSmugglingVectorsCloseTheConnection(t *testing.T) {
	forEachServer(t, testSmugglingVectors)
}

func testSmugglingVectors(t *testing.T, serveOn func(http.Handler) string) {
	var mu sync.Mutex
	var seen []string
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		mu.Lock()
		seen = append(seen, r.URL.Path)
		mu.Unlock()
	}))
	t.Cleanup(backend.Close)
	h := newHandler(t, simpleConfig(mustURL(t, backend.URL)))
	addr := serveOn(h.HTTPHandler())

	hidden := "GET /smuggled HTTP/1.1\r\nHost: example.com\r\n\r\n"
	chunked := "0\r\n\r\n" + hidden
	for _, tc := range []struct{ name, head, body string }{
		{"TE and CL", "Transfer-Encoding: chunked\r\nContent-Length: " + strconv.Itoa(len(chunked)) + "\r\n", chunked},
		{"CL and TE", "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", chunked},
		{"TE with extra space", "Transfer-Encoding:  chunked\r\nContent-Length: " + strconv.Itoa(len(chunked)) + "\r\n", chunked},
		{"TE with a tab", "Transfer-Encoding:\tchunked\r\nContent-Length: " + strconv.Itoa(len(chunked)) + "\r\n", chunked},
		{"TE behind a bare LF", "X-Padding: a\nTransfer-Encoding: chunked\r\nContent-Length: " + strconv.Itoa(len(chunked)) + "\r\n", chunked},
		{"HTTP/1.0 with TE", "Transfer-Encoding: chunked\r\nContent-Length: 0\r\nConnection: keep-alive\r\n", "\r\n" + hidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mu.Lock()
			seen = nil
			mu.Unlock()
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			proto := "HTTP/1.1"
			if strings.HasPrefix(tc.name, "HTTP/1.0") {
				proto = "HTTP/1.0"
			}
			req := "POST /first " + proto + "\r\nHost: example.com\r\n" + tc.head + "\r\n" + tc.body
			if _, err := io.WriteString(conn, req); err != nil {
				t.Fatal(err)
			}
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			rd := bufio.NewReader(conn)
			var responses int
			for {
				resp, err := http.ReadResponse(rd, nil)
				if err != nil {
					break
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				responses++
			}
			if responses > 1 {
				t.Errorf("%d responses on one connection: a second request was read from the body", responses)
			}
			mu.Lock()
			defer mu.Unlock()
			for _, p := range seen {
				if p == "/smuggled" {
					t.Errorf("the backend received the hidden request (saw %v)", seen)
				}
			}
		})
	}

	// A plain keep-alive request with Content-Length keeps its connection.
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "POST /a HTTP/1.1\r\nHost: example.com\r\nContent-Length: 2\r\n\r\nokGET /b HTTP/1.1\r\nHost: example.com\r\n\r\n")
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	rd := bufio.NewReader(conn)
	for i := range 2 {
		resp, err := http.ReadResponse(rd, nil)
		if err != nil {
			t.Fatalf("keep-alive response %d: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

// TestMalformedBodyIsTheClientsFault: a chunked body with a junk chunk size
// gets 400 and a closed connection, and the backend, which received the
// request head, is not blamed: no passive failure, still in rotation.
func TestMalformedBodyIsTheClientsFault(t *testing.T) {
	forEachServer(t, testMalformedBody)
}

func testMalformedBody(t *testing.T, serveOn func(http.Handler) string) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
	}))
	t.Cleanup(backend.Close)
	m, reg := newTestMetrics(t)
	cfg := simpleConfig(mustURL(t, backend.URL))
	cfg.Metrics = m
	cfg.Pools[0].Passive = PassiveCheck{Fails: 1, Window: time.Minute, Cooldown: time.Minute}
	h := newHandler(t, cfg)
	addr := serveOn(h.HTTPHandler())
	for _, size := range []string{"5x", "fffffffffffffffff", "-5"} {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(conn, "POST /x HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n"+size+"\r\nhello\r\n0\r\n\r\n")
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		conn.Close()
		if err != nil {
			t.Fatalf("chunk size %q: %v", size, err)
		}
		if resp.StatusCode != http.StatusBadRequest || !resp.Close {
			t.Errorf("chunk size %q: %d (close %v), want 400 and the connection closed", size, resp.StatusCode, resp.Close)
		}
	}
	if got := metricValue(t, reg, "edge_backend_failures_total"); got != 0 {
		t.Errorf("the client's malformed bodies counted as %v backend failures", got)
	}
	if st := h.Status(); !st[0].Backends[0].Up {
		t.Errorf("the backend was ejected for the client's malformed bodies: %+v", st)
	}
	if got := serve(h, "GET", "http://example.com/").Code; got != 200 {
		t.Errorf("a good request after them: %d", got)
	}
}

// forEachServer runs a framing test against net/http's server and against
// edge's own HTTP/1.1 server (package h1, the HTTPS listener's), each
// serving the handler on loopback.
func forEachServer(t *testing.T, test func(t *testing.T, serveOn func(http.Handler) string)) {
	t.Run("net/http", func(t *testing.T) {
		test(t, func(h http.Handler) string {
			srv := httptest.NewServer(h)
			t.Cleanup(srv.Close)
			return srv.Listener.Addr().String()
		})
	})
	t.Run("h1", func(t *testing.T) {
		test(t, func(h http.Handler) string {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			srv := &h1.Server{Config: &http.Server{Handler: h}}
			go srv.Serve(ln)
			t.Cleanup(func() { srv.Close() })
			return ln.Addr().String()
		})
	})
}

// TestBackendCutMidBodyReachesTheClient: a backend whose connection ends in
// the middle of a body, chunked or with a Content-Length, must not reach
// the client as a complete answer: the client's read of the body fails.
func TestBackendCutMidBodyReachesTheClient(t *testing.T) {
	forEachServer(t, testBackendCutMidBody)
}

func testBackendCutMidBody(t *testing.T, serveOn func(http.Handler) string) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		if r.URL.Path == "/chunked" {
			io.WriteString(conn, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n10\r\nhal")
		} else {
			io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhello")
		}
	}))
	t.Cleanup(backend.Close)
	h := newHandler(t, simpleConfig(mustURL(t, backend.URL)))
	addr := serveOn(h.HTTPHandler())
	for _, path := range []string{"/chunked", "/length"} {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(conn, "GET "+path+" HTTP/1.1\r\nHost: example.com\r\n\r\n")
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			conn.Close()
			continue // cut before the head: also not a complete answer
		}
		body, err := io.ReadAll(resp.Body)
		conn.Close()
		if err == nil {
			t.Errorf("%s: the client read a complete answer, %d %q", path, resp.StatusCode, body)
		}
	}
}
