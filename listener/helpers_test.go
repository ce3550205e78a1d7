package listener

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// Sources: 127.0.0.1 is the balancer (in ProxyFrom), 127.0.0.2 a client
// that connects directly.
const (
	balancer = "127.0.0.1"
	direct   = "127.0.0.2"
)

var trusted = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}

// server is a wrapped listener on 127.0.0.1 whose accepted connections
// queue up in conns.
type server struct {
	ln    net.Listener
	conns chan net.Conn
	m     *Metrics
	done  chan struct{}
}

// wrap wraps a new listener on 127.0.0.1 with o, metrics included, and
// closes it when the test ends.
func wrap(t *testing.T, o Options) (net.Listener, *Metrics) {
	t.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if o.Metrics == nil {
		o.Metrics, _ = NewMetrics(nil)
	}
	if o.Name == "" {
		o.Name = "test"
	}
	ln := Wrap(inner, o)
	t.Cleanup(func() { ln.Close() })
	return ln, o.Metrics
}

func newServer(t *testing.T, o Options) *server {
	t.Helper()
	ln, m := wrap(t, o)
	s := &server{ln: ln, conns: make(chan net.Conn, 64), m: m, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for {
			c, err := s.ln.Accept()
			if err != nil {
				if !errors.Is(err, net.ErrClosed) {
					t.Errorf("Accept: %v", err)
				}
				return
			}
			s.conns <- c
		}
	}()
	t.Cleanup(func() {
		s.ln.Close()
		<-s.done
		for {
			select {
			case c := <-s.conns:
				c.Close()
			default:
				return
			}
		}
	})
	return s
}

// dial connects to s from the address src and writes b. It returns nil
// when the connection was reset before connect returned.
func (s *server) dial(t *testing.T, src string, b []byte) *net.TCPConn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 2 * time.Second}
	c, err := d.DialContext(t.Context(), "tcp", s.ln.Addr().String())
	if errors.Is(err, syscall.ECONNRESET) {
		// Refused so fast that the reset came before connect returned.
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if len(b) > 0 {
		if _, err := c.Write(b); err != nil {
			t.Logf("write: %v", err) // refused before the write
		}
	}
	return c.(*net.TCPConn)
}

// accept returns the next connection Accept returned.
func (s *server) accept(t *testing.T) *Conn {
	t.Helper()
	select {
	case c := <-s.conns:
		t.Cleanup(func() { c.Close() })
		return c.(*Conn)
	case <-time.After(3 * time.Second):
		t.Fatal("no connection accepted")
		return nil
	}
}

// noAccept checks that Accept returns nothing for d.
func (s *server) noAccept(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case c := <-s.conns:
		c.Close()
		t.Fatalf("accepted a connection from %v", c.RemoteAddr())
	case <-time.After(d):
	}
}

func (s *server) refused(r reason) float64 {
	return testutil.ToFloat64(s.m.refused.WithLabelValues("test", r.String()))
}

func (s *server) open() float64 {
	return testutil.ToFloat64(s.m.open.WithLabelValues("test"))
}

// waitRefused checks that the server closed c with nothing written and
// that the refusal was counted.
func (s *server) waitRefused(t *testing.T, c *net.TCPConn, r reason) {
	t.Helper()
	expectClosed(t, c, 3*time.Second)
	deadline := time.Now().Add(time.Second)
	for s.refused(r) < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("refused{reason=%s} = %v, want >= 1", r, s.refused(r))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// expectClosed checks that c reads no byte and then EOF or a reset within d.
func expectClosed(t *testing.T, c *net.TCPConn, d time.Duration) {
	t.Helper()
	if c == nil {
		return // reset at connect
	}
	c.SetReadDeadline(time.Now().Add(d))
	b, err := io.ReadAll(c)
	if len(b) > 0 {
		t.Fatalf("read %q from a refused connection", b)
	}
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		t.Fatal("connection not closed")
	}
}

func tcpAddr(s string) *net.TCPAddr {
	return net.TCPAddrFromAddrPort(netip.MustParseAddrPort(s))
}

// headerV1 and headerV2 format a PROXY header from src to dst.
func headerV1(t *testing.T, src, dst string) []byte { return format(t, 1, src, dst) }
func headerV2(t *testing.T, src, dst string) []byte { return format(t, 2, src, dst) }

func format(t *testing.T, v byte, src, dst string) []byte {
	t.Helper()
	b, err := proxyproto.HeaderProxyFromAddrs(v, tcpAddr(src), tcpAddr(dst)).Format()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// localV2 is a v2 LOCAL header, a balancer's health check.
var localV2 = []byte("\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00")

// readN reads n bytes from c.
func readN(t *testing.T, c net.Conn, n int) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	b := make([]byte, n)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("reading %d bytes: %v", n, err)
	}
	c.SetReadDeadline(time.Time{})
	return string(b)
}
