package h1

import (
	"bufio"
	"errors"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"unsafe"
)

// parseHead runs what a connection does on in: readHead (4 KiB reader,
// limit or the default head limit), then parseRequest. rest is what the
// reader left for the body.
func parseHead(in string, limit int) (r *http.Request, head, rest string, err error) {
	if limit == 0 {
		limit = http.DefaultMaxHeaderBytes + 4096
	}
	br := bufio.NewReaderSize(strings.NewReader(in), 4096)
	head, _, err = readHead(br, nil, limit)
	if err == nil {
		r = new(http.Request)
		err = parseRequest(head, r)
	}
	b, _ := io.ReadAll(br)
	return r, head, string(b), err
}

func TestParseRefuses(t *testing.T) {
	line := func(n int) string { // a request line of n bytes, CRLF included
		return "GET /" + strings.Repeat("a", n-len("GET / HTTP/1.1\r\n")) + " HTTP/1.1\r\n"
	}
	const host = "Host: a.test\r\n"
	const post = "POST / HTTP/1.1\r\n" + host
	tests := []struct {
		name   string
		in     string
		limit  int
		status int
	}{
		{"bare LF after request line", "GET / HTTP/1.1\n" + host + "\r\n", 0, 400},
		{"bare LF after a field", "GET / HTTP/1.1\r\nHost: a.test\n\r\n", 0, 400},
		{"bare LF blank line", "GET / HTTP/1.1\r\n" + host + "\n", 0, 400},
		{"bare LF hiding TE", post + "X-Padding: a\nTransfer-Encoding: chunked\r\n\r\n", 0, 400},
		{"bare CR in a field", "GET / HTTP/1.1\r\nHost: a.test\rX: y\r\n\r\n", 0, 400},
		{"bare CR in the request line", "GET /\r HTTP/1.1\r\n" + host + "\r\n", 0, 400},
		{"CR before CRLF", "GET / HTTP/1.1\r\nHost: a.test\r\r\n\r\n", 0, 400},
		{"obs-fold", "GET / HTTP/1.1\r\n" + host + "X: a\r\n b\r\n\r\n", 0, 400},
		{"obs-fold with a tab", "GET / HTTP/1.1\r\n" + host + "X: a\r\n\tb\r\n\r\n", 0, 400},
		{"TE obs-folded", post + "Transfer-Encoding:\r\n chunked\r\n\r\n", 0, 400},
		{"space before the first field", "GET / HTTP/1.1\r\n " + host + "\r\n", 0, 400},
		{"space before the colon", post + "Transfer-Encoding : chunked\r\n\r\n", 0, 400},
		{"empty field name", "GET / HTTP/1.1\r\n" + host + ": a\r\n\r\n", 0, 400},
		{"no colon", "GET / HTTP/1.1\r\n" + host + "X\r\n\r\n", 0, 400},
		{"separator in a name", "GET / HTTP/1.1\r\n" + host + "X(Y): a\r\n\r\n", 0, 400},
		{"non-ASCII name", "GET / HTTP/1.1\r\n" + host + "X-\xc3\xa9: a\r\n\r\n", 0, 400},
		{"NUL in a value", "GET / HTTP/1.1\r\n" + host + "X: a\x00b\r\n\r\n", 0, 400},
		{"DEL in a value", "GET / HTTP/1.1\r\n" + host + "X: a\x7fb\r\n\r\n", 0, 400},
		{"control in a value", "GET / HTTP/1.1\r\n" + host + "X: a\x1bb\r\n\r\n", 0, 400},
		{"no Host in HTTP/1.1", "GET / HTTP/1.1\r\n\r\n", 0, 400},
		{"two Hosts", "GET / HTTP/1.1\r\n" + host + "host: b.test\r\n\r\n", 0, 400},
		{"bad Host", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 0, 400},
		{"bad Host with an absolute target", "GET http://a.test/ HTTP/1.1\r\nHost: a/b\r\n\r\n", 0, 400},
		{"TE and CL", post + "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", 0, 400},
		{"CL and TE", post + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 0, 400},
		{"TE in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 0, 400},
		{"TE gzip", post + "Transfer-Encoding: gzip\r\n\r\n", 0, 501},
		{"TE xchunked", post + "Transfer-Encoding: xchunked\r\n\r\n", 0, 501},
		{"TE identity, chunked", post + "Transfer-Encoding: identity, chunked\r\n\r\n", 0, 501},
		{"TE chunked, chunked", post + "Transfer-Encoding: chunked, chunked\r\n\r\n", 0, 501},
		{"TE chunked twice", post + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 0, 501},
		{"TE empty", post + "Transfer-Encoding:\r\n\r\n", 0, 501},
		{"two equal Content-Lengths", post + "Content-Length: 5\r\nContent-Length: 5\r\n\r\n", 0, 400},
		{"two Content-Lengths", post + "Content-Length: 0\r\nContent-Length: 5\r\n\r\n", 0, 400},
		{"Content-Length list", post + "Content-Length: 5, 5\r\n\r\n", 0, 400},
		{"Content-Length with a sign", post + "Content-Length: +5\r\n\r\n", 0, 400},
		{"negative Content-Length", post + "Content-Length: -1\r\n\r\n", 0, 400},
		{"empty Content-Length", post + "Content-Length:\r\n\r\n", 0, 400},
		{"Content-Length with a space inside", post + "Content-Length: 1 2\r\n\r\n", 0, 400},
		{"hex Content-Length", post + "Content-Length: 0x10\r\n\r\n", 0, 400},
		{"Content-Length over int64", post + "Content-Length: 9223372036854775808\r\n\r\n", 0, 400},
		{"trailer key Content-Length", post + "Transfer-Encoding: chunked\r\nTrailer: X, content-length\r\n\r\n", 0, 400},
		{"request line of 8 KiB + 1", line(maxRequestLine+1) + host + "\r\n", 0, 414},
		{"request line of 20 KiB", line(20<<10) + host + "\r\n", 0, 414},
		{"head over the limit", "GET / HTTP/1.1\r\n" + host + "X: " + strings.Repeat("a", 600) + "\r\n\r\n", 512, 431},
		{"head over the limit in many fields", "GET / HTTP/1.1\r\n" + host + strings.Repeat("X: aaaaaaaa\r\n", 100) + "\r\n", 512, 431},
		{"HTTP/2.0", "GET / HTTP/2.0\r\n" + host + "\r\n", 0, 505},
		{"HTTP/3.0", "GET / HTTP/3.0\r\n" + host + "\r\n", 0, 505},
		{"HTTP/0.9", "GET / HTTP/0.9\r\n" + host + "\r\n", 0, 505},
		{"PRI * HTTP/2.0", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 0, 505},
		{"HTTP/1.10", "GET / HTTP/1.10\r\n" + host + "\r\n", 0, 400},
		{"lower-case version", "GET / http/1.1\r\n" + host + "\r\n", 0, 400},
		{"no version", "GET /\r\n" + host + "\r\n", 0, 400},
		{"space after the version", "GET / HTTP/1.1 \r\n" + host + "\r\n", 0, 400},
		{"two spaces", "GET  / HTTP/1.1\r\n" + host + "\r\n", 0, 400},
		{"leading space", " GET / HTTP/1.1\r\n" + host + "\r\n", 0, 400},
		{"empty request line", "\r\nGET / HTTP/1.1\r\n" + host + "\r\n", 0, 400},
		{"invalid method", "G(T / HTTP/1.1\r\n" + host + "\r\n", 0, 400},
		{"relative target", "GET a/b HTTP/1.1\r\n" + host + "\r\n", 0, 400},
		{"control in the target", "GET /\x7f HTTP/1.1\r\n" + host + "\r\n", 0, 400},
		{"bad escape in an absolute target's host", "GET http://a%zz/ HTTP/1.1\r\n" + host + "\r\n", 0, 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _, _, err := parseHead(tt.in, tt.limit)
			if err == nil {
				t.Fatalf("accepted: %+v", r)
			}
			status, reason, ok := errorStatus(err)
			if !ok || status != tt.status {
				t.Errorf("error %v: status %d (answer %v), want %d", err, status, ok, tt.status)
			}
			if ok && reason == "" {
				t.Errorf("status %d without a reason", status)
			}
		})
	}
}

// TestParseClosedOrCut: a connection that closes before or inside a head
// gets no answer (errorStatus false).
func TestParseClosedOrCut(t *testing.T) {
	for _, in := range []string{"", "GET / HTTP/1.1", "GET / HTTP/1.1\r\nHost: a.test\r\n", "GET / HTTP/1.1\r\nHost: a.test\r\n\r"} {
		_, _, _, err := parseHead(in, 0)
		if err == nil {
			t.Errorf("%q: accepted", in)
			continue
		}
		if _, _, ok := errorStatus(err); ok {
			t.Errorf("%q: %v is answered", in, err)
		}
		if in == "" && !errors.Is(err, io.EOF) {
			t.Errorf("empty input: %v, want io.EOF", err)
		}
	}
}

func TestParseAccepts(t *testing.T) {
	type want struct {
		method, uri, path, rawQuery, host, proto string
		urlHost                                  string
		header                                   http.Header
		contentLength                            int64
		te                                       []string
		close                                    bool
		trailer                                  http.Header
		rest                                     string
	}
	tests := []struct {
		name string
		in   string
		want want
	}{
		{"simple GET", "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n",
			want{method: "GET", uri: "/", path: "/", host: "a.test", proto: "HTTP/1.1", header: http.Header{}}},
		{"lower-case and odd-case names", "GET /x HTTP/1.1\r\nhost: a.test\r\nuser-agent: curl/8.0\r\naccept: */*\r\nx-custom-thing: 1\r\ncOnTeNt-TyPe: text/plain\r\nX-CUSTOM-OTHER: 2\r\n\r\n",
			want{method: "GET", uri: "/x", path: "/x", host: "a.test", proto: "HTTP/1.1", header: http.Header{
				"User-Agent": {"curl/8.0"}, "Accept": {"*/*"}, "X-Custom-Thing": {"1"}, "Content-Type": {"text/plain"}, "X-Custom-Other": {"2"},
			}}},
		{"repeated fields keep their order", "GET / HTTP/1.1\r\nHost: a.test\r\nAccept: a\r\nX: 1\r\naccept: b\r\nACCEPT: c, d\r\n\r\n",
			want{method: "GET", uri: "/", path: "/", host: "a.test", proto: "HTTP/1.1", header: http.Header{"Accept": {"a", "b", "c, d"}, "X": {"1"}}}},
		{"OWS trimmed, inner space kept", "GET / HTTP/1.1\r\nHost:a.test\r\nX: \t a \t b \t\r\nY:\r\nZ:   \r\n\r\n",
			want{method: "GET", uri: "/", path: "/", host: "a.test", proto: "HTTP/1.1", header: http.Header{"X": {"a \t b"}, "Y": {""}, "Z": {""}}}},
		{"obs-text in a value", "GET / HTTP/1.1\r\nHost: a.test\r\nX: caf\xc3\xa9 \x80\xff\r\n\r\n",
			want{method: "GET", uri: "/", path: "/", host: "a.test", proto: "HTTP/1.1", header: http.Header{"X": {"caf\xc3\xa9 \x80\xff"}}}},
		{"absolute form overrides Host", "GET http://b.test:8080/p?q=1 HTTP/1.1\r\nHost: a.test\r\n\r\n",
			want{method: "GET", uri: "http://b.test:8080/p?q=1", path: "/p", rawQuery: "q=1", host: "b.test:8080", urlHost: "b.test:8080", proto: "HTTP/1.1", header: http.Header{}}},
		{"CONNECT authority form", "CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n",
			want{method: "CONNECT", uri: "a.test:443", host: "a.test:443", urlHost: "a.test:443", proto: "HTTP/1.1", header: http.Header{}}},
		{"CONNECT without Host", "CONNECT a.test:443 HTTP/1.1\r\n\r\n",
			want{method: "CONNECT", uri: "a.test:443", host: "a.test:443", urlHost: "a.test:443", proto: "HTTP/1.1", header: http.Header{}}},
		{"OPTIONS *", "OPTIONS * HTTP/1.1\r\nHost: a.test\r\n\r\n",
			want{method: "OPTIONS", uri: "*", path: "*", host: "a.test", proto: "HTTP/1.1", header: http.Header{}}},
		{"escapes and query", "GET /a%20b/c?x=%41&y HTTP/1.1\r\nHost: a.test\r\n\r\n",
			want{method: "GET", uri: "/a%20b/c?x=%41&y", path: "/a b/c", rawQuery: "x=%41&y", host: "a.test", proto: "HTTP/1.1", header: http.Header{}}},
		{"chunked with Trailer", "POST /up HTTP/1.1\r\nHost: a.test\r\ntransfer-encoding: Chunked\r\nTrailer: X-Sum, expires\r\nTrailer: ,x-more\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
			want{method: "POST", uri: "/up", path: "/up", host: "a.test", proto: "HTTP/1.1", header: http.Header{},
				contentLength: -1, te: []string{"chunked"}, trailer: http.Header{"X-Sum": nil, "Expires": nil, "X-More": nil},
				rest: "5\r\nhello\r\n0\r\n\r\n"}},
		{"Trailer without chunked stays a field", "POST / HTTP/1.1\r\nHost: a.test\r\nTrailer: X\r\nContent-Length: 2\r\n\r\nhi",
			want{method: "POST", uri: "/", path: "/", host: "a.test", proto: "HTTP/1.1", header: http.Header{"Trailer": {"X"}, "Content-Length": {"2"}},
				contentLength: 2, rest: "hi"}},
		{"Content-Length with leading zeros", "POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 0005\r\n\r\nhello",
			want{method: "POST", uri: "/", path: "/", host: "a.test", proto: "HTTP/1.1", header: http.Header{"Content-Length": {"0005"}},
				contentLength: 5, rest: "hello"}},
		{"largest Content-Length", "POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 9223372036854775807\r\n\r\n",
			want{method: "POST", uri: "/", path: "/", host: "a.test", proto: "HTTP/1.1", header: http.Header{"Content-Length": {"9223372036854775807"}},
				contentLength: 1<<63 - 1}},
		{"HTTP/1.0 closes", "GET / HTTP/1.0\r\n\r\n",
			want{method: "GET", uri: "/", path: "/", proto: "HTTP/1.0", header: http.Header{}, close: true}},
		{"HTTP/1.0 keep-alive", "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
			want{method: "GET", uri: "/", path: "/", proto: "HTTP/1.0", header: http.Header{"Connection": {"Keep-Alive"}}}},
		{"HTTP/1.1 close", "GET / HTTP/1.1\r\nHost: a.test\r\nConnection: upgrade, CLOSE\r\n\r\n",
			want{method: "GET", uri: "/", path: "/", host: "a.test", proto: "HTTP/1.1", header: http.Header{"Connection": {"upgrade, CLOSE"}}, close: true}},
		{"HTTP/1.2 is HTTP/1.x", "GET / HTTP/1.2\r\nHost: a.test\r\n\r\n",
			want{method: "GET", uri: "/", path: "/", host: "a.test", proto: "HTTP/1.2", header: http.Header{}}},
		{"Pragma: no-cache", "GET / HTTP/1.1\r\nHost: a.test\r\nPragma: no-cache\r\n\r\n",
			want{method: "GET", uri: "/", path: "/", host: "a.test", proto: "HTTP/1.1", header: http.Header{"Pragma": {"no-cache"}, "Cache-Control": {"no-cache"}}}},
		{"request line of exactly 8 KiB", "GET /" + strings.Repeat("a", maxRequestLine-len("GET / HTTP/1.1\r\n")) + " HTTP/1.1\r\nHost: a.test\r\n\r\n",
			want{method: "GET", uri: "/" + strings.Repeat("a", maxRequestLine-len("GET / HTTP/1.1\r\n")), path: "/" + strings.Repeat("a", maxRequestLine-len("GET / HTTP/1.1\r\n")),
				host: "a.test", proto: "HTTP/1.1", header: http.Header{}}},
		{"long field across reads", "GET / HTTP/1.1\r\nHost: a.test\r\nX: " + strings.Repeat("v", 10000) + "\r\n\r\n",
			want{method: "GET", uri: "/", path: "/", host: "a.test", proto: "HTTP/1.1", header: http.Header{"X": {strings.Repeat("v", 10000)}}}},
		{"pipelined request stays in the reader", "GET / HTTP/1.1\r\nHost: a.test\r\n\r\nGET /2 HTTP/1.1\r\n",
			want{method: "GET", uri: "/", path: "/", host: "a.test", proto: "HTTP/1.1", header: http.Header{}, rest: "GET /2 HTTP/1.1\r\n"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _, rest, err := parseHead(tt.in, 0)
			if err != nil {
				t.Fatal(err)
			}
			w := tt.want
			got := want{
				method: r.Method, uri: r.RequestURI, path: r.URL.Path, rawQuery: r.URL.RawQuery, host: r.Host, proto: r.Proto,
				urlHost: r.URL.Host, header: r.Header, contentLength: r.ContentLength, te: r.TransferEncoding,
				close: r.Close, trailer: r.Trailer, rest: rest,
			}
			if !reflect.DeepEqual(got, w) {
				t.Errorf("got\n%+v\nwant\n%+v", got, w)
			}
			if r.ProtoMajor != 1 || r.ProtoMinor != int(r.Proto[7]-'0') {
				t.Errorf("ProtoMajor/Minor %d.%d for %s", r.ProtoMajor, r.ProtoMinor, r.Proto)
			}
			if r.URL.Scheme != "" && w.urlHost == "" || r.Method == "CONNECT" && r.URL.Scheme != "" {
				t.Errorf("URL.Scheme %q", r.URL.Scheme)
			}
		})
	}
}

// TestParseValuesSliceHead: the head is one allocation; every value and the
// request line's strings point into it.
func TestParseValuesSliceHead(t *testing.T) {
	in := "GET /p HTTP/1.1\r\nHost: a.test\r\nuser-agent: x\r\nAccept: a\r\nAccept: b\r\nX-Odd-Name: y\r\n\r\n"
	r, head, _, err := parseHead(in, 0)
	if err != nil {
		t.Fatal(err)
	}
	lo := uintptr(unsafe.Pointer(unsafe.StringData(head)))
	inHead := func(s string) bool {
		p := uintptr(unsafe.Pointer(unsafe.StringData(s)))
		return p >= lo && p+uintptr(len(s)) <= lo+uintptr(len(head))
	}
	for _, s := range []string{r.Method, r.RequestURI, r.Proto, r.Host, r.URL.Path} {
		if !inHead(s) {
			t.Errorf("%q is not a slice of the head", s)
		}
	}
	for k, vv := range r.Header {
		for _, v := range vv {
			if !inHead(v) {
				t.Errorf("%s value %q is not a slice of the head", k, v)
			}
		}
	}
}

// benchHead is a browser's GET of a page asset: 8 fields.
const benchHead = "GET /static/js/app.3f9c2b.js HTTP/1.1\r\n" +
	"Host: www.example.com\r\n" +
	"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n" +
	"Accept: */*\r\n" +
	"Accept-Language: en-GB,en;q=0.5\r\n" +
	"Accept-Encoding: gzip, deflate, br, zstd\r\n" +
	"Referer: https://www.example.com/\r\n" +
	"Cookie: session=8f14e45fceea167a5a36dedd4bea2543; theme=dark\r\n" +
	"Connection: keep-alive\r\n" +
	"\r\n"

func BenchmarkParse(b *testing.B) {
	b.Run("h1", func(b *testing.B) {
		sr := strings.NewReader(benchHead)
		br := bufio.NewReaderSize(sr, 4096)
		scratch := make([]byte, 0, 4096)
		var r http.Request
		b.ReportAllocs()
		b.SetBytes(int64(len(benchHead)))
		for b.Loop() {
			sr.Reset(benchHead)
			br.Reset(sr)
			head, buf, err := readHead(br, scratch, http.DefaultMaxHeaderBytes+4096)
			scratch = buf[:0]
			if err != nil {
				b.Fatal(err)
			}
			r = http.Request{}
			if err := parseRequest(head, &r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("net-http", func(b *testing.B) {
		sr := strings.NewReader(benchHead)
		br := bufio.NewReaderSize(sr, 4096)
		b.ReportAllocs()
		b.SetBytes(int64(len(benchHead)))
		for b.Loop() {
			sr.Reset(benchHead)
			br.Reset(sr)
			if _, err := http.ReadRequest(br); err != nil {
				b.Fatal(err)
			}
		}
	})
}
