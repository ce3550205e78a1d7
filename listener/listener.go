package listener

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
)

const (
	// DefaultHeaderTimeout is Options.HeaderTimeout when it is zero.
	DefaultHeaderTimeout = 5 * time.Second
	// DefaultMaxPending is Options.MaxPending when it is zero.
	DefaultMaxPending = 4096
)

// Options says what Wrap does at accept. The zero value turns the PROXY
// protocol off and caps nothing: connections pass through, counted in the
// metrics when there are some. Wrap copies what it needs; changing Options
// afterwards has no effect.
type Options struct {
	// ProxyFrom lists the sources (TCP peers) allowed to send a PROXY
	// protocol v1 or v2 header; their connections must start with one
	// (unless ProxyOptional) and the header's source address becomes the
	// connection's RemoteAddr. A connection from elsewhere that starts with
	// a PROXY signature is refused. An IPv4 prefix also matches the
	// IPv4-mapped IPv6 form of its addresses. Empty: the PROXY protocol is
	// off and a header is just bytes the HTTP or TLS layer refuses.
	ProxyFrom []netip.Prefix
	// ProxyOptional lets a source in ProxyFrom omit the header: its
	// connection is then taken as coming from the TCP peer. By default such
	// a connection is refused. Either way the source must send its first
	// bytes within HeaderTimeout.
	ProxyOptional bool
	// HeaderTimeout bounds reading the PROXY header, from accept to the end
	// of the header (0: DefaultHeaderTimeout). Only connections from
	// ProxyFrom wait for it.
	HeaderTimeout time.Duration
	// MaxPending bounds the connections from ProxyFrom whose header is
	// being read at once; one more is refused (0: DefaultMaxPending).
	MaxPending int
	// Limiter caps the open connections per client address: the PROXY
	// header's source when there is one, else the TCP peer. Share one
	// between the HTTP and HTTPS listeners so that the cap is over both.
	// nil: no cap and no counting.
	Limiter *ConnLimiter
	// Name labels this listener's metrics and logs ("http", "https").
	Name string
	// Metrics counts accepted, refused and open connections; share one
	// between listeners. nil counts nothing.
	Metrics *Metrics
	// Logger receives refusals at Debug (never above: a refusal per
	// connection is what an attacker controls). nil discards.
	Logger *slog.Logger
}

// Log keys.
const (
	keyListener = "listener"
	keyRemote   = "remote"
	keyPeer     = "peer"
	keyReason   = "reason"
	keyErr      = "err"
)

// Wrap returns a listener whose Accept applies o to the connections that
// l accepts. Its Accept returns *Conn values; it never returns an error for
// a refused connection, passes l's other errors through (temporary ones
// too, so that http.Server backs off), and returns an error wrapping
// net.ErrClosed once Close was called. Close closes l, stops the
// goroutines Wrap started and waits for them. The listener is safe for
// concurrent use. Wrap starts nothing before the first Accept.
func Wrap(l net.Listener, o Options) net.Listener {
	w := &listener{
		inner:         l,
		optional:      o.ProxyOptional,
		headerTimeout: o.HeaderTimeout,
		maxPending:    o.MaxPending,
		limiter:       o.Limiter,
		name:          o.Name,
		stats:         o.Metrics.stats(o.Name),
		log:           o.Logger,
		ready:         make(chan accepted),
		done:          make(chan struct{}),
		stopped:       make(chan struct{}),
		pending:       make(map[net.Conn]struct{}),
	}
	for _, p := range o.ProxyFrom {
		if p.IsValid() {
			w.proxyFrom = append(w.proxyFrom, p.Masked())
		}
	}
	if w.headerTimeout <= 0 {
		w.headerTimeout = DefaultHeaderTimeout
	}
	if w.maxPending <= 0 {
		w.maxPending = DefaultMaxPending
	}
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	return w
}

// listener is what Wrap returns.
type listener struct {
	inner         net.Listener
	proxyFrom     []netip.Prefix
	optional      bool
	headerTimeout time.Duration
	maxPending    int
	limiter       *ConnLimiter
	name          string
	stats         *stats
	log           *slog.Logger

	ready   chan accepted // to Accept, unbuffered
	done    chan struct{} // closed by Close
	stopped chan struct{} // closed when the accept loop ends, after err is set
	err     error         // why the accept loop ended

	start, stop sync.Once
	wg          sync.WaitGroup // the accept loop and the header readers

	mu      sync.Mutex
	closed  bool
	pending map[net.Conn]struct{} // connections whose header is being read
}

var _ net.Listener = (*listener)(nil)

// accepted is one result of the accept loop.
type accepted struct {
	conn net.Conn
	err  error
}

// Accept implements net.Listener.
func (l *listener) Accept() (net.Conn, error) {
	l.start.Do(func() {
		l.wg.Add(1)
		go l.acceptLoop()
	})
	select {
	case a := <-l.ready:
		return a.conn, a.err
	case <-l.stopped:
		return nil, l.err
	case <-l.done:
		return nil, &net.OpError{Op: "accept", Net: l.inner.Addr().Network(), Addr: l.inner.Addr(), Err: net.ErrClosed}
	}
}

// Close implements net.Listener: it closes the listener underneath and the
// connections whose header is still being read, and waits for the
// goroutines that Accept started. Connections already accepted stay open.
func (l *listener) Close() error {
	l.start.Do(func() {}) // no accept loop starts after Close
	err := l.inner.Close()
	l.stop.Do(func() {
		close(l.done)
		l.mu.Lock()
		l.closed = true
		for c := range l.pending {
			c.Close()
		}
		l.mu.Unlock()
		l.wg.Wait()
	})
	return err
}

// Addr implements net.Listener.
func (l *listener) Addr() net.Addr { return l.inner.Addr() }

func (l *listener) closing() bool {
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}

func (l *listener) acceptLoop() {
	defer l.wg.Done()
	for {
		nc, err := l.inner.Accept()
		if err != nil {
			if ne, ok := errors.AsType[net.Error](err); ok && ne.Temporary() && !l.closing() {
				// http.Server sleeps before its next Accept, which
				// paces this loop too.
				if l.handoff(accepted{err: err}) {
					continue
				}
			}
			l.err = err
			close(l.stopped)
			return
		}
		l.admit(nc)
	}
}

// handoff gives a to Accept; false if the listener closed first.
func (l *listener) handoff(a accepted) bool {
	select {
	case l.ready <- a:
		return true
	case <-l.done:
		return false
	}
}

// admit decides what happens to a connection just accepted. It does no I/O.
func (l *listener) admit(nc net.Conn) {
	peer := addrOf(nc.RemoteAddr())
	if !l.trusted(peer) {
		l.serve(nc, peer, nc.RemoteAddr(), nil, nil, len(l.proxyFrom) > 0)
		return
	}
	l.mu.Lock()
	if l.closed || len(l.pending) >= l.maxPending {
		closed := l.closed
		l.mu.Unlock()
		if closed {
			nc.Close()
		} else {
			l.refuse(nc, reasonPendingFull, nc.RemoteAddr(), nil)
		}
		return
	}
	l.pending[nc] = struct{}{}
	l.wg.Add(1)
	l.mu.Unlock()
	go l.readHeader(nc)
}

// serve counts nc against key and hands it to Accept, or refuses it.
func (l *listener) serve(nc net.Conn, key netip.Addr, remote net.Addr, h *proxyproto.Header, rest []byte, sniff bool) {
	limited := key.IsValid() && l.limiter != nil
	if limited && !l.limiter.acquire(key) {
		l.refuse(nc, reasonMaxConns, remote, nil)
		return
	}
	c := &Conn{nc: nc, remote: remote, header: h, l: l, key: key, limited: limited, sniff: sniff, rest: rest}
	c.plain.Store(!sniff && len(rest) == 0)
	l.stats.opened()
	if !l.handoff(accepted{conn: c}) {
		c.Close()
	}
}

// trusted reports whether a may send a PROXY header.
func (l *listener) trusted(a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	for _, p := range l.proxyFrom {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// refuse closes nc with nothing written, counts it and logs it at Debug.
func (l *listener) refuse(nc net.Conn, r reason, remote net.Addr, err error) {
	l.stats.refused(r)
	defer func() {
		if tc, ok := nc.(*net.TCPConn); ok {
			tc.SetLinger(0) // reset, no TIME_WAIT for a refused connection
		}
		nc.Close()
	}()
	ctx := context.Background()
	if !l.log.Enabled(ctx, slog.LevelDebug) {
		return
	}
	attrs := []slog.Attr{
		slog.String(keyListener, l.name),
		slog.String(keyReason, r.String()),
		slog.String(keyRemote, addrString(remote)),
	}
	if peer := nc.RemoteAddr(); addrString(peer) != addrString(remote) {
		attrs = append(attrs, slog.String(keyPeer, addrString(peer)))
	}
	if err != nil {
		attrs = append(attrs, slog.String(keyErr, err.Error()))
	}
	l.log.LogAttrs(ctx, slog.LevelDebug, "connection refused", attrs...)
}

// addrOf returns the IP address of a, unmapped; the zero Addr when a has
// none.
func addrOf(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.TCPAddr:
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	case nil:
		return netip.Addr{}
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}
