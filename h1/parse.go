package h1

import (
	"bufio"
	"errors"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// maxRequestLine is the longest request line edge reads (nginx's
// large_client_header_buffers default): a longer one is answered 414.
const maxRequestLine = 8 << 10

// A requestError is a request edge refuses before the handler sees it: the
// status to answer and why. The connection is closed after the answer.
type requestError struct {
	status int
	reason string
}

func (e *requestError) Error() string { return e.reason }

func badRequest(reason string) error { return &requestError{http.StatusBadRequest, reason} }

var (
	errHeadTooLarge  = &requestError{http.StatusRequestHeaderFieldsTooLarge, "request header fields too large"}
	errLineTooLong   = &requestError{http.StatusRequestURITooLong, "request line too long"}
	errBadVersion    = &requestError{http.StatusHTTPVersionNotSupported, "unsupported protocol version"}
	errTEUnsupported = &requestError{http.StatusNotImplemented, "unsupported transfer encoding"}
)

// readHead reads one request head (request line, header fields, blank
// line) from br into scratch and returns it as one string, so that every
// string of the parsed request is a slice of a single allocation. limit
// bounds the whole head (errHeadTooLarge). io.EOF before the first byte
// means the client closed an idle connection.
func readHead(br *bufio.Reader, scratch []byte, limit int) (string, []byte, error) {
	buf := scratch[:0]
	lineStart := 0
	for {
		frag, err := br.ReadSlice('\n')
		if len(buf)+len(frag) > limit {
			if lineStart == 0 {
				return "", buf, errLineTooLong
			}
			return "", buf, errHeadTooLarge
		}
		buf = append(buf, frag...)
		if err == bufio.ErrBufferFull {
			if lineStart == 0 && len(buf) > maxRequestLine {
				return "", buf, errLineTooLong
			}
			continue
		}
		if err != nil {
			return "", buf, err
		}
		if lineStart == 0 && len(buf) > maxRequestLine {
			return "", buf, errLineTooLong
		}
		line := buf[lineStart:]
		if lineStart > 0 && (len(line) == 2 && line[0] == '\r' || len(line) == 1) {
			return string(buf), buf, nil // the blank line (a bare LF one fails in parse)
		}
		lineStart = len(buf)
	}
}

// parseRequest parses a head read by readHead into a request without a
// body, checking it as strictly as RFC 9112 allows: lines end in CRLF (no
// bare LF or CR), no obsolete line folding, field names are tokens with no
// space before the colon, field values hold no control characters, one
// Host for HTTP/1.1, Content-Length digits only and at most once,
// Transfer-Encoding exactly "chunked" and never with Content-Length or in
// HTTP/1.0. What it accepts it represents as net/http's server would
// (the fuzz test FuzzParseAgainstNetHTTP holds it to that).
func parseRequest(head string, r *http.Request) error {
	line, rest, ok := cutLine(head)
	if !ok {
		return badRequest("malformed request line")
	}
	method, rest1, ok1 := strings.Cut(line, " ")
	target, proto, ok2 := strings.Cut(rest1, " ")
	if !ok1 || !ok2 || method == "" || target == "" {
		return badRequest("malformed request line")
	}
	if !isToken(method) {
		return badRequest("invalid method")
	}
	r.Method, r.RequestURI, r.Proto = method, target, proto
	switch proto {
	case "HTTP/1.1":
		r.ProtoMajor, r.ProtoMinor = 1, 1
	case "HTTP/1.0":
		r.ProtoMajor, r.ProtoMinor = 1, 0
	default:
		major, minor, ok := http.ParseHTTPVersion(proto)
		if !ok {
			return badRequest("malformed HTTP version")
		}
		if major != 1 {
			return errBadVersion
		}
		r.ProtoMajor, r.ProtoMinor = major, minor
	}
	var err error
	if r.URL, err = parseTarget(method, target); err != nil {
		return badRequest("malformed request target")
	}

	h, err := parseFields(rest)
	if err != nil {
		return err
	}
	r.Header = h

	hosts := h["Host"]
	switch {
	case len(hosts) > 1:
		return badRequest("too many Host headers")
	case len(hosts) == 0 && r.ProtoMinor >= 1 && method != "CONNECT":
		return badRequest("missing required Host header")
	case len(hosts) == 1 && !httpguts.ValidHostHeader(hosts[0]):
		return badRequest("malformed Host header")
	}
	r.Host = r.URL.Host
	if r.Host == "" && len(hosts) == 1 {
		r.Host = hosts[0]
	}
	delete(h, "Host")

	// As net/http: Pragma: no-cache means Cache-Control: no-cache (RFC 7234,
	// section 5.4) when there is no Cache-Control.
	if p := h["Pragma"]; len(p) > 0 && p[0] == "no-cache" {
		if _, ok := h["Cache-Control"]; !ok {
			h["Cache-Control"] = []string{"no-cache"}
		}
	}
	conn := h["Connection"]
	if r.ProtoMinor == 0 {
		r.Close = !httpguts.HeaderValuesContainsToken(conn, "keep-alive") || httpguts.HeaderValuesContainsToken(conn, "close")
	} else {
		r.Close = httpguts.HeaderValuesContainsToken(conn, "close")
	}
	return framing(r)
}

// framing sets the request's ContentLength and TransferEncoding from its
// header (RFC 9112, section 6), refusing every ambiguous framing: both
// Transfer-Encoding and Content-Length, any Transfer-Encoding but a single
// "chunked", Transfer-Encoding in HTTP/1.0, more than one Content-Length.
// Body is set by the connection.
func framing(r *http.Request) error {
	h := r.Header
	te, hasTE := h["Transfer-Encoding"]
	cl, hasCL := h["Content-Length"]
	switch {
	case hasTE && hasCL:
		return badRequest("both Transfer-Encoding and Content-Length")
	case hasTE && r.ProtoMinor == 0:
		return badRequest("Transfer-Encoding in an HTTP/1.0 request")
	case hasTE:
		if len(te) != 1 || !asciiEqualFold(te[0], "chunked") {
			return errTEUnsupported
		}
		delete(h, "Transfer-Encoding")
		r.TransferEncoding = chunkedTE
		r.ContentLength = -1
		tr, err := trailerKeys(h)
		if err != nil {
			return err
		}
		r.Trailer = tr
	case hasCL:
		if len(cl) != 1 {
			return badRequest("more than one Content-Length")
		}
		n, ok := parseContentLength(cl[0])
		if !ok {
			return badRequest("bad Content-Length")
		}
		r.ContentLength = n
	}
	return nil
}

// chunkedTE is every chunked request's TransferEncoding; handlers do not
// write to it (net/http's own requests share nothing, but no code of
// edge's or the standard library's changes the slice).
var chunkedTE = []string{"chunked"}

// trailerKeys turns a chunked request's Trailer header into the keys of
// Request.Trailer, as net/http does: the header goes, each named field
// gets a nil value until the trailer arrives.
func trailerKeys(h http.Header) (http.Header, error) {
	vv, ok := h["Trailer"]
	if !ok {
		return nil, nil
	}
	delete(h, "Trailer")
	tr := http.Header{}
	for _, v := range vv {
		for k := range strings.SplitSeq(v, ",") {
			k = strings.Trim(k, " \t")
			if k == "" {
				continue
			}
			k = http.CanonicalHeaderKey(k)
			switch k {
			case "Transfer-Encoding", "Trailer", "Content-Length":
				return nil, badRequest("bad trailer key " + k)
			}
			tr[k] = nil
		}
	}
	if len(tr) == 0 {
		return nil, nil
	}
	return tr, nil
}

// parseContentLength accepts only digits (no sign, no list, no spaces
// inside: RFC 9110, section 8.6) that fit in an int64, leading zeros
// included, as net/http does (strconv.ParseUint(s, 10, 63)).
func parseContentLength(s string) (int64, bool) {
	if s == "" {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		d := int64(c - '0')
		if n > (math.MaxInt64-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}

// parseTarget parses the request target as net/http does: origin form
// ("/path?q") and absolute form through url.ParseRequestURI, CONNECT's
// authority form into URL.Host. A plain path, the common case, is built
// without the general parser when it has nothing to unescape.
func parseTarget(method, target string) (*url.URL, error) {
	if method == "CONNECT" && target[0] != '/' {
		u, err := url.ParseRequestURI("http://" + target)
		if err != nil {
			return nil, err
		}
		u.Scheme = ""
		return u, nil
	}
	if plainPath(target) {
		return &url.URL{Path: target}, nil
	}
	return url.ParseRequestURI(target)
}

// plainPath reports whether target is an absolute path that
// url.ParseRequestURI would return unchanged as URL.Path: no query,
// fragment or escape, and only characters it neither rejects nor escapes
// differently in EscapedPath.
func plainPath(target string) bool {
	if target[0] != '/' || strings.HasPrefix(target, "//") {
		return false
	}
	for i := 0; i < len(target); i++ {
		c := target[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '/' || c == '-' || c == '.' || c == '_' || c == '~':
		default:
			return false
		}
	}
	return true
}

// parseFields parses the header field lines of a head (everything after
// the request line, blank line included) into a canonical http.Header.
// Values are slices of head; they share one backing array of strings, as
// net/http's reader does.
func parseFields(head string) (http.Header, error) {
	n := strings.Count(head, "\n") - 1 // lines before the blank one
	if n < 0 {
		return nil, badRequest("malformed header")
	}
	h := make(http.Header, n)
	vals := make([]string, n)
	for {
		line, rest, ok := cutLine(head)
		if !ok {
			return nil, badRequest("header line not ended by CRLF")
		}
		head = rest
		if line == "" {
			if head != "" {
				return nil, badRequest("malformed header")
			}
			return h, nil
		}
		if line[0] == ' ' || line[0] == '\t' {
			return nil, badRequest("obsolete line folding")
		}
		colon := strings.IndexByte(line, ':')
		if colon <= 0 {
			return nil, badRequest("malformed header line")
		}
		name, value := line[:colon], trimOWS(line[colon+1:])
		if !isToken(name) {
			return nil, badRequest("invalid header name")
		}
		if !validValue(value) {
			return nil, badRequest("invalid header value")
		}
		key := canonicalKey(name)
		if vv := h[key]; vv != nil {
			h[key] = append(vv, value)
		} else if len(vals) > 0 {
			vals[0] = value
			h[key] = vals[:1:1]
			vals = vals[1:]
		} else {
			h[key] = []string{value}
		}
	}
}

// cutLine splits s at its first CRLF. It fails on a bare LF or CR before
// it, or when there is none.
func cutLine(s string) (line, rest string, ok bool) {
	i := strings.IndexByte(s, '\n')
	if i < 1 || s[i-1] != '\r' {
		return "", "", false
	}
	line = s[:i-1]
	if strings.IndexByte(line, '\r') >= 0 {
		return "", "", false
	}
	return line, s[i+1:], true
}

func trimOWS(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// validValue reports whether v holds only field-content (RFC 9110,
// section 5.5): visible ASCII, space, tab and obs-text.
func validValue(v string) bool {
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// isToken reports whether s is a token (RFC 9110, section 5.6.2).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !httpguts.IsTokenRune(rune(s[i])) {
			return false
		}
	}
	return true
}

// canonicalKey returns the canonical form of a token field name, as
// textproto.CanonicalMIMEHeaderKey does, without allocating when name is
// already canonical or one of the common names.
func canonicalKey(name string) string {
	upper := true
	canonical := true
	for i := 0; i < len(name); i++ {
		c := name[i]
		if upper && 'a' <= c && c <= 'z' || !upper && 'A' <= c && c <= 'Z' {
			canonical = false
			break
		}
		upper = c == '-'
	}
	if canonical {
		return name
	}
	if len(name) <= 32 {
		var b [32]byte
		lower := b[:len(name)]
		for i := 0; i < len(name); i++ {
			c := name[i]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			lower[i] = c
		}
		if k, ok := commonKeys[string(lower)]; ok {
			return k
		}
	}
	return http.CanonicalHeaderKey(name)
}

// commonKeys maps the lower-case spelling of common request fields to
// their canonical form (HTTP/1.1 clients such as curl and load balancers
// send lower case).
var commonKeys = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{
		"Accept", "Accept-Charset", "Accept-Encoding", "Accept-Language", "Authorization",
		"Cache-Control", "Connection", "Content-Length", "Content-Type", "Cookie", "Expect",
		"Forwarded", "Host", "If-Match", "If-Modified-Since", "If-None-Match", "If-Range",
		"If-Unmodified-Since", "Origin", "Pragma", "Range", "Referer", "Sec-Fetch-Dest",
		"Sec-Fetch-Mode", "Sec-Fetch-Site", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
		"User-Agent", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Real-Ip",
		"X-Request-Id", "Traceparent",
	} {
		m[strings.ToLower(k)] = k
	}
	return m
}()

func asciiEqualFold(s, t string) bool {
	if len(s) != len(t) {
		return false
	}
	for i := 0; i < len(s); i++ {
		a, b := s[i], t[i]
		if 'A' <= a && a <= 'Z' {
			a += 'a' - 'A'
		}
		if 'A' <= b && b <= 'Z' {
			b += 'a' - 'A'
		}
		if a != b {
			return false
		}
	}
	return true
}

// errorStatus is the status to answer for an error reading a request
// head, and whether to answer at all (not for a closed connection or a
// timeout).
func errorStatus(err error) (int, string, bool) {
	var re *requestError
	if errors.As(err, &re) {
		return re.status, re.reason, true
	}
	return 0, "", false
}

// statusLine returns "HTTP/1.1 NNN Text\r\n" for code.
func statusLine(code int) string {
	if code >= 100 && code < 600 {
		if s := statusLines[code]; s != "" {
			return s
		}
	}
	text := http.StatusText(code)
	if text == "" {
		text = "status code " + strconv.Itoa(code)
	}
	return "HTTP/1.1 " + strconv.Itoa(code) + " " + text + "\r\n"
}

var statusLines = func() [600]string {
	var s [600]string
	for code := 100; code < 600; code++ {
		if text := http.StatusText(code); text != "" {
			s[code] = "HTTP/1.1 " + strconv.Itoa(code) + " " + text + "\r\n"
		}
	}
	return s
}()
