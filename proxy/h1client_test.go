package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// rawBackend accepts connections and answers each request it reads with
// the next of answers (raw bytes), cycling; an answer "" closes the
// connection without a word. It counts connections and requests.
type rawBackend struct {
	ln       net.Listener
	conns    atomic.Int32
	requests atomic.Int32
	last     atomic.Pointer[http.Request]
	lastBody atomic.Pointer[string]
}

func newRawBackend(t *testing.T, answers ...string) *rawBackend {
	t.Helper()
	b := &rawBackend{}
	b.ln = serveConns(t, func(c net.Conn) {
		b.conns.Add(1)
		b.serve(c, answers)
	})
	return b
}

func (b *rawBackend) serve(c net.Conn, answers []string) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		body, _ := io.ReadAll(req.Body)
		s := string(body)
		b.lastBody.Store(&s)
		b.last.Store(req)
		n := b.requests.Add(1)
		a := answers[int(n-1)%len(answers)]
		if a == "" {
			return
		}
		if _, err := io.WriteString(c, a); err != nil {
			return
		}
	}
}

func (b *rawBackend) url() string { return "http://" + b.ln.Addr().String() }

// serveConns listens on loopback and hands each accepted connection to
// serve in a goroutine of its own, until the test ends.
func serveConns(t *testing.T, serve func(net.Conn)) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serve(c)
		}
	}()
	return ln
}

// keepAliveBackend serves "ok" to every request on every connection, and
// counts both.
func keepAliveBackend(t *testing.T) (ln net.Listener, accepted, requests *atomic.Int32) {
	accepted, requests = new(atomic.Int32), new(atomic.Int32)
	ln = serveConns(t, func(c net.Conn) {
		defer c.Close()
		accepted.Add(1)
		br := bufio.NewReader(c)
		for {
			if _, err := http.ReadRequest(br); err != nil {
				return
			}
			requests.Add(1)
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	return ln, accepted, requests
}

func newTestH1(t *testing.T, to Timeouts) *h1Transport {
	t.Helper()
	h1 := newH1Transport(newTransport(to, false), to)
	t.Cleanup(h1.CloseIdleConnections)
	return h1
}

func get(t *testing.T, rt http.RoundTripper, method, u string, body io.Reader) (*http.Response, string, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	res, err := rt.RoundTrip(req)
	if err != nil {
		return nil, "", err
	}
	b, err := io.ReadAll(res.Body)
	res.Body.Close()
	return res, string(b), err
}

func TestH1ClientFraming(t *testing.T) {
	for _, tc := range []struct {
		name, answer string
		method       string
		wantBody     string
		wantErr      string
		reused       bool // the next request reuses the connection
		closes       bool // the backend closes the connection after answering
	}{
		{"content-length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", "GET", "hello", "", true, false},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n1\r\n!\r\n0\r\n\r\n", "GET", "hello!", "", true, false},
		{"chunked with trailer", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n2\r\nhi\r\n0\r\nX-Sum: 42\r\n\r\n", "GET", "hi", "", true, false},
		{"close-delimited", "HTTP/1.1 200 OK\r\n\r\nuntil the end", "GET", "until the end", "", false, true},
		{"connection close", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok", "GET", "ok", "", false, false},
		{"HTTP/1.0", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", "GET", "ok", "", false, false},
		{"HTTP/1.0 keep-alive", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok", "GET", "ok", "", true, false},
		{"no content", "HTTP/1.1 204 No Content\r\n\r\n", "GET", "", "", true, false},
		{"HEAD with a length", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", "HEAD", "", "", true, false},
		{"same lengths twice", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok", "GET", "ok", "", true, false},
		{"both framings", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", "GET", "ok", "", false, false},
		{"differing lengths", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok", "GET", "", "invalid Content-Length", false, false},
		{"signed length", "HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok", "GET", "", "invalid Content-Length", false, false},
		{"gzip transfer coding", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", "GET", "", "unsupported Transfer-Encoding", false, false},
		{"chunked over HTTP/1.0", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "GET", "", "unsupported Transfer-Encoding", false, false},
		{"bad status line", "HTTP/1.1 2000 OK\r\n\r\n", "GET", "", "malformed status", false, false},
		{"not HTTP", "SSH-2.0-OpenSSH_9.2\r\n\r\n", "GET", "", "malformed status line", false, false},
		{"bad chunk size", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", "GET", "", "invalid", false, false},
		{"short body", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "GET", "", "unexpected EOF", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newRawBackend(t, tc.answer)
			if tc.closes {
				b = newClosingBackend(t, tc.answer)
			}
			h1 := newTestH1(t, Timeouts{Connect: time.Second, ResponseHeader: 2 * time.Second})
			res, body, err := get(t, h1, tc.method, b.url()+"/x", nil)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one saying %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if body != tc.wantBody {
				t.Fatalf("body %q, want %q", body, tc.wantBody)
			}
			if tc.name == "chunked with trailer" && res.Trailer.Get("X-Sum") != "42" {
				t.Fatalf("trailer %v, want X-Sum: 42", res.Trailer)
			}
			if tc.method == "HEAD" && res.ContentLength != 100 {
				t.Fatalf("HEAD ContentLength %d, want the announced 100", res.ContentLength)
			}
			h1.mu.Lock()
			idle := len(h1.idle[b.ln.Addr().String()])
			h1.mu.Unlock()
			if tc.reused != (idle == 1) {
				t.Fatalf("idle connections after the answer: %d, want reuse %v", idle, tc.reused)
			}
		})
	}
}

// newClosingBackend answers one request with answer and closes the
// connection.
func newClosingBackend(t *testing.T, answer string) *rawBackend {
	t.Helper()
	return &rawBackend{ln: serveConns(t, func(c net.Conn) {
		defer c.Close()
		if _, err := http.ReadRequest(bufio.NewReader(c)); err == nil {
			io.WriteString(c, answer)
		}
	})}
}

func TestH1ClientReusesConnections(t *testing.T) {
	b := newRawBackend(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	h1 := newTestH1(t, Timeouts{Connect: time.Second})
	for range 20 {
		if _, body, err := get(t, h1, "GET", b.url()+"/", nil); err != nil || body != "ok" {
			t.Fatalf("body %q, err %v", body, err)
		}
	}
	if n := b.conns.Load(); n != 1 {
		t.Fatalf("%d connections for 20 sequential requests, want 1", n)
	}
}

// A backend that closes each keep-alive connection once it has answered
// (without saying Connection: close): the next request goes out on a new
// connection, as net/http's Transport does: a GET is sent again after the
// failure, a POST never meets the closed connection (it is peeked at first).
func TestH1ClientResendsOnAStaleConnection(t *testing.T) {
	closed := make(chan struct{}, 16)
	var requests atomic.Int32
	ln := serveConns(t, func(c net.Conn) {
		if req, err := http.ReadRequest(bufio.NewReader(c)); err == nil {
			io.Copy(io.Discard, req.Body)
			requests.Add(1)
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
		c.Close()
		closed <- struct{}{}
	})
	u := "http://" + ln.Addr().String() + "/"
	h1 := newTestH1(t, Timeouts{Connect: time.Second})
	for i := range 6 {
		method, body := "GET", io.Reader(nil)
		if i%2 == 1 {
			method, body = "POST", strings.NewReader("payload")
		}
		if _, got, err := get(t, h1, method, u, body); err != nil || got != "ok" {
			t.Fatalf("request %d (%s): body %q, err %v", i, method, got, err)
		}
		<-closed
	}
	if n := requests.Load(); n != 6 {
		t.Fatalf("the backend answered %d requests, want 6", n)
	}
}

// A backend that reads a POST and closes without an answer: the POST is
// not sent again (it may have taken effect), the error is the client's 502.
func TestH1ClientDoesNotResendAPost(t *testing.T) {
	b := newRawBackend(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", "")
	h1 := newTestH1(t, Timeouts{Connect: time.Second})
	if _, got, err := get(t, h1, "GET", b.url()+"/", nil); err != nil || got != "ok" {
		t.Fatal(got, err)
	}
	_, _, err := get(t, h1, "POST", b.url()+"/", strings.NewReader("payload"))
	if err == nil || StatusForError(err) != http.StatusBadGateway {
		t.Fatalf("err %v, want a 502", err)
	}
	if n := b.requests.Load(); n != 2 {
		t.Fatalf("the backend read %d requests, want 2 (the POST once)", n)
	}
}

func TestH1ClientWritesTheRequest(t *testing.T) {
	b := newRawBackend(t, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	h1 := newTestH1(t, Timeouts{Connect: time.Second})
	req, _ := http.NewRequestWithContext(t.Context(), "POST", b.url()+"/p/a%20th?q=1&r", strings.NewReader("abc"))
	req.Host = "public.example"
	req.Header.Set("User-Agent", "")
	req.Header.Add("X-Multi", "1")
	req.Header.Add("X-Multi", "2")
	res, err := h1.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	got := b.last.Load()
	switch {
	case got.Host != "public.example":
		t.Errorf("Host %q", got.Host)
	case got.RequestURI != "/p/a%20th?q=1&r":
		t.Errorf("request target %q", got.RequestURI)
	case got.ContentLength != 3 || *b.lastBody.Load() != "abc":
		t.Errorf("body %q, length %d", *b.lastBody.Load(), got.ContentLength)
	case len(got.Header["User-Agent"]) != 0:
		t.Errorf("User-Agent %q sent, want none", got.Header["User-Agent"])
	case strings.Join(got.Header["X-Multi"], ",") != "1,2":
		t.Errorf("X-Multi %q", got.Header["X-Multi"])
	}
	// A POST without a body says so.
	req, _ = http.NewRequestWithContext(t.Context(), "POST", b.url()+"/", nil)
	res, err = h1.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if got := b.last.Load(); len(got.Header["Content-Length"]) != 1 || got.Header["Content-Length"][0] != "0" {
		t.Errorf("bodiless POST sent Content-Length %q, want 0", got.Header["Content-Length"])
	}
	// A header value that would split the request is refused.
	req, _ = http.NewRequestWithContext(t.Context(), "GET", b.url()+"/", nil)
	req.Header["X-Evil"] = []string{"a\r\nInjected: 1"}
	if _, err := h1.RoundTrip(req); err == nil || !strings.Contains(err.Error(), "invalid header field value") {
		t.Errorf("err %v, want the value refused", err)
	}
}

// A backend that never answers: the response header timeout is a timeout
// (504), and a canceled request ends at once with context.Canceled (499);
// neither is mistaken for a stale connection.
func TestH1ClientTimeoutAndCancel(t *testing.T) {
	var accepted atomic.Int32
	held := make(chan net.Conn, 4)
	ln := serveConns(t, func(c net.Conn) {
		accepted.Add(1)
		held <- c // kept open, never answered
	})
	t.Cleanup(func() {
		for len(held) > 0 {
			(<-held).Close()
		}
	})
	u := "http://" + ln.Addr().String() + "/"
	h1 := newTestH1(t, Timeouts{Connect: time.Second, ResponseHeader: 100 * time.Millisecond})
	_, _, err := get(t, h1, "GET", u, nil)
	if StatusForError(err) != http.StatusGatewayTimeout {
		t.Fatalf("err %v maps to %d, want 504", err, StatusForError(err))
	}
	h1 = newTestH1(t, Timeouts{Connect: time.Second})
	ctx, cancel := context.WithCancel(t.Context())
	req, _ := http.NewRequestWithContext(ctx, "GET", u, nil)
	time.AfterFunc(50*time.Millisecond, cancel)
	_, err = h1.RoundTrip(req)
	if !errors.Is(err, context.Canceled) || StatusForError(err) != StatusClientClosedRequest {
		t.Fatalf("err %v, want context.Canceled (499)", err)
	}
	if n := accepted.Load(); n != 2 {
		t.Fatalf("%d connections, want 2 (no resend after a timeout or a cancel)", n)
	}
}

func TestH1ClientRefusedIsADialError(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	h1 := newTestH1(t, Timeouts{Connect: time.Second})
	_, _, err := get(t, h1, "GET", "http://"+addr+"/", nil)
	if !isDialError(err) || failureReason(err) != reasonConnect {
		t.Fatalf("err %v: want a dial error (retried elsewhere)", err)
	}
}

// 103 Early Hints reach the trace ReverseProxy relays them with; the final
// answer follows.
func TestH1ClientInformational(t *testing.T) {
	b := newRawBackend(t, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	h1 := newTestH1(t, Timeouts{Connect: time.Second})
	var hints []string
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		hints = append(hints, h.Get("Link"))
		return nil
	}}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(t.Context(), trace), "GET", b.url()+"/", nil)
	res, err := h1.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || string(body) != "ok" || len(hints) != 1 || hints[0] != "</a.css>; rel=preload" {
		t.Fatalf("status %d body %q hints %q", res.StatusCode, body, hints)
	}
}

// Upgrades, Expect and streamed bodies go to net/http's Transport.
func TestH1ClientHandsOverTheUnusual(t *testing.T) {
	h1 := newTestH1(t, Timeouts{})
	u, _ := url.Parse("http://127.0.0.1:1/")
	for _, tc := range []struct {
		name string
		req  func() *http.Request
		want bool
	}{
		{"plain GET", func() *http.Request { return &http.Request{Method: "GET", URL: u, Header: http.Header{}} }, true},
		{"small body", func() *http.Request {
			r, _ := http.NewRequest("POST", u.String(), strings.NewReader("x"))
			return r
		}, true},
		{"upgrade", func() *http.Request {
			return &http.Request{Method: "GET", URL: u, Header: http.Header{"Upgrade": {"websocket"}}}
		}, false},
		{"expect", func() *http.Request {
			return &http.Request{Method: "PUT", URL: u, Header: http.Header{"Expect": {"100-continue"}}}
		}, false},
		{"unknown length", func() *http.Request {
			return &http.Request{Method: "POST", URL: u, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("x")), ContentLength: -1}
		}, false},
		{"large body", func() *http.Request {
			return &http.Request{Method: "POST", URL: u, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("x")), ContentLength: maxBufferedBody + 1}
		}, false},
		{"https", func() *http.Request {
			return &http.Request{Method: "GET", URL: &url.URL{Scheme: "https", Host: "x"}, Header: http.Header{}}
		}, false},
	} {
		if got := h1.handles(tc.req()); got != tc.want {
			t.Errorf("%s: handles = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// Idle connections older than the idle timeout are closed by the sweep.
func TestH1ClientIdleTimeout(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	t.Cleanup(srv.Close)
	h1 := newTestH1(t, Timeouts{Idle: 50 * time.Millisecond})
	if _, body, err := get(t, h1, "GET", srv.URL+"/", nil); err != nil || body != "ok" {
		t.Fatal(body, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		h1.mu.Lock()
		n := len(h1.idle)
		h1.mu.Unlock()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("idle connection not swept")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestH1ClientCancelInterruptsTheBody: a request whose context ends while
// its answer's body is still coming has its blocked read interrupted (by
// the sweeper of h1watch.go), and its connection is not pooled.
func TestH1ClientCancelInterruptsTheBody(t *testing.T) {
	var accepted atomic.Int32
	held := make(chan net.Conn, 4)
	ln := serveConns(t, func(c net.Conn) {
		accepted.Add(1)
		br := bufio.NewReader(c)
		http.ReadRequest(br)
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello")
		held <- c // the other five bytes never come
	})
	t.Cleanup(func() {
		for len(held) > 0 {
			(<-held).Close()
		}
	})
	u := "http://" + ln.Addr().String() + "/"
	h1 := newTestH1(t, Timeouts{Connect: time.Second})
	ctx, cancel := context.WithCancel(t.Context())
	req, _ := http.NewRequestWithContext(ctx, "GET", u, nil)
	res, err := h1.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	b, err := io.ReadAll(res.Body)
	if !errors.Is(err, context.Canceled) || string(b) != "hello" {
		t.Fatalf("body %q, err %v; want hello and context.Canceled", b, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("the read was interrupted after %v", d)
	}
	res.Body.Close()
	h1.mu.Lock()
	idle := len(h1.idle[ln.Addr().String()])
	h1.mu.Unlock()
	if idle != 0 {
		t.Fatalf("%d idle connections, want the interrupted one closed", idle)
	}
}

// TestH1ClientCancelBeforeWriteKeepsTheConnection: a request whose context
// ended before anything was written leaves its pooled connection pooled,
// and the backend sees no request of it.
func TestH1ClientCancelBeforeWriteKeepsTheConnection(t *testing.T) {
	ln, accepted, requests := keepAliveBackend(t)
	u := "http://" + ln.Addr().String() + "/"
	h1 := newTestH1(t, Timeouts{Connect: time.Second})
	if _, body, err := get(t, h1, "GET", u, nil); err != nil || body != "ok" {
		t.Fatal(body, err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", u, nil)
	if res, err := h1.RoundTrip(req); !errors.Is(err, context.Canceled) {
		if res != nil {
			res.Body.Close()
		}
		t.Fatalf("RoundTrip with an ended context: %v, want context.Canceled", err)
	}
	h1.mu.Lock()
	idle := len(h1.idle[ln.Addr().String()])
	h1.mu.Unlock()
	if idle != 1 {
		t.Fatalf("%d idle connections, want the unused one kept", idle)
	}
	if _, body, err := get(t, h1, "GET", u, nil); err != nil || body != "ok" {
		t.Fatal(body, err)
	}
	if a, r := accepted.Load(), requests.Load(); a != 1 || r != 2 {
		t.Fatalf("%d connections, %d requests at the backend; want 1 and 2", a, r)
	}
}

// TestH1ClientCancelBeforeWriteKeepsTheIdleClock: the connection given back
// by a request whose context had ended is as idle as it was: one idle past
// Idle in all is not reused.
func TestH1ClientCancelBeforeWriteKeepsTheIdleClock(t *testing.T) {
	ln, accepted, _ := keepAliveBackend(t)
	u := "http://" + ln.Addr().String() + "/"
	h1 := newTestH1(t, Timeouts{Connect: time.Second, Idle: 300 * time.Millisecond})
	if _, body, err := get(t, h1, "GET", u, nil); err != nil || body != "ok" {
		t.Fatal(body, err)
	}
	time.Sleep(200 * time.Millisecond)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", u, nil)
	if res, err := h1.RoundTrip(req); err == nil {
		res.Body.Close()
		t.Fatal("RoundTrip with an ended context succeeded")
	}
	time.Sleep(200 * time.Millisecond) // 400 ms idle in all
	if _, body, err := get(t, h1, "GET", u, nil); err != nil || body != "ok" {
		t.Fatal(body, err)
	}
	if a := accepted.Load(); a != 2 {
		t.Errorf("%d connections: the one idle for 400 ms (Idle 300 ms) was reused", a)
	}
}

// TestHeaderLateOnce: the sweeper finds a header late only once its time is
// up and only while the exchange still waits for it; an exchange that took
// its header first is left alone, and one found late learns it.
func TestHeaderLateOnce(t *testing.T) {
	pc := &h1Conn{}
	now := time.Now().UnixNano()
	if headerLate(pc, now) {
		t.Fatal("late with no header awaited")
	}
	pc.headerBy.Store(now + int64(time.Second))
	if headerLate(pc, now) {
		t.Fatal("late before its time")
	}
	if !headerLate(pc, now+int64(time.Second)) {
		t.Fatal("not late at its time")
	}
	if !headerLate(pc, now+int64(2*time.Second)) {
		t.Fatal("a late exchange must be interrupted again at every sweep")
	}
	if got := pc.headerBy.Swap(0); got != headerTimedOut {
		t.Fatalf("the exchange reads %d, want headerTimedOut", got)
	}
	pc.headerBy.Store(now + int64(time.Second))
	pc.headerBy.Swap(0) // the header came in time
	if headerLate(pc, now+int64(time.Hour)) {
		t.Fatal("late after the header came")
	}
}

// TestH1ClientHeaderTimeoutAfter1xx: the response header timeout runs to
// the final answer, through informational ones.
func TestH1ClientHeaderTimeoutAfter1xx(t *testing.T) {
	held := make(chan net.Conn, 1)
	ln := serveConns(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		if _, err := http.ReadRequest(br); err == nil {
			io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n")
		}
		held <- c // the final answer never comes
	})
	t.Cleanup(func() {
		if len(held) > 0 {
			(<-held).Close()
		}
	})
	h1 := newTestH1(t, Timeouts{Connect: time.Second, ResponseHeader: 100 * time.Millisecond})
	_, _, err := get(t, h1, "GET", "http://"+ln.Addr().String()+"/", nil)
	if StatusForError(err) != http.StatusGatewayTimeout {
		t.Fatalf("err %v maps to %d, want 504", err, StatusForError(err))
	}
}

// TestSweepReachesEveryShard: exchanges spread over the table's parts are
// each interrupted once their context ends, and only those.
func TestSweepReachesEveryShard(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	var ended, live []*h1Conn
	for i := 0; i < 3*watchShards; i++ {
		a, b := net.Pipe()
		t.Cleanup(func() { a.Close(); b.Close() })
		pc := &h1Conn{Conn: a, shard: &watched[i%watchShards]}
		if i%3 == 0 {
			pc.watch(t.Context())
			live = append(live, pc)
		} else {
			pc.watch(ctx)
			ended = append(ended, pc)
		}
	}
	shards := map[*watchShard]bool{}
	for _, pc := range ended {
		shards[pc.shard] = true
	}
	if len(shards) != watchShards {
		t.Fatalf("the ended exchanges are in %d parts of the table, want all %d", len(shards), watchShards)
	}
	cancel()
	for _, pc := range ended {
		// The interrupt shows as a read that fails at once.
		pc.SetReadDeadline(time.Now().Add(5 * time.Second))
		start := time.Now()
		for {
			_, err := pc.Read(make([]byte, 1))
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break
			}
			if err != nil || time.Since(start) > 5*time.Second {
				t.Fatalf("read: %v after %v, want a deadline in the past", err, time.Since(start))
			}
		}
		if pc.unwatch() {
			t.Error("unwatch of an interrupted exchange reports it whole")
		}
	}
	for _, pc := range live {
		if !pc.unwatch() {
			t.Error("an exchange whose context is live was interrupted")
		}
	}
}
