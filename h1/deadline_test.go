package h1

import (
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"testing"
	"time"
)

// deadlineConn records the write deadlines applied to it.
type deadlineConn struct {
	net.Conn
	applied []time.Time
}

func (c *deadlineConn) SetWriteDeadline(t time.Time) error {
	c.applied = append(c.applied, t)
	return nil
}

func (c *deadlineConn) SetDeadline(t time.Time) error { return c.SetWriteDeadline(t) }

// TestWriteDeadlineMovesLazily: a write deadline a little later than the
// one in force is not applied; an earlier one, a much later one and none at
// all are.
func TestWriteDeadlineMovesLazily(t *testing.T) {
	rec := &deadlineConn{}
	c := &conn{rwc: rec}
	now := time.Now()
	steps := []struct {
		name  string
		t     time.Time
		apply bool
	}{
		{"first", now.Add(60 * time.Second), true},
		{"1 ms later", now.Add(60*time.Second + time.Millisecond), false},
		{"1 s later", now.Add(61 * time.Second), false},
		{"earlier", now.Add(30 * time.Second), true},
		{"a sixteenth of the time left later", now.Add(30*time.Second + 2*time.Second), true},
		{"none", time.Time{}, true},
		{"none again", time.Time{}, true},
		{"after none", now.Add(60 * time.Second), true},
	}
	for _, s := range steps {
		n := len(rec.applied)
		if err := c.setWriteDeadline(s.t); err != nil {
			t.Fatal(err)
		}
		if got := len(rec.applied) > n; got != s.apply {
			t.Errorf("%s: applied %v, want %v", s.name, got, s.apply)
		}
		if s.apply && !rec.applied[len(rec.applied)-1].Equal(s.t) {
			t.Errorf("%s: applied %v, want %v", s.name, rec.applied[len(rec.applied)-1], s.t)
		}
	}
}

// TestWriteDeadlineStillFires: a handler that moves its write deadline on
// before every write, as the proxy does, still sees a write fail once the
// client stops reading.
func TestWriteDeadlineStillFires(t *testing.T) {
	failed := make(chan error, 1)
	addr, _ := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		chunk := make([]byte, 64<<10)
		for range 4096 { // 256 MiB at most: far more than socket buffers hold
			_ = rc.SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
			if _, err := w.Write(chunk); err != nil {
				failed <- err
				return
			}
		}
		failed <- nil
	}), false)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET /big HTTP/1.1\r\nHost: a\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	// The client reads nothing.
	select {
	case err := <-failed:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("write to a client that reads nothing: %v, want a deadline error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("writes to a client that reads nothing did not fail")
	}
}
