package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// StopTimeout is how long Stop waits after SIGTERM before it sends SIGKILL.
const StopTimeout = 5 * time.Second

// Cmd describes a program to start.
type Cmd struct {
	// Name names the process in messages and its log file (name.log).
	Name string
	Path string
	Args []string
	// Env is added to the current environment.
	Env []string
	// Dir is the working directory; "" is the TB's temp dir.
	Dir string
}

// Process is a started program whose stdout and stderr go to LogPath.
// It is safe for concurrent use.
type Process struct {
	Name    string
	LogPath string

	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // from Wait; read after done

	stopOnce sync.Once
	stopErr  error
}

// Start starts c and registers a Cleanup that stops it (SIGTERM, then SIGKILL
// after StopTimeout) and, when the test failed, prints the tail of its log.
func Start(tb TB, c Cmd) *Process {
	tb.Helper()
	dir := tb.TempDir()
	logDir := dir
	if keep := os.Getenv("TESTENV_LOGDIR"); keep != "" {
		// Logs kept after the test, for debugging.
		if err := os.MkdirAll(keep, 0o755); err != nil {
			tb.Fatalf("TESTENV_LOGDIR: %v", err)
		}
		d, err := os.MkdirTemp(keep, c.Name+"-")
		if err != nil {
			tb.Fatalf("TESTENV_LOGDIR: %v", err)
		}
		logDir = d
	}
	logPath := filepath.Join(logDir, c.Name+".log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		tb.Fatalf("starting %s: %v", c.Name, err)
	}
	cmd := exec.Command(c.Path, c.Args...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.Env = append(os.Environ(), c.Env...)
	cmd.Dir = c.Dir
	if cmd.Dir == "" {
		cmd.Dir = dir
	}
	// Its own process group, so a Ctrl-C in the demo's terminal reaches only
	// the demo, which then stops its children in order.
	// Pdeathsig: if the test binary dies (a -timeout panic), so do its
	// children, rather than holding ports for the next run.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		tb.Fatalf("starting %s (%s): %v", c.Name, c.Path, err)
	}
	p := &Process{Name: c.Name, LogPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	tb.Logf("started %s (pid %d): %s %s; log %s", c.Name, cmd.Process.Pid, c.Path, strings.Join(c.Args, " "), logPath)
	tb.Cleanup(func() {
		p.Stop()
		if failed(tb) {
			tb.Logf("--- last lines of %s (%s) ---\n%s", p.Name, p.LogPath, p.Tail(60))
		}
	})
	return p
}

// Pid is the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Signal sends sig to the process. Signalling an exited process is a no-op.
func (p *Process) Signal(sig os.Signal) error {
	if p.Exited() {
		return nil
	}
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signalling %s: %w", p.Name, err)
	}
	return nil
}

// Wait waits up to timeout for the process to exit and returns its exit
// error (nil for exit status 0).
func (p *Process) Wait(timeout time.Duration) error {
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		return fmt.Errorf("%s still running after %s", p.Name, timeout)
	}
}

// Stop sends SIGTERM, waits StopTimeout, then sends SIGKILL. It returns the
// process's exit error from the first call: nil means it exited 0 on
// SIGTERM. Later calls return the same result.
func (p *Process) Stop() error {
	p.stopOnce.Do(func() {
		if p.Exited() {
			p.stopErr = fmt.Errorf("%s had already exited: %v", p.Name, p.err)
			if p.err == nil {
				p.stopErr = nil
			}
			return
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
			p.stopErr = p.err
			if p.err != nil {
				p.stopErr = fmt.Errorf("%s exited on SIGTERM: %w", p.Name, p.err)
			}
		case <-time.After(StopTimeout):
			_ = p.cmd.Process.Kill()
			<-p.done
			p.stopErr = fmt.Errorf("%s did not exit within %s of SIGTERM; killed", p.Name, StopTimeout)
		}
	})
	return p.stopErr
}

// Kill stops the process at once with SIGKILL and waits for it.
func (p *Process) Kill() {
	p.stopOnce.Do(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
		p.stopErr = errors.New(p.Name + " was killed")
	})
}

// Log returns the whole log so far.
func (p *Process) Log() string {
	b, _ := os.ReadFile(p.LogPath)
	return string(b)
}

// Tail returns the last n lines of the log.
func (p *Process) Tail(n int) string {
	b, _ := os.ReadFile(p.LogPath)
	return tail(b, n)
}

func tail(b []byte, n int) string {
	b = bytes.TrimRight(b, "\n")
	lines := bytes.Split(b, []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// WaitLog waits until the log contains substr.
func (p *Process) WaitLog(substr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if strings.Contains(p.Log(), substr) {
			return nil
		}
		if p.Exited() {
			return fmt.Errorf("%s exited (%v) before logging %q", p.Name, p.err, substr)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not log %q within %s", p.Name, substr, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
