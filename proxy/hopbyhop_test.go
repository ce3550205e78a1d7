package proxy

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// hopHeadersIn are hop-by-hop headers (RFC 9110, section 7.6.1) a client
// or backend may send, with X-Named, which their Connection header names.
var hopHeadersIn = []string{"Keep-Alive", "Proxy-Connection", "Proxy-Authorization", "Proxy-Authenticate", "Trailer", "Upgrade", "X-Named"}

// rawExchange sends a raw HTTP/1.1 request to addr and reads the response.
func rawExchange(t *testing.T, addr, req string) (*http.Response, *bufio.Reader, net.Conn) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	return res, br, c
}

// TestHopByHopHeaders: neither the backend nor the client sees a
// hop-by-hop header of the other side, nor a header the other side's
// Connection names; end-to-end headers, TE: trailers and real trailers pass.
func TestHopByHopHeaders(t *testing.T) {
	var seen http.Header
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = r.Header.Clone()
		h := w.Header()
		h.Set("Connection", "X-Named")
		h.Set("X-Named", "backend secret")
		h.Set("Keep-Alive", "timeout=9")
		h.Set("Proxy-Connection", "keep-alive")
		h.Set("Proxy-Authenticate", "Basic realm=x")
		h.Set("Upgrade", "h2c")
		h.Set("X-Kept", "1")
		h.Set("Trailer", "X-Trl")
		io.WriteString(w, "body")
		h.Set("X-Trl", "tv")
	}))
	t.Cleanup(backend.Close)
	h := newHandler(t, simpleConfig(mustURL(t, backend.URL)))
	edge := httptest.NewServer(h.HTTPHandler())
	t.Cleanup(edge.Close)

	res, br, _ := rawExchange(t, edge.Listener.Addr().String(), "GET / HTTP/1.1\r\n"+
		"Host: example.com\r\n"+
		"Connection: keep-alive, X-Named\r\n"+
		"X-Named: client secret\r\n"+
		"Keep-Alive: timeout=5\r\n"+
		"Proxy-Connection: keep-alive\r\n"+
		"Proxy-Authorization: Basic dXNlcjpwYXNz\r\n"+
		"TE: trailers, deflate\r\n"+
		"Trailer: X-Client-Trl\r\n"+
		"Upgrade: websocket\r\n"+ // without Connection: upgrade, not an upgrade
		"X-End-To-End: 1\r\n\r\n")
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	_ = br
	if res.StatusCode != 200 || string(body) != "body" {
		t.Fatalf("response %d %q", res.StatusCode, body)
	}

	t.Run("request", func(t *testing.T) {
		for _, k := range append([]string{"Connection"}, hopHeadersIn...) {
			if v, ok := seen[k]; ok {
				t.Errorf("backend got %s: %q", k, v)
			}
		}
		if got := seen.Get("Te"); got != "trailers" {
			t.Errorf("backend got TE %q, want trailers", got)
		}
		if got := seen.Get("X-End-To-End"); got != "1" {
			t.Errorf("end-to-end header lost: %q", got)
		}
	})
	t.Run("response", func(t *testing.T) {
		for _, k := range []string{"Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Upgrade", "X-Named"} {
			if v, ok := res.Header[k]; ok {
				t.Errorf("client got %s: %q", k, v)
			}
		}
		if v := res.Header.Values("Connection"); len(v) > 0 {
			t.Errorf("client got Connection: %q", v)
		}
		if got := res.Header.Get("X-Kept"); got != "1" {
			t.Errorf("end-to-end header lost: %q", got)
		}
		if got := res.Trailer.Get("X-Trl"); got != "tv" {
			t.Errorf("trailer X-Trl = %q, want tv", got)
		}
	})
}

// TestHopByHopUpgrade: an upgrade keeps Connection: Upgrade and Upgrade both
// ways, and strips every other hop-by-hop header and the headers Connection
// names, in the request and in the 101.
func TestHopByHopUpgrade(t *testing.T) {
	seen := make(chan http.Header, 1)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Clone()
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\n" +
			"Connection: Upgrade, X-Named\r\n" +
			"Upgrade: test-proto\r\n" +
			"X-Named: backend secret\r\n" +
			"Keep-Alive: timeout=9\r\n" +
			"Proxy-Connection: keep-alive\r\n" +
			"Proxy-Authenticate: Basic realm=x\r\n" +
			"X-Kept: 1\r\n\r\n")
		brw.Flush()
		line, _ := brw.ReadString('\n')
		brw.WriteString("echo " + line)
		brw.Flush()
	}))
	t.Cleanup(backend.Close)
	h := newHandler(t, simpleConfig(mustURL(t, backend.URL)))
	edge := httptest.NewServer(h.HTTPHandler())
	t.Cleanup(edge.Close)

	res, br, c := rawExchange(t, edge.Listener.Addr().String(), "GET / HTTP/1.1\r\n"+
		"Host: example.com\r\n"+
		"Connection: Upgrade, X-Named\r\n"+
		"Upgrade: test-proto\r\n"+
		"X-Named: client secret\r\n"+
		"Keep-Alive: timeout=5\r\n"+
		"Proxy-Connection: keep-alive\r\n"+
		"Proxy-Authorization: Basic dXNlcjpwYXNz\r\n"+
		"X-End-To-End: 1\r\n\r\n")
	if res.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d", res.StatusCode)
	}
	got := <-seen
	t.Run("request", func(t *testing.T) {
		for _, k := range []string{"X-Named", "Keep-Alive", "Proxy-Connection", "Proxy-Authorization"} {
			if v, ok := got[k]; ok {
				t.Errorf("backend got %s: %q", k, v)
			}
		}
		if v := got.Get("Connection"); !strings.EqualFold(v, "upgrade") {
			t.Errorf("backend got Connection %q, want Upgrade", v)
		}
		if v := got.Get("Upgrade"); v != "test-proto" {
			t.Errorf("backend got Upgrade %q", v)
		}
		if v := got.Get("X-End-To-End"); v != "1" {
			t.Errorf("end-to-end header lost: %q", v)
		}
	})
	t.Run("response", func(t *testing.T) {
		for _, k := range []string{"X-Named", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate"} {
			if v, ok := res.Header[k]; ok {
				t.Errorf("client got %s: %q", k, v)
			}
		}
		if v := res.Header.Values("Connection"); len(v) != 1 || !strings.EqualFold(v[0], "upgrade") {
			b, _ := json.Marshal(res.Header)
			t.Errorf("client got Connection %q, want Upgrade (%s)", v, b)
		}
		if v := res.Header.Get("Upgrade"); v != "test-proto" {
			t.Errorf("client got Upgrade %q", v)
		}
		if v := res.Header.Get("X-Kept"); v != "1" {
			t.Errorf("end-to-end header lost: %q", v)
		}
	})
	io.WriteString(c, "ping\n")
	line, err := br.ReadString('\n')
	if err != nil || line != "echo ping\n" {
		t.Errorf("tunnel: %q, %v", line, err)
	}
}
