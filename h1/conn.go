package h1

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// bgReadAfter is how long a handler runs before the connection starts
// watching the client for a disconnect (Server.sweep looks every
// bgReadAfter/2) (which cancels the request's
// context, as net/http does for every request). Most proxied requests are
// answered sooner, and skip the watch's goroutine and wake-ups.
const bgReadAfter = 100 * time.Millisecond

var (
	errHijackAfterWrite = errors.New("h1: Hijack after the response started")
	aLongTimeAgo        = time.Unix(1, 0)
)

// Buffers are the connection's only while it serves a request: an idle
// connection holds none (nginx frees its buffers the same way).
var (
	readerPool  = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4096) }}
	writerPool  = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4096) }}
	scratchPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}
)

// Connection states, for Shutdown.
const (
	stateNew int32 = iota
	stateActive
	stateIdle
	stateClosing
)

// conn is one HTTP/1.1 connection.
type conn struct {
	srv      *Server
	rwc      net.Conn
	tlsState *tls.ConnectionState
	remote   string
	state    atomic.Int32
	cr       connReader
	br       *bufio.Reader
	bw       *bufio.Writer
	scratch  *[]byte
	hijacked bool
	linger   bool   // close with lingerClose: an answer went out
	parkTok  uint64 // its token in srv.parking while parked (under parking.mu)
	resp     response
	tmpl     http.Request // parsed into, then copied by WithContext
	lastPOST bool
	wdl      time.Time // the write deadline in force (setWriteDeadline)

	// contMu orders a 100 Continue (writeContinue) before the response;
	// begun: the response has started (for requests that expect 100).
	contMu sync.Mutex
	begun  bool

	// The disconnect watch (bgReadAfter): mu guards the rest.
	mu       sync.Mutex
	bgSince  time.Time // when the handler started
	bgArmed  bool      // the handler is running; the timer may start a watch
	bgBody   *body
	bgDone   chan struct{} // a watch runs until this is closed
	bgCancel context.CancelFunc
	gone     bool // the watch saw the client close
}

// connReader is what the connection's bufio.Reader reads: a byte taken by
// an idle wait or a disconnect watch first, then the connection.
type connReader struct {
	c       *conn
	pending bool
	b       [1]byte
}

// Read implements io.Reader.
func (cr *connReader) Read(p []byte) (int, error) {
	if cr.pending && len(p) > 0 {
		cr.pending = false
		p[0] = cr.b[0]
		return 1, nil
	}
	return cr.c.rwc.Read(p)
}

// serve runs the connection until it closes, is hijacked or the server
// stops.
func (c *conn) serve(ctx context.Context) {
	if tc, ok := c.rwc.(*tls.Conn); ok {
		st := tc.ConnectionState()
		c.tlsState = &st
	}
	c.cr.c = c
	c.run(ctx, true, false, time.Time{})
}

// idleSwap is how long a connection waits for its next request on the
// goroutine that served the last one. Past it, the connection is parked
// (parking: its socket waits in the server's epoll instance, with no
// goroutine) and the goroutine ends: its stack, grown by the handler
// chain (8 KiB and more), goes back to the runtime. Where parking is not
// available, a new goroutine waits instead. Busy keep-alive connections
// never swap.
const idleSwap = 250 * time.Millisecond

// run serves requests until the connection ends, or hands the wait for
// the next request to a fresh goroutine (idleSwap). swapped says that this
// goroutine is that fresh one, whose first wait keeps idleUntil, the
// deadline the wait had (zero: none).
func (c *conn) run(ctx context.Context, first, swapped bool, idleUntil time.Time) {
	handedOver := false
	defer func() {
		if handedOver {
			return
		}
		if v := recover(); v != nil && v != http.ErrAbortHandler {
			buf := make([]byte, 64<<10)
			buf = buf[:runtime.Stack(buf, false)]
			c.srv.logf("h1: panic serving %v: %v\n%s", c.remote, v, buf)
		}
		c.end()
	}()
	cfg := c.srv.Config
	for {
		waitStart := time.Now()
		// Wait for the request's first byte without buffers.
		wait := cfg.IdleTimeout
		if wait == 0 {
			wait = cfg.ReadTimeout
		}
		if first {
			wait = cfg.ReadHeaderTimeout
			if wait == 0 {
				wait = cfg.ReadTimeout
			}
		}
		if c.br == nil || c.br.Buffered() == 0 {
			c.release()
			if !c.cr.pending {
				deadline := idleUntil
				if !swapped && wait > 0 {
					deadline = waitStart.Add(wait)
				}
				swap := !first && !swapped && (deadline.IsZero() || deadline.Sub(waitStart) > 2*idleSwap)
				swapped = false
				if swap {
					_ = c.rwc.SetReadDeadline(waitStart.Add(idleSwap))
				} else {
					_ = c.rwc.SetReadDeadline(deadline)
				}
				if _, err := io.ReadFull(c.rwc, c.cr.b[:]); err != nil {
					if swap && errors.Is(err, os.ErrDeadlineExceeded) {
						c.shed()
						handedOver = true
						if p := c.srv.parking; p == nil || !p.park(c, ctx, deadline) {
							go c.waitIdle(ctx, deadline)
						}
					}
					return
				}
				c.cr.pending = true
			}
		}
		if !c.state.CompareAndSwap(stateIdle, stateActive) && !c.state.CompareAndSwap(stateNew, stateActive) {
			return // Shutdown closed it
		}
		c.srv.setState(c, http.StateActive)
		c.acquire()
		start := time.Now()
		if first {
			start = waitStart // the first request's head is due from the handshake on
		}
		if !c.serveOne(ctx, start) {
			return
		}
		first = false
		if c.srv.shuttingDown() {
			return
		}
		c.state.Store(stateIdle)
		c.srv.setState(c, http.StateIdle)
		if c.srv.shuttingDown() {
			return
		}
	}
}

// waitIdle is the swapped wait for the next request (idleSwap), on a new
// goroutine, when the connection could not be parked; it goes on serving
// when the request comes.
func (c *conn) waitIdle(ctx context.Context, deadline time.Time) {
	c.run(ctx, false, true, deadline)
}

// shed drops what a busy connection keeps between requests (the last
// request, the header map, the pending-body buffer)
// when it goes idle.
func (c *conn) shed() {
	c.tmpl = http.Request{}
	c.resp = response{}
}

// end closes the connection (unless hijacked) after its last answer.
func (c *conn) end() {
	if c.linger && !c.hijacked {
		c.lingerClose()
	}
	c.release()
	if !c.hijacked {
		_ = c.rwc.Close()
		c.srv.setState(c, http.StateClosed)
	}
	c.srv.forget(c)
}

// setWriteDeadline sets the connection's write deadline to t, lazily: a
// deadline later than the one in force by less than a sixteenth of the time
// left until t is not applied, so a write still gets at least 15/16 of the
// time it was given. The proxy moves the deadline on before every write
// (limits.write_timeout, like nginx's send_timeout); applying each move is a
// timer change in the runtime, three per keep-alive request, about 2 % of
// edge's CPU there. Only the serving goroutine calls it, as it does Write.
func (c *conn) setWriteDeadline(t time.Time) error {
	if !t.IsZero() && !c.wdl.IsZero() && !t.Before(c.wdl) && t.Sub(c.wdl) < time.Until(t)/16 {
		return nil
	}
	c.wdl = t
	return c.rwc.SetWriteDeadline(t)
}

// setReadDeadline sets a deadline d from now, or none for 0.
func setReadDeadline(c net.Conn, d time.Duration) {
	if d > 0 {
		_ = c.SetReadDeadline(time.Now().Add(d))
	} else {
		_ = c.SetReadDeadline(time.Time{})
	}
}

func (c *conn) acquire() {
	if c.br == nil {
		c.br = readerPool.Get().(*bufio.Reader)
		c.br.Reset(&c.cr)
		c.bw = writerPool.Get().(*bufio.Writer)
		c.bw.Reset(c.rwc)
		c.scratch = scratchPool.Get().(*[]byte)
	}
}

// release returns the buffers to their pools (the reader only when it
// holds nothing of the client's).
func (c *conn) release() {
	if c.br == nil || c.hijacked {
		return
	}
	if c.br.Buffered() > 0 {
		return
	}
	c.br.Reset(nil)
	readerPool.Put(c.br)
	c.bw.Reset(nil)
	writerPool.Put(c.bw)
	if cap(*c.scratch) <= 64<<10 {
		*c.scratch = (*c.scratch)[:0]
		scratchPool.Put(c.scratch)
	}
	c.br, c.bw, c.scratch = nil, nil, nil
}

// serveOne reads and answers one request. It reports whether the
// connection can carry another.
func (c *conn) serveOne(ctx context.Context, start time.Time) bool {
	cfg := c.srv.Config
	hdrDeadline, wholeDeadline := time.Time{}, time.Time{}
	if d := cfg.ReadTimeout; d > 0 {
		wholeDeadline = start.Add(d)
	}
	if d := cfg.ReadHeaderTimeout; d > 0 {
		hdrDeadline = start.Add(d)
	} else {
		hdrDeadline = wholeDeadline
	}
	_ = c.rwc.SetReadDeadline(hdrDeadline)
	if c.lastPOST {
		// RFC 9112, section 2.2: an old client may send a CRLF after a
		// POST body (as net/http, at most that).
		if p, _ := c.br.Peek(2); len(p) == 2 && p[0] == '\r' && p[1] == '\n' {
			_, _ = c.br.Discard(2)
		}
	}
	head, buf, err := readHead(c.br, *c.scratch, c.srv.headLimit())
	*c.scratch = buf[:0]
	if err != nil {
		c.refuse(err)
		return false
	}
	c.tmpl = http.Request{}
	req := &c.tmpl
	if err := parseRequest(head, req); err != nil {
		c.refuse(err)
		return false
	}
	c.lastPOST = req.Method == http.MethodPost
	_ = c.rwc.SetReadDeadline(wholeDeadline)

	req.RemoteAddr = c.remote
	req.TLS = c.tlsState
	var b *body
	if req.ContentLength != 0 {
		b = &body{c: c, br: c.br, chunked: req.ContentLength < 0, left: max(req.ContentLength, 0)}
		req.Body = b
	} else {
		req.Body = http.NoBody
	}
	if exp := req.Header["Expect"]; len(exp) > 0 {
		if len(exp) == 1 && asciiEqualFold(exp[0], "100-continue") {
			if b != nil && req.ProtoMinor >= 1 {
				b.continue_ = true
			}
		} else {
			c.writeError(http.StatusExpectationFailed, "")
			return false
		}
	}
	rctx, cancel := context.WithCancel(ctx)
	req = req.WithContext(rctx)
	if b != nil {
		b.req = req // for the trailer
	}

	w := &c.resp
	*w = response{c: c, req: req, header: w.header, pend: w.pend[:0], trailers: w.trailers[:0], expectCont: b != nil && b.continue_}
	c.begun = false
	if w.header == nil {
		w.header = make(http.Header, 8)
	}
	c.runHandler(w, req, b, cancel)
	if w.hijacked {
		return false
	}
	keep := !req.Close && !w.closeAfter
	if b != nil {
		if !w.headerSent {
			// Read what the handler left before the head goes out, so that
			// it can say Connection: close when the rest is too long.
			if !b.finish() {
				w.closeAfter = true
			}
		}
	}
	werr := w.finish()
	if b != nil && !w.closeAfter && !b.finish() {
		w.closeAfter = true
	}
	keep = keep && !w.closeAfter && werr == nil && !c.gone
	clear(w.header)
	w.req, c.tmpl = nil, http.Request{} // nothing of this request outlives it
	if !keep {
		c.linger = true
	}
	return keep
}

// runHandler runs the handler with the disconnect watch armed; the
// watch is stopped and the request's context cancelled however the
// handler ends (a panic goes on to serve's recover).
func (c *conn) runHandler(w *response, req *http.Request, b *body, cancel context.CancelFunc) {
	defer cancel()
	c.armWatch(b, cancel)
	defer c.disarmWatch()
	c.srv.Config.Handler.ServeHTTP(w, req)
}

// refuse answers a request edge will not read (or says nothing when the
// client closed or went quiet), then the connection closes.
func (c *conn) refuse(err error) {
	if code, reason, ok := errorStatus(err); ok {
		c.writeError(code, reason)
		return
	}
	var ne net.Error
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		return // net/http answers nothing either
	}
}

// writeError writes a plain-text error response that closes the
// connection.
func (c *conn) writeError(code int, reason string) {
	_ = c.setWriteDeadline(time.Now().Add(time.Second))
	text := http.StatusText(code)
	if reason != "" && code == http.StatusBadRequest {
		text += ": " + reason
	}
	fmt.Fprintf(c.bw, "%sContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%d %s", statusLine(code), len(text)+4, code, text)
	_ = c.bw.Flush()
	c.linger = true
}

// lingerClose ends a connection after its last answer without
// destroying that answer: closing a socket with unread input makes the
// kernel reset it, and a reset can reach the client before it has read
// the response. So edge half-closes (TLS close_notify, then FIN), reads
// and drops what the client still sends for up to lingerTime, then closes
// (net/http's closeWriteAndWait sleeps 500 ms instead).
func (c *conn) lingerClose() {
	if tc, ok := c.rwc.(*tls.Conn); ok {
		_ = tc.CloseWrite()
	}
	if !closeWrite(c.rwc) {
		return
	}
	_ = c.rwc.SetReadDeadline(time.Now().Add(lingerTime))
	var buf [1024]byte
	for range 256 {
		if _, err := c.rwc.Read(buf[:]); err != nil {
			return
		}
	}
}

// lingerTime bounds lingerClose's wait for the client to close.
const lingerTime = 500 * time.Millisecond

// closeWrite shuts down the write side of the TCP connection under c
// (through TLS: the close_notify is the caller's).
func closeWrite(c net.Conn) bool {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite() == nil
	}
	return false
}

// writeContinue sends 100 Continue to a client waiting for it to send
// the body, unless the response has begun. It may run on another
// goroutine than the handler's (net/http's Transport reads request bodies
// on its own), so it writes to the connection directly, under contMu,
// which the response takes before its first byte (response.begin).
func (c *conn) writeContinue() error {
	c.contMu.Lock()
	defer c.contMu.Unlock()
	if c.begun {
		return nil
	}
	_, err := io.WriteString(c.rwc, "HTTP/1.1 100 Continue\r\n\r\n")
	return err
}

// takeContinue reports whether the 100 Continue is still to be sent, and
// marks it sent.
func (b *body) takeContinue() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	ok := b.continue_
	b.continue_ = false
	return ok
}

// armWatch lets the disconnect watch start (Server.sweep) if the handler
// is still running after bgReadAfter. No timer per request: arming and
// re-arming a timer on every request cost more than the rest of the
// connection's work (each one wakes the runtime's network poller).
func (c *conn) armWatch(b *body, cancel context.CancelFunc) {
	c.mu.Lock()
	c.bgArmed, c.bgBody, c.bgCancel, c.bgSince = true, b, cancel, time.Now()
	c.mu.Unlock()
}

// startWatch, called by the server's sweep, starts the watch of a
// connection whose handler has run for bgReadAfter: once the request body
// has been read (or there is none) and nothing more of the client's is
// buffered, one byte is read from the connection; an error there means the
// client is gone and cancels the request.
func (c *conn) startWatch(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.bgArmed || c.bgDone != nil || c.cr.pending || now.Sub(c.bgSince) < bgReadAfter {
		return
	}
	if b := c.bgBody; b != nil && !b.done.Load() {
		return // the handler reads the body; a cut shows there
	}
	if c.br == nil || c.br.Buffered() > 0 {
		return // a pipelined request is already here
	}
	done := make(chan struct{})
	c.bgDone = done
	cancel := c.bgCancel
	go func() {
		defer close(done)
		n, err := c.rwc.Read(c.cr.b[:])
		c.mu.Lock()
		defer c.mu.Unlock()
		if n == 1 {
			c.cr.pending = true
			return
		}
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			c.gone = true
			cancel()
		}
	}()
}

// disarmWatch stops any watch and waits for it.
func (c *conn) disarmWatch() {
	c.mu.Lock()
	c.bgArmed = false
	done := c.bgDone
	c.mu.Unlock()
	if done == nil {
		return
	}
	_ = c.rwc.SetReadDeadline(aLongTimeAgo)
	<-done
	_ = c.rwc.SetReadDeadline(time.Time{})
	c.mu.Lock()
	c.bgDone = nil
	c.mu.Unlock()
}
