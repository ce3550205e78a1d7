package listener

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"
)

func TestProxyHeaderSetsRemoteAddr(t *testing.T) {
	tests := []struct {
		name   string
		header func(t *testing.T) []byte
		want   string // "" = the TCP peer
	}{
		{"v1 tcp4", func(t *testing.T) []byte { return headerV1(t, "203.0.113.7:41000", "192.0.2.1:443") }, "203.0.113.7:41000"},
		{"v1 tcp6", func(t *testing.T) []byte { return headerV1(t, "[2001:db8::7]:41000", "[2001:db8::1]:443") }, "[2001:db8::7]:41000"},
		{"v2 tcp4", func(t *testing.T) []byte { return headerV2(t, "203.0.113.8:41001", "192.0.2.1:443") }, "203.0.113.8:41001"},
		{"v2 tcp6", func(t *testing.T) []byte { return headerV2(t, "[2001:db8::8]:41001", "[2001:db8::1]:443") }, "[2001:db8::8]:41001"},
		{"v2 local", func(*testing.T) []byte { return localV2 }, ""},
		{"v1 unknown", func(*testing.T) []byte { return []byte("PROXY UNKNOWN\r\n") }, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer(t, Options{ProxyFrom: trusted})
			h := tc.header(t)
			cl := s.dial(t, balancer, append(h, "hello"...))
			c := s.accept(t)
			want := tc.want
			if want == "" {
				want = cl.LocalAddr().String()
			}
			if got := c.RemoteAddr().String(); got != want {
				t.Errorf("RemoteAddr = %s, want %s", got, want)
			}
			if c.ProxyHeader() == nil {
				t.Error("ProxyHeader = nil")
			}
			if got := readN(t, c, 5); got != "hello" {
				t.Errorf("read %q after the header, want hello", got)
			}
			// Bytes in a later segment come through too.
			cl.Write([]byte(" world"))
			if got := readN(t, c, 6); got != " world" {
				t.Errorf("read %q, want \" world\"", got)
			}
		})
	}
}

func TestHeaderInOwnSegment(t *testing.T) {
	s := newServer(t, Options{ProxyFrom: trusted})
	cl := s.dial(t, balancer, headerV2(t, "198.51.100.1:1000", "192.0.2.1:443"))
	c := s.accept(t) // before any payload: the header alone is enough
	cl.Write([]byte("GET"))
	if got := readN(t, c, 3); got != "GET" {
		t.Errorf("read %q", got)
	}
	if got := c.RemoteAddr().String(); got != "198.51.100.1:1000" {
		t.Errorf("RemoteAddr = %s", got)
	}
}

func TestUntrustedSource(t *testing.T) {
	tests := []struct {
		name    string
		writes  []string // each in its own segment
		refused bool
	}{
		{"v1 header", []string{"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\nGET / HTTP/1.1\r\n"}, true},
		{"v2 header", []string{"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c\x01\x02\x03\x04\x05\x06\x07\x08\x00\x01\x00\x02"}, true},
		{"v1 signature split", []string{"PR", "OXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"}, true},
		{"v2 signature split", []string{"\r\n\r\n", "\x00\r\nQUIT\n\x20\x00\x00\x00"}, true},
		{"http", []string{"GET / HTTP/1.1\r\n"}, false},
		{"post split after P", []string{"P", "OST / HTTP/1.1\r\n"}, false},
		{"crlf split", []string{"\r\n", "GET / HTTP/1.1\r\n"}, false},
		{"tls record", []string{"\x16\x03\x01\x00\x05hello"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer(t, Options{ProxyFrom: trusted})
			cl := s.dial(t, direct, nil)
			c := s.accept(t) // at once: nothing is read before Accept
			if got := c.RemoteAddr().String(); got != cl.LocalAddr().String() {
				t.Errorf("RemoteAddr = %s, want the peer %s", got, cl.LocalAddr())
			}
			var all string
			go func() {
				for _, w := range tc.writes {
					cl.Write([]byte(w))
					time.Sleep(20 * time.Millisecond)
				}
			}()
			for _, w := range tc.writes {
				all += w
			}
			c.SetReadDeadline(time.Now().Add(3 * time.Second))
			var got []byte
			buf := make([]byte, 3) // small reads exercise the partial match
			for len(got) < len(all) {
				n, err := c.Read(buf)
				got = append(got, buf[:n]...)
				if err != nil {
					if !tc.refused {
						t.Fatalf("Read: %v", err)
					}
					if !errors.Is(err, ErrProxyHeaderUntrusted) {
						t.Errorf("Read: %v, want ErrProxyHeaderUntrusted", err)
					}
					var oe *net.OpError
					if !errors.As(err, &oe) || oe.Op != "read" {
						t.Errorf("Read: %#v, want a *net.OpError with Op read", err)
					}
					if len(got) > 0 {
						t.Errorf("read %q before refusing", got)
					}
					if _, err2 := c.Read(buf); !errors.Is(err2, ErrProxyHeaderUntrusted) {
						t.Errorf("second Read: %v", err2)
					}
					s.waitRefused(t, cl, reasonUntrusted)
					if s.open() != 0 {
						t.Errorf("open = %v after refusal", s.open())
					}
					return
				}
			}
			if tc.refused {
				t.Fatalf("read %q, want a refusal", got)
			}
			if string(got) != all {
				t.Errorf("read %q, want %q", got, all)
			}
		})
	}
}

func TestNoSniffWithoutProxyFrom(t *testing.T) {
	s := newServer(t, Options{})
	h := headerV1(t, "1.2.3.4:1", "5.6.7.8:2")
	s.dial(t, direct, h)
	c := s.accept(t)
	if got := readN(t, c, len(h)); got != string(h) {
		t.Errorf("read %q, want the header as plain bytes", got)
	}
}

func TestMissingHeader(t *testing.T) {
	for _, optional := range []bool{false, true} {
		t.Run(map[bool]string{false: "required", true: "optional"}[optional], func(t *testing.T) {
			s := newServer(t, Options{ProxyFrom: trusted, ProxyOptional: optional})
			cl := s.dial(t, balancer, []byte("GET / HTTP/1.1\r\n"))
			if !optional {
				s.waitRefused(t, cl, reasonMissing)
				s.noAccept(t, 50*time.Millisecond)
				return
			}
			c := s.accept(t)
			if got := c.RemoteAddr().String(); got != cl.LocalAddr().String() {
				t.Errorf("RemoteAddr = %s, want the peer %s", got, cl.LocalAddr())
			}
			if c.ProxyHeader() != nil {
				t.Error("ProxyHeader != nil")
			}
			if got := readN(t, c, 16); got != "GET / HTTP/1.1\r\n" {
				t.Errorf("read %q", got)
			}
		})
	}
}

func TestInvalidHeader(t *testing.T) {
	tests := []struct {
		name string
		b    string
	}{
		{"v1 bad address", "PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n"},
		{"v1 no crlf", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"},
		{"v1 too long", "PROXY TCP4 " + string(bytes.Repeat([]byte("1"), 120)) + "\r\n"},
		{"v2 udp", "\r\n\r\n\x00\r\nQUIT\n\x21\x12\x00\x0c\x01\x02\x03\x04\x05\x06\x07\x08\x00\x01\x00\x02"},
		{"v2 unspecified protocol", "\r\n\r\n\x00\r\nQUIT\n\x21\x10\x00\x0c\x01\x02\x03\x04\x05\x06\x07\x08\x00\x01\x00\x02"},
		{"v2 bad command", "\r\n\r\n\x00\r\nQUIT\n\x22\x11\x00\x0c\x01\x02\x03\x04\x05\x06\x07\x08\x00\x01\x00\x02"},
		{"v2 short length", "\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x04\x01\x02\x03\x04"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer(t, Options{ProxyFrom: trusted, ProxyOptional: true})
			cl := s.dial(t, balancer, []byte(tc.b))
			s.waitRefused(t, cl, reasonInvalid)
			s.noAccept(t, 20*time.Millisecond)
		})
	}
}

func TestLargeTLVs(t *testing.T) {
	// A v2 header with 2 KiB of TLVs (type 0xE0, custom) fits the buffer.
	tlv := append([]byte{0xe0, 0x08, 0x00}, bytes.Repeat([]byte{'x'}, 2048)...)
	body := append([]byte{203, 0, 113, 9, 192, 0, 2, 1, 0x10, 0x00, 0x01, 0xbb}, tlv...)
	h := append([]byte("\r\n\r\n\x00\r\nQUIT\n\x21\x11"), byte(len(body)>>8), byte(len(body)))
	h = append(h, body...)
	s := newServer(t, Options{ProxyFrom: trusted})
	s.dial(t, balancer, append(h, "hi"...))
	c := s.accept(t)
	if got := c.RemoteAddr().String(); got != "203.0.113.9:4096" {
		t.Errorf("RemoteAddr = %s", got)
	}
	if got := readN(t, c, 2); got != "hi" {
		t.Errorf("read %q", got)
	}
}

func TestSlowClientDoesNotBlockAccept(t *testing.T) {
	const timeout = 300 * time.Millisecond
	s := newServer(t, Options{ProxyFrom: trusted, HeaderTimeout: timeout})
	start := time.Now()
	slow := s.dial(t, balancer, nil)
	partial := s.dial(t, balancer, []byte("\r\n\r\n\x00\r\n")) // half a signature

	s.dial(t, balancer, headerV1(t, "198.51.100.2:1", "192.0.2.1:443"))
	s.dial(t, direct, nil)
	for range 2 {
		s.accept(t)
	}
	if d := time.Since(start); d > timeout/2 {
		t.Errorf("the others were accepted after %v", d)
	}
	for _, c := range []*net.TCPConn{slow, partial} {
		expectClosed(t, c, 3*time.Second)
		if d := time.Since(start); d < timeout {
			t.Errorf("a slow client was cut after %v, before the timeout", d)
		}
	}
	if d := time.Since(start); d > timeout+time.Second {
		t.Errorf("slow clients cut after %v", d)
	}
	if got := s.refused(reasonTimeout); got != 2 {
		t.Errorf("refused{proxy_header_timeout} = %v, want 2", got)
	}
	s.noAccept(t, 20*time.Millisecond)
}

func TestPendingFull(t *testing.T) {
	s := newServer(t, Options{ProxyFrom: trusted, MaxPending: 1, HeaderTimeout: 5 * time.Second})
	s.dial(t, balancer, nil) // holds the one slot
	time.Sleep(50 * time.Millisecond)
	cl := s.dial(t, balancer, headerV1(t, "198.51.100.3:1", "192.0.2.1:443"))
	s.waitRefused(t, cl, reasonPendingFull)
	s.dial(t, direct, nil)
	if c := s.accept(t); c.RemoteAddr().(*net.TCPAddr).IP.String() != direct {
		t.Errorf("accepted %v, want the direct client", c.RemoteAddr())
	}
}

func TestMaxConnsPerIP(t *testing.T) {
	s := newServer(t, Options{Limiter: NewConnLimiter(2)})
	c1 := s.accept(tWith(t, s.dial(t, balancer, nil)))
	s.accept(tWith(t, s.dial(t, balancer, nil)))

	third := s.dial(t, balancer, []byte("GET / HTTP/1.1\r\n"))
	s.waitRefused(t, third, reasonMaxConns)
	s.noAccept(t, 50*time.Millisecond)

	other := s.dial(t, direct, nil)
	if c := s.accept(t); c.RemoteAddr().String() != other.LocalAddr().String() {
		t.Errorf("accepted %v, want %v", c.RemoteAddr(), other.LocalAddr())
	}

	c1.Close()
	c1.Close() // counted once
	s.accept(tWith(t, s.dial(t, balancer, nil)))
	s.waitRefused(t, s.dial(t, balancer, nil), reasonMaxConns)
	if got := s.refused(reasonMaxConns); got != 2 {
		t.Errorf("refused{max_conns_per_ip} = %v, want 2", got)
	}
	if got := s.open(); got != 3 {
		t.Errorf("open = %v, want 3", got)
	}
}

// tWith returns t; it lets a dial read as the argument of accept.
func tWith(t *testing.T, _ *net.TCPConn) *testing.T { return t }

func TestMaxConnsPerIPKeyedOnProxySource(t *testing.T) {
	lim := NewConnLimiter(2)
	s := newServer(t, Options{ProxyFrom: trusted, Limiter: lim})
	client := func(src string) []byte { return headerV2(t, src, "192.0.2.1:443") }
	s.dial(t, balancer, client("198.51.100.10:1"))
	s.dial(t, balancer, client("198.51.100.10:2"))
	for range 2 {
		s.accept(t)
	}
	s.waitRefused(t, s.dial(t, balancer, client("198.51.100.10:3")), reasonMaxConns)
	s.dial(t, balancer, client("198.51.100.11:1"))
	if c := s.accept(t); c.RemoteAddr().String() != "198.51.100.11:1" {
		t.Errorf("accepted %v", c.RemoteAddr())
	}
	if got := lim.Open(netip.MustParseAddr("198.51.100.10")); got != 2 {
		t.Errorf("Open(198.51.100.10) = %d, want 2", got)
	}
	if got := lim.Open(netip.MustParseAddr(balancer)); got != 0 {
		t.Errorf("Open(balancer) = %d, want 0", got)
	}
}

func TestLimiterSharedBetweenListeners(t *testing.T) {
	lim := NewConnLimiter(1)
	m, _ := NewMetrics(nil)
	a := newServer(t, Options{Limiter: lim, Metrics: m})
	b := newServer(t, Options{Limiter: lim, Metrics: m})
	a.dial(t, direct, nil)
	c := a.accept(t)
	b.waitRefused(t, b.dial(t, direct, nil), reasonMaxConns)
	c.Close()
	b.dial(t, direct, nil)
	b.accept(t)
}

func TestCloseWithPending(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := Wrap(inner, Options{ProxyFrom: trusted, HeaderTimeout: time.Minute})
	accepted := make(chan error, 1)
	go func() {
		_, err := ln.Accept()
		accepted <- err
	}()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(balancer)}}
	nc, err := d.DialContext(t.Context(), "tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	cl := nc.(*net.TCPConn)
	time.Sleep(50 * time.Millisecond) // the header reader is waiting

	start := time.Now()
	if err := ln.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close took %v", d)
	}
	select {
	case err := <-accepted:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Accept: %v, want net.ErrClosed", err)
		}
	case <-time.After(time.Second):
		t.Fatal("Accept not unblocked by Close")
	}
	expectClosed(t, cl, time.Second)
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Close: %v", err)
	}
	ln.Close() // again: no panic, no hang
}

func TestCloseBeforeAccept(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := Wrap(inner, Options{})
	ln.Close()
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept: %v, want net.ErrClosed", err)
	}
}

// flaky fails its first Accept with a temporary error.
type flaky struct {
	net.Listener
	failed bool
}

type tempErr struct{}

func (tempErr) Error() string   { return "accept: too many open files" }
func (tempErr) Timeout() bool   { return false }
func (tempErr) Temporary() bool { return true }

func (f *flaky) Accept() (net.Conn, error) {
	if !f.failed {
		f.failed = true
		return nil, tempErr{}
	}
	return f.Listener.Accept()
}

func TestTemporaryAcceptErrorPassesThrough(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := Wrap(&flaky{Listener: inner}, Options{})
	defer ln.Close()
	if _, err := ln.Accept(); !errors.Is(err, tempErr{}) {
		t.Fatalf("Accept: %v, want the temporary error", err)
	}
	cl, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	c, err := ln.Accept()
	if err != nil {
		t.Fatalf("Accept after a temporary error: %v", err)
	}
	c.Close()
}

func TestConnKeepsTCPAbilities(t *testing.T) {
	s := newServer(t, Options{})
	cl := s.dial(t, direct, nil)
	c := s.accept(t)
	if _, ok := c.NetConn().(*net.TCPConn); !ok {
		t.Errorf("NetConn is %T", c.NetConn())
	}
	if err := c.SetDeadline(time.Now().Add(time.Second)); err != nil {
		t.Errorf("SetDeadline: %v", err)
	}
	c.Write([]byte("bye"))
	if err := c.CloseWrite(); err != nil {
		t.Errorf("CloseWrite: %v", err)
	}
	if got := readN(t, cl, 3); got != "bye" {
		t.Errorf("read %q", got)
	}
	expectClosed(t, cl, time.Second) // FIN after CloseWrite
}

// TestRawConnOnlyWhenPlain: RawConn hands out the socket only once Read
// has nothing of its own left to return: bytes read past a PROXY header
// come first, and a first read that must be sniffed has not happened.
func TestRawConnOnlyWhenPlain(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		header    []byte
	}{
		{"past a header", balancer, headerV1(t, "203.0.113.7:41000", "192.0.2.1:443")},
		{"sniffed", direct, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer(t, Options{ProxyFrom: trusted})
			s.dial(t, tc.src, append(tc.header, "hello"...))
			c := s.accept(t)
			if _, err := c.RawConn(); !errors.Is(err, errNotPlain) {
				t.Errorf("RawConn before Read returned its bytes: %v, want errNotPlain", err)
			}
			if got := readN(t, c, 5); got != "hello" {
				t.Fatalf("read %q", got)
			}
			if _, err := c.RawConn(); err != nil {
				t.Errorf("RawConn after: %v", err)
			}
		})
	}
	t.Run("no PROXY", func(t *testing.T) {
		s := newServer(t, Options{})
		s.dial(t, direct, nil)
		if _, err := s.accept(t).RawConn(); err != nil {
			t.Errorf("RawConn without ProxyFrom: %v", err)
		}
	})
}
