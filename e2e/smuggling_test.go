package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/farmedge/edge/internal/testenv"
)

// seenBackend records the path and forwarding headers of every request
// it receives.
type seenBackend struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []seenRequest
}

type seenRequest struct{ path, xff, realIP, forwarded string }

func newSeenBackend(t *testing.T) *seenBackend {
	t.Helper()
	b := &seenBackend{}
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		b.mu.Lock()
		b.reqs = append(b.reqs, seenRequest{r.URL.Path, r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Real-IP"), r.Header.Get("Forwarded")})
		b.mu.Unlock()
		fmt.Fprintf(w, "backend saw %s", r.URL.Path)
	}))
	t.Cleanup(b.Close)
	return b
}

// seen returns the requests but edge's health checks.
func (b *seenBackend) seen() []seenRequest {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []seenRequest
	for _, r := range b.reqs {
		if r.path != "/healthz" {
			out = append(out, r)
		}
	}
	return out
}

func (b *seenBackend) reset() {
	b.mu.Lock()
	b.reqs = nil
	b.mu.Unlock()
}

// readResponses reads responses from conn until it is closed or quiet for
// a second, and returns their status codes.
func readResponses(conn net.Conn) []int {
	var codes []int
	br := bufio.NewReader(conn)
	for {
		_ = conn.SetReadDeadline(time.Now().Add(time.Second))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return codes
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		codes = append(codes, resp.StatusCode)
	}
}

// TestRawSocketAttacks sends, over TLS and plain HTTP to a running edge,
// the request-smuggling vectors of RFC 9112 (each hides GET /smuggled where
// a device framing by the other rule would see a second request),
// oversized headers, a slowloris crowd, and forwarding headers spoofed by
// an untrusted client. The backend must never see /smuggled.
func TestRawSocketAttacks(t *testing.T) {
	ports := testenv.FreePorts(t, 3)
	peb := startPebbleHTTP01(t, ports[0])
	b := newSeenBackend(t)
	conf := pConf{
		httpPort: ports[0], httpsPort: ports[1], adminPort: ports[2],
		peb: peb, storage: filepath.Join(t.TempDir(), "storage"),
		limits: "{read_header_timeout: 2s, read_timeout: 10s, max_header_bytes: 8192}",
		sites:  []pSite{{hosts: []string{"a.test"}, plain: true}},
		pools:  []pPool{{name: "web", backends: []string{b.URL}}},
	}
	e, roots := startServing(t, peb, conf.yaml())
	dial := map[string]func() (net.Conn, error){
		"tls": func() (net.Conn, error) { return tlsDial(e.HTTPSAddr, "a.test", roots, "http/1.1") },
		"plain": func() (net.Conn, error) {
			return net.DialTimeout("tcp", e.HTTPAddr, 5*time.Second)
		},
	}

	hidden := "GET /smuggled HTTP/1.1\r\nHost: a.test\r\n\r\n"
	chunked := "0\r\n\r\n" + hidden
	cl := func(body string) string { return "Content-Length: " + strconv.Itoa(len(body)) + "\r\n" }
	vectors := []struct{ name, proto, head, body string }{
		{"TE and CL", "1.1", "Transfer-Encoding: chunked\r\n" + cl(chunked), chunked},
		{"CL and TE", "1.1", "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", chunked},
		{"two Content-Lengths", "1.1", "Content-Length: 0\r\n" + cl(hidden), hidden},
		{"Content-Length list", "1.1", "Content-Length: 0, " + strconv.Itoa(len(hidden)) + "\r\n", hidden},
		{"Content-Length with a sign", "1.1", "Content-Length: +" + strconv.Itoa(len(hidden)) + "\r\n", hidden},
		{"TE with extra space", "1.1", "Transfer-Encoding:  chunked\r\n" + cl(chunked), chunked},
		{"TE with a tab", "1.1", "Transfer-Encoding:\tchunked\r\n" + cl(chunked), chunked},
		{"TE obs-folded", "1.1", "Transfer-Encoding:\r\n chunked\r\n" + cl(chunked), chunked},
		{"TE xchunked", "1.1", "Transfer-Encoding: xchunked\r\n" + cl(chunked), chunked},
		{"TE chunked twice", "1.1", "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n" + cl(chunked), chunked},
		{"TE identity, chunked", "1.1", "Transfer-Encoding: identity, chunked\r\n" + cl(chunked), chunked},
		{"TE upper case", "1.1", "TRANSFER-ENCODING: CHUNKED\r\n" + cl(chunked), chunked},
		{"TE behind a bare LF", "1.1", "X-Padding: a\nTransfer-Encoding: chunked\r\n" + cl(chunked), chunked},
		{"space before the colon", "1.1", "Transfer-Encoding : chunked\r\n" + cl(chunked), chunked},
		{"junk chunk size", "1.1", "Transfer-Encoding: chunked\r\n", "5x\r\nhello\r\n0\r\n\r\n" + hidden},
		{"chunk size overflow", "1.1", "Transfer-Encoding: chunked\r\n", "fffffffffffffffff\r\nhello\r\n0\r\n\r\n" + hidden},
		{"negative chunk size", "1.1", "Transfer-Encoding: chunked\r\n", "-5\r\nhello\r\n0\r\n\r\n" + hidden},
		{"HTTP/1.0 with TE", "1.0", "Transfer-Encoding: chunked\r\nContent-Length: 0\r\nConnection: keep-alive\r\n", "\r\n" + hidden},
	}
	for scheme, dialer := range dial {
		for _, v := range vectors {
			t.Run(scheme+"/"+v.name, func(t *testing.T) {
				b.reset()
				conn, err := dialer()
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				req := "POST /first HTTP/" + v.proto + "\r\nHost: a.test\r\n" + v.head + "\r\n" + v.body
				if _, err := io.WriteString(conn, req); err != nil {
					t.Fatal(err)
				}
				codes := readResponses(conn)
				if len(codes) > 1 {
					t.Errorf("%d responses %v on one connection: a second request was read from the first one's bytes", len(codes), codes)
				}
				for _, c := range codes {
					if c == http.StatusBadGateway || c == http.StatusGatewayTimeout {
						t.Errorf("response %d: a client's malformed request was blamed on the backend", c)
					}
				}
				for _, r := range b.seen() {
					if r.path == "/smuggled" {
						t.Errorf("the backend received the hidden request; it saw %v", b.seen())
					}
				}
				t.Logf("%s: responses %v, backend saw %d requests", v.name, codes, len(b.seen()))
			})
		}
	}

	t.Run("request hidden in a body", func(t *testing.T) {
		b.reset()
		conn, err := dial["tls"]()
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "POST /first HTTP/1.1\r\nHost: a.test\r\n%s\r\n%s", cl(hidden), hidden)
		if codes := readResponses(conn); len(codes) != 1 || codes[0] != 200 {
			t.Errorf("responses %v, want one 200", codes)
		}
		if seen := b.seen(); len(seen) != 1 || seen[0].path != "/first" {
			t.Errorf("backend saw %v, want only /first", seen)
		}
	})

	t.Run("oversized headers", func(t *testing.T) {
		for scheme, dialer := range dial {
			conn, err := dialer()
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: a.test\r\nX-Big: %s\r\n\r\n", strings.Repeat("a", 20000))
			codes := readResponses(conn)
			conn.Close()
			if len(codes) != 1 || codes[0] != http.StatusRequestHeaderFieldsTooLarge {
				t.Errorf("%s: a 20 kB header with max_header_bytes 8192: responses %v, want 431", scheme, codes)
			}
		}
	})

	t.Run("spoofed forwarding headers", func(t *testing.T) {
		b.reset()
		conn, err := dial["tls"]()
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		io.WriteString(conn, "GET /spoof HTTP/1.1\r\nHost: a.test\r\nX-Forwarded-For: 203.0.113.7\r\nX-Real-IP: 203.0.113.7\r\nForwarded: for=203.0.113.7\r\nConnection: close\r\n\r\n")
		readResponses(conn)
		seen := b.seen()
		if len(seen) != 1 {
			t.Fatalf("backend saw %v", seen)
		}
		r := seen[0]
		if strings.Contains(r.xff+r.realIP+r.forwarded, "203.0.113.7") {
			t.Errorf("an untrusted client's forwarding headers reached the backend: %+v", r)
		}
		if r.xff != "127.0.0.1" || r.realIP != "127.0.0.1" {
			t.Errorf("X-Forwarded-For %q, X-Real-IP %q: want the peer, 127.0.0.1", r.xff, r.realIP)
		}
	})

	t.Run("slowloris", func(t *testing.T) {
		// 50 connections send a header line a byte at a time; meanwhile
		// normal clients are served, and the slow ones are cut at
		// read_header_timeout (2 s), not served.
		const slow = 50
		var cut atomic.Int64
		var wg sync.WaitGroup
		start := time.Now()
		for range slow {
			conn, err := dial["plain"]()
			if err != nil {
				t.Fatal(err)
			}
			wg.Go(func() {
				defer conn.Close()
				msg := "GET / HTTP/1.1\r\nHost: a.test\r\nX-Slow: " + strings.Repeat("a", 100)
				for i := range len(msg) {
					if _, err := conn.Write([]byte{msg[i]}); err != nil {
						cut.Add(1)
						return
					}
					_ = conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
					if _, err := conn.Read(make([]byte, 1)); err != nil && !isTimeout(err) {
						cut.Add(1) // closed by edge
						return
					}
					if time.Since(start) > 15*time.Second {
						return
					}
				}
			})
		}
		client := testenv.HTTPSClient(roots, e.HTTPSAddr)
		for i := range 20 {
			resp, err := client.Get("https://a.test/normal")
			if err != nil {
				t.Fatalf("normal request %d during slowloris: %v", i, err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("normal request %d during slowloris: %d", i, resp.StatusCode)
			}
			time.Sleep(50 * time.Millisecond)
		}
		wg.Wait()
		took := time.Since(start)
		t.Logf("slowloris: %d of %d slow connections cut by edge in %v", cut.Load(), slow, took.Round(time.Millisecond))
		if cut.Load() != slow {
			t.Errorf("%d of %d slow connections were cut", cut.Load(), slow)
		}
		if took > 10*time.Second {
			t.Errorf("the slow connections lasted %v with read_header_timeout 2s", took)
		}
	})
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
