package redisstore

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// The lock tests run holders in separate processes: the test binary
// re-executes itself with REDISSTORE_HELPER=<mode> (the helper-process
// pattern), and TestMain runs the helper instead of the tests.
//
// Helper environment: REDISSTORE_ADDR, REDISSTORE_PREFIX, REDISSTORE_LOCK,
// REDISSTORE_LEASE, REDISSTORE_POLL, REDISSTORE_INSTANCE, REDISSTORE_N.
// Helpers print protocol lines on stdout and log to stderr; a failed test
// shows both, and REDISSTORE_SHOW_HELPER_LOGS=1 shows them always.
func TestMain(m *testing.M) {
	if mode := os.Getenv("REDISSTORE_HELPER"); mode != "" {
		os.Exit(runHelper(mode))
	}
	os.Exit(m.Run())
}

func runHelper(mode string) int {
	var outMu sync.Mutex
	say := func(format string, args ...any) {
		outMu.Lock()
		defer outMu.Unlock()
		fmt.Printf(format+"\n", args...)
	}
	cfg := zap.NewDevelopmentConfig()
	cfg.DisableStacktrace = true
	cfg.EncoderConfig.EncodeTime = zapcore.RFC3339NanoTimeEncoder
	logger, _ := cfg.Build()
	dur := func(k string) time.Duration { d, _ := time.ParseDuration(os.Getenv(k)); return d }
	name := os.Getenv("REDISSTORE_LOCK")
	s, err := New(Options{
		Addrs:     []string{os.Getenv("REDISSTORE_ADDR")},
		Prefix:    os.Getenv("REDISSTORE_PREFIX"),
		LockLease: dur("REDISSTORE_LEASE"),
		LockPoll:  dur("REDISSTORE_POLL"),
		Instance:  os.Getenv("REDISSTORE_INSTANCE"),
		Logger:    logger.With(zap.String("instance", os.Getenv("REDISSTORE_INSTANCE"))),
		OnLockLost: func(n string) {
			say("LOST %s %d", n, time.Now().UnixNano())
		},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer s.Close()
	ctx := context.Background()

	switch mode {
	case "counter":
		n, _ := strconv.Atoi(os.Getenv("REDISSTORE_N"))
		for i := 0; i < n; i++ {
			if err := s.Lock(ctx, name); err != nil {
				fmt.Fprintln(os.Stderr, "lock:", err)
				return 1
			}
			v := 0
			b, err := s.Load(ctx, "counter")
			switch {
			case errors.Is(err, fs.ErrNotExist):
			case err != nil:
				fmt.Fprintln(os.Stderr, "load:", err)
				return 1
			default:
				v, _ = strconv.Atoi(string(b))
			}
			time.Sleep(5 * time.Millisecond)
			if err := s.Store(ctx, "counter", []byte(strconv.Itoa(v+1))); err != nil {
				fmt.Fprintln(os.Stderr, "store:", err)
				return 1
			}
			if err := s.Unlock(ctx, name); err != nil {
				fmt.Fprintln(os.Stderr, "unlock:", err)
				return 1
			}
		}
		say("DONE")
		return 0

	case "hold":
		if err := s.Lock(ctx, name); err != nil {
			fmt.Fprintln(os.Stderr, "lock:", err)
			return 1
		}
		say("LOCKED %d", time.Now().UnixNano())
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() { // EOF (parent gone) ends the helper
			if sc.Text() == "unlock" {
				if err := s.Unlock(ctx, name); err != nil {
					say("UNLOCK_ERR %v", err)
				} else {
					say("UNLOCKED")
				}
				return 0
			}
		}
		return 0
	}
	fmt.Fprintln(os.Stderr, "unknown helper mode", mode)
	return 2
}

// helperProc is a running helper process. Its stdout lines are collected by
// one reader goroutine, which exits when the process closes stdout; Cleanup
// kills the process if needed and waits for both.
type helperProc struct {
	t      *testing.T
	name   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	errLog string
	exited chan struct{}
	err    error // exit status, valid after exited is closed

	mu    sync.Mutex
	lines []string
	more  chan struct{} // closed and replaced when a line arrives
}

type helperConf struct {
	addr, prefix, lock, instance string
	lease, poll                  time.Duration
	n                            int
}

func startHelper(t *testing.T, mode string, c helperConf) *helperProc {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(),
		"REDISSTORE_HELPER="+mode,
		"REDISSTORE_ADDR="+c.addr,
		"REDISSTORE_PREFIX="+c.prefix,
		"REDISSTORE_LOCK="+c.lock,
		"REDISSTORE_INSTANCE="+c.instance,
		"REDISSTORE_LEASE="+c.lease.String(),
		"REDISSTORE_POLL="+c.poll.String(),
		"REDISSTORE_N="+strconv.Itoa(c.n),
	)
	h := &helperProc{t: t, name: c.instance, cmd: cmd, exited: make(chan struct{}), more: make(chan struct{})}
	h.errLog = filepath.Join(t.TempDir(), c.instance+".stderr")
	errFile, err := os.Create(h.errLog)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = errFile
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if h.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			h.mu.Lock()
			h.lines = append(h.lines, sc.Text())
			close(h.more)
			h.more = make(chan struct{})
			h.mu.Unlock()
		}
		h.err = cmd.Wait()
		errFile.Close()
		close(h.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-h.exited:
		default:
			_ = cmd.Process.Kill()
			<-h.exited
		}
		if t.Failed() || os.Getenv("REDISSTORE_SHOW_HELPER_LOGS") != "" {
			b, _ := os.ReadFile(h.errLog)
			t.Logf("helper %s stdout: %q\nstderr:\n%s", h.name, h.allLines(), b)
		}
	})
	return h
}

func (h *helperProc) allLines() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.lines...)
}

// expect waits for a stdout line starting with prefix and returns the rest.
func (h *helperProc) expect(prefix string, timeout time.Duration) string {
	h.t.Helper()
	deadline := time.After(timeout)
	for {
		h.mu.Lock()
		for _, l := range h.lines {
			if strings.HasPrefix(l, prefix) {
				h.mu.Unlock()
				return strings.TrimSpace(strings.TrimPrefix(l, prefix))
			}
		}
		more := h.more
		h.mu.Unlock()
		select {
		case <-more:
		case <-h.exited:
			if !h.has(prefix) {
				h.t.Fatalf("helper %s exited (%v) without printing %q", h.name, h.err, prefix)
			}
		case <-deadline:
			h.t.Fatalf("helper %s did not print %q within %s", h.name, prefix, timeout)
		}
	}
}

func (h *helperProc) has(prefix string) bool {
	for _, l := range h.allLines() {
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}

func (h *helperProc) send(line string) {
	h.t.Helper()
	if _, err := io.WriteString(h.stdin, line+"\n"); err != nil {
		h.t.Fatalf("writing to helper %s: %v", h.name, err)
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (h *helperProc) kill() {
	h.t.Helper()
	if err := h.cmd.Process.Kill(); err != nil {
		h.t.Fatalf("killing helper %s: %v", h.name, err)
	}
	<-h.exited
}

func (h *helperProc) wait(timeout time.Duration) error {
	select {
	case <-h.exited:
		return h.err
	case <-time.After(timeout):
		return fmt.Errorf("helper %s still running after %s", h.name, timeout)
	}
}

// unixNano parses the nanosecond timestamp helpers print.
func unixNano(t *testing.T, s string) time.Time {
	t.Helper()
	f := strings.Fields(s)
	n, err := strconv.ParseInt(f[len(f)-1], 10, 64)
	if err != nil {
		t.Fatalf("parsing time in %q: %v", s, err)
	}
	return time.Unix(0, n)
}
