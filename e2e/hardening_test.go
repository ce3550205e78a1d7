package e2e

import (
	"bufio"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/farmedge/edge/internal/testenv"
)

// leafNames returns the DNS names of the certificate edge presents for
// serverName, verified against roots.
func leafNames(t *testing.T, e *testenv.Edge, serverName string, roots *x509.CertPool) []string {
	t.Helper()
	st, err := testenv.Handshake(e.HTTPSAddr, serverName, roots)
	if err != nil {
		t.Fatal(err)
	}
	return st.PeerCertificates[0].DNSNames
}

// h2Transport is an HTTP/2-only transport whose every connection goes to
// addr with SNI serverName, whatever the request's host; dials counts them.
func h2Transport(addr, serverName string, roots *x509.CertPool, dials *atomic.Int64) *http.Transport {
	var protos http.Protocols
	protos.SetHTTP2(true)
	return &http.Transport{
		Protocols:         &protos,
		ForceAttemptHTTP2: true,
		DialTLSContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			dials.Add(1)
			return tlsDial(addr, serverName, roots, "h2")
		},
	}
}

// h2Get sends GET https://host/ on rt and returns status, protocol and body.
func h2Get(t *testing.T, rt http.RoundTripper, host string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+host+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatalf("GET https://%s/: %v", host, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Proto, string(b)
}

// TestMisdirectedRequest: a.test and b.test have a certificate each. On a
// connection made for a.test, a request for b.test is answered 421
// Misdirected Request (RFC 9110, section 15.5.20), over HTTP/1.1 and
// HTTP/2; a.test itself, with or without a port, is served.
func TestMisdirectedRequest(t *testing.T) {
	ports := testenv.FreePorts(t, 3)
	peb := startPebbleHTTP01(t, ports[0])
	b := testenv.NewBackend(t, 1, 0)
	conf := pConf{
		httpPort: ports[0], httpsPort: ports[1], adminPort: ports[2],
		peb: peb, storage: filepath.Join(t.TempDir(), "storage"),
		sites: []pSite{{hosts: []string{"a.test"}}, {hosts: []string{"b.test"}}},
		pools: []pPool{{name: "web", backends: []string{b.URL}, retries: 2}},
	}
	e := testenv.StartEdge(t, conf.yaml())
	if err := e.WaitReady(readyTimeout); err != nil {
		t.Fatal(err)
	}
	roots, err := peb.IssuingRoots()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"a.test", "b.test"} {
		if got := leafNames(t, e, n, roots); !slices.Equal(got, []string{n}) {
			t.Fatalf("the certificate for %s names %q, want only %s (the test needs one certificate per name)", n, got, n)
		}
	}

	t.Run("http/1.1", func(t *testing.T) {
		conn, err := tlsDial(e.HTTPSAddr, "a.test", roots, "http/1.1")
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if p := conn.ConnectionState().NegotiatedProtocol; p != "http/1.1" {
			t.Fatalf("ALPN %q, want http/1.1", p)
		}
		br := bufio.NewReader(conn)
		port := strconv.Itoa(ports[1])
		for _, c := range []struct {
			host string
			want int
		}{
			{"a.test", 200},
			{"a.test:" + port, 200},
			{"A.TEST", 200},
			{"b.test", 421},
		} {
			code, body, err := rawGet(conn, br, c.host, "/")
			if err != nil {
				t.Fatalf("Host %s on the a.test connection: %v", c.host, err)
			}
			t.Logf("SNI a.test, Host %s: %d", c.host, code)
			if code != c.want {
				t.Errorf("SNI a.test, Host %s: %d %q, want %d", c.host, code, body, c.want)
			}
		}
		// The first request of a fresh connection, too, and a name no site has.
		for _, host := range []string{"b.test", "nosuch.test"} {
			conn, err := tlsDial(e.HTTPSAddr, "a.test", roots, "http/1.1")
			if err != nil {
				t.Fatal(err)
			}
			code, body, err := rawGet(conn, bufio.NewReader(conn), host, "/")
			conn.Close()
			if err != nil || code != http.StatusMisdirectedRequest {
				t.Errorf("fresh SNI a.test connection, Host %s: %d %q %v, want 421", host, code, body, err)
			}
		}
	})

	t.Run("h2", func(t *testing.T) {
		var dials atomic.Int64
		tr := h2Transport(e.HTTPSAddr, "a.test", roots, &dials)
		defer tr.CloseIdleConnections()
		for _, c := range []struct {
			host string
			want int
		}{{"a.test", 200}, {"b.test", 421}} {
			code, proto, body := h2Get(t, tr, c.host)
			t.Logf("SNI a.test, :authority %s: %d over %s", c.host, code, proto)
			if proto != "HTTP/2.0" {
				t.Errorf("%s: protocol %s, want HTTP/2.0", c.host, proto)
			}
			if code != c.want {
				t.Errorf("SNI a.test, :authority %s: %d %q, want %d", c.host, code, body, c.want)
			}
		}
		if dials.Load() == 0 {
			t.Errorf("no connection was dialed")
		}
	})

	m, err := e.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	if n := m.Sum("edge_http_requests_total", "code", "421"); n < 4 {
		t.Errorf("edge_http_requests_total{code=\"421\"} = %g, want at least the 4 sent:\n%s", n, m.Dump("edge_http_requests_total"))
	}
	if got := b.Requests(); got != 4 {
		t.Errorf("the backend answered %d requests, want 4 (the misdirected ones must not reach it)", got)
	}
}

// TestHTTP2Coalescing: app.test and *.app.test by DNS-01 (RFC 2136 into
// BIND). On one HTTP/2 connection made for x.app.test, whose certificate is
// *.app.test, requests for y.app.test are served (RFC 9113, section 9.1.1:
// the certificate covers them); app.test, which that certificate does not
// cover, gets 421, and the connection goes on serving.
func TestHTTP2Coalescing(t *testing.T) {
	bind := testenv.StartBIND(t, testenv.BINDOptions{Zones: []string{"app.test"}})
	peb := testenv.StartPebble(t, testenv.PebbleOptions{DNSServer: bind.Addr})
	b := testenv.NewBackend(t, 1, 0)
	ports := testenv.FreePorts(t, 3)
	conf := pConf{
		httpPort: ports[0], httpsPort: ports[1], adminPort: ports[2],
		peb: peb, bind: bind, storage: filepath.Join(t.TempDir(), "storage"),
		sites: []pSite{{hosts: []string{"app.test", "*.app.test"}, dns: "lan"}},
		pools: []pPool{{name: "web", backends: []string{b.URL}, retries: 2}},
	}
	e := testenv.StartEdge(t, conf.yaml())
	if err := e.WaitReady(dnsTimeout); err != nil {
		t.Fatal(err)
	}
	roots, err := peb.IssuingRoots()
	if err != nil {
		t.Fatal(err)
	}
	if st := peb.Stats(); st.HTTPAttempts != 0 || st.Issued < 2 {
		t.Fatalf("pebble stats %+v: want 2 certificates issued through DNS-01, no HTTP-01 request", st)
	}
	if got := leafNames(t, e, "x.app.test", roots); !slices.Equal(got, []string{"*.app.test"}) {
		t.Fatalf("the certificate for x.app.test names %q, want only *.app.test", got)
	}
	if got := leafNames(t, e, "app.test", roots); slices.Contains(got, "*.app.test") {
		t.Fatalf("the certificate for app.test names %q; the test needs one certificate per name", got)
	}

	var dials atomic.Int64
	tr := h2Transport(e.HTTPSAddr, "x.app.test", roots, &dials)
	defer tr.CloseIdleConnections()
	cc, err := tr.NewClientConn(t.Context(), "https", "x.app.test:443")
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	for _, c := range []struct {
		host string
		want int
	}{
		{"x.app.test", 200},
		{"y.app.test", 200},
		{"app.test", 421},
		{"z.y.app.test", 421}, // a wildcard covers one label only
		{"y.app.test", 200},   // the connection still serves after a 421
	} {
		code, proto, body := h2Get(t, cc, c.host)
		t.Logf("one connection, SNI x.app.test, :authority %s: %d over %s", c.host, code, proto)
		if proto != "HTTP/2.0" {
			t.Errorf("%s: protocol %s, want HTTP/2.0", c.host, proto)
		}
		if code != c.want {
			t.Errorf("SNI x.app.test, :authority %s: %d %q, want %d", c.host, code, body, c.want)
		}
	}
	if n := dials.Load(); n != 1 {
		t.Errorf("%d TLS connections were dialed, want 1", n)
	}
	if got := b.Requests(); got != 3 {
		t.Errorf("the backend answered %d requests, want the 3 served ones", got)
	}
}

// bodyBackend reads the whole request body before it answers, like an
// upload handler; posts counts the bodies it read to the end.
func bodyBackend(t *testing.T, posts *atomic.Int64) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			return
		}
		if r.Method == http.MethodPost {
			posts.Add(1)
		}
		fmt.Fprintf(w, "hello from backend 9 (%d bytes)\n", n)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

// TestTrickledBody: with limits.read_timeout 3s, a POST whose 1000-byte
// body comes one byte every 500 ms (it would take 500 s) is cut within the
// timeout and a few seconds, answered 408 (or closed, never a 2xx), while
// another client's requests are served.
func TestTrickledBody(t *testing.T) {
	const readTimeout = 3 * time.Second
	const host = "trickle.test"
	ports := testenv.FreePorts(t, 3)
	peb := startPebbleHTTP01(t, ports[0])
	var posts atomic.Int64
	backend := bodyBackend(t, &posts)
	conf := pConf{
		httpPort: ports[0], httpsPort: ports[1], adminPort: ports[2],
		peb: peb, storage: filepath.Join(t.TempDir(), "storage"),
		limits: fmt.Sprintf("{read_timeout: %s}", readTimeout),
		sites:  []pSite{{hosts: []string{host}}},
		pools:  []pPool{{name: "web", backends: []string{backend}, retries: 2}},
	}
	e := testenv.StartEdge(t, conf.yaml())
	if err := e.WaitReady(readyTimeout); err != nil {
		t.Fatal(err)
	}
	roots, err := peb.IssuingRoots()
	if err != nil {
		t.Fatal(err)
	}

	// The other client: a GET every 100 ms while the trickle lasts.
	other := testenv.HTTPSClient(roots, e.HTTPSAddr)
	stopOther := make(chan struct{})
	var otherOK, otherFailed atomic.Int64
	var otherErr atomic.Value
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for range 300 { // at most 30 s
			select {
			case <-stopOther:
				return
			case <-tick.C:
			}
			if err := getOK(other, "https://"+host+"/"); err != nil {
				otherFailed.Add(1)
				otherErr.Store(err.Error())
				continue
			}
			otherOK.Add(1)
		}
	})
	stopOtherClient := sync.OnceFunc(func() { close(stopOther); wg.Wait() })
	defer stopOtherClient()

	conn, err := tlsDial(e.HTTPSAddr, host, roots, "http/1.1")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	if _, err := fmt.Fprintf(conn, "POST /upload HTTP/1.1\r\nHost: %s\r\nContent-Type: application/octet-stream\r\nContent-Length: 1000\r\n\r\n", host); err != nil {
		t.Fatal(err)
	}
	var sent atomic.Int64
	stopTrickle := make(chan struct{})
	var tw sync.WaitGroup
	tw.Go(func() {
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for range 1000 {
			select {
			case <-stopTrickle:
				return
			case <-tick.C:
			}
			_ = conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
			if _, err := conn.Write([]byte{'x'}); err != nil {
				return
			}
			sent.Add(1)
		}
	})

	limit := readTimeout + 7*time.Second
	_ = conn.SetReadDeadline(start.Add(limit))
	resp, rerr := http.ReadResponse(bufio.NewReader(conn), nil)
	took := time.Since(start)
	close(stopTrickle)
	tw.Wait()
	n := sent.Load()

	var nerr net.Error
	switch {
	case rerr != nil && errors.As(rerr, &nerr) && nerr.Timeout():
		t.Fatalf("no answer and no close within %s of the request headers (read_timeout %s); %d body bytes sent", limit, readTimeout, n)
	case rerr != nil:
		t.Logf("trickled POST: connection closed without a response after %s (%v); %d of 1000 body bytes sent", took.Round(time.Millisecond), rerr, n)
	default:
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		resp.Body.Close()
		t.Logf("trickled POST: %s after %s (connection closed: %t); %d of 1000 body bytes sent", resp.Status, took.Round(time.Millisecond), resp.Close, n)
		if resp.StatusCode != http.StatusRequestTimeout {
			t.Errorf("trickled POST answered %s %q, want 408 Request Timeout", resp.Status, b)
		}
		if !resp.Close {
			t.Errorf("a 408 for an unfinished body must close the connection (no Connection: close)")
		}
	}
	if n >= 1000 {
		t.Errorf("the whole body was sent: the trickle was not cut")
	}
	if took < readTimeout-500*time.Millisecond {
		t.Errorf("cut after %s, before read_timeout %s", took, readTimeout)
	}
	if p := posts.Load(); p != 0 {
		t.Errorf("the backend read %d complete POST bodies, want none", p)
	}

	// The other client was served throughout.
	stopOtherClient()
	t.Logf("other client during the trickle: %d GETs ok, %d failed", otherOK.Load(), otherFailed.Load())
	if otherFailed.Load() != 0 {
		t.Errorf("%d of the other client's GETs failed; last: %v", otherFailed.Load(), otherErr.Load())
	}
	if otherOK.Load() == 0 {
		t.Errorf("the other client was not served during the trickle")
	}
	if rerr == nil {
		m, err := e.Metrics()
		if err != nil {
			t.Fatal(err)
		}
		if v := m.Sum("edge_http_requests_total", "site", host, "code", "408"); v != 1 {
			t.Errorf("edge_http_requests_total{site=%q,code=\"408\"} = %g, want 1:\n%s", host, v, m.Dump("edge_http_requests_total"))
		}
	}
}
