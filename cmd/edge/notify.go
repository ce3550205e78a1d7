package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// notifier speaks systemd's notify protocol (sd_notify(3)): each state
// change is one datagram of newline-separated KEY=VALUE lines sent to the
// unix datagram socket named by $NOTIFY_SOCKET (a path, or an abstract
// name when it starts with '@', which Go's net package maps to the leading
// NUL). It is written here rather than taken from go-systemd because the
// whole protocol edge needs is one sendto per message, and MONOTONIC_USEC
// and the watchdog's WATCHDOG_PID rule are easier to see in place.
//
// A nil *notifier, or one made without $NOTIFY_SOCKET (not started by
// systemd with Type=notify), does nothing. Safe for concurrent use.
type notifier struct {
	addr     *net.UnixAddr
	watchdog time.Duration // how often to send WATCHDOG=1: half of WATCHDOG_USEC; 0: off
	log      *zap.Logger

	mu     sync.Mutex // serialises datagrams, so RELOADING=1 ... READY=1 keep their order
	failed bool       // a send failed once (logged once)
}

// newNotifier reads $NOTIFY_SOCKET, $WATCHDOG_USEC and $WATCHDOG_PID and
// removes them from the environment (as sd_notify's unset_environment does),
// so that programs edge starts (exec exports) do not inherit them. It
// returns nil when $NOTIFY_SOCKET is unset.
func newNotifier(log *zap.Logger) *notifier {
	sock := os.Getenv("NOTIFY_SOCKET")
	usec := os.Getenv("WATCHDOG_USEC")
	pid := os.Getenv("WATCHDOG_PID")
	for _, k := range []string{"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"} {
		_ = os.Unsetenv(k)
	}
	if sock == "" {
		return nil
	}
	n := &notifier{addr: &net.UnixAddr{Name: sock, Net: "unixgram"}, log: log}
	n.watchdog = watchdogInterval(usec, pid, os.Getpid())
	return n
}

// watchdogInterval is half of WATCHDOG_USEC when the watchdog is meant for
// this process (WATCHDOG_PID unset or equal to pid), else 0
// (sd_watchdog_enabled(3) recommends pinging at half the timeout).
func watchdogInterval(usec, pid string, self int) time.Duration {
	if usec == "" {
		return 0
	}
	if pid != "" && pid != strconv.Itoa(self) {
		return 0
	}
	u, err := strconv.ParseUint(usec, 10, 63)
	if err != nil || u == 0 {
		return 0
	}
	return time.Duration(u) * time.Microsecond / 2
}

// send writes one datagram of lines. Errors are logged once: systemd gone
// is no reason to stop serving.
func (n *notifier) send(lines ...string) {
	if n == nil {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	err := n.write(strings.Join(lines, "\n") + "\n")
	if err != nil && !n.failed && n.log != nil {
		n.failed = true
		n.log.Warn("sd_notify failed; systemd will not see edge's state", zap.String("socket", n.addr.Name), zap.Error(err))
	}
}

func (n *notifier) write(msg string) error {
	c, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("dialing %s: %w", n.addr.Name, err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(msg)); err != nil {
		return fmt.Errorf("writing to %s: %w", n.addr.Name, err)
	}
	return nil
}

// ready says edge is serving: the listeners are bound and the certificates
// in storage are loaded. status is a line for `systemctl status`.
func (n *notifier) ready(status string) {
	n.send("READY=1", "STATUS="+status)
}

// reloading says a reload started; ready (or status) must follow. The
// MONOTONIC_USEC line is what systemd 253+ asks of RELOADING=1 (required for
// Type=notify-reload, harmless for Type=notify).
func (n *notifier) reloading() {
	n.send("RELOADING=1", "MONOTONIC_USEC="+strconv.FormatInt(monotonicUsec(), 10))
}

// status sets the status line alone.
func (n *notifier) status(status string) { n.send("STATUS=" + status) }

// stopping says edge is draining and will exit.
func (n *notifier) stopping() { n.send("STOPPING=1", "STATUS=draining in-flight requests") }

// startWatchdog sends WATCHDOG=1 every half of WATCHDOG_USEC until the
// returned stop is called; stop waits for the goroutine to exit. Without
// a watchdog it starts nothing. The pings prove that edge's goroutines are
// still scheduled, nothing more.
func (n *notifier) startWatchdog() (stop func()) {
	if n == nil || n.watchdog <= 0 {
		return func() {}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			if r := recover(); r != nil && n.log != nil {
				n.log.Error("watchdog panicked", zap.Any("panic", r), zap.Stack("stack"))
			}
		}()
		t := time.NewTicker(n.watchdog)
		defer t.Stop()
		n.send("WATCHDOG=1")
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				n.send("WATCHDOG=1")
			}
		}
	}()
	return func() {
		cancel()
		<-done
	}
}
