package redisstore

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// redisServer is a real redis-server started for one test, stopped by PID in
// t.Cleanup. It can be frozen (SIGSTOP), thawed (SIGCONT) and restarted on the
// same port and directory (AOF on, so data and lock leases survive).
type redisServer struct {
	t      testing.TB
	bin    string
	port   int
	dir    string
	addr   string
	cmd    *exec.Cmd
	exited chan struct{}
	frozen bool
	extra  []string // extra redis-server arguments
}

func redisBinary(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if _, serr := os.Stat("/usr/bin/redis-server"); serr == nil {
			return "/usr/bin/redis-server"
		}
		if os.Getenv("CI") != "" {
			t.Fatalf("redis-server not found and CI is set: %v", err)
		}
		t.Skipf("redis-server not found: %v", err)
	}
	return bin
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func startRedis(t testing.TB, extra ...string) *redisServer {
	t.Helper()
	r := &redisServer{t: t, bin: redisBinary(t), port: freePort(t), dir: t.TempDir(), extra: extra}
	r.addr = fmt.Sprintf("127.0.0.1:%d", r.port)
	t.Cleanup(r.stop)
	r.start()
	return r
}

func (r *redisServer) start() {
	r.t.Helper()
	args := []string{
		"--port", fmt.Sprint(r.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "yes", "--dir", r.dir,
		"--logfile", filepath.Join(r.dir, "redis.log"),
	}
	r.cmd = exec.Command(r.bin, append(args, r.extra...)...)
	if err := r.cmd.Start(); err != nil {
		r.t.Fatalf("starting redis-server: %v", err)
	}
	exited := make(chan struct{})
	r.exited = exited
	cmd := r.cmd
	go func() { _ = cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := pingRaw(r.addr); err == nil {
			return
		} else if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(r.dir, "redis.log"))
			r.t.Fatalf("redis-server on %s did not answer PING: %v\n%s", r.addr, err, log)
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(filepath.Join(r.dir, "redis.log"))
			r.t.Fatalf("redis-server exited early:\n%s", log)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// pingRaw speaks RESP directly so the helper does not depend on the code
// under test.
func pingRaw(addr string) error {
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
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("unexpected reply %q", line)
	}
	return nil
}

func (r *redisServer) signal(sig syscall.Signal) {
	r.t.Helper()
	if err := r.cmd.Process.Signal(sig); err != nil {
		r.t.Fatalf("signalling redis-server pid %d with %v: %v", r.cmd.Process.Pid, sig, err)
	}
}

// freeze stops the server with SIGSTOP; thaw resumes it with SIGCONT.
func (r *redisServer) freeze() { r.signal(syscall.SIGSTOP); r.frozen = true }
func (r *redisServer) thaw()   { r.signal(syscall.SIGCONT); r.frozen = false }

// shutdown stops the server with SIGTERM (Redis flushes the AOF) and waits.
func (r *redisServer) shutdown() {
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	select {
	case <-r.exited:
		return
	default:
	}
	if r.frozen {
		_ = r.cmd.Process.Signal(syscall.SIGCONT)
		r.frozen = false
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.exited:
	case <-time.After(5 * time.Second):
		_ = r.cmd.Process.Kill()
		<-r.exited
	}
}

// restart shuts the server down and starts it again on the same port and
// directory.
func (r *redisServer) restart() {
	r.t.Helper()
	r.shutdown()
	r.start()
}

func (r *redisServer) stop() { r.shutdown() }
