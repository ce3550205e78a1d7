package h1

import (
	"bufio"
	"bytes"
	"net/http"
	"net/textproto"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/net/http/httpguts"
)

// fuzzHeadLimit is the head limit of a server with the default
// MaxHeaderBytes (Server.headLimit).
const fuzzHeadLimit = http.DefaultMaxHeaderBytes + 4096

// FuzzParseAgainstNetHTTP holds readHead+parseRequest to net/http's server
// parse: whatever net/http refuses we refuse; whatever both accept parses
// to the same request; and what only net/http accepts must have one of the
// properties edge refuses by design (refusedByDesign).
func FuzzParseAgainstNetHTTP(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		want, wantN, werr := netHTTPParse(in)
		got, head, gerr := edgeParse(in)
		switch {
		case werr != nil && gerr == nil:
			t.Fatalf("net/http refuses (%v), edge accepts: %q", werr, in)
		case werr != nil:
			return
		case gerr != nil:
			if why := refusedByDesign(in, want); why == "" {
				t.Fatalf("net/http accepts, edge refuses (%v) with none of the refused-by-design properties: %q", gerr, in)
			}
			return
		}
		if len(head) != wantN || string(in[:wantN]) != head {
			t.Errorf("edge's head is %d bytes, net/http read %d before the body: %q", len(head), wantN, in)
		}
		compareRequests(t, in, got, want)
	})
}

// netHTTPParse is net/http's server-side parse of one request head:
// http.ReadRequest and the checks (*conn).readRequest adds. n is how many
// bytes of in it read before the body.
func netHTTPParse(in []byte) (req *http.Request, n int, err error) {
	rd := bytes.NewReader(in)
	br := bufio.NewReader(rd)
	req, err = http.ReadRequest(br)
	if err != nil {
		return nil, 0, err
	}
	n = len(in) - rd.Len() - br.Buffered()

	// http.ReadRequest drops the Host field; the server checks it before it
	// does. Read it as ReadRequest did, through textproto on the same bytes.
	tp := textproto.NewReader(bufio.NewReader(bytes.NewReader(in)))
	if _, err := tp.ReadLine(); err != nil {
		return nil, 0, err
	}
	mh, err := tp.ReadMIMEHeader()
	if err != nil {
		return nil, 0, err
	}
	hosts := mh["Host"]

	isPRI := req.ProtoMajor == 2 && req.ProtoMinor == 0 && req.Method == "PRI" && req.RequestURI == "*"
	if req.ProtoMajor != 1 && !isPRI {
		return nil, 0, errString("unsupported protocol version")
	}
	isH2Upgrade := req.Method == "PRI" && len(req.Header) == 0 && req.URL.Path == "*" && req.Proto == "HTTP/2.0"
	if req.ProtoAtLeast(1, 1) && len(hosts) == 0 && !isH2Upgrade && req.Method != "CONNECT" {
		return nil, 0, errString("missing required Host header")
	}
	if len(hosts) > 1 {
		return nil, 0, errString("too many Host headers")
	}
	if len(hosts) == 1 && !httpguts.ValidHostHeader(hosts[0]) {
		return nil, 0, errString("malformed Host header")
	}
	check := func(h map[string][]string) error {
		for k, vv := range h {
			if !httpguts.ValidHeaderFieldName(k) {
				return errString("invalid header name")
			}
			for _, v := range vv {
				if !httpguts.ValidHeaderFieldValue(v) {
					return errString("invalid header value")
				}
			}
		}
		return nil
	}
	if err := check(req.Header); err != nil {
		return nil, 0, err
	}
	if err := check(map[string][]string{"Host": hosts}); err != nil {
		return nil, 0, err
	}
	return req, n, nil
}

type errString string

func (e errString) Error() string { return string(e) }

// edgeParse is what a connection does with in: readHead on a 4 KiB
// bufio.Reader with the default head limit, then parseRequest.
func edgeParse(in []byte) (*http.Request, string, error) {
	br := bufio.NewReaderSize(bytes.NewReader(in), 4096)
	head, _, err := readHead(br, make([]byte, 0, 4096), fuzzHeadLimit)
	if err != nil {
		return nil, "", err
	}
	r := new(http.Request)
	if err := parseRequest(head, r); err != nil {
		return nil, head, err
	}
	return r, head, nil
}

func compareRequests(t *testing.T, in []byte, got, want *http.Request) {
	t.Helper()
	diff := func(what string, g, w any) {
		t.Errorf("%s: edge %#v, net/http %#v; input %q", what, g, w, in)
	}
	if got.Method != want.Method {
		diff("Method", got.Method, want.Method)
	}
	if got.RequestURI != want.RequestURI {
		diff("RequestURI", got.RequestURI, want.RequestURI)
	}
	if got.URL == nil || !reflect.DeepEqual(*got.URL, *want.URL) {
		diff("URL", got.URL, want.URL)
	} else if got.URL.String() != want.URL.String() {
		diff("URL.String()", got.URL.String(), want.URL.String())
	}
	if got.Proto != want.Proto || got.ProtoMajor != want.ProtoMajor || got.ProtoMinor != want.ProtoMinor {
		diff("Proto", [3]any{got.Proto, got.ProtoMajor, got.ProtoMinor}, [3]any{want.Proto, want.ProtoMajor, want.ProtoMinor})
	}
	if got.Host != want.Host {
		diff("Host", got.Host, want.Host)
	}
	if !reflect.DeepEqual(got.Header, want.Header) {
		diff("Header", got.Header, want.Header)
	}
	if got.ContentLength != want.ContentLength {
		diff("ContentLength", got.ContentLength, want.ContentLength)
	}
	if !reflect.DeepEqual(got.TransferEncoding, want.TransferEncoding) {
		diff("TransferEncoding", got.TransferEncoding, want.TransferEncoding)
	}
	if got.Close != want.Close {
		diff("Close", got.Close, want.Close)
	}
	if !reflect.DeepEqual(got.Trailer, want.Trailer) {
		diff("Trailer", got.Trailer, want.Trailer)
	}
}

// refusedByDesign says which property of in, a request net/http accepts
// (parsed as want), edge refuses on purpose, or "" if none. It reads the
// bytes itself, as net/http splits them (lines end at LF, a CR before it
// dropped), and never asks edge's parser.
func refusedByDesign(in []byte, want *http.Request) string {
	if len(in) > fuzzHeadLimit {
		return "longer than the head limit (431)"
	}
	head := rawHead(in)
	for i, c := range head {
		if c == '\n' && (i == 0 || head[i-1] != '\r') {
			return "bare LF"
		}
		if c == '\r' && (i+1 == len(head) || head[i+1] != '\n') {
			return "bare CR"
		}
	}
	lines := strings.Split(strings.TrimSuffix(string(head), "\n"), "\n")
	if len(lines[0])+1 > maxRequestLine {
		return "request line over 8 KiB (414)"
	}
	if want.Method == "PRI" && want.RequestURI == "*" && want.Proto == "HTTP/2.0" {
		return "PRI * HTTP/2.0"
	}
	if want.RequestURI == "" {
		// "CONNECT  HTTP/1.1": net/http parses "http://" and takes an
		// empty authority; RFC 9112 has no empty request-target.
		return "empty request target"
	}
	var te []string
	nCL := 0
	for _, l := range lines[1:] {
		l = strings.TrimSuffix(l, "\r")
		if l == "" {
			break
		}
		if l[0] == ' ' || l[0] == '\t' {
			return "obsolete line folding"
		}
		name, value, _ := strings.Cut(l, ":")
		switch strings.ToLower(name) {
		case "transfer-encoding":
			te = append(te, strings.Trim(value, " \t"))
		case "content-length":
			nCL++
		}
	}
	switch {
	case len(te) > 0 && nCL > 0:
		return "Transfer-Encoding with Content-Length"
	case len(te) > 0 && want.ProtoMajor == 1 && want.ProtoMinor == 0:
		return "Transfer-Encoding in HTTP/1.0"
	case len(te) > 1 || len(te) == 1 && !strings.EqualFold(te[0], "chunked"):
		return "Transfer-Encoding other than one chunked"
	case nCL > 1:
		return "Content-Length more than once"
	}
	return ""
}

// rawHead is in up to and including its first empty line (CRLF or LF)
// after the request line, or all of in.
func rawHead(in []byte) []byte {
	for i, first := 0, true; i < len(in); first = false {
		j := bytes.IndexByte(in[i:], '\n')
		if j < 0 {
			break
		}
		line := in[i : i+j]
		i += j + 1
		if !first && (len(line) == 0 || len(line) == 1 && line[0] == '\r') {
			return in[:i]
		}
	}
	return in
}

// fuzzSeeds are ordinary requests of every form, odd but valid spellings,
// and every framing attack of e2e's TestRawSocketAttacks.
func fuzzSeeds() []string {
	crlf := func(lines ...string) string { return strings.Join(lines, "\r\n") + "\r\n\r\n" }
	seeds := []string{
		crlf("GET / HTTP/1.1", "Host: a.test"),
		crlf("GET /index.html HTTP/1.1", "Host: a.test", "User-Agent: Mozilla/5.0", "Accept: text/html,*/*;q=0.8",
			"Accept-Language: en-GB,en;q=0.5", "Accept-Encoding: gzip, deflate, br", "Connection: keep-alive",
			"Cookie: a=1; b=2", "Upgrade-Insecure-Requests: 1"),
		crlf("HEAD /x HTTP/1.1", "Host: a.test:8443"),
		crlf("POST /form HTTP/1.1", "Host: a.test", "Content-Type: application/x-www-form-urlencoded", "Content-Length: 7") + "a=1&b=2",
		crlf("PUT /up HTTP/1.1", "Host: a.test", "Content-Length: 0"),
		crlf("POST /z HTTP/1.1", "Host: a.test", "Content-Length: 007") + "1234567",
		crlf("OPTIONS * HTTP/1.1", "Host: a.test"),
		crlf("CONNECT a.test:443 HTTP/1.1", "Host: a.test:443"),
		crlf("CONNECT a.test:443 HTTP/1.1"),
		crlf("CONNECT /rpc HTTP/1.1", "Host: a.test"),
		crlf("CONNECT [::1]:443 HTTP/1.1"),
		crlf("CONNECT a.test HTTP/1.1"),
		crlf("CONNECT  HTTP/1.1"),
		crlf("GET /a/./b/../c HTTP/1.1", "Host: a.test"),
		crlf("GET /%41%2f HTTP/1.1", "Host: a.test"),
		crlf("GET http://a.test/p?q=1 HTTP/1.1", "Host: other.test"),
		crlf("GET https://user@a.test:8443/p%20q?x=%41#frag HTTP/1.1", "Host: a.test"),
		crlf("GET http://a.test HTTP/1.1"),
		crlf("GET //double/slash HTTP/1.1", "Host: a.test"),
		crlf("GET /a%2Fb/c%20d?x=1&y=%zz HTTP/1.1", "Host: a.test"),
		crlf("GET /p?q HTTP/1.1", "Host: a.test"),
		crlf("GET /p? HTTP/1.1", "Host: a.test"),
		crlf("GET /p#frag HTTP/1.1", "Host: a.test"),
		crlf("GET /~user/a-b_c.d HTTP/1.1", "Host: a.test"),
		crlf("GET /a;b,c!$&'()*+=:@ HTTP/1.1", "Host: a.test"),
		crlf("GET /ü HTTP/1.1", "Host: a.test"),
		crlf("GET * HTTP/1.1", "Host: a.test"),
		crlf("GET / HTTP/1.0"),
		crlf("GET / HTTP/1.0", "Connection: keep-alive"),
		crlf("GET / HTTP/1.0", "Connection: Keep-Alive, close"),
		crlf("GET / HTTP/1.1", "Host: a.test", "Connection: close"),
		crlf("GET / HTTP/1.1", "Host: a.test", "Connection: upgrade, CLOSE"),
		crlf("GET / HTTP/1.1", "Host: a.test", "Connection: keep-alive"),
		crlf("GET / HTTP/1.2", "Host: a.test"),
		crlf("GET / HTTP/1.9"),
		crlf("GET / HTTP/2.0", "Host: a.test"),
		crlf("GET / HTTP/0.9", "Host: a.test"),
		crlf("GET / HTTP/3.0", "Host: a.test"),
		crlf("GET / HTTP/1.10", "Host: a.test"),
		crlf("GET / http/1.1", "Host: a.test"),
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
		crlf("get / HTTP/1.1", "Host: a.test"),
		crlf("M-SEARCH * HTTP/1.1", "Host: a.test"),
		crlf("GET / HTTP/1.1", "host: a.test", "user-agent: curl/8.0", "accept: */*", "x-forwarded-for: 1.2.3.4"),
		crlf("GET / HTTP/1.1", "HOST: a.test", "uSeR-aGeNt: x", "X-CUSTOM-thing: y", "x_under_score: z"),
		crlf("GET / HTTP/1.1", "Host: a.test", "Accept: a", "accept: b", "ACCEPT: c"),
		crlf("GET / HTTP/1.1", "Host: a.test", "Cookie: a=1", "X: 1", "Cookie: b=2"),
		crlf("GET / HTTP/1.1", "Host: a.test", "Pragma: no-cache"),
		crlf("GET / HTTP/1.1", "Host: a.test", "Pragma: no-cache", "Cache-Control: max-age=0"),
		crlf("GET / HTTP/1.1", "Host: a.test", "Pragma: no-cache, x"),
		crlf("GET / HTTP/1.1", "Host: a.test", "X-Empty:", "X-Spaces:    ", "X-Tabs:\t\t"),
		crlf("GET / HTTP/1.1", "Host: a.test", "X:\t a \t b \t"),
		crlf("GET / HTTP/1.1", "Host: a.test", "X: a\x00b"),
		crlf("GET / HTTP/1.1", "Host: a.test", "X: a\x7fb"),
		crlf("GET / HTTP/1.1", "Host: a.test", "X: caf\xc3\xa9 \x80\xff"),
		crlf("GET / HTTP/1.1", "Host: a.test", "X: a\x01b"),
		crlf("GET / HTTP/1.1", "Host: a.test", "X\x00: a"),
		crlf("GET / HTTP/1.1", "Host: a.test", "X Y: a"),
		crlf("GET / HTTP/1.1", "Host: a.test", ": a"),
		crlf("GET / HTTP/1.1", "Host: a.test", "X-\xc3\xa9: a"),
		crlf("GET / HTTP/1.1", "Host: a b"),
		crlf("GET / HTTP/1.1", "Host: a.test", "Host: b.test"),
		crlf("GET / HTTP/1.1", "Host:"),
		crlf("GET / HTTP/1.1"),
		crlf("GET / HTTP/1.1", "Host: [::1]:8080"),
		crlf("GET / HTTP/1.1", "Host: a.test", "X-Long: "+strings.Repeat("x", 5000)),
		crlf("GET /"+strings.Repeat("a", 8200)+" HTTP/1.1", "Host: a.test"),
		crlf("GET /"+strings.Repeat("a", 8170)+" HTTP/1.1", "Host: a.test"),
		crlf("POST /c HTTP/1.1", "Host: a.test", "Transfer-Encoding: chunked", "Trailer: X-Sum, x-other", "Trailer: expires") +
			"5\r\nhello\r\n0\r\nX-Sum: 1\r\n\r\n",
		crlf("POST /c HTTP/1.1", "Host: a.test", "transfer-encoding: Chunked") + "0\r\n\r\n",
		crlf("POST /c HTTP/1.1", "Host: a.test", "Transfer-Encoding: chunked", "Trailer: Content-Length") + "0\r\n\r\n",
		crlf("POST /c HTTP/1.1", "Host: a.test", "Transfer-Encoding: chunked", "Trailer: , ,"),
		crlf("POST /c HTTP/1.1", "Host: a.test", "Transfer-Encoding: gzip"),
		crlf("POST /c HTTP/1.1", "Host: a.test", "Trailer: X"),
		crlf("POST /c HTTP/1.1", "Host: a.test", "Content-Length: 5", "Content-Length: 5") + "hello",
		crlf("POST /c HTTP/1.1", "Host: a.test", "Content-Length: 9223372036854775807"),
		crlf("POST /c HTTP/1.1", "Host: a.test", "Content-Length: 9223372036854775808"),
		crlf("POST /c HTTP/1.1", "Host: a.test", "Content-Length: -1"),
		crlf("POST /c HTTP/1.1", "Host: a.test", "Content-Length:"),
		crlf("POST /c HTTP/1.1", "Host: a.test", "Content-Length: 1 2"),
		crlf("GET / HTTP/1.1", "Host: a.test", "X: folded", " continuation"),
		crlf(" GET / HTTP/1.1", "Host: a.test"),
		crlf("GET  / HTTP/1.1", "Host: a.test"),
		crlf("GET / HTTP/1.1 ", "Host: a.test"),
		crlf("GET /\x7f HTTP/1.1", "Host: a.test"),
		crlf("G(T / HTTP/1.1", "Host: a.test"),
		"GET / HTTP/1.1\nHost: a.test\n\n",
		"GET / HTTP/1.1\r\nHost: a.test\n\r\n",
		"GET / HTTP/1.1\r\nHost: a.test\r\n\n",
		"GET / HTTP/1.1\r\nHost: a.test\rX: y\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a.test\r\n\r\r\n",
		"GET / HTTP/1.1\r\nHost: a.test\r\n",
		"GET / HTTP/1.1",
		"\r\nGET / HTTP/1.1\r\nHost: a.test\r\n\r\n",
		crlf("GET / HTTP/1.1", "Host: a.test") + "GET /next HTTP/1.1\r\nHost: a.test\r\n\r\n",
	}

	// e2e/smuggling_test.go TestRawSocketAttacks.
	hidden := "GET /smuggled HTTP/1.1\r\nHost: a.test\r\n\r\n"
	chunked := "0\r\n\r\n" + hidden
	cl := func(body string) string { return "Content-Length: " + strconv.Itoa(len(body)) + "\r\n" }
	vectors := []struct{ proto, head, body string }{
		{"1.1", "Transfer-Encoding: chunked\r\n" + cl(chunked), chunked},
		{"1.1", "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", chunked},
		{"1.1", "Content-Length: 0\r\n" + cl(hidden), hidden},
		{"1.1", "Content-Length: 0, " + strconv.Itoa(len(hidden)) + "\r\n", hidden},
		{"1.1", "Content-Length: +" + strconv.Itoa(len(hidden)) + "\r\n", hidden},
		{"1.1", "Transfer-Encoding:  chunked\r\n" + cl(chunked), chunked},
		{"1.1", "Transfer-Encoding:\tchunked\r\n" + cl(chunked), chunked},
		{"1.1", "Transfer-Encoding:\r\n chunked\r\n" + cl(chunked), chunked},
		{"1.1", "Transfer-Encoding: xchunked\r\n" + cl(chunked), chunked},
		{"1.1", "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n" + cl(chunked), chunked},
		{"1.1", "Transfer-Encoding: identity, chunked\r\n" + cl(chunked), chunked},
		{"1.1", "TRANSFER-ENCODING: CHUNKED\r\n" + cl(chunked), chunked},
		{"1.1", "X-Padding: a\nTransfer-Encoding: chunked\r\n" + cl(chunked), chunked},
		{"1.1", "Transfer-Encoding : chunked\r\n" + cl(chunked), chunked},
		{"1.1", "Transfer-Encoding: chunked\r\n", "5x\r\nhello\r\n0\r\n\r\n" + hidden},
		{"1.1", "Transfer-Encoding: chunked\r\n", "fffffffffffffffff\r\nhello\r\n0\r\n\r\n" + hidden},
		{"1.1", "Transfer-Encoding: chunked\r\n", "-5\r\nhello\r\n0\r\n\r\n" + hidden},
		{"1.0", "Transfer-Encoding: chunked\r\nContent-Length: 0\r\nConnection: keep-alive\r\n", "\r\n" + hidden},
		{"1.0", "Transfer-Encoding: chunked\r\n", chunked},
	}
	for _, v := range vectors {
		seeds = append(seeds, "POST /first HTTP/"+v.proto+"\r\nHost: a.test\r\n"+v.head+"\r\n"+v.body)
	}
	return seeds
}
