package listener

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
)

// headerBufSize bounds a v2 header: proxyproto.Read peeks the whole
// address and TLV block, so a longer one fails as invalid. go-proxyproto's
// own Conn uses 256 bytes, too little for TLVs such as AWS's VPC endpoint
// ID next to TLS ones.
const headerBufSize = 4096

var readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, headerBufSize) }}

// readHeader runs in its own goroutine for a connection from ProxyFrom: it
// reads the header, then serves or refuses the connection.
func (l *listener) readHeader(nc net.Conn) {
	defer l.wg.Done()
	defer func() {
		l.mu.Lock()
		delete(l.pending, nc)
		l.mu.Unlock()
	}()
	defer func() {
		if v := recover(); v != nil {
			l.log.Error("panic reading a PROXY header", keyListener, l.name, keyRemote, addrString(nc.RemoteAddr()), keyErr, fmt.Sprint(v))
			nc.Close()
		}
	}()

	h, rest, r, err := readProxyHeader(nc, l.headerTimeout)
	if l.closing() {
		nc.Close()
		return
	}
	switch {
	case r == reasonMissing && l.optional:
		// Taken as coming from the peer itself.
	case r != reasonNone:
		l.refuse(nc, r, nc.RemoteAddr(), err)
		return
	}
	if h == nil || h.Command.IsLocal() {
		// LOCAL (a balancer's health check) and v1 UNKNOWN keep the
		// peer's address (proxy-protocol.txt, section 2.1 and 2.2).
		l.serve(nc, addrOf(nc.RemoteAddr()), nc.RemoteAddr(), h, rest, false)
		return
	}
	src := h.SourceAddr.(*net.TCPAddr) // checked by readProxyHeader
	l.serve(nc, addrOf(src), src, h, rest, false)
}

// readProxyHeader reads a PROXY header from the start of nc within
// timeout. It returns the header (nil when there is none), the bytes read
// past it, and reasonNone or why the connection is to be refused. A header
// it returns with the PROXY command has a *net.TCPAddr source with a valid
// IP.
func readProxyHeader(nc net.Conn, timeout time.Duration) (*proxyproto.Header, []byte, reason, error) {
	if err := nc.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return nil, nil, reasonInvalid, err
	}
	er := &errReader{r: nc}
	br := readers.Get().(*bufio.Reader)
	br.Reset(er)
	defer func() {
		br.Reset(nil)
		readers.Put(br)
	}()

	h, err := proxyproto.Read(br)
	switch {
	case er.timedOut():
		return nil, nil, reasonTimeout, errors.Join(err, er.err)
	case errors.Is(err, proxyproto.ErrNoProxyProtocol):
		// The first bytes are no signature, or the peer closed before
		// sending one.
		h, err = nil, errNoHeader
	case err != nil:
		return nil, nil, reasonInvalid, err
	default:
		if err := checkHeader(h); err != nil {
			return nil, nil, reasonInvalid, err
		}
	}
	if err := nc.SetReadDeadline(time.Time{}); err != nil {
		return nil, nil, reasonInvalid, err
	}
	var rest []byte
	if n := br.Buffered(); n > 0 {
		rest = make([]byte, n)
		io.ReadFull(br, rest) // from the buffer: cannot fail
	}
	if h == nil {
		return nil, rest, reasonMissing, err
	}
	return h, rest, reasonNone, nil
}

// checkHeader accepts LOCAL, and PROXY over TCP with a valid source IP.
func checkHeader(h *proxyproto.Header) error {
	if h.Command.IsLocal() {
		return nil
	}
	src, ok := h.SourceAddr.(*net.TCPAddr)
	if !ok || src == nil {
		// UDP, unix, or an unspecified protocol (v2 family byte 0x10 or
		// 0x20), for which go-proxyproto leaves SourceAddr nil.
		return fmt.Errorf("%w: transport %#x", errUnsupportedTransport, byte(h.TransportProtocol))
	}
	if _, ok := netip.AddrFromSlice(src.IP); !ok {
		return fmt.Errorf("%w: source %v", proxyproto.ErrInvalidAddress, src.IP)
	}
	return nil
}

// errReader remembers the last error of the reader underneath, which
// go-proxyproto does not always pass on (it hides a timeout in the middle
// of a header behind its own errors).
type errReader struct {
	r   io.Reader
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil {
		e.err = err
	}
	return n, err
}

func (e *errReader) timedOut() bool {
	if e.err == nil {
		return false
	}
	if errors.Is(e.err, os.ErrDeadlineExceeded) {
		return true
	}
	ne, ok := errors.AsType[net.Error](e.err)
	return ok && ne.Timeout()
}
