package listener

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
)

// Conn is a connection that a wrapped listener's Accept returns. Its
// RemoteAddr is the client's address: the PROXY header's source when there
// was a header, else the TCP peer; it never blocks. Close releases the
// connection's place in the ConnLimiter and the open gauge once, however
// often it is called. Like any net.Conn it is safe for concurrent use.
// The zero value is not usable.
type Conn struct {
	nc      net.Conn
	remote  net.Addr
	header  *proxyproto.Header
	l       *listener
	key     netip.Addr // the limiter's key
	limited bool       // whether key holds a place in l.limiter
	once    sync.Once  // releases the place

	plain atomic.Bool // nothing to check or replay: Read goes straight to nc
	mu    sync.Mutex  // guards sniff, rest and refused while !plain
	sniff bool        // the first bytes must be checked for a PROXY signature
	rest  []byte      // read past the PROXY header, not yet returned
	err   error       // set once the connection is refused
}

var (
	_ net.Conn      = (*Conn)(nil)
	_ io.ReaderFrom = (*Conn)(nil)
	_ closeWriter   = (*Conn)(nil)
)

// closeWriter is what net/http looks for to half-close a plain HTTP
// connection before closing it (closeWriteAndWait).
type closeWriter interface {
	CloseWrite() error
}

// Read implements net.Conn. It first returns what was read past the PROXY
// header. On a connection from a source not in Options.ProxyFrom, when
// that is not empty, the first Read refuses a PROXY signature: it closes
// the connection and, from then on, fails with an error wrapping
// ErrProxyHeaderUntrusted.
func (c *Conn) Read(b []byte) (int, error) {
	if c.plain.Load() {
		return c.nc.Read(b)
	}
	if len(b) == 0 {
		return 0, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	if c.sniff {
		c.sniff = false
		n, err := c.sniffRead(b)
		if c.err != nil {
			return 0, c.err
		}
		if len(c.rest) == 0 {
			c.plain.Store(true)
		}
		return n, err
	}
	if len(c.rest) > 0 {
		n := copy(b, c.rest)
		c.rest = c.rest[n:]
		if len(c.rest) == 0 {
			c.rest = nil
			c.plain.Store(true)
		}
		return n, nil
	}
	c.plain.Store(true)
	return c.nc.Read(b)
}

// sniffRead reads into b until the bytes rule out both PROXY signatures or
// complete one. Almost always the first read decides: a TLS record or an
// HTTP method is not a prefix of either signature.
func (c *Conn) sniffRead(b []byte) (int, error) {
	n, err := c.nc.Read(b)
	switch matchSignature(b[:n]) {
	case sigNone:
		return n, err
	case sigFull:
		c.refuse()
		return 0, c.err
	}
	var buf [len(sigV2)]byte
	got := copy(buf[:], b[:n])
loop:
	for err == nil {
		var m int
		m, err = c.nc.Read(buf[got:])
		got += m
		switch matchSignature(buf[:got]) {
		case sigFull:
			c.refuse()
			return 0, c.err
		case sigNone:
			break loop
		}
	}
	n = copy(b, buf[:got])
	c.rest = bytes.Clone(buf[n:got])
	return n, err
}

func (c *Conn) refuse() {
	c.err = &net.OpError{Op: "read", Net: c.nc.LocalAddr().Network(), Source: c.nc.LocalAddr(), Addr: c.remote, Err: ErrProxyHeaderUntrusted}
	c.l.refuse(c.nc, reasonUntrusted, c.remote, nil)
	c.release()
}

// Write implements net.Conn.
func (c *Conn) Write(b []byte) (int, error) { return c.nc.Write(b) }

// Close implements net.Conn.
func (c *Conn) Close() error {
	err := c.nc.Close()
	c.release()
	return err
}

func (c *Conn) release() {
	c.once.Do(func() {
		if c.limited {
			c.l.limiter.release(c.key)
		}
		c.l.stats.closed()
	})
}

// LocalAddr implements net.Conn: the socket's own address, not the PROXY
// header's destination (which ProxyHeader has).
func (c *Conn) LocalAddr() net.Addr { return c.nc.LocalAddr() }

// RemoteAddr implements net.Conn: the client's address.
func (c *Conn) RemoteAddr() net.Addr { return c.remote }

// SetDeadline implements net.Conn.
func (c *Conn) SetDeadline(t time.Time) error { return c.nc.SetDeadline(t) }

// SetReadDeadline implements net.Conn.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.nc.SetReadDeadline(t) }

// SetWriteDeadline implements net.Conn.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.nc.SetWriteDeadline(t) }

// CloseWrite shuts down the writing side of the TCP connection, as
// net/http does before closing a plain HTTP connection whose request body
// it did not read. It fails with errors.ErrUnsupported when the connection
// underneath cannot.
func (c *Conn) CloseWrite() error {
	if cw, ok := c.nc.(closeWriter); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// ReadFrom implements io.ReaderFrom with the connection underneath, so
// that net/http's sendfile and splice paths still apply.
func (c *Conn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.nc.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(c.nc, r)
}

// NetConn returns the connection underneath (a *net.TCPConn for a TCP
// listener). Reading from it skips what Read would return first.
func (c *Conn) NetConn() net.Conn { return c.nc }

// errNotPlain is RawConn's answer while Read still has bytes of its own
// to return (or a refusal).
var errNotPlain = errors.New("listener: the connection has bytes to return before its socket's")

// RawConn returns the socket's syscall.RawConn once reading from it
// directly skips nothing: after the first Read, when no byte read past a
// PROXY header is left. It fails with errors.ErrUnsupported when the
// connection underneath is not a syscall.Conn. (Conn is not a
// syscall.Conn itself: the standard library would splice from the socket
// past Read.)
func (c *Conn) RawConn() (syscall.RawConn, error) {
	if !c.plain.Load() {
		return nil, errNotPlain
	}
	sc, ok := c.nc.(syscall.Conn)
	if !ok {
		return nil, errors.ErrUnsupported
	}
	return sc.SyscallConn()
}

// ProxyHeader returns the PROXY header the connection started with (its
// TLVs included), or nil when there was none. A LOCAL header is returned
// too, although RemoteAddr then is the TCP peer.
func (c *Conn) ProxyHeader() *proxyproto.Header { return c.header }

// sigV1 and sigV2 start a PROXY header (proxy-protocol.txt, sections 2.1
// and 2.2).
const (
	sigV1 = "PROXY"
	sigV2 = "\r\n\r\n\x00\r\nQUIT\n"
)

type sigMatch uint8

const (
	sigNone    sigMatch = iota // starts with neither signature
	sigPartial                 // too short to tell
	sigFull                    // starts with one
)

func matchSignature(b []byte) sigMatch {
	partial := false
	for _, sig := range [...]string{sigV1, sigV2} {
		if len(b) >= len(sig) {
			if string(b[:len(sig)]) == sig {
				return sigFull
			}
		} else if string(b) == sig[:len(b)] {
			partial = true
		}
	}
	if partial {
		return sigPartial
	}
	return sigNone
}
