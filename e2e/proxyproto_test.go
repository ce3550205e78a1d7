package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/farmedge/edge/internal/testenv"
)

// clientFrom is an HTTPS client whose connections go to addr from the
// local address src (one of 127.0.0.0/8), with SNI and Host host. Each
// request is on a new connection.
func clientFrom(src, addr, host string, roots *x509.CertPool) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			DialContext:       func(ctx context.Context, _, _ string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) },
			TLSClientConfig:   &tls.Config{ServerName: host, RootCAs: roots},
			DisableKeepAlives: true,
		},
	}
}

// TestProxyProtocolBehindHAProxy: HAProxy in TCP mode with send-proxy-v2
// (from 127.0.0.2) in front of edge's HTTPS listener. The backend sees each
// client's own address in X-Forwarded-For, ip_hash keys on it, and the
// access log shows it. A PROXY header from a source not in
// proxy_protocol.from is refused, as is a connection from the balancer
// without one; limits.max_conns_per_ip counts the address the header
// carries.
func TestProxyProtocolBehindHAProxy(t *testing.T) {
	ports := testenv.FreePorts(t, 4)
	peb := startPebbleHTTP01(t, ports[0])
	b1, b2 := newSeenBackend(t), newSeenBackend(t)
	cfg := fmt.Sprintf(`listen: {http: %q, https: %q}
admin: {listen: %q}
acme: {email: test@example.com, ca: %q, ca_root_file: %q, challenges: [http-01]}
storage: {type: file, path: %q}
proxy_protocol: {from: ["127.0.0.2"]}
limits: {max_conns_per_ip: 3}
log: {level: info, format: json, access: true}
sites:
  - hosts: [a.test]
    routes: [{path: /, pool: web}]
pools:
  web: {policy: ip_hash, backends: [%q, %q]}
`, testenv.Addr(ports[0]), testenv.Addr(ports[1]), testenv.Addr(ports[2]), peb.DirectoryURL, peb.MinicaRootFile,
		filepath.Join(t.TempDir(), "storage"), b1.URL, b2.URL)
	e, roots := startServing(t, peb, cfg)
	hap := testenv.StartHAProxy(t, testenv.HAProxyOptions{Port: ports[3], Backends: []string{e.HTTPSAddr}, ServerOptions: "send-proxy-v2 source 127.0.0.2"})

	// Clients of their own addresses, three requests each, through
	// HAProxy: 127.0.0.3 to 127.0.0.10, then from 127.0.1.1 on until
	// ip_hash has used both backends. Keyed on the client's address, eight
	// land on one backend one time in 128 (the backends' ports are random)
	// and 64 one time in 2^63; keyed on anything the clients share, they
	// never spread.
	backendOf := map[string]string{}
	clients := 0
	used := map[string]bool{}
	for i := 3; len(used) < 2 || clients < 8; i++ {
		if clients == 64 {
			t.Fatalf("ip_hash put all %d client addresses on one backend: %v", clients, backendOf)
		}
		src := fmt.Sprintf("127.0.0.%d", i)
		if i > 10 {
			src = fmt.Sprintf("127.0.1.%d", i-10)
		}
		c := clientFrom(src, hap.Addr, "a.test", roots)
		for range 3 {
			resp, err := c.Get("https://a.test/who")
			if err != nil {
				t.Fatalf("GET through HAProxy from %s: %v", src, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("GET through HAProxy from %s: %d %s", src, resp.StatusCode, body)
			}
		}
		c.CloseIdleConnections()
		clients++
		for name, b := range map[string]*seenBackend{"b1": b1, "b2": b2} {
			for _, r := range b.seen() {
				if !strings.HasPrefix(r.xff, "127.0.") || r.xff == "127.0.0.1" || r.xff == "127.0.0.2" || r.realIP != r.xff {
					t.Errorf("%s saw X-Forwarded-For %q, X-Real-IP %q: want the client's own address", name, r.xff, r.realIP)
				}
				if prev, ok := backendOf[r.xff]; ok && prev != name {
					t.Errorf("ip_hash sent %s to %s and %s", r.xff, prev, name)
				}
				backendOf[r.xff] = name
				used[name] = true
			}
			b.reset()
		}
	}
	if len(backendOf) != clients {
		t.Errorf("backends saw %d client addresses, want %d: %v", len(backendOf), clients, backendOf)
	}
	waitFor(t, 10*time.Second, "the access log to show a client address", func() bool {
		log, _ := os.ReadFile(e.LogPath)
		return strings.Contains(string(log), `"remote":"127.0.0.7"`) || strings.Contains(string(log), `"remote":"127.0.0.7:`)
	})

	t.Run("PROXY header from an untrusted source", func(t *testing.T) {
		b1.reset()
		b2.reset()
		d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.20")}}
		conn, err := d.Dial("tcp", e.HTTPSAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "PROXY TCP4 198.51.100.9 127.0.0.1 4000 443\r\n")
		tc := tls.Client(conn, &tls.Config{ServerName: "a.test", RootCAs: roots})
		_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
		if err := tc.Handshake(); err == nil {
			t.Fatal("a PROXY header from 127.0.0.20 was accepted")
		}
		if n := len(b1.seen()) + len(b2.seen()); n != 0 {
			t.Errorf("backends saw %d requests", n)
		}
	})

	t.Run("the balancer without a header", func(t *testing.T) {
		if _, err := clientFrom("127.0.0.2", e.HTTPSAddr, "a.test", roots).Get("https://a.test/"); err == nil {
			t.Fatal("a connection from 127.0.0.2 without a PROXY header was served")
		}
	})

	t.Run("max_conns_per_ip counts the header's address", func(t *testing.T) {
		// Three open connections from 127.0.0.30 through HAProxy: the
		// fourth is refused; 127.0.0.31 is served meanwhile.
		var open []*tls.Conn
		defer func() {
			for _, c := range open {
				c.Close()
			}
		}()
		dialTLS := func(src string) (*tls.Conn, error) {
			d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
			return tls.DialWithDialer(d, "tcp", hap.Addr, &tls.Config{ServerName: "a.test", RootCAs: roots})
		}
		for i := range 3 {
			c, err := dialTLS("127.0.0.30")
			if err != nil {
				t.Fatalf("connection %d from 127.0.0.30: %v", i+1, err)
			}
			open = append(open, c)
		}
		if c, err := dialTLS("127.0.0.30"); err == nil {
			c.Close()
			t.Error("a fourth connection from 127.0.0.30 was accepted with max_conns_per_ip 3")
		}
		resp, err := clientFrom("127.0.0.31", hap.Addr, "a.test", roots).Get("https://a.test/")
		if err != nil {
			t.Fatalf("127.0.0.31 while 127.0.0.30 is at its cap: %v", err)
		}
		resp.Body.Close()
		open[0].Close()
		open = open[1:]
		waitFor(t, 5*time.Second, "a slot for 127.0.0.30 after one closed", func() bool {
			c, err := dialTLS("127.0.0.30")
			if err != nil {
				return false
			}
			open = append(open, c)
			return true
		})
	})

	m, err := e.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	for reason, min := range map[string]float64{"proxy_header_untrusted": 1, "proxy_header_missing": 1, "max_conns_per_ip": 1} {
		if got := m.Sum("edge_connections_refused_total", "reason", reason); got < min {
			t.Errorf("edge_connections_refused_total{reason=%s} = %v, want at least %v\n%s", reason, got, min, m.Dump("edge_connections_refused_total"))
		}
	}
}
