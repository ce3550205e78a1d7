package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// HAProxyOptions configures StartHAProxy.
type HAProxyOptions struct {
	// Port is the frontend port on 127.0.0.1. 0 picks a free one.
	Port int
	// Backends are "host:port" servers, used in this order.
	Backends []string
	// Mode is "tcp" (default) or "http".
	Mode string
	// Balance is the algorithm; default "roundrobin".
	Balance string
	// ServerOptions are appended to every server line, such as
	// "send-proxy-v2 source 127.0.0.2".
	ServerOptions string
	// WaitForServers keeps a connection on the server the balance chose
	// when that server refuses it (an edge still starting): HAProxy tries
	// it again once a second, up to 10 times, instead of redispatching to
	// the next server. Each server then gets its turn of the balance even
	// while it starts.
	WaitForServers bool
}

// HAProxy is a running HAProxy in the foreground.
type HAProxy struct {
	*Process
	// Addr is the frontend, "127.0.0.1:port".
	Addr string
	Port int
}

// StartHAProxy writes a config with one frontend and one backend of opts'
// servers and starts haproxy in the foreground. There are no health checks:
// every server takes its turn; a refused connection is redispatched to the
// next server (unless WaitForServers).
func StartHAProxy(tb TB, opts HAProxyOptions) *HAProxy {
	tb.Helper()
	bin := RequireTool(tb, "haproxy")
	if opts.Port == 0 {
		opts.Port = FreePort(tb)
	}
	if opts.Mode == "" {
		opts.Mode = "tcp"
	}
	if opts.Balance == "" {
		opts.Balance = "roundrobin"
	}
	// A server that refuses a connection (an edge still starting) is
	// retried once, then the connection goes to the next server; with
	// WaitForServers it is retried on the same server, a second apart (the
	// turn-around HAProxy applies: min(timeout connect, 1 s)).
	retries := "    retries 2\n    option redispatch\n"
	if opts.WaitForServers {
		retries = "    retries 10\n"
	}
	var b strings.Builder
	fmt.Fprintf(&b, `global
    maxconn 512

defaults
    mode %s
    timeout connect 2s
    timeout client 30s
    timeout server 30s
%s
frontend fe
    bind %s
    default_backend be

backend be
    balance %s
`, opts.Mode, retries, Addr(opts.Port), opts.Balance)
	for i, s := range opts.Backends {
		fmt.Fprintf(&b, "    server s%d %s %s\n", i, s, opts.ServerOptions)
	}
	dir := tb.TempDir()
	cfg := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(cfg, []byte(b.String()), 0o644); err != nil {
		tb.Fatalf("writing haproxy config: %v", err)
	}
	p := Start(tb, Cmd{Name: "haproxy", Path: bin, Args: []string{"-db", "-f", cfg}, Dir: dir})
	addr := Addr(opts.Port)
	if err := waitTCPOrExit(p, addr, 15*time.Second); err != nil {
		tb.Fatalf("haproxy: %v\n%s", err, p.Tail(20))
	}
	return &HAProxy{Process: p, Addr: addr, Port: opts.Port}
}
