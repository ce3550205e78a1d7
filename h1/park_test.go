package h1

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/farmedge/edge/listener"
)

// parkServer serves the request's path back on loopback, over TLS when
// tlsOn, and returns the server and a dial function. With wrap, the
// listener is edge's (listener.Wrap), as in edge.
func parkServer(t *testing.T, tlsOn bool, idle time.Duration, wrap ...bool) (*Server, func() net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if len(wrap) > 0 && wrap[0] {
		m, err := listener.NewMetrics(nil)
		if err != nil {
			t.Fatal(err)
		}
		ln = listener.Wrap(ln, listener.Options{Name: "test", Metrics: m})
	}
	s, client := serveOn(t, ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.URL.Path)
	}), tlsOn, func(cfg *http.Server) { cfg.IdleTimeout = idle })
	var clientTLS *tls.Config
	if tlsOn {
		clientTLS = client.Transport.(*http.Transport).TLSClientConfig.Clone()
		clientTLS.NextProtos = []string{"http/1.1"}
		clientTLS.ServerName = "example.com" // in net/http's test certificate
	}
	dial := func() net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		if clientTLS != nil {
			c = tls.Client(c, clientTLS)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	return s, dial
}

// get sends GET path on c and checks that the answer is the path.
func get(c net.Conn, br *bufio.Reader, path string) error {
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: a\r\n\r\n"); err != nil {
		return err
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return err
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if string(b) != path {
		return fmt.Errorf("got %q for %s", b, path)
	}
	return nil
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(end) {
			t.Fatalf("after 5 s: not %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// parkingOf is s.parking, which Serve sets under s.mu.
func parkingOf(s *Server) *parking {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.parking
}

func parkedCount(s *Server) int {
	if p := parkingOf(s); p != nil {
		return p.len()
	}
	return 0
}

func connCount(s *Server) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// TestParked: a connection idle past idleSwap is parked without a
// goroutine (on Linux), and goes on serving from there, over TLS and
// plain TCP, on edge's listener too; one the client closes while parked
// is forgotten.
func TestParked(t *testing.T) {
	for _, tc := range []struct {
		name        string
		tlsOn, wrap bool
	}{{"https", true, false}, {"http", false, false}, {"https on listener.Wrap", true, true}} {
		t.Run(tc.name, func(t *testing.T) {
			s, dial := parkServer(t, tc.tlsOn, 30*time.Second, tc.wrap)
			c := dial()
			br := bufio.NewReader(c)
			for i := range 3 {
				if err := get(c, br, fmt.Sprintf("/%d", i)); err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				if runtime.GOOS == "linux" && parkingOf(s) == nil {
					t.Fatal("no parking on Linux")
				}
				if runtime.GOOS == "linux" {
					waitFor(t, "parked", func() bool { return parkedCount(s) == 1 })
				} else {
					time.Sleep(2 * idleSwap)
				}
			}
			c.Close()
			waitFor(t, "forgotten once closed by the client", func() bool { return parkedCount(s) == 0 && connCount(s) == 0 })
		})
	}
}

// TestParkedMany: parked connections whose requests come at once are all
// served, and all park again.
func TestParkedMany(t *testing.T) {
	const n = 64
	s, dial := parkServer(t, true, 30*time.Second)
	conns := make([]net.Conn, n)
	brs := make([]*bufio.Reader, n)
	for i := range conns {
		conns[i] = dial()
		brs[i] = bufio.NewReader(conns[i])
		if err := get(conns[i], brs[i], "/first"); err != nil {
			t.Fatal(err)
		}
	}
	for round := range 2 {
		if runtime.GOOS == "linux" {
			waitFor(t, fmt.Sprintf("all %d parked", n), func() bool { return parkedCount(s) == n })
		}
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := get(conns[i], brs[i], fmt.Sprintf("/%d/%d", round, i)); err != nil {
					errs <- fmt.Errorf("connection %d: %w", i, err)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	}
}

// TestIdleSwap: a connection idle past idleSwap (parked, or its wait on a
// new goroutine) still serves its next request, and is closed at
// IdleTimeout counted from the end of the last request, then forgotten.
func TestIdleSwap(t *testing.T) {
	for _, tlsOn := range []bool{false, true} {
		t.Run(scheme(tlsOn), func(t *testing.T) {
			s, dial := parkServer(t, tlsOn, 4*idleSwap)
			c := dial()
			br := bufio.NewReader(c)
			if err := get(c, br, "/1"); err != nil {
				t.Fatal(err)
			}
			time.Sleep(2 * idleSwap)
			if err := get(c, br, "/2"); err != nil {
				t.Fatalf("after an idle swap: %v", err)
			}
			idleStart := time.Now()
			_ = c.SetReadDeadline(time.Now().Add(10 * idleSwap))
			if _, err := br.ReadByte(); err != io.EOF {
				t.Fatalf("idle connection: %v, want EOF at IdleTimeout", err)
			}
			if took := time.Since(idleStart); took < 3*idleSwap {
				t.Errorf("closed after %v idle, IdleTimeout is %v", took, 4*idleSwap)
			}
			waitFor(t, "forgotten", func() bool { return parkedCount(s) == 0 && connCount(s) == 0 })
		})
	}
}

// TestParkedShutdownAndClose: Shutdown closes a parked connection at once
// and returns; so does Close.
func TestParkedShutdownAndClose(t *testing.T) {
	for _, how := range []string{"Shutdown", "Close"} {
		t.Run(how, func(t *testing.T) {
			s, dial := parkServer(t, true, 30*time.Second)
			c := dial()
			br := bufio.NewReader(c)
			if err := get(c, br, "/"); err != nil {
				t.Fatal(err)
			}
			if runtime.GOOS == "linux" {
				waitFor(t, "parked", func() bool { return parkedCount(s) == 1 })
			}
			var err error
			if how == "Shutdown" {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				err = s.Shutdown(ctx)
			} else {
				err = s.Close()
			}
			if err != nil {
				t.Fatalf("%s: %v", how, err)
			}
			_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
			if _, err := br.ReadByte(); err != io.EOF {
				t.Errorf("parked connection after %s: %v, want EOF", how, err)
			}
			waitFor(t, "forgotten", func() bool { return parkedCount(s) == 0 && connCount(s) == 0 })
		})
	}
}
