package testenv

import (
	"bufio"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// RedisOptions configures StartRedis.
type RedisOptions struct {
	// Port on 127.0.0.1; 0 picks a free one. Start after Stop reuses it.
	Port int
	// Args are extra redis-server arguments.
	Args []string
}

// Redis is a redis-server started with
// `--port P --bind 127.0.0.1 --save ” --appendonly yes --dir DIR`: no RDB
// snapshots, an append-only file, so a Stop and Start on the same port and
// directory keep the data and the lock leases. Safe for concurrent use.
type Redis struct {
	// Addr is "127.0.0.1:port".
	Addr string
	Port int
	// Dir holds the AOF; the log is the Process's.
	Dir string

	tb   TB
	bin  string
	args []string

	mu     sync.Mutex
	proc   *Process
	frozen bool
	starts int
}

// StartRedis starts redis-server and waits until it answers PING. Cleanup
// thaws and stops it (SIGTERM, then SIGKILL).
func StartRedis(tb TB, opts RedisOptions) *Redis {
	tb.Helper()
	bin := RequireTool(tb, "redis-server")
	switch {
	case opts.Port != 0:
	case slices.Contains(opts.Args, "--cluster-enabled"):
		// The cluster bus listens on port+10000 too: both must be free
		// and below the ephemeral range.
		opts.Port = FreePortWith(tb, 10000)
	default:
		opts.Port = FreePort(tb)
	}
	r := &Redis{
		Addr: Addr(opts.Port),
		Port: opts.Port,
		Dir:  tb.TempDir(),
		tb:   tb,
		bin:  bin,
		args: opts.Args,
	}
	r.Start()
	return r
}

// Start starts the server again after Stop, on the same port and directory
// (the AOF is replayed). Starting a running server is a test error.
func (r *Redis) Start() {
	r.tb.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.proc != nil && !r.proc.Exited() {
		r.tb.Fatalf("redis-server on %s is already running", r.Addr)
	}
	r.starts++
	args := append([]string{
		"--port", strconv.Itoa(r.Port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "yes", "--dir", r.Dir,
	}, r.args...)
	p := Start(r.tb, Cmd{Name: fmt.Sprintf("redis-%d", r.starts), Path: r.bin, Args: args, Dir: r.Dir})
	r.proc, r.frozen = p, false
	// Cleanups run last first: a frozen server is thawed before the
	// process's own Cleanup sends it SIGTERM.
	r.tb.Cleanup(r.Thaw)
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := PingRedis(r.Addr)
		if err == nil {
			return
		}
		if p.Exited() || time.Now().After(deadline) {
			r.tb.Fatalf("redis-server on %s did not answer PING: %v\n%s", r.Addr, err, p.Tail(20))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop shuts the server down with SIGTERM (Redis flushes the AOF) and waits.
func (r *Redis) Stop() {
	r.mu.Lock()
	p, frozen := r.proc, r.frozen
	r.frozen = false
	r.mu.Unlock()
	if p == nil {
		return
	}
	if frozen {
		_ = p.Signal(syscall.SIGCONT)
	}
	_ = p.Stop()
}

// Freeze stops the server with SIGSTOP: connections stay open, nothing is
// answered.
func (r *Redis) Freeze() {
	r.tb.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.proc.Signal(syscall.SIGSTOP); err != nil {
		r.tb.Fatalf("%v", err)
	}
	r.frozen = true
}

// Thaw resumes a frozen server with SIGCONT; it is a no-op otherwise.
func (r *Redis) Thaw() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.frozen && r.proc != nil {
		_ = r.proc.Signal(syscall.SIGCONT)
		r.frozen = false
	}
}

// Process is the current redis-server process (a new one after each Start).
func (r *Redis) Process() *Process {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.proc
}

// PingRedis sends PING over RESP and expects +PONG; it does not depend on
// the Redis client under test.
func PingRedis(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") && !strings.HasPrefix(line, "-NOAUTH") { // NOAUTH: up, with requirepass
		return fmt.Errorf("redis %s: unexpected reply %q to PING", addr, line)
	}
	return nil
}
