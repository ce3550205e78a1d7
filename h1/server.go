package h1

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Server serves HTTP/1.1 over TLS (or plain TCP when Config.TLSConfig is
// nil) with its own parser and response writer, and hands every
// connection that negotiates h2 by ALPN to Config, net/http's server,
// unchanged. The zero value is not usable: set Config.
//
// From Config it takes Handler, TLSConfig, ReadHeaderTimeout, ReadTimeout,
// IdleTimeout, MaxHeaderBytes, ErrorLog and ConnState, with net/http's
// meanings; WriteTimeout, ConnContext and BaseContext are not supported
// (edge sets write deadlines per write, through http.ResponseController).
// As with net/http, a request's context carries http.ServerContextKey
// (Config) and http.LocalAddrContextKey: httputil.ReverseProxy aborts a
// response whose body copy failed (panic(http.ErrAbortHandler)) only when
// it finds the first, and without the abort a backend cut in the middle of
// a chunked body would reach the client as a complete answer.
// What it does differently from net/http's HTTP/1 server:
//   - It refuses what RFC 9112 lets a server refuse and net/http accepts:
//     bare LF or CR line ends, obsolete line folding, Transfer-Encoding with
//     Content-Length or in HTTP/1.0, a repeated Content-Length, request
//     lines over 8 KiB (414).
//   - It watches for a client's disconnect only once a handler has run for
//     bgReadAfter, instead of from every request's start.
//   - An idle connection holds no buffer: it waits for the next request's
//     first byte with a one-byte read. Past idleSwap it holds no goroutine
//     either (parking, on Linux).
//
// Its methods are safe for concurrent use.
type Server struct {
	Config *http.Server

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	h2        *handoff
	parking   *parking // idle connections past idleSwap; nil: each keeps a goroutine
	done      atomic.Bool
	closing   chan struct{}
	dateCache atomic.Pointer[dateStamp]
}

type dateStamp struct {
	sec  int64
	text string
}

// Serve accepts connections on ln until Shutdown or Close, and returns
// http.ErrServerClosed then.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.done.Load() {
		s.mu.Unlock()
		return http.ErrServerClosed
	}
	if s.listeners == nil {
		s.listeners = map[net.Listener]struct{}{}
		s.conns = map[*conn]struct{}{}
		s.closing = make(chan struct{})
		go s.sweep(s.closing)
		p, err := newParking()
		if err != nil {
			s.logf("h1: idle connections keep a goroutine each: %v", err)
		}
		s.parking = p
	}
	s.listeners[ln] = struct{}{}
	var tlsConf *tls.Config
	if s.Config.TLSConfig != nil {
		tlsConf = s.Config.TLSConfig.Clone()
		if len(tlsConf.NextProtos) == 0 {
			tlsConf.NextProtos = []string{"h2", "http/1.1"}
		}
		if s.h2 == nil {
			s.h2 = newHandoff(ln.Addr())
			h2 := s.h2
			go func() { _ = s.Config.Serve(h2) }()
		}
	}
	s.mu.Unlock()

	var delay time.Duration
	for {
		rw, err := ln.Accept()
		if err != nil {
			if s.done.Load() {
				return http.ErrServerClosed
			}
			if te, ok := err.(interface{ Temporary() bool }); ok && te.Temporary() {
				// EMFILE and the like: net/http's back-off.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.logf("h1: accept error: %v; retrying in %v", err, delay)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		c := &conn{srv: s, rwc: rw, remote: rw.RemoteAddr().String()}
		if tlsConf != nil {
			c.rwc = tls.Server(rw, tlsConf) // ConnState sees the *tls.Conn, as with net/http
		}
		if !s.track(c) {
			_ = rw.Close()
			return http.ErrServerClosed
		}
		s.setState(c, http.StateNew)
		go s.start(c, tlsConf)
	}
}

// connContext is the base of every request context on c, with the values
// net/http's server puts there.
func (s *Server) connContext(c *conn) context.Context {
	ctx := context.WithValue(context.Background(), http.ServerContextKey, s.Config)
	return context.WithValue(ctx, http.LocalAddrContextKey, c.rwc.LocalAddr())
}

// start completes the TLS handshake, then serves HTTP/1.1 itself or hands
// an h2 connection to net/http.
func (s *Server) start(c *conn, tlsConf *tls.Config) {
	if tlsConf == nil {
		c.serve(s.connContext(c))
		return
	}
	tc := c.rwc.(*tls.Conn)
	if d := s.handshakeTimeout(); d > 0 {
		_ = tc.SetDeadline(time.Now().Add(d))
	}
	if err := tc.HandshakeContext(context.Background()); err != nil {
		var re tls.RecordHeaderError
		if errors.As(err, &re) && re.Conn != nil && looksLikeHTTP(re.RecordHeader) {
			_, _ = io.WriteString(re.Conn, "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
			_ = re.Conn.Close()
		} else if !errors.Is(err, io.EOF) {
			s.logf("http: TLS handshake error from %s: %v", c.remote, err)
		}
		_ = tc.Close()
		s.setState(c, http.StateClosed)
		s.forget(c)
		return
	}
	_ = tc.SetDeadline(time.Time{})
	switch tc.ConnectionState().NegotiatedProtocol {
	case "", "http/1.1":
		c.serve(s.connContext(c))
	case "h2":
		s.forget(c)
		if !s.h2.give(tc) {
			_ = tc.Close()
		}
	default: // acme-tls/1: the handshake was the answer
		_ = tc.Close()
		s.setState(c, http.StateClosed)
		s.forget(c)
	}
}

// looksLikeHTTP reports whether a TLS record header is the start of a
// plain HTTP request (answered 400, as net/http does).
func looksLikeHTTP(hdr [5]byte) bool {
	switch string(hdr[:]) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO", "PATCH", "DELET":
		return true
	}
	return false
}

// handshakeTimeout is net/http's: the shortest of the read and write
// timeouts set.
func (s *Server) handshakeTimeout() time.Duration {
	var d time.Duration
	for _, t := range []time.Duration{s.Config.ReadHeaderTimeout, s.Config.ReadTimeout, s.Config.WriteTimeout} {
		if t > 0 && (d == 0 || t < d) {
			d = t
		}
	}
	return d
}

func (s *Server) track(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done.Load() {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) forget(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

func (s *Server) setState(c *conn, st http.ConnState) {
	if hook := s.Config.ConnState; hook != nil {
		hook(c.rwc, st)
	}
}

func (s *Server) shuttingDown() bool { return s.done.Load() }

// headLimit is net/http's limit on a request head: MaxHeaderBytes (1 MiB
// when unset) and 4 KiB of slack.
func (s *Server) headLimit() int {
	n := s.Config.MaxHeaderBytes
	if n <= 0 {
		n = http.DefaultMaxHeaderBytes
	}
	return n + 4096
}

func (s *Server) logf(format string, args ...any) {
	if l := s.Config.ErrorLog; l != nil {
		l.Printf(format, args...)
	} else {
		log.Printf(format, args...)
	}
}

// date returns the Date header's value for now, formatted once a second.
func (s *Server) date() string {
	now := time.Now()
	sec := now.Unix()
	if d := s.dateCache.Load(); d != nil && d.sec == sec {
		return d.text
	}
	d := &dateStamp{sec: sec, text: now.UTC().Format(http.TimeFormat)}
	s.dateCache.Store(d)
	return d.text
}

// sweep starts the disconnect watch of every connection whose handler has
// run for bgReadAfter, until closing is closed.
func (s *Server) sweep(closing <-chan struct{}) {
	t := time.NewTicker(bgReadAfter / 2)
	defer t.Stop()
	var active []*conn
	for {
		select {
		case <-closing:
			return
		case now := <-t.C:
			// Collected first: the accept loop must never wait for a
			// connection's lock.
			s.mu.Lock()
			for c := range s.conns {
				if c.state.Load() == stateActive {
					active = append(active, c)
				}
			}
			s.mu.Unlock()
			for i, c := range active {
				c.startWatch(now)
				active[i] = nil
			}
			active = active[:0]
		}
	}
}

// Shutdown stops accepting, closes idle connections and waits until the
// active ones have finished their requests (they close after their
// answer) or ctx ends; it shuts Config down too (HTTP/2 connections get
// GOAWAY there). Connections that have not sent a request are left to
// Config.ConnState's owner or to their read timeouts, as with net/http.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stop()
	h2err := make(chan error, 1)
	go func() { h2err <- s.Config.Shutdown(ctx) }()
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if s.closeIdle() {
			return <-h2err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Close closes the listeners and every connection at once.
func (s *Server) Close() error {
	s.stop()
	s.mu.Lock()
	for c := range s.conns {
		s.closeConn(c)
	}
	s.mu.Unlock()
	return s.Config.Close()
}

func (s *Server) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done.Swap(true) {
		return
	}
	if s.closing != nil {
		close(s.closing)
	}
	for ln := range s.listeners {
		_ = ln.Close()
	}
	if s.h2 != nil {
		s.h2.close()
	}
	if s.parking != nil {
		s.parking.close()
	}
}

// closeIdle closes the connections waiting between requests and reports
// whether none is left.
func (s *Server) closeIdle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if c.state.CompareAndSwap(stateIdle, stateClosing) {
			s.closeConn(c)
		}
	}
	return len(s.conns) == 0
}

// closeConn closes c; a parked connection goes on from its wait, which
// then fails and ends it as any closed connection ends.
func (s *Server) closeConn(c *conn) {
	var pk *parked
	if s.parking != nil {
		pk = s.parking.unpark(c)
	}
	_ = c.rwc.Close()
	if pk != nil {
		go pk.resume()
	}
}

// handoff is the listener through which net/http's server receives the
// TLS connections that negotiated h2.
type handoff struct {
	addr   net.Addr
	ch     chan net.Conn
	once   sync.Once
	closed chan struct{}
}

func newHandoff(addr net.Addr) *handoff {
	return &handoff{addr: addr, ch: make(chan net.Conn), closed: make(chan struct{})}
}

func (h *handoff) give(c net.Conn) bool {
	select {
	case h.ch <- c:
		return true
	case <-h.closed:
		return false
	}
}

// Accept implements net.Listener.
func (h *handoff) Accept() (net.Conn, error) {
	select {
	case c := <-h.ch:
		return c, nil
	case <-h.closed:
		return nil, net.ErrClosed
	}
}

func (h *handoff) close() { h.once.Do(func() { close(h.closed) }) }

// Close implements net.Listener.
func (h *handoff) Close() error { h.close(); return nil }

// Addr implements net.Listener.
func (h *handoff) Addr() net.Addr { return h.addr }

var _ net.Listener = (*handoff)(nil)
