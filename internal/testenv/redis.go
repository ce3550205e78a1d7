package testenv

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
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
	// TLS serves TLS only (--port 0, --tls-port Port) with a certificate
	// for 127.0.0.1 signed by a CA made for this server (Redis.CAFile);
	// clients are not asked for certificates.
	TLS bool
	// ReplicaOf, "127.0.0.1:PORT", starts the server as that master's
	// replica.
	ReplicaOf string
	// Name names the process and its log (default "redis"; a restart
	// adds its number).
	Name string
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
	// CAFile is the PEM root that verifies the server's certificate, with
	// RedisOptions.TLS; "" otherwise.
	CAFile string

	tb   TB
	bin  string
	name string
	args []string
	tls  *tls.Config // for PING, with RedisOptions.TLS

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
		name: opts.Name,
		args: opts.Args,
	}
	if r.name == "" {
		r.name = "redis"
	}
	if opts.ReplicaOf != "" {
		host, port, err := net.SplitHostPort(opts.ReplicaOf)
		if err != nil {
			tb.Fatalf("RedisOptions.ReplicaOf %q: %v", opts.ReplicaOf, err)
		}
		r.args = append([]string{"--replicaof", host, port}, r.args...)
	}
	if opts.TLS {
		certs := writeTestCerts(tb, tb.TempDir(), "redis test CA", "127.0.0.1")
		r.CAFile = certs.CAFile
		r.args = append([]string{
			"--tls-port", strconv.Itoa(r.Port),
			"--tls-cert-file", certs.CertFile, "--tls-key-file", certs.KeyFile,
			"--tls-ca-cert-file", certs.CAFile, "--tls-auth-clients", "no",
		}, r.args...)
		pool := x509.NewCertPool()
		pem, err := os.ReadFile(certs.CAFile)
		if err != nil || !pool.AppendCertsFromPEM(pem) {
			tb.Fatalf("reading the test CA %s: %v", certs.CAFile, err)
		}
		r.tls = &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
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
	port := r.Port
	if r.tls != nil {
		port = 0 // --tls-port in r.args
	}
	args := append([]string{
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "yes", "--dir", r.Dir,
	}, r.args...)
	p := Start(r.tb, Cmd{Name: fmt.Sprintf("%s-%d", r.name, r.starts), Path: r.bin, Args: args, Dir: r.Dir})
	r.proc, r.frozen = p, false
	// Cleanups run last first: a frozen server is thawed before the
	// process's own Cleanup sends it SIGTERM.
	r.tb.Cleanup(r.Thaw)
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := pingRedis(r.Addr, r.tls)
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

// Kill stops the server at once with SIGKILL (no AOF flush, no goodbye to
// replicas or sentinels) and waits for it.
func (r *Redis) Kill() {
	r.mu.Lock()
	p := r.proc
	r.frozen = false
	r.mu.Unlock()
	if p != nil {
		p.Kill()
	}
}

// Do sends one command to the server (over TLS with RedisOptions.TLS) and
// returns the reply as RedisDo does.
func (r *Redis) Do(args ...string) (any, error) {
	return redisDo(r.Addr, r.tls, "", args...)
}

// Process is the current redis-server process (a new one after each Start).
func (r *Redis) Process() *Process {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.proc
}

// PingRedis sends PING over RESP and expects +PONG; it does not depend on
// the Redis client under test.
func PingRedis(addr string) error { return pingRedis(addr, nil) }

func pingRedis(addr string, tc *tls.Config) error {
	_, err := redisDo(addr, tc, "", "PING")
	var re RedisError
	if errors.As(err, &re) && strings.HasPrefix(string(re), "NOAUTH") { // up, with requirepass or the default user off
		return nil
	}
	return err
}

// RedisError is an error reply ("-ERR ...") from a server, without the "-".
type RedisError string

func (e RedisError) Error() string { return "redis: " + string(e) }

// RedisDo sends one command over plain TCP to addr and reads one reply: a
// string (simple or bulk; "" for a nil bulk), an int64, a []any (arrays,
// nested) or a RedisError. It is a minimal RESP2 client, independent of
// the Redis client under test, for tests and helpers.
func RedisDo(addr string, args ...string) (any, error) { return redisDo(addr, nil, "", args...) }

// RedisDoAuth is RedisDo after AUTH password (no AUTH when password is
// empty), for servers with requirepass.
func RedisDoAuth(addr, password string, args ...string) (any, error) {
	return redisDo(addr, nil, password, args...)
}

// redisDo sends args as one command, after AUTH password unless password
// is empty.
func redisDo(addr string, tc *tls.Config, password string, args ...string) (any, error) {
	d := &net.Dialer{Timeout: time.Second}
	var c net.Conn
	var err error
	if tc != nil {
		c, err = tls.DialWithDialer(d, "tcp", addr, tc)
	} else {
		c, err = d.Dial("tcp", addr)
	}
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	br := bufio.NewReader(c)
	if password != "" {
		if _, err := fmt.Fprintf(c, "*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n", len(password), password); err != nil {
			return nil, err
		}
		if v, err := readRESP(br); err != nil {
			return nil, err
		} else if e, ok := v.(RedisError); ok {
			return nil, e
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := io.WriteString(c, b.String()); err != nil {
		return nil, err
	}
	v, err := readRESP(br)
	if err != nil {
		return nil, fmt.Errorf("redis %s: %s: %w", addr, args[0], err)
	}
	if e, ok := v.(RedisError); ok {
		return nil, e
	}
	return v, nil
}

func readRESP(br *bufio.Reader) (any, error) {
	line, err := br.ReadString('\n')
	if err != nil {
		return nil, err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return nil, errors.New("empty RESP line")
	}
	switch body := line[1:]; line[0] {
	case '+':
		return body, nil
	case '-':
		return RedisError(body), nil
	case ':':
		return strconv.ParseInt(body, 10, 64)
	case '$':
		n, err := strconv.Atoi(body)
		if err != nil || n < 0 {
			return "", err
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(br, buf); err != nil {
			return nil, err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(body)
		if err != nil || n < 0 {
			return []any(nil), err
		}
		out := make([]any, n)
		for i := range out {
			if out[i], err = readRESP(br); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("unexpected RESP line %q", line)
}

// redisInfo parses an INFO reply's "key:value" lines.
func redisInfo(v any) map[string]string {
	s, _ := v.(string)
	out := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		if k, val, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			out[k] = val
		}
	}
	return out
}

// TestCerts are the PEM files writeTestCerts makes.
type TestCerts struct {
	CAFile, CertFile, KeyFile string
}

// writeTestCerts makes a CA and a server certificate for hosts (IP
// addresses or names), signed by it, under dir.
func writeTestCerts(tb TB, dir, caName string, hosts ...string) TestCerts {
	tb.Helper()
	c, err := WriteTestCerts(dir, caName, hosts...)
	if err != nil {
		tb.Fatalf("%v", err)
	}
	return c
}
