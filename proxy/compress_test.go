package proxy

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/net/websocket"
)

// compressBody is a text long enough to be compressed under the 1 KiB
// minimum.
var compressBody = strings.Repeat("edge compresses the text its backends did not. ", 100)

// compressBackend answers /x?type=T&len=1&ce=E&cc=C&code=N&etag=E&size=N&flush=1
// with compressBody (its first size bytes), header fields as asked.
func compressBackend(t *testing.T) *httptest.Server {
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		h := w.Header()
		body := compressBody
		if n, err := strconv.Atoi(q.Get("size")); err == nil {
			body = body[:n]
		}
		h.Set("Content-Type", q.Get("type"))
		if q.Get("len") != "" {
			h.Set("Content-Length", strconv.Itoa(len(body)))
		}
		if v := q.Get("ce"); v != "" {
			h.Set("Content-Encoding", v)
		}
		if v := q.Get("cc"); v != "" {
			h.Set("Cache-Control", v)
		}
		if v := q.Get("etag"); v != "" {
			h.Set("Etag", v)
		}
		h.Set("Accept-Ranges", "bytes")
		code := 200
		if c, err := strconv.Atoi(q.Get("code")); err == nil {
			code = c
		}
		w.WriteHeader(code)
		if q.Get("flush") != "" {
			w.(http.Flusher).Flush() // chunked: no Content-Length
		}
		if code != 204 && code != 304 {
			io.WriteString(w, body)
		}
	}))
	t.Cleanup(b.Close)
	return b
}

// decode undoes the Content-Encoding of a response body.
func decode(t *testing.T, ce string, body []byte) string {
	t.Helper()
	switch ce {
	case "":
		return string(body)
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		out, err := io.ReadAll(zr)
		if err != nil {
			t.Fatalf("gunzip: %v", err)
		}
		return string(out)
	case "zstd":
		zr, err := zstd.NewReader(bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer zr.Close()
		out, err := io.ReadAll(zr)
		if err != nil {
			t.Fatalf("unzstd: %v", err)
		}
		return string(out)
	}
	t.Fatalf("unexpected Content-Encoding %q", ce)
	return ""
}

func compressConfig(t *testing.T, c *Compression, backend string) Config {
	cfg := simpleConfig(mustURL(t, backend))
	cfg.Sites[0].Compress = c
	return cfg
}

func TestCompress(t *testing.T) {
	b := compressBackend(t)
	h := newHandler(t, compressConfig(t, &Compression{MinSize: 1024}, b.URL))
	tests := []struct {
		name, method, query, accept string
		wantCE                      string // "" for none
		wantBody                    string // after decoding; "" for compressBody
	}{
		{"gzip", "GET", "type=text/html%3B+charset=utf-8&len=1", "gzip", "gzip", ""},
		{"zstd", "GET", "type=application/json&len=1", "zstd", "zstd", ""},
		{"equal weights prefer zstd", "GET", "type=text/css&len=1", "gzip, deflate, br, zstd", "zstd", ""},
		{"gzip weighed higher", "GET", "type=text/css&len=1", "zstd;q=0.5, gzip", "gzip", ""},
		{"zstd refused", "GET", "type=text/css&len=1", "zstd;q=0, gzip;q=0.1", "gzip", ""},
		{"any coding", "GET", "type=image/svg%2Bxml&len=1", "*", "zstd", ""},
		{"unknown length", "GET", "type=text/plain", "gzip", "gzip", ""},
		{"type with upper case", "GET", "type=Text/HTML&len=1", "gzip", "gzip", ""},
		{"no Accept-Encoding", "GET", "type=text/html&len=1", "", "", ""},
		{"identity only", "GET", "type=text/html&len=1", "identity", "", ""},
		{"all refused", "GET", "type=text/html&len=1", "gzip;q=0, *;q=0", "", ""},
		{"already compressed", "GET", "type=text/html&len=1&ce=br", "gzip, br", "br", ""},
		{"no-transform", "GET", "type=text/html&len=1&cc=public,+no-transform", "gzip", "", ""},
		{"small body", "GET", "type=text/html&len=1&size=1000", "gzip", "", compressBody[:1000]},
		{"small body of unknown length", "GET", "type=text/html&size=1000&flush=1", "gzip", "gzip", compressBody[:1000]},
		{"not a text type", "GET", "type=image/png&len=1", "gzip", "", ""},
		{"no type", "GET", "len=1", "gzip", "", ""},
		{"partial content", "GET", "type=text/html&len=1&code=206", "gzip", "", ""},
		{"an error page of the backend", "GET", "type=text/html&len=1&code=404", "gzip", "gzip", ""},
		{"not modified", "GET", "type=text/html&code=304", "gzip", "", "-"},
		{"no content", "GET", "type=text/html&code=204", "gzip", "", "-"},
		{"HEAD", "HEAD", "type=text/html&len=1", "gzip", "", "-"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := serve(h, tc.method, "https://example.com/x?"+tc.query, func(r *http.Request) {
				if tc.accept != "" {
					r.Header.Set("Accept-Encoding", tc.accept)
				}
			})
			res := w.Result()
			ce := res.Header.Get("Content-Encoding")
			if ce != tc.wantCE {
				t.Fatalf("Content-Encoding %q, want %q", ce, tc.wantCE)
			}
			want := tc.wantBody
			if want == "" {
				want = compressBody
			}
			if want == "-" {
				want = ""
			}
			if ce == "br" { // passed through untouched
				if w.Body.String() != want {
					t.Errorf("a body the backend encoded was changed")
				}
				return
			}
			if got := decode(t, ce, w.Body.Bytes()); got != want {
				t.Errorf("body (%d bytes decoded) differs from the backend's (%d)", len(got), len(want))
			}
			compressed := ce != ""
			if got := strings.Contains(res.Header.Get("Vary"), "Accept-Encoding"); got != compressed {
				t.Errorf("Vary %q with Content-Encoding %q", res.Header.Get("Vary"), ce)
			}
			if compressed {
				if w.Body.Len() >= len(want) && len(want) > 100 {
					t.Errorf("%s body of %d bytes for %d bytes of text", ce, w.Body.Len(), len(want))
				}
				if res.Header.Get("Content-Length") != "" || res.Header.Get("Accept-Ranges") != "" {
					t.Errorf("compressed, yet Content-Length %q, Accept-Ranges %q", res.Header.Get("Content-Length"), res.Header.Get("Accept-Ranges"))
				}
			} else if strings.Contains(tc.query, "len=1") && tc.method == "GET" && res.StatusCode == 200 &&
				res.Header.Get("Content-Length") != strconv.Itoa(len(want)) {
				t.Errorf("untouched, yet Content-Length %q", res.Header.Get("Content-Length"))
			}
		})
	}
}

func TestCompressETagAndVary(t *testing.T) {
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Header().Set("Etag", r.URL.Query().Get("etag"))
		w.Header().Set("Vary", r.URL.Query().Get("vary"))
		io.WriteString(w, compressBody)
	}))
	t.Cleanup(b.Close)
	h := newHandler(t, compressConfig(t, &Compression{}, b.URL))
	for _, tc := range []struct{ etag, vary, wantETag, wantVary string }{
		{`"abc"`, "Cookie", `W/"abc"`, "Cookie, Accept-Encoding"},
		{`W/"abc"`, "accept-encoding", `W/"abc"`, "accept-encoding"},
		{`"x"`, "*", `W/"x"`, "*"},
	} {
		w := serve(h, "GET", "https://example.com/?etag="+tc.etag+"&vary="+tc.vary, func(r *http.Request) {
			r.Header.Set("Accept-Encoding", "gzip")
		})
		if got := w.Header().Get("Etag"); got != tc.wantETag {
			t.Errorf("ETag %s: %s, want %s", tc.etag, got, tc.wantETag)
		}
		if got := strings.Join(w.Header().Values("Vary"), ", "); got != tc.wantVary {
			t.Errorf("Vary %s: %q, want %q", tc.vary, got, tc.wantVary)
		}
	}
}

func TestNegotiate(t *testing.T) {
	both, err := Compression{}.resolve()
	if err != nil {
		t.Fatal(err)
	}
	gzipFirst, err := Compression{Algorithms: []string{"gzip", "zstd"}}.resolve()
	if err != nil {
		t.Fatal(err)
	}
	gzipOnly, err := Compression{Algorithms: []string{"gzip"}}.resolve()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		c      *compressor
		accept []string
		want   coding
	}{
		{both, []string{"gzip, zstd"}, codingZstd},
		{gzipFirst, []string{"gzip, zstd"}, codingGzip},
		{both, []string{"gzip;q=0.9, zstd;q=0.8"}, codingGzip},
		{both, []string{"gzip;q=0.8", "zstd;q=0.9"}, codingZstd},
		{both, []string{"GZIP"}, codingGzip},
		{both, []string{"x-gzip"}, codingGzip},
		{both, []string{"*;q=0.5, gzip;q=0.4"}, codingZstd},
		{both, []string{"*;q=0"}, codingNone},
		{both, []string{"br"}, codingNone},
		{both, []string{""}, codingNone},
		{both, []string{"gzip;q=0.001"}, codingGzip},
		{both, []string{"gzip;q=0"}, codingNone},
		{both, []string{"gzip;q=0.000"}, codingNone},
		{both, []string{"gzip;q=1.0"}, codingGzip},
		{both, []string{"gzip;q=2"}, codingNone},      // malformed: ignored
		{both, []string{"gzip;q=0.5x"}, codingNone},   // malformed: ignored
		{both, []string{"gzip ; q=0.5 "}, codingGzip}, // whitespace allowed
		{both, []string{"gzip;level=1"}, codingGzip},
		{gzipOnly, []string{"zstd"}, codingNone},
		{gzipOnly, []string{"zstd, gzip;q=0.1"}, codingGzip},
	} {
		if got := tc.c.negotiate(tc.accept); got != tc.want {
			t.Errorf("%q (prefer %v): %s, want %s", tc.accept, tc.c.prefer, got, tc.want)
		}
	}
}

func TestCompressionCheck(t *testing.T) {
	for _, tc := range []struct {
		c    Compression
		want string // "" for valid
	}{
		{Compression{}, ""},
		{Compression{MinSize: 1024, Types: []string{"text/*", "application/json"}, Algorithms: []string{"gzip"}}, ""},
		{Compression{MinSize: -1}, "negative"},
		{Compression{Types: []string{"json"}}, "TYPE/SUBTYPE"},
		{Compression{Types: []string{"*/*"}}, "TYPE/SUBTYPE"},
		{Compression{Algorithms: []string{"br"}}, "unknown algorithm"},
		{Compression{Algorithms: []string{"gzip", "gzip"}}, "twice"},
		{Compression{Algorithms: []string{}}, "no algorithms"},
	} {
		err := tc.c.Check()
		if (err == nil) != (tc.want == "") || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v: %v, want %q", tc.c, err, tc.want)
		}
	}
}

// TestCompressStreams: a compressed event stream reaches the client event
// by event, while the backend is still sending: flushes pass through.
func TestCompressStreams(t *testing.T) {
	next := make(chan struct{})
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range 3 {
			io.WriteString(w, "data: event "+strconv.Itoa(i)+"\n\n")
			w.(http.Flusher).Flush()
			select {
			case <-next:
			case <-r.Context().Done():
				return
			}
		}
	}))
	t.Cleanup(b.Close)
	defer close(next)
	cfg := compressConfig(t, &Compression{MinSize: 1024}, b.URL)
	cfg.Sites[0].Hosts = []string{"127.0.0.1"}
	front := httptest.NewServer(newHandler(t, cfg))
	t.Cleanup(front.Close)

	for _, ce := range []string{"gzip", "zstd"} {
		t.Run(ce, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(t.Context(), "GET", front.URL+"/events", nil)
			req.Header.Set("Accept-Encoding", ce)
			res, err := front.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			if got := res.Header.Get("Content-Encoding"); got != ce {
				t.Fatalf("Content-Encoding %q, want %q", got, ce)
			}
			var zr io.Reader
			if ce == "gzip" {
				g, err := gzip.NewReader(res.Body)
				if err != nil {
					t.Fatal(err)
				}
				zr = g
			} else {
				z, err := zstd.NewReader(res.Body, zstd.WithDecoderConcurrency(1))
				if err != nil {
					t.Fatal(err)
				}
				defer z.Close()
				zr = z
			}
			lines := bufio.NewReader(zr)
			for i := range 3 {
				// Each event arrives before the backend is let to send the
				// next: nothing waits for the end of the body.
				got := readEvent(t, lines)
				if want := "data: event " + strconv.Itoa(i) + "\n"; got != want {
					t.Fatalf("event %d: %q, want %q", i, got, want)
				}
				next <- struct{}{}
			}
		})
	}
}

// readEvent reads one server-sent event (its data line and the blank line)
// within 5 s.
func readEvent(t *testing.T, r *bufio.Reader) string {
	t.Helper()
	type result struct {
		s   string
		err error
	}
	ch := make(chan result, 1)
	go func() {
		line, err := r.ReadString('\n')
		if err == nil {
			_, err = r.ReadString('\n')
		}
		ch <- result{line, err}
	}()
	select {
	case res := <-ch:
		if res.err != nil {
			t.Fatal(res.err)
		}
		return res.s
	case <-time.After(5 * time.Second):
		t.Fatal("an event did not arrive: the stream is held back")
	}
	return ""
}

// TestCompressWebSocket: an Upgrade passes through a site with
// compression, whatever the client accepts.
func TestCompressWebSocket(t *testing.T) {
	echo := httptest.NewServer(websocket.Handler(func(c *websocket.Conn) { io.Copy(c, c) }))
	t.Cleanup(echo.Close)
	cfg := compressConfig(t, &Compression{}, echo.URL)
	cfg.Sites[0].Hosts = []string{"127.0.0.1"}
	front := httptest.NewTLSServer(newHandler(t, cfg))
	t.Cleanup(front.Close)
	wc, err := websocket.NewConfig("wss"+strings.TrimPrefix(front.URL, "https")+"/ws", "https://127.0.0.1/")
	if err != nil {
		t.Fatal(err)
	}
	wc.TlsConfig = &tls.Config{InsecureSkipVerify: true}
	wc.Header = http.Header{"Accept-Encoding": {"gzip, zstd"}}
	conn, err := websocket.DialConfig(wc)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := websocket.Message.Send(conn, "through edge"); err != nil {
		t.Fatal(err)
	}
	var got string
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if err := websocket.Message.Receive(conn, &got); err != nil || got != "through edge" {
		t.Fatalf("echo %q, %v", got, err)
	}
}

// TestCompressAllocs: compression costs no allocation when it does not
// apply (no acceptable coding; a type it does not compress), and reuses
// pooled writers when it does.
func TestCompressAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop items: allocation counts do not hold")
	}
	c, err := Compression{MinSize: 1024}.resolve()
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(compressBody)
	plain := httptest.NewRequest("GET", "https://example.com/", nil)
	accepting := httptest.NewRequest("GET", "https://example.com/", nil)
	accepting.Header.Set("Accept-Encoding", "gzip, deflate, br, zstd")
	dw := &discardWriter{h: http.Header{}}

	if n := testing.AllocsPerRun(100, func() {
		if cw := c.wrap(dw, plain); cw != nil {
			t.Fatal("wrapped a request without Accept-Encoding")
		}
	}); n != 0 {
		t.Errorf("no Accept-Encoding: %.1f allocations, want 0", n)
	}
	png := http.Header{"Content-Type": {"image/png"}}
	if n := testing.AllocsPerRun(100, func() {
		dw.h = png
		cw := c.wrap(dw, accepting)
		cw.WriteHeader(200)
		cw.Write(body)
		cw.close()
	}); n != 0 {
		t.Errorf("a type not compressed: %.1f allocations, want 0", n)
	}
	for _, ce := range []string{"gzip", "zstd"} {
		req := httptest.NewRequest("GET", "https://example.com/", nil)
		req.Header.Set("Accept-Encoding", ce)
		n := testing.AllocsPerRun(100, func() {
			dw.h = http.Header{"Content-Type": {"text/html"}}
			cw := c.wrap(dw, req)
			cw.WriteHeader(200)
			cw.Write(body)
			cw.close()
		})
		// The header map and its values are the test's and the rewrite's;
		// the encoders come from the pool.
		t.Logf("%s: %.1f allocations per response", ce, n)
		if n > 8 {
			t.Errorf("%s: %.1f allocations per response: the encoders are not reused", ce, n)
		}
	}
}
