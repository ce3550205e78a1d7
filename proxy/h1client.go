package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"net/textproto"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/http/httpguts"
)

// h1Transport is edge's HTTP/1.1 client for plain-http backends. It writes a
// request and reads its answer in the caller's goroutine, one request at a
// time per connection, over keep-alive connections it pools per backend
// address. net/http's Transport hands every request to two goroutines per
// connection (a read loop and a write loop) through channels; in edge's
// keep-alive profile those hand-offs and the scheduling they cause cost about
// a fifth of the CPU (bench/README.md).
//
// It serves only the common case and hands everything else to fallback, the
// pool's *http.Transport: other schemes, upgrades, Expect: 100-continue,
// request trailers, and bodies of unknown length or over maxBufferedBody
// (those are streamed while the answer may already come, which needs
// net/http's two loops). A request body it takes is read whole before it is
// sent, so that a request on a keep-alive connection the backend had closed
// is sent again on a new one, as net/http does.
//
// Its answers are framed strictly (RFC 9112, section 6): a Transfer-Encoding
// other than chunked, differing Content-Lengths or a malformed one are
// protocol errors (502), and a connection whose framing is in doubt (both
// Transfer-Encoding and Content-Length) is not reused.
//
// Build one with newH1Transport. Safe for concurrent use.
type h1Transport struct {
	fallback       *http.Transport
	dialer         *net.Dialer
	headerTimeout  time.Duration // 0: none
	idleTimeout    time.Duration // 0: kept until the backend closes it
	maxIdlePerAddr int

	mu     sync.Mutex
	idle   map[string][]*h1Conn // most recently used last
	timer  *time.Timer          // sweeps expired idle connections; nil when none are idle
	closed bool
}

var _ http.RoundTripper = (*h1Transport)(nil)

// maxBufferedBody is the largest request body h1Transport sends itself.
const maxBufferedBody = 64 << 10

// newH1Transport returns an h1Transport with fallback's timeouts and idle
// limits, which handles what it does not.
func newH1Transport(fallback *http.Transport, t Timeouts) *h1Transport {
	return &h1Transport{
		fallback:       fallback,
		dialer:         &net.Dialer{Timeout: max(t.Connect, 0), KeepAlive: 30 * time.Second},
		headerTimeout:  max(t.ResponseHeader, 0),
		idleTimeout:    max(t.Idle, 0),
		maxIdlePerAddr: maxIdleConnsPerHost,
		idle:           make(map[string][]*h1Conn),
	}
}

// h1Conn is one connection to a backend with its buffers.
type h1Conn struct {
	net.Conn
	addr      string
	br        *bufio.Reader
	bw        *bufio.Writer
	idleSince time.Time

	shard *watchShard // its part of the table of exchanges (h1watch.go)
	// Guarded by shard.mu.
	ctx         context.Context // of the request in flight; nil when none
	interrupted bool            // the sweeper set a deadline in the past

	// headerBy is when the answer's header is due (UnixNano), 0 when no
	// header is awaited, headerTimedOut once the sweeper found it late.
	headerBy atomic.Int64
}

// handles reports whether r is one h1Transport sends itself.
func (t *h1Transport) handles(r *http.Request) bool {
	return r.URL.Scheme == "http" && sendable(r)
}

// sendable reports whether h1Transport can send r to a plain-http backend
// itself (whatever r.URL's scheme, for the direct path's client requests).
func sendable(r *http.Request) bool {
	if r.Method == http.MethodConnect || len(r.Trailer) > 0 {
		return false
	}
	if _, ok := r.Header["Expect"]; ok {
		return false
	}
	if _, ok := r.Header["Upgrade"]; ok {
		return false
	}
	if hasBody(r) && (r.ContentLength < 0 || r.ContentLength > maxBufferedBody) {
		return false
	}
	return true
}

// hasBody reports whether r carries a body to send.
func hasBody(r *http.Request) bool {
	return r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0
}

// RoundTrip implements http.RoundTripper.
func (t *h1Transport) RoundTrip(r *http.Request) (*http.Response, error) {
	if !t.handles(r) {
		return t.fallback.RoundTrip(r)
	}
	body, err := readBody(r)
	if r.Body != nil {
		r.Body.Close()
	}
	if err != nil {
		return nil, err
	}
	defer putBody(body)
	host := r.Host
	if host == "" {
		host = r.URL.Host
	}
	return t.send(r, canonicalAddr(r.URL), r.URL.RequestURI(), host, r.Header, body, nil)
}

// readBody reads the body of a request t handles (at most maxBufferedBody)
// into a pooled buffer, nil for a request without one. It does not close
// r.Body. Give the buffer back with putBody.
func readBody(r *http.Request) (*bytes.Buffer, error) {
	if !hasBody(r) {
		return nil, nil
	}
	body := bodyBuffers.Get().(*bytes.Buffer)
	n, err := io.Copy(body, io.LimitReader(r.Body, r.ContentLength))
	switch {
	case err != nil:
		putBody(body)
		return nil, fmt.Errorf("reading the request body: %w", err)
	case n != r.ContentLength:
		putBody(body)
		return nil, fmt.Errorf("reading the request body: %w", io.ErrUnexpectedEOF)
	}
	return body, nil
}

// putBody gives back a buffer of readBody's; nil is fine.
func putBody(body *bytes.Buffer) {
	if body != nil {
		body.Reset()
		bodyBuffers.Put(body)
	}
}

// informer is told of each 1xx answer before the final one; nil means
// the request context's httptrace.ClientTrace, if any.
type informer interface {
	got1xx(code int, header http.Header) error
}

// send writes a request to addr (a backend's host:port): r's method and
// context, with uri, host and header as given, then body (nil: none), and
// reads the answer's header. r becomes the answer's Request; its own URL,
// Host and Header are not used, so that the direct path (direct.go) sends
// the client's request without a copy.
func (t *h1Transport) send(r *http.Request, addr, uri, host string, header http.Header, body *bytes.Buffer, inform informer) (*http.Response, error) {
	ctx := r.Context()
	resend := idempotent(r.Method)
	for {
		pc, reused, err := t.get(ctx, addr, !resend)
		if err != nil {
			return nil, err
		}
		if err := ctx.Err(); err != nil {
			// Ended before anything was written: pc is as it was, and
			// keeps its idle clock (a new one starts it now).
			if !reused {
				pc.idleSince = time.Now()
			}
			t.keep(pc)
			return nil, fmt.Errorf("sending to %s: %w", addr, err)
		}
		res, sent, err := t.exchange(ctx, pc, r, uri, host, header, body, inform)
		if err == nil {
			return res, nil
		}
		pc.Close()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("sending to %s: %w", addr, ctx.Err())
		}
		if reused && !sent && resend && staleConnError(err) {
			// The backend had closed the idle connection before this
			// request reached it: send it again on a new one, as net/http
			// does for a request that may be sent twice.
			continue
		}
		return nil, err
	}
}

// staleConnError reports whether err is how a keep-alive connection the
// backend closed while it was idle fails: the end of the stream or a reset.
func staleConnError(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// canonicalAddr is u's host:port, port 80 by default.
func canonicalAddr(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	return net.JoinHostPort(u.Hostname(), "80")
}

// idempotent reports whether a request of this method may be sent twice
// (RFC 9110, section 9.2.2).
func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// get returns an idle connection to addr, or dials one. With check, an idle
// connection is first peeked at (alive), for a request that cannot be sent
// again if the backend had closed it.
func (t *h1Transport) get(ctx context.Context, addr string, check bool) (pc *h1Conn, reused bool, err error) {
	now := time.Now()
	t.mu.Lock()
	for conns := t.idle[addr]; len(conns) > 0; conns = t.idle[addr] {
		pc = conns[len(conns)-1]
		conns[len(conns)-1] = nil
		t.idle[addr] = conns[:len(conns)-1]
		if t.idleTimeout == 0 || now.Sub(pc.idleSince) < t.idleTimeout {
			t.mu.Unlock()
			if !check || pc.alive() {
				return pc, true, nil
			}
			pc.Close()
			t.mu.Lock()
			continue
		}
		pc.Close()
	}
	t.mu.Unlock()
	c, err := t.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, false, err // a *net.OpError with Op "dial": retried elsewhere
	}
	return &h1Conn{Conn: c, addr: addr, br: bufio.NewReaderSize(c, 4<<10), bw: bufio.NewWriterSize(c, 4<<10)}, false, nil
}

// put keeps pc for reuse, idle from now, or closes it when the pool is
// full or closed.
func (t *h1Transport) put(pc *h1Conn) {
	pc.idleSince = time.Now()
	t.keep(pc)
}

// keep pools pc as put does, with the idleSince it has.
func (t *h1Transport) keep(pc *h1Conn) {
	t.mu.Lock()
	conns := t.idle[pc.addr]
	if t.closed || len(conns) >= t.maxIdlePerAddr {
		t.mu.Unlock()
		pc.Close()
		return
	}
	t.idle[pc.addr] = append(conns, pc)
	if t.idleTimeout > 0 && t.timer == nil {
		t.timer = time.AfterFunc(t.idleTimeout, t.sweep)
	}
	t.mu.Unlock()
}

// sweep closes the idle connections older than idleTimeout and sets the
// timer again while some remain.
func (t *h1Transport) sweep() {
	now := time.Now()
	var expired []*h1Conn
	t.mu.Lock()
	next := time.Duration(0)
	for addr, conns := range t.idle {
		keep := conns[:0]
		for _, pc := range conns {
			if age := now.Sub(pc.idleSince); age >= t.idleTimeout {
				expired = append(expired, pc)
			} else {
				keep = append(keep, pc)
				if left := t.idleTimeout - age; next == 0 || left < next {
					next = left
				}
			}
		}
		clear(conns[len(keep):])
		if len(keep) == 0 {
			delete(t.idle, addr)
		} else {
			t.idle[addr] = keep
		}
	}
	t.timer = nil
	if next > 0 && !t.closed {
		t.timer = time.AfterFunc(next, t.sweep)
	}
	t.mu.Unlock()
	for _, pc := range expired {
		pc.Close()
	}
}

// CloseIdleConnections closes the idle connections, here and in fallback,
// and stops pooling new ones: the pool's generation is over.
func (t *h1Transport) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle, t.closed = make(map[string][]*h1Conn), true
	if t.timer != nil {
		t.timer.Stop()
		t.timer = nil
	}
	t.mu.Unlock()
	for _, conns := range idle {
		for _, pc := range conns {
			pc.Close()
		}
	}
	t.fallback.CloseIdleConnections()
}

// aLongTimeAgo is a deadline in the past: setting it interrupts a blocked
// read or write.
var aLongTimeAgo = time.Unix(1, 0)

// exchange sends r (with body, when not nil) on pc and reads the answer's
// header. sent reports whether any of the answer arrived, so that a failure
// before (a backend that closed an idle connection) may be retried on a new
// connection. On success the answer's body owns pc.
func (t *h1Transport) exchange(ctx context.Context, pc *h1Conn, r *http.Request, uri, host string, header http.Header, body *bytes.Buffer, inform informer) (res *http.Response, sent bool, err error) {
	pc.watch(ctx) // a cancel interrupts pc's reads and writes (h1watch.go)
	defer func() {
		if err != nil {
			pc.unwatch()
		}
	}()
	if err := ctx.Err(); err != nil {
		return nil, false, err // ended between send's check and watch
	}
	if err := writeRequest(pc.bw, r.Method, uri, host, header, body); err != nil {
		return nil, false, fmt.Errorf("writing the request to %s: %w", pc.addr, err)
	}
	if t.headerTimeout > 0 {
		// The sweeper enforces it (h1watch.go): no deadline to set and
		// clear on the connection for every request.
		pc.headerBy.Store(time.Now().Add(t.headerTimeout).UnixNano())
	}
	if _, err := pc.br.Peek(1); err != nil {
		return nil, false, fmt.Errorf("reading the response from %s: %w", pc.addr, err)
	}
	var ans *h1Answer
	for informational := 0; ; informational++ {
		if informational > maxInformational {
			return nil, true, fmt.Errorf("reading the response from %s: more than %d 1xx answers", pc.addr, maxInformational)
		}
		ans, err = readResponseHeader(pc.br, r)
		if err != nil {
			return nil, true, fmt.Errorf("reading the response from %s: %w", pc.addr, err)
		}
		res = &ans.res
		if res.StatusCode >= 200 || res.StatusCode == http.StatusSwitchingProtocols {
			break
		}
		// 1xx: pass it on as net/http's Transport does (ReverseProxy relays
		// 103 Early Hints through the trace), then read the final answer.
		if inform != nil {
			if err := inform.got1xx(res.StatusCode, res.Header); err != nil {
				return nil, true, err
			}
		} else if trace := httptrace.ContextClientTrace(ctx); trace != nil && trace.Got1xxResponse != nil {
			if err := trace.Got1xxResponse(res.StatusCode, textproto.MIMEHeader(res.Header)); err != nil {
				return nil, true, err
			}
		}
	}
	if t.headerTimeout > 0 && pc.headerBy.Swap(0) == headerTimedOut {
		// The sweeper found the time up as the header came: the answer
		// is late, as with a deadline, and pc is already interrupted.
		return nil, true, fmt.Errorf("reading the response from %s: %w", pc.addr, os.ErrDeadlineExceeded)
	}
	if res.StatusCode == http.StatusSwitchingProtocols {
		// Not asked for (upgrades go to fallback): nothing can follow it.
		return nil, true, fmt.Errorf("reading the response from %s: unsolicited 101 Switching Protocols", pc.addr)
	}
	if err := t.frame(ans, r, pc); err != nil {
		return nil, true, fmt.Errorf("reading the response from %s: %w", pc.addr, err)
	}
	return res, true, nil
}

// maxInformational bounds the 1xx answers read before the final one.
const maxInformational = 8

// bodyBuffers lends the buffers request bodies are read into.
var bodyBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// sendsZeroLength reports whether net/http sends "Content-Length: 0" for a
// request of this method without a body.
func sendsZeroLength(method string) bool {
	return method == http.MethodPost || method == http.MethodPut || method == http.MethodPatch
}

// writeRequest writes a request line, Host and header to w, then body
// (nil: none), and flushes. The header is as the proxy left it (hop-by-hop
// fields removed); a value with CR, LF or NUL is refused, as net/http does.
func writeRequest(w *bufio.Writer, method, uri, host string, header http.Header, body *bytes.Buffer) error {
	if uri == "" || !validRequestTarget(uri) || !httpguts.ValidHostHeader(host) {
		return fmt.Errorf("invalid request target %q or host %q", uri, host)
	}
	w.WriteString(method)
	w.WriteByte(' ')
	w.WriteString(uri)
	w.WriteString(" HTTP/1.1\r\nHost: ")
	w.WriteString(host)
	w.WriteString("\r\n")
	for k, vs := range header {
		switch k {
		case "Host", "Content-Length", "Transfer-Encoding", "Trailer", "Connection":
			continue // written here, or hop-by-hop
		case "User-Agent":
			// ReverseProxy sets an empty one so that none is added.
			if len(vs) == 0 || vs[0] == "" {
				continue
			}
		}
		if !httpguts.ValidHeaderFieldName(k) {
			return fmt.Errorf("invalid header field name %q", k)
		}
		for _, v := range vs {
			if !httpguts.ValidHeaderFieldValue(v) {
				return fmt.Errorf("invalid header field value for %q", k)
			}
			w.WriteString(k)
			w.WriteString(": ")
			w.WriteString(v)
			w.WriteString("\r\n")
		}
	}
	switch {
	case body != nil:
		w.WriteString("Content-Length: ")
		w.Write(strconv.AppendInt(w.AvailableBuffer(), int64(body.Len()), 10))
		w.WriteString("\r\n\r\n")
		w.Write(body.Bytes())
	case sendsZeroLength(method):
		w.WriteString("Content-Length: 0\r\n\r\n")
	default:
		w.WriteString("\r\n")
	}
	return w.Flush()
}

// validRequestTarget reports whether a request target has no byte that
// would break the request line (controls, spaces).
func validRequestTarget(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] == 0x7f {
			return false
		}
	}
	return true
}

// statusText holds "200 OK" and the like, the Status of the answers
// h1Transport reads (the backend's own reason phrase is dropped, as net/http's
// server writes its own).
var statusText = func() map[int]string {
	m := make(map[int]string)
	for code := 100; code < 600; code++ {
		if t := http.StatusText(code); t != "" {
			m[code] = strconv.Itoa(code) + " " + t
		}
	}
	return m
}()

// readResponseHeader reads a status line and header. The status line is
// parsed strictly: HTTP/1.0 or HTTP/1.1, a three-digit code.
func readResponseHeader(br *bufio.Reader, req *http.Request) (*h1Answer, error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, errors.New("status line too long")
		}
		return nil, err
	}
	line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
	// "HTTP/1.1 200 OK", the reason phrase optional.
	if len(line) < 12 || string(line[:7]) != "HTTP/1." || (line[7] != '0' && line[7] != '1') || line[8] != ' ' || (len(line) > 12 && line[12] != ' ') {
		return nil, fmt.Errorf("malformed status line %q", truncate(line))
	}
	code := 0
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return nil, fmt.Errorf("malformed status code in %q", truncate(line))
		}
		code = code*10 + int(c-'0')
	}
	if code < 100 {
		return nil, fmt.Errorf("malformed status code in %q", truncate(line))
	}
	minor := int(line[7] - '0')
	status, ok := statusText[code]
	if !ok {
		status = strconv.Itoa(code)
	}
	mh, err := readFields(br)
	if err != nil {
		return nil, fmt.Errorf("malformed header: %w", err)
	}
	return &h1Answer{res: http.Response{
		Status:     status,
		StatusCode: code,
		Proto:      protoName[minor],
		ProtoMajor: 1,
		ProtoMinor: minor,
		Header:     http.Header(mh),
		Request:    req,
	}}, nil
}

// h1Answer is an answer read by h1Transport and its body, in one
// allocation.
type h1Answer struct {
	res  http.Response
	body h1Body
}

var protoName = [2]string{"HTTP/1.0", "HTTP/1.1"}

// truncate shortens a line quoted in an error.
func truncate(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}

// frame decides how res's body is delimited (RFC 9112, section 6.3) and
// gives it a Body that owns pc: back to the pool at its end when the
// connection may carry another request, closed otherwise.
func (t *h1Transport) frame(ans *h1Answer, r *http.Request, pc *h1Conn) error {
	res := &ans.res
	h := res.Header
	keepAlive := res.ProtoMinor == 1
	for _, v := range h["Connection"] {
		for tok := range strings.SplitSeq(v, ",") {
			switch tok = textproto.TrimString(tok); {
			case strings.EqualFold(tok, "close"):
				keepAlive = false
			case strings.EqualFold(tok, "keep-alive") && res.ProtoMinor == 0:
				keepAlive = true
			}
		}
	}
	chunked := false
	if te, ok := h["Transfer-Encoding"]; ok {
		if len(te) != 1 || !strings.EqualFold(textproto.TrimString(te[0]), "chunked") || res.ProtoMinor == 0 {
			return fmt.Errorf("unsupported Transfer-Encoding %q", te)
		}
		chunked = true
		delete(h, "Transfer-Encoding")
		res.TransferEncoding = []string{"chunked"}
		if _, ok := h["Content-Length"]; ok {
			// Both: Transfer-Encoding wins (RFC 9112, section 6.3, 3), and
			// the connection is not trusted with another request.
			delete(h, "Content-Length")
			keepAlive = false
		}
	}
	length := int64(-1)
	if cl, ok := h["Content-Length"]; ok && !chunked {
		for i, v := range cl {
			n, err := parseContentLength(v)
			if err != nil || (i > 0 && n != length) {
				return fmt.Errorf("invalid Content-Length %q", cl)
			}
			length = n
		}
		if len(cl) > 1 {
			h["Content-Length"] = cl[:1]
		}
	}
	noBody := r.Method == http.MethodHead || res.StatusCode == http.StatusNoContent || res.StatusCode == http.StatusNotModified
	res.Close = !keepAlive
	if noBody {
		// A HEAD's answer keeps the length it announces.
		res.ContentLength = max(length, -1)
		if r.Method != http.MethodHead || length < 0 {
			res.ContentLength = 0
		}
		res.Body = http.NoBody
		t.release(pc, keepAlive)
		return nil
	}
	if vs, ok := h["Trailer"]; ok && chunked {
		res.Trailer = make(http.Header)
		for _, v := range vs {
			for k := range strings.SplitSeq(v, ",") {
				if k = textproto.TrimString(k); k != "" {
					res.Trailer[textproto.CanonicalMIMEHeaderKey(k)] = nil
				}
			}
		}
		delete(h, "Trailer")
	}
	b := &ans.body
	*b = h1Body{t: t, pc: pc, keepAlive: keepAlive, res: res}
	switch {
	case chunked:
		b.r = httputil.NewChunkedReader(pc.br)
		b.chunked = true
		res.ContentLength = -1
	case length == 0:
		res.ContentLength = 0
		res.Body = http.NoBody
		t.release(pc, keepAlive)
		return nil
	case length > 0:
		b.left = length
		res.ContentLength = length
	default:
		// Delimited by the end of the connection.
		b.r = pc.br
		b.keepAlive = false
		b.untilEOF = true
		res.Close = true
		res.ContentLength = -1
	}
	res.Body = b
	return nil
}

// parseContentLength parses a Content-Length value: digits only.
func parseContentLength(v string) (int64, error) {
	v = textproto.TrimString(v)
	if v == "" || len(v) > 18 {
		return 0, errors.New("invalid")
	}
	var n int64
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return 0, errors.New("invalid")
		}
		n = n*10 + int64(v[i]-'0')
	}
	return n, nil
}

// release ends a response's hold on pc: back to the pool when the
// connection may carry another request and the request's context did not
// interrupt it, closed otherwise.
func (t *h1Transport) release(pc *h1Conn, keepAlive bool) {
	if pc.unwatch() && keepAlive && pc.br.Buffered() == 0 {
		t.put(pc)
		return
	}
	pc.Close()
}

// h1Body is the body of an answer read by h1Transport.
type h1Body struct {
	t         *h1Transport
	pc        *h1Conn // nil once released
	res       *http.Response
	r         io.Reader // chunked or until EOF; nil for a Content-Length
	left      int64     // bytes still to read, for a Content-Length
	chunked   bool
	untilEOF  bool
	keepAlive bool
	err       error // sticky
}

// Read implements io.Reader.
func (b *h1Body) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	var n int
	var err error
	if b.r == nil {
		if int64(len(p)) > b.left {
			p = p[:b.left]
		}
		n, err = b.pc.br.Read(p)
		b.left -= int64(n)
		if b.left == 0 {
			err = io.EOF
		} else if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
	} else {
		n, err = b.r.Read(p)
	}
	switch {
	case err == nil:
		return n, nil
	case err == io.EOF && b.chunked:
		if terr := b.readTrailer(); terr != nil {
			err = terr
			b.keepAlive = false
		}
	case err == io.EOF:
	default:
		b.keepAlive = false
		if ctxErr := b.res.Request.Context().Err(); ctxErr != nil {
			err = ctxErr
		}
	}
	if err == io.EOF && !b.untilEOF {
		b.t.release(b.pc, b.keepAlive)
	} else {
		b.pc.unwatch()
		b.pc.Close()
	}
	b.pc, b.err = nil, err
	return n, err
}

// readTrailer reads the trailer section after the last chunk into the
// response's Trailer (RFC 9112, section 7.1.2).
func (b *h1Body) readTrailer() error {
	br := b.pc.br
	if p, err := br.Peek(2); err == nil && p[0] == '\r' && p[1] == '\n' {
		br.Discard(2)
		return nil
	}
	tp := textproto.Reader{R: br}
	mh, err := tp.ReadMIMEHeader()
	if err != nil {
		return fmt.Errorf("malformed trailer: %w", err)
	}
	if len(mh) == 0 {
		return nil
	}
	if b.res.Trailer == nil {
		b.res.Trailer = make(http.Header, len(mh))
	}
	for k, vs := range mh {
		b.res.Trailer[k] = vs
	}
	return nil
}

// Close implements io.Closer: a body not read to its end closes the
// connection, whose framing is then unknown.
func (b *h1Body) Close() error {
	if b.pc != nil {
		b.pc.unwatch()
		b.pc.Close()
		b.pc = nil
	}
	if b.err == nil {
		b.err = errReadAfterClose
	}
	return nil
}

var errReadAfterClose = errors.New("read after the response body was closed")
