package h1

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// startServer serves h on loopback through Server, over TLS when tlsOn
// (with net/http's test certificate), and returns its address and a
// client that talks to it.
func startServer(t *testing.T, h http.Handler, tlsOn bool, tune ...func(*http.Server)) (string, *http.Client) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, client := serveOn(t, ln, h, tlsOn, tune...)
	return ln.Addr().String(), client
}

// serveOn serves h on ln through Server, over TLS when tlsOn, shuts it
// down when the test ends, and returns it with a client that talks to it.
func serveOn(t *testing.T, ln net.Listener, h http.Handler, tlsOn bool, tune ...func(*http.Server)) (*Server, *http.Client) {
	t.Helper()
	cfg := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 30 * time.Second}
	tr := &http.Transport{}
	if tlsOn {
		ts := httptest.NewUnstartedServer(nil) // for its certificate
		ts.StartTLS()
		cfg.TLSConfig = &tls.Config{Certificates: ts.TLS.Certificates, NextProtos: []string{"h2", "http/1.1"}}
		tr = ts.Client().Transport.(*http.Transport).Clone()
		ts.Close()
	}
	for _, f := range tune {
		f(cfg)
	}
	s := &Server{Config: cfg}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; err != http.ErrServerClosed {
			t.Errorf("Serve returned %v", err)
		}
		tr.CloseIdleConnections()
	})
	return s, &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func scheme(tlsOn bool) string {
	if tlsOn {
		return "https"
	}
	return "http"
}

// TestThroughReverseProxy: requests of every framing reach a backend
// through httputil.ReverseProxy served by Server, and come back intact,
// over one kept connection.
func TestThroughReverseProxy(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Method", r.Method)
		w.Header().Set("X-Body", string(body))
		w.Header().Set("X-TE", strings.Join(r.TransferEncoding, ","))
		switch r.URL.Path {
		case "/stream":
			for i := range 3 {
				fmt.Fprintf(w, "part %d\n", i)
				w.(http.Flusher).Flush()
			}
			return
		case "/big":
			w.Write([]byte(strings.Repeat("x", 100000)))
			return
		case "/none":
			w.WriteHeader(http.StatusNoContent)
			return
		}
		fmt.Fprintf(w, "hello %s", r.URL.RequestURI())
	}))
	t.Cleanup(backend.Close)
	u, _ := url.Parse(backend.URL)
	rp := httputil.NewSingleHostReverseProxy(u)
	for _, tlsOn := range []bool{false, true} {
		t.Run(scheme(tlsOn), func(t *testing.T) {
			var mu sync.Mutex
			conns := map[string]bool{}
			addr, client := startServer(t, rp, tlsOn, func(s *http.Server) {
				s.ConnState = func(c net.Conn, st http.ConnState) {
					mu.Lock()
					conns[c.RemoteAddr().String()] = true
					mu.Unlock()
				}
			})
			if tlsOn {
				client.Transport.(*http.Transport).ForceAttemptHTTP2 = false
				client.Transport.(*http.Transport).TLSClientConfig.NextProtos = []string{"http/1.1"}
			}
			base := scheme(tlsOn) + "://" + addr
			for _, tc := range []struct {
				method, path, body string
				chunked            bool
				want               string
			}{
				{"GET", "/a?b=c", "", false, "hello /a?b=c"},
				{"POST", "/p", "form=1", false, "hello /p"},
				{"POST", "/c", "chunky body", true, "hello /c"},
				{"GET", "/stream", "", false, "part 0\npart 1\npart 2\n"},
				{"GET", "/big", "", false, strings.Repeat("x", 100000)},
				{"HEAD", "/a", "", false, ""},
				{"GET", "/none", "", false, ""},
			} {
				var rd io.Reader
				if tc.body != "" {
					rd = strings.NewReader(tc.body)
					if tc.chunked {
						rd = io.MultiReader(rd) // unknown length: chunked
					}
				}
				req, _ := http.NewRequest(tc.method, base+tc.path, rd)
				resp, err := client.Do(req)
				if err != nil {
					t.Fatalf("%s %s: %v", tc.method, tc.path, err)
				}
				got, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					t.Fatalf("%s %s: reading: %v", tc.method, tc.path, err)
				}
				if string(got) != tc.want {
					t.Errorf("%s %s: body %.40q, want %.40q", tc.method, tc.path, got, tc.want)
				}
				if resp.Header.Get("X-Body") != tc.body {
					t.Errorf("%s %s: backend got body %q", tc.method, tc.path, resp.Header.Get("X-Body"))
				}
				if tc.chunked && resp.Header.Get("X-TE") != "chunked" {
					t.Errorf("chunked request arrived with TE %q", resp.Header.Get("X-TE"))
				}
				if resp.Header.Get("Date") == "" {
					t.Errorf("%s %s: no Date", tc.method, tc.path)
				}
				if resp.ProtoMajor != 1 {
					t.Errorf("proto %s", resp.Proto)
				}
			}
			mu.Lock()
			n := len(conns)
			mu.Unlock()
			if n != 1 {
				t.Errorf("%d connections for sequential requests, want 1 kept", n)
			}
		})
	}
}

// TestHTTP2HandedOver: a client that negotiates h2 is served by net/http's
// HTTP/2 server with the same handler.
func TestHTTP2HandedOver(t *testing.T) {
	addr, client := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, r.Proto)
	}), true)
	client.Transport.(*http.Transport).ForceAttemptHTTP2 = true
	for range 3 {
		resp, err := client.Get("https://" + addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "HTTP/2.0" {
			t.Errorf("served as %q, want HTTP/2.0", b)
		}
	}
}

// rawExchange writes req on a new connection and returns everything the
// server answered until it closed or went quiet.
func rawExchange(t *testing.T, addr, req string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	b, _ := io.ReadAll(c)
	return string(b)
}

// TestRawFraming: pipelining, keep-alive rules, 100-continue, refusals.
func TestRawFraming(t *testing.T) {
	addr, _ := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %q", r.Method, r.URL.Path, b)
	}), false)
	for _, tc := range []struct {
		name, req string
		want      []string // substrings, in order
		not       []string
	}{
		{"pipelined", "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
			[]string{"GET /1", "Connection: close", "GET /2"}, nil},
		{"HTTP/1.0 closes", "GET /x HTTP/1.0\r\n\r\nGET /y HTTP/1.0\r\n\r\n", []string{"HTTP/1.1 200", "GET /x"}, []string{"GET /y"}},
		{"HTTP/1.0 keep-alive", "GET /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /y HTTP/1.0\r\n\r\n",
			[]string{"Connection: keep-alive", "GET /x", "GET /y"}, nil},
		{"content-length body", "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET /n HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
			[]string{`POST /p "hello"`, `GET /n`}, nil},
		{"chunked body", "POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nX-T: 1\r\n\r\nGET /n HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
			[]string{`POST /p "hello"`, `GET /n`}, nil},
		{"expect continue", "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nExpect: 100-continue\r\nConnection: close\r\n\r\nok",
			[]string{"HTTP/1.1 100 Continue", "HTTP/1.1 200", `POST /p "ok"`}, nil},
		{"unknown expectation", "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nExpect: magic\r\n\r\nok", []string{"HTTP/1.1 417"}, []string{"200"}},
		{"CL and TE", "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /s HTTP/1.1\r\nHost: a\r\n\r\n",
			[]string{"HTTP/1.1 400", "Connection: close"}, []string{"GET /s", "200"}},
		{"bad chunk", "POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5x\r\nhello\r\n0\r\n\r\n", []string{"HTTP/1.1 200", "Connection: close"}, nil},
		{"bare LF", "GET / HTTP/1.1\nHost: a\n\n", []string{"HTTP/1.1 400"}, nil},
		{"no host", "GET / HTTP/1.1\r\n\r\n", []string{"HTTP/1.1 400"}, nil},
		{"HTTP/2.0 line", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", []string{"HTTP/1.1 505"}, nil},
		{"too long", "GET /" + strings.Repeat("a", 9000) + " HTTP/1.1\r\nHost: a\r\n\r\n", []string{"HTTP/1.1 414"}, nil},
		{"header too large", "GET / HTTP/1.1\r\nHost: a\r\nX: " + strings.Repeat("a", 1<<20+5000) + "\r\n\r\n", []string{"HTTP/1.1 431"}, nil},
		{"HEAD", "HEAD /h HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", []string{"HTTP/1.1 200"}, []string{`HEAD /h`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := rawExchange(t, addr, tc.req)
			rest := got
			for _, w := range tc.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("answer lacks %q (in order):\n%s", w, got)
				}
				rest = rest[i+len(w):]
			}
			for _, n := range tc.not {
				if strings.Contains(got, n) {
					t.Errorf("answer has %q:\n%s", n, got)
				}
			}
		})
	}
}

// TestUpgrade: a protocol switch through ReverseProxy (WebSocket-like)
// hijacks the connection and carries bytes both ways.
func TestUpgrade(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		brw.Flush()
		line, _ := brw.ReadString('\n')
		brw.WriteString("echo: " + line)
		brw.Flush()
	}))
	t.Cleanup(backend.Close)
	u, _ := url.Parse(backend.URL)
	addr, _ := startServer(t, httputil.NewSingleHostReverseProxy(u), false)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	io.WriteString(c, "ping\n")
	line, err := br.ReadString('\n')
	if err != nil || line != "echo: ping\n" {
		t.Errorf("after the switch: %q, %v", line, err)
	}
}

// TestClientGoneCancels: a handler still waiting when the client closes
// sees its request's context cancelled.
func TestClientGoneCancels(t *testing.T) {
	cancelled := make(chan struct{})
	addr, _ := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
			close(cancelled)
		case <-time.After(5 * time.Second):
		}
	}), false)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "GET /wait HTTP/1.1\r\nHost: a\r\n\r\n")
	time.Sleep(2 * bgReadAfter)
	c.Close()
	select {
	case <-cancelled:
	case <-time.After(3 * time.Second):
		t.Fatal("the request's context was not cancelled when the client closed")
	}
}

// TestShutdownWaitsForActive: Shutdown lets a request in flight finish
// (answered with Connection: close) and closes idle connections.
func TestShutdownWaitsForActive(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Config: &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(started)
			<-release
		}
		io.WriteString(w, "done")
	})}}
	go s.Serve(ln)
	idle, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	io.WriteString(idle, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	br := bufio.NewReader(idle)
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("idle conn's request: %v", err)
	} else {
		io.Copy(io.Discard, resp.Body)
	}
	busy, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	io.WriteString(busy, "GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
	<-started
	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(context.Background()) }()
	time.Sleep(100 * time.Millisecond)
	_ = idle.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("idle connection after Shutdown: %v, want EOF", err)
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v with a request in flight", err)
	default:
	}
	close(release)
	_ = busy.SetReadDeadline(time.Now().Add(2 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(busy), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !resp.Close {
		t.Error("the last answer during Shutdown did not close the connection")
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

// TestSlowUploadDoesNotStallAccept: a handler blocked reading a body that
// trickles in, past the disconnect watch's delay, holds up no other
// connection (the watch's sweep once waited on that body's lock while
// holding the server's).
func TestSlowUploadDoesNotStallAccept(t *testing.T) {
	addr, client := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%d", len(b))
	}), false)
	slow, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	io.WriteString(slow, "POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nx")
	time.Sleep(4 * bgReadAfter) // several sweeps while the handler waits for the body
	client.Timeout = 2 * time.Second
	for i := range 3 {
		resp, err := client.Get("http://" + addr + "/other")
		if err != nil {
			t.Fatalf("request %d beside a slow upload: %v", i, err)
		}
		resp.Body.Close()
	}
	io.WriteString(slow, "123456789")
	_ = slow.SetReadDeadline(time.Now().Add(2 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(slow), nil)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(resp.Body); string(b) != "10" {
		t.Errorf("slow upload answered %q", b)
	}
}

// TestContinueFromAnotherGoroutine: the body of a request that expects
// 100 Continue is read on another goroutine (as net/http's Transport
// does) while the handler answers; under -race this checks that the
// 100 and the response do not share the writer unguarded.
func TestContinueFromAnotherGoroutine(t *testing.T) {
	addr, _ := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		done := make(chan struct{})
		go func() {
			defer close(done)
			io.Copy(io.Discard, r.Body)
		}()
		w.Header().Set("X-Early", "1")
		io.WriteString(w, "early answer")
		w.(http.Flusher).Flush()
		<-done
	}), false)
	for range 20 {
		got := rawExchange(t, addr, "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nExpect: 100-continue\r\nConnection: close\r\n\r\nok")
		if !strings.Contains(got, "early answer") {
			t.Fatalf("answer:\n%s", got)
		}
		if i := strings.Index(got, "100 Continue"); i > 0 && i > strings.Index(got, "HTTP/1.1 200") {
			t.Fatalf("100 Continue after the response:\n%s", got)
		}
	}
}

// TestContextValues: a request's context carries the values net/http's
// server puts there; httputil.ReverseProxy looks for ServerContextKey
// before it aborts a response whose body copy failed.
func TestContextValues(t *testing.T) {
	for _, tlsOn := range []bool{false, true} {
		var srv any
		var local net.Addr
		addr, client := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			srv = r.Context().Value(http.ServerContextKey)
			local, _ = r.Context().Value(http.LocalAddrContextKey).(net.Addr)
		}), tlsOn)
		resp, err := client.Get(scheme(tlsOn) + "://" + addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if _, ok := srv.(*http.Server); !ok {
			t.Errorf("tls %v: ServerContextKey holds %T, want *http.Server", tlsOn, srv)
		}
		if local == nil || local.String() != addr {
			t.Errorf("tls %v: LocalAddrContextKey holds %v, want %s", tlsOn, local, addr)
		}
	}
}
