package export

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"
)

// ExecOutputMax is how much of a hook's combined stdout and stderr a
// Result keeps: at most the last ExecOutputMax bytes, where the error
// usually is, "[...]" first when the start was dropped.
const ExecOutputMax = 4 << 10

// execWaitDelay bounds how long Deliver waits for the hook's output pipes
// to close once the hook has exited or been killed (a daemon it started
// may hold them).
const execWaitDelay = 2 * time.Second

// Environment variables a hook sees.
const (
	EnvCertName      = "EDGE_CERT_NAME"
	EnvCertSerial    = "EDGE_CERT_SERIAL"
	EnvCertNotAfter  = "EDGE_CERT_NOT_AFTER"
	EnvCertFullchain = "EDGE_CERT_FULLCHAIN"
	EnvCertKey       = "EDGE_CERT_KEY"
	EnvCertPFX       = "EDGE_CERT_PFX"
	EnvExportDryRun  = "EDGE_EXPORT_DRY_RUN"
)

// ExecOptions configure an Exec.
type ExecOptions struct {
	// Command is the program and its arguments, run directly (no shell).
	// Every "{name}" in an argument is replaced by the certificate's Name.
	// It must not be empty.
	Command []string
	// Timeout bounds one run; when it passes, the hook's whole process
	// group is killed and the run is an error. 0 means no limit beyond
	// the context Deliver is given.
	Timeout time.Duration
	// Env holds extra KEY=VALUE pairs added to edge's own environment.
	// The EDGE_* variables above are set after them and win.
	Env []string
	// Files, when set, is a file-writing target that delivered the
	// certificate before this hook (a PEMDir or a PFXDir); the hook is
	// given its paths. Nil, or one that writes no PEM files, makes Exec
	// write fullchain.pem and privkey.pem into a fresh temporary
	// directory (0700) for the run and remove it afterwards.
	Files Files
}

// Exec runs a hook command for every delivery: to reload a server, or to
// copy the certificate somewhere edge has no exporter for. The hook gets
// the certificate in its environment:
//
//	EDGE_CERT_NAME       the managed name ("*.example.com")
//	EDGE_CERT_SERIAL     the leaf's serial, lower-case hex
//	EDGE_CERT_NOT_AFTER  the leaf's expiry, RFC 3339, UTC
//	EDGE_CERT_FULLCHAIN  path of the leaf+intermediates PEM file
//	EDGE_CERT_KEY        path of the private key PEM file
//	EDGE_CERT_PFX        path of the PFX file, only when Files wrote one
//
// A variable whose file was not written is absent (inherited values of
// these names are removed). Test runs the hook as a dry run: argument
// "{name}" and EDGE_CERT_NAME are "_test", EDGE_EXPORT_DRY_RUN=1 is set,
// there are no file variables, and the hook MUST change nothing (check
// that it could: config syntax, permissions) and exit 0 if a real run
// would succeed.
//
// A run fails on a non-zero exit, a signal, the timeout or the context
// ending; its combined output, trimmed and capped at ExecOutputMax, is in
// Result.Output either way. Result.Host is Command[0].
//
// The zero value is not usable: build one with NewExec. An Exec is safe
// for concurrent use; concurrent deliveries run concurrent hooks.
type Exec struct {
	command []string
	timeout time.Duration
	env     []string
	files   Files
}

var _ Exporter = (*Exec)(nil)

// NewExec checks o and returns the exporter. It does not look the command
// up: Test reports a missing one.
func NewExec(o ExecOptions) (*Exec, error) {
	var errs []error
	if len(o.Command) == 0 || o.Command[0] == "" {
		errs = append(errs, errors.New("exec: command is empty"))
	}
	if o.Timeout < 0 {
		errs = append(errs, fmt.Errorf("exec: negative timeout %s", o.Timeout))
	}
	for i, kv := range o.Env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			// Not the entry itself: it may hold a secret.
			errs = append(errs, fmt.Errorf("exec: Env[%d] is not KEY=VALUE", i))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &Exec{
		command: append([]string(nil), o.Command...),
		timeout: o.Timeout,
		env:     append([]string(nil), o.Env...),
		files:   o.Files,
	}, nil
}

// Deliver runs the hook for c and returns one Result.
func (e *Exec) Deliver(ctx context.Context, c *Cert) []Result {
	start := time.Now()
	out, err := e.deliver(ctx, c)
	return []Result{{Host: e.command[0], Err: err, Took: time.Since(start), Output: out}}
}

func (e *Exec) deliver(ctx context.Context, c *Cert) (string, error) {
	vars := []string{
		EnvCertName + "=" + c.Name,
		EnvCertSerial + "=" + c.Serial(),
		EnvCertNotAfter + "=" + c.Leaf().NotAfter.UTC().Format(time.RFC3339),
	}
	var fullchain, key, pfx string
	if e.files != nil {
		fullchain, key, pfx = e.files.Paths(c)
	}
	if fullchain == "" && key == "" {
		dir, err := writeTempPEM(c)
		if err != nil {
			return "", fmt.Errorf("running %s: %w", e.command[0], err)
		}
		defer os.RemoveAll(dir)
		fullchain, key = filepath.Join(dir, "fullchain.pem"), filepath.Join(dir, "privkey.pem")
	}
	for _, v := range []struct{ k, path string }{
		{EnvCertFullchain, fullchain}, {EnvCertKey, key}, {EnvCertPFX, pfx},
	} {
		if v.path != "" {
			vars = append(vars, v.k+"="+v.path)
		}
	}
	return e.run(ctx, c.Name, vars)
}

// tempPrefix begins the name of each temporary directory Exec writes a
// certificate and its key into, "edge-exec-p<PID>-<random>", so that one
// left by an edge that was killed during a run (SIGKILL, the OOM killer,
// a power cut; outside systemd's PrivateTmp) can be told from one that a
// running edge uses.
const tempPrefix = "edge-exec-p"

// started is about when this process started: a directory with its PID
// made before then is a former process's.
var started = time.Now()

// SweepTemp removes the directories Exec left in dir (os.TempDir() when
// "") in processes that have ended: those this user owns whose PID no
// process has any more, or that have this process's own PID and were made
// before it started (a container's edge is PID 1 at every start). It
// returns the paths it removed; the error is the first it met, after
// trying every directory. PIDs are this PID namespace's: edges in other
// containers must not share the directory.
func SweepTemp(dir string) ([]string, error) {
	if dir == "" {
		dir = os.TempDir()
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("sweeping %s: %w", dir, err)
	}
	self, uid := os.Getpid(), os.Getuid()
	var removed []string
	var first error
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), tempPrefix)
		if !ok || !e.IsDir() {
			continue
		}
		digits, _, ok := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(digits)
		if !ok || err != nil || pid <= 0 {
			continue
		}
		if pid != self && !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
			continue // running (EPERM: another user's process), or unknown
		}
		p := filepath.Join(dir, e.Name())
		fi, err := os.Lstat(p)
		if err != nil || (pid == self && !fi.ModTime().Before(started)) {
			continue // gone, or this process's own
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); !ok || int(st.Uid) != uid {
			continue
		}
		if err := os.RemoveAll(p); err != nil {
			if first == nil {
				first = fmt.Errorf("sweeping %s: %w", p, err)
			}
			continue
		}
		removed = append(removed, p)
	}
	return removed, first
}

// writeTempPEM writes c's fullchain.pem and privkey.pem (0600) into a new
// temporary directory (0700) and returns it.
func writeTempPEM(c *Cert) (string, error) {
	key, err := c.KeyPEM()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", tempPrefix+strconv.Itoa(os.Getpid())+"-*")
	if err != nil {
		return "", fmt.Errorf("creating a temporary directory: %w", err)
	}
	for _, f := range []struct {
		name string
		data []byte
	}{{"privkey.pem", key}, {"fullchain.pem", c.FullchainPEM()}} {
		p := filepath.Join(dir, f.name)
		if err := os.WriteFile(p, f.data, 0o600); err != nil {
			os.RemoveAll(dir)
			return "", fmt.Errorf("writing %s: %w", p, err)
		}
	}
	return dir, nil
}

// Test runs the hook as a dry run (see Exec) and returns one Result.
func (e *Exec) Test(ctx context.Context) []Result {
	start := time.Now()
	out, err := e.run(ctx, "_test", []string{EnvCertName + "=_test", EnvExportDryRun + "=1"})
	return []Result{{Host: e.command[0], Err: err, Took: time.Since(start), Output: out}}
}

// run runs the command with "{name}" replaced by name and vars added to
// the environment, in its own process group, which is killed when the
// timeout passes or ctx ends.
func (e *Exec) run(ctx context.Context, name string, vars []string) (string, error) {
	argv := make([]string, len(e.command))
	for i, a := range e.command {
		argv[i] = strings.ReplaceAll(a, "{name}", name)
	}
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("running %s: %w", argv[0], err)
	}
	runCtx, cancel := ctx, context.CancelFunc(func() {})
	if e.timeout > 0 {
		runCtx, cancel = context.WithTimeout(ctx, e.timeout)
	}
	defer cancel()

	cmd := exec.CommandContext(runCtx, argv[0], argv[1:]...)
	cmd.Env = append(append(hookBaseEnv(), e.env...), vars...)
	var out execOutput
	cmd.Stdout, cmd.Stderr = &out, &out
	// Its own process group, so that the kill reaches what a shell script
	// started too, not only the shell.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); err != nil {
			if errors.Is(err, syscall.ESRCH) {
				return os.ErrProcessDone
			}
			return err
		}
		return nil
	}
	cmd.WaitDelay = execWaitDelay

	err := cmd.Run()
	output := out.String()
	switch {
	case err == nil, errors.Is(err, exec.ErrWaitDelay) && runCtx.Err() == nil:
		// ErrWaitDelay alone: the hook exited 0 but something it started
		// still holds its output; the hook itself succeeded.
		return output, nil
	case ctx.Err() != nil:
		return output, fmt.Errorf("running %s: killed: %w", argv[0], ctx.Err())
	case runCtx.Err() != nil:
		return output, fmt.Errorf("running %s: killed after the %s timeout: %w", argv[0], e.timeout, runCtx.Err())
	default:
		// *exec.ExitError says "exit status 3" or "signal: killed"; a
		// start failure names the cause (not found, permission denied).
		return output, fmt.Errorf("running %s: %w", argv[0], err)
	}
}

// hookBaseEnv returns edge's environment without the variables Exec sets,
// so that a hook never sees an inherited EDGE_CERT_* or dry-run flag.
func hookBaseEnv() []string {
	env := os.Environ()
	kept := env[:0:0]
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "EDGE_CERT_") || k == EnvExportDryRun {
			continue
		}
		kept = append(kept, kv)
	}
	return kept
}

// execTruncMark starts an output whose start was dropped.
const execTruncMark = "[...]"

// execOutput keeps the last ExecOutputMax bytes written to it, less room
// for execTruncMark once it has dropped some. It is safe for concurrent
// use.
type execOutput struct {
	mu        sync.Mutex
	buf       []byte
	truncated bool
}

func (o *execOutput) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.buf = append(o.buf, p...)
	keep := ExecOutputMax - len(execTruncMark)
	limit := ExecOutputMax
	if o.truncated {
		limit = keep
	}
	if len(o.buf) > limit {
		o.buf = append(o.buf[:0], o.buf[len(o.buf)-keep:]...)
		o.truncated = true
	}
	return len(p), nil
}

// String returns the output kept, trimmed, "[...]" first when the start
// was dropped.
func (o *execOutput) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	b := o.buf
	if o.truncated {
		// Do not start in the middle of a UTF-8 sequence.
		for len(b) > 0 && !utf8.RuneStart(b[0]) {
			b = b[1:]
		}
	}
	s := string(bytes.TrimSpace(b))
	if o.truncated && s != "" {
		s = execTruncMark + s
	}
	return s
}
