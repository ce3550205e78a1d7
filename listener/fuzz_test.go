package listener

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const fuzzHeaderTimeout = 200 * time.Millisecond

var fuzzListeners struct {
	once   sync.Once
	addrs  []string // strict, optional
	failed chan string
}

// startFuzzListeners starts, once per process, two wrapped listeners
// (header required, header optional) that answer every accepted
// connection with "OK " and its RemoteAddr.
func startFuzzListeners(f *testing.F) {
	fuzzListeners.once.Do(func() {
		fuzzListeners.failed = make(chan string, 1)
		for _, optional := range []bool{false, true} {
			inner, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				f.Fatal(err)
			}
			ln := Wrap(inner, Options{ProxyFrom: trusted, ProxyOptional: optional, HeaderTimeout: fuzzHeaderTimeout, Limiter: NewConnLimiter(0)})
			fuzzListeners.addrs = append(fuzzListeners.addrs, ln.Addr().String())
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					go answer(c)
				}
			}()
			// Left running: the process ends with the fuzz run.
		}
	})
}

// answer writes the line at once, waits for the client to finish sending,
// then resets the connection: no side keeps it in TIME_WAIT, which a long
// fuzz run would fill the port range with.
func answer(c net.Conn) {
	c.SetDeadline(time.Now().Add(2 * time.Second))
	io.WriteString(c, "OK "+c.RemoteAddr().String()+"\n")
	io.Copy(io.Discard, c)
	c.(*Conn).NetConn().(*net.TCPConn).SetLinger(0)
	c.Close()
}

// FuzzProxyHeader feeds arbitrary bytes as the start of a connection from
// a source in ProxyFrom: the listener must not panic or hang, and must
// either refuse the connection or give it a RemoteAddr that parses.
func FuzzProxyHeader(f *testing.F) {
	startFuzzListeners(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, addr := range fuzzListeners.addrs {
			fuzzOne(t, addr, data)
		}
	})
}

func fuzzOne(t *testing.T, addr string, data []byte) {
	// No LocalAddr: the source is 127.0.0.1 all the same, and connect's
	// own port choice reuses the ports that an explicit bind would find
	// in TIME_WAIT (tcp_tw_reuse), which a long run fills.
	d := net.Dialer{Timeout: 2 * time.Second}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		if isReset(err) {
			return
		}
		t.Fatal(err)
	}
	c := nc.(*net.TCPConn)
	defer func() {
		c.SetLinger(0) // no TIME_WAIT across a long fuzz run
		c.Close()
	}()
	c.SetDeadline(time.Now().Add(fuzzHeaderTimeout + 3*time.Second))
	if _, err := c.Write(data); err != nil {
		return // refused while writing
	}
	c.CloseWrite()
	got, err := bufio.NewReader(c).ReadString('\n')
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		t.Fatalf("no answer and no refusal after %v", fuzzHeaderTimeout+3*time.Second)
	}
	if len(got) == 0 {
		return // refused
	}
	line, ok := strings.CutPrefix(got, "OK ")
	if !ok || !strings.HasSuffix(line, "\n") {
		t.Fatalf("answer %q", got)
	}
	if _, err := netip.ParseAddrPort(strings.TrimSuffix(line, "\n")); err != nil {
		t.Fatalf("RemoteAddr %q: %v", line, err)
	}
}

func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED)
}
