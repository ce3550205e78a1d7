package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestDirectPathMatchesReverseProxy sends the same raw requests through an
// edge whose plain-http pool takes the direct path and through one that
// sends everything through httputil.ReverseProxy, and compares what the
// backend received and what the client got back, byte for byte but the
// Date: hop-by-hop fields both ways, Connection-named fields, Te: trailers,
// forwarding headers from a trusted and an untrusted peer, a query
// ReverseProxy cleans, HEAD, a body, 1xx, trailers, repeated fields,
// a streamed body, host_header.
func TestDirectPathMatchesReverseProxy(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// What the backend saw, in a header of the answer.
		var seen []string
		for k, vs := range r.Header {
			if k == RequestIDHeader {
				continue // random, one per request
			}
			seen = append(seen, k+"="+strings.Join(vs, "|"))
		}
		slices.Sort(seen)
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Seen", fmt.Sprintf("%s %s host=%s len=%d body=%q %s", r.Method, r.RequestURI, r.Host, r.ContentLength, body, strings.Join(seen, " ")))
		h := w.Header()
		h["Set-Cookie"] = []string{"a=1", "b=2"}
		h.Set("Keep-Alive", "timeout=5")
		h.Set("Connection", "X-Private, close")
		h.Set("X-Private", "secret")
		h.Set("Proxy-Authenticate", "Basic")
		switch r.URL.Path {
		case "/hints":
			h.Set("Link", "</a.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			h.Del("Link")
		case "/trailer":
			h.Set("Trailer", "X-Sum, X-Count")
			w.WriteHeader(http.StatusOK)
			io.WriteString(w, "part one,")
			w.(http.Flusher).Flush()
			io.WriteString(w, "part two")
			h.Set("X-Sum", "42")
			h.Set("X-Count", "2")
			h.Set(http.TrailerPrefix+"X-Late", "late")
			return
		case "/trailer-unsent":
			h.Set("Trailer", "X-Never")
			io.WriteString(w, "no trailer follows")
			return
		case "/sse":
			h.Set("Content-Type", "text/event-stream; charset=utf-8")
			h.Set("Content-Length", "12")
			io.WriteString(w, "data: one\n\n")
			io.WriteString(w, "\n")
			return
		case "/nocontent":
			w.WriteHeader(http.StatusNoContent)
			return
		case "/noconn":
			// Hop-by-hop fields without a Connection field (the direct
			// path's copyEndToEnd).
			h.Del("Connection")
			h.Set("Upgrade", "h2c")
			h.Set("Te", "trailers")
			h.Set("Proxy-Connection", "keep-alive")
			h.Set("Proxy-Authorization", "Basic y")
		}
		io.WriteString(w, "hello from "+r.URL.Path)
	}))
	t.Cleanup(backend.Close)

	serveBoth := func(mod func(*Config)) [2]string {
		var addrs [2]string
		for i, via := range []bool{false, true} {
			cfg := simpleConfig(mustURL(t, backend.URL))
			cfg.viaReverseProxy = via
			if mod != nil {
				mod(&cfg)
			}
			h, err := New(t.Context(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(h.Close)
			if !via && !h.poolList[0].upstreams[0].direct {
				t.Fatal("the plain-http pool does not take the direct path")
			}
			srv := httptest.NewServer(h.HTTPHandler())
			t.Cleanup(srv.Close)
			addrs[i] = srv.Listener.Addr().String()
		}
		return addrs
	}
	requests := []string{
		"GET /plain HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t\r\nAccept: */*\r\nAccept: text/html\r\n\r\n",
		"GET /conn HTTP/1.1\r\nHost: example.com\r\nConnection: keep-alive, X-Drop\r\nX-Drop: 1\r\nKeep-Alive: 300\r\nProxy-Authorization: Basic x\r\nTe: trailers, deflate\r\nUpgrade-Insecure-Requests: 1\r\n\r\n",
		"GET /fwd HTTP/1.1\r\nHost: example.com\r\nX-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil\r\nForwarded: for=1.2.3.4\r\nX-Real-IP: 9.9.9.9\r\nTrue-Client-IP: 8.8.8.8\r\n\r\n",
		"GET /q?a=1;b=2&c=%zz&d=4 HTTP/1.1\r\nHost: example.com\r\n\r\n",
		"GET /q?x=%41&y= HTTP/1.1\r\nHost: example.com\r\n\r\n",
		"GET /p%2Fq/r HTTP/1.1\r\nHost: example.com\r\n\r\n",
		"HEAD /head HTTP/1.1\r\nHost: example.com\r\n\r\n",
		"POST /post HTTP/1.1\r\nHost: example.com\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello",
		"POST /empty HTTP/1.1\r\nHost: example.com\r\n\r\n",
		"PUT /chunked HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"GET /hints HTTP/1.1\r\nHost: example.com\r\n\r\n",
		"GET /trailer HTTP/1.1\r\nHost: example.com\r\nTe: trailers\r\n\r\n",
		"GET /sse HTTP/1.1\r\nHost: example.com\r\n\r\n",
		"GET /nocontent HTTP/1.1\r\nHost: example.com\r\n\r\n",
		"GET http://example.com/absolute?z=1 HTTP/1.1\r\nHost: example.com\r\n\r\n",
		"GET /old HTTP/1.0\r\nHost: example.com\r\n\r\n",
		"GET /q?; HTTP/1.1\r\nHost: example.com\r\n\r\n",
		"GET /q?%zz HTTP/1.1\r\nHost: example.com\r\n\r\n",
		"GET /hints HTTP/1.0\r\nHost: example.com\r\nConnection: keep-alive\r\n\r\n",
		"PUT /hints HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"GET /trailer-unsent HTTP/1.1\r\nHost: example.com\r\nTe: trailers\r\n\r\n",
		"GET /noconn HTTP/1.1\r\nHost: example.com\r\n\r\n",
	}
	configs := []struct {
		name string
		mod  func(*Config)
	}{
		{"untrusted", nil},
		{"trusted", func(c *Config) { c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")} }},
		{"host_header", func(c *Config) { c.Pools[0].HostHeader = "backend.internal" }},
	}
	for _, c := range configs {
		addrs := serveBoth(c.mod)
		for _, req := range requests {
			got := [2]string{exchangeRaw(t, addrs[0], req), exchangeRaw(t, addrs[1], req)}
			if got[0] != got[1] {
				t.Errorf("%s, %q:\ndirect:\n%s\nReverseProxy:\n%s", c.name, strings.SplitN(req, "\r\n", 2)[0], got[0], got[1])
			}
			if !strings.Contains(got[0], "X-Seen") && !strings.HasPrefix(req, "HEAD") && !strings.Contains(req, "/nocontent") {
				t.Errorf("%s, %q: no answer from the backend:\n%s", c.name, strings.SplitN(req, "\r\n", 2)[0], got[0])
			}
		}
	}
}

// exchangeRaw sends one request on a new connection and returns the
// answers read (a 1xx, then the final one with its body and trailer),
// Date lines and the ephemeral port of X-Forwarded-For removed.
func exchangeRaw(t *testing.T, addr, req string) string {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	method := strings.SplitN(req, " ", 2)[0]
	br := bufio.NewReader(conn)
	var out strings.Builder
	for {
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			t.Fatalf("%q: %v", req, err)
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("%q: body: %v", req, err)
		}
		resp.Header.Del("Date")
		fmt.Fprintf(&out, "%s %v len=%d te=%v close=%v\n", resp.Status, resp.Proto, resp.ContentLength, resp.TransferEncoding, resp.Close)
		for _, k := range sortedKeys(resp.Header) {
			fmt.Fprintf(&out, "%s: %q\n", k, resp.Header[k])
		}
		fmt.Fprintf(&out, "body %q\n", body)
		for _, k := range sortedKeys(resp.Trailer) {
			fmt.Fprintf(&out, "trailer %s: %q\n", k, resp.Trailer[k])
		}
		if resp.StatusCode >= 200 {
			return out.String()
		}
	}
}

func sortedKeys(h http.Header) []string {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// TestInformationalKeepsEdgesFields: a backend's 1xx clears the response
// header (ReverseProxy's Got1xxResponse and the direct path alike), and
// the final answer still carries what edge had put there: here the
// Connection: close that ends a connection after a request of ambiguous
// framing (closeAfterAmbiguousFraming). An HTTP/1.0 client gets no 1xx
// (RFC 9110, section 15.2).
func TestInformationalKeepsEdgesFields(t *testing.T) {
	forEachServer(t, func(t *testing.T, serveOn func(http.Handler) string) {
		backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			if r.URL.Path == "/hints" {
				w.Header().Set("Link", "</a.css>; rel=preload")
				w.WriteHeader(http.StatusEarlyHints)
				w.Header().Del("Link")
			}
			io.WriteString(w, "ok")
		}))
		t.Cleanup(backend.Close)
		for _, via := range []bool{false, true} {
			cfg := simpleConfig(mustURL(t, backend.URL))
			cfg.viaReverseProxy = via
			h := newHandler(t, cfg)
			addr := serveOn(h.HTTPHandler())
			for _, tc := range []struct{ req, want1xx string }{
				{"POST /plain HTTP/1.0\r\nHost: example.com\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nhi", ""},
				{"POST /hints HTTP/1.0\r\nHost: example.com\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nhi", ""},
				{"POST /hints HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n", "103 Early Hints"},
			} {
				line := strings.SplitN(tc.req, "\r\n", 2)[0]
				out := exchangeRaw(t, addr, tc.req)
				final := out[strings.LastIndex(out, "200 OK"):]
				if !strings.Contains(final, "close=true") {
					t.Errorf("via ReverseProxy %v, %s: the connection is not closed:\n%s", via, line, out)
				}
				if got := strings.Contains(out, "103 Early Hints"); got != (tc.want1xx != "") {
					t.Errorf("via ReverseProxy %v, %s: 103 sent %v, want %v:\n%s", via, line, got, tc.want1xx != "", out)
				}
			}
		}
	})
}

// TestBodyTimeoutAfterInformationalClosesOnce: a chunked request body
// (edge answers it with Connection: close) that the client stalls past
// read_timeout while the backend has already sent a 1xx: the 408 says
// Connection: close once, edge's kept field and finish's not both.
func TestBodyTimeoutAfterInformationalClosesOnce(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</a.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "done")
	}))
	t.Cleanup(backend.Close)
	conn := dialReadTimeout(t, newHandler(t, simpleConfig(mustURL(t, backend.URL))).HTTPHandler(), 300*time.Millisecond)
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(conn, "POST / HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab")
	raw, err := io.ReadAll(conn)
	if err != nil {
		t.Fatal(err)
	}
	out := string(raw)
	i := strings.Index(out, "HTTP/1.1 408 ")
	if i < 0 {
		t.Fatalf("no 408:\n%s", out)
	}
	head, _, _ := strings.Cut(out[i:], "\r\n\r\n")
	if n := strings.Count(head, "\r\nConnection:"); n != 1 || !strings.Contains(head, "\r\nConnection: close") {
		t.Errorf("the 408 has %d Connection fields, want one Connection: close:\n%s", n, out)
	}
}

// TestCopyEndToEnd: for an answer without a Connection field, the one pass
// hands dst what removeHopByHop then copyHeaderValues would.
func TestCopyEndToEnd(t *testing.T) {
	src := func() http.Header {
		return http.Header{
			"Content-Type": {"text/plain"}, "Set-Cookie": {"a=1", "b=2"}, "X-Empty": {},
			"Keep-Alive": {"timeout=5"}, "Proxy-Connection": {"keep-alive"}, "Proxy-Authenticate": {"Basic"},
			"Proxy-Authorization": {"Basic x"}, "Te": {"trailers"}, "Trailer": {"X-Sum"},
			"Transfer-Encoding": {"chunked"}, "Upgrade": {"h2c"}, "Vary": {"Accept"},
		}
	}
	dst := func() http.Header { return http.Header{"Vary": {"Origin"}, "Strict-Transport-Security": {"max-age=1"}} }
	want, got := dst(), dst()
	s := src()
	removeHopByHop(s)
	copyHeaderValues(want, s)
	copyEndToEnd(got, src())
	if fmt.Sprint(sortedHeader(got)) != fmt.Sprint(sortedHeader(want)) {
		t.Errorf("copyEndToEnd gave\n%v\nremoveHopByHop and copyHeaderValues\n%v", sortedHeader(got), sortedHeader(want))
	}
	if len(got["Vary"]) != 2 {
		t.Errorf("Vary = %q, want dst's value and src's", got["Vary"])
	}
}

// sortedHeader lists h's fields in order of name.
func sortedHeader(h http.Header) []string {
	var l []string
	for _, k := range sortedKeys(h) {
		l = append(l, k+"="+strings.Join(h[k], "|"))
	}
	return l
}
