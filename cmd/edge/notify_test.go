package main

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

func TestWatchdogInterval(t *testing.T) {
	self := os.Getpid()
	for _, tc := range []struct {
		name, usec, pid string
		want            time.Duration
	}{
		{"no watchdog", "", "", 0},
		{"half of it", "30000000", "", 15 * time.Second},
		{"for this process", "30000000", strconv.Itoa(self), 15 * time.Second},
		{"for another process", "30000000", strconv.Itoa(self + 1), 0},
		{"zero", "0", "", 0},
		{"garbage", "30s", "", 0},
		{"negative", "-5", "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := watchdogInterval(tc.usec, tc.pid, self); got != tc.want {
				t.Errorf("watchdogInterval(%q, %q) = %v, want %v", tc.usec, tc.pid, got, tc.want)
			}
		})
	}
}

// TestNotifierMessages: the datagrams on a real unixgram socket, and the
// environment cleared for edge's children.
func TestNotifierMessages(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", path)
	t.Setenv("WATCHDOG_USEC", "100000")
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	n := newNotifier(nil)
	for _, k := range []string{"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"} {
		if v, ok := os.LookupEnv(k); ok {
			t.Errorf("%s=%q still set after newNotifier", k, v)
		}
	}
	if n == nil || n.watchdog != 50*time.Millisecond {
		t.Fatalf("notifier %+v, want one with a 50ms watchdog", n)
	}
	read := func() string {
		t.Helper()
		buf := make([]byte, 512)
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		k, err := conn.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		return string(buf[:k])
	}
	n.ready("serving (2 hosts)")
	if got := read(); got != "READY=1\nSTATUS=serving (2 hosts)\n" {
		t.Errorf("ready: %q", got)
	}
	n.stopping()
	if got := read(); got != "STOPPING=1\nSTATUS=draining in-flight requests\n" {
		t.Errorf("stopping: %q", got)
	}
	stop := n.startWatchdog()
	for range 3 {
		if got := read(); got != "WATCHDOG=1\n" {
			t.Errorf("watchdog: %q", got)
		}
	}
	stop()

	var none *notifier // outside systemd: every call does nothing
	none.ready("x")
	none.reloading()
	none.stopping()
	none.startWatchdog()()
}

func TestNoNotifySocket(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	if n := newNotifier(nil); n != nil {
		t.Errorf("newNotifier without NOTIFY_SOCKET = %+v, want nil", n)
	}
}
