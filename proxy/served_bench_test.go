package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/farmedge/edge/h1"
)

// BenchmarkServedRequest is one whole keep-alive request: a loopback
// client's bytes through an HTTP/1.1 server (net/http's, or edge's own
// h1) and the proxy handler to a loopback backend, and back. The client
// allocates nothing, so allocs/op are the server's, the handler's and the
// backend client's. TLS is left out (the same in both); bench/run measures
// it whole.
func BenchmarkServedRequest(b *testing.B) {
	body := []byte(strings.Repeat("x", 1024))
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Content-Type"] = []string{"text/plain"}
		w.Write(body)
	}))
	b.Cleanup(backend.Close)
	for _, server := range []string{"net/http", "h1"} {
		b.Run(server, func(b *testing.B) {
			cfg := simpleConfig(mustURL(b, backend.URL))
			cfg.Pools[0].Selector = new(RoundRobin)
			h := newHandler(b, cfg)
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			hs := &http.Server{Handler: h}
			if server == "h1" {
				s := &h1.Server{Config: hs}
				go s.Serve(ln)
				b.Cleanup(func() { s.Close() })
			} else {
				go hs.Serve(ln)
				b.Cleanup(func() { hs.Close() })
			}
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { c.Close() })
			req := []byte("GET /bench HTTP/1.1\r\nHost: example.com\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
			br := bufio.NewReaderSize(c, 16<<10)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := c.Write(req); err != nil {
					b.Fatal(err)
				}
				if n := readResponse(b, br); n != len(body) {
					b.Fatalf("body of %d bytes", n)
				}
			}
		})
	}
}

// readResponse reads one response with a Content-Length from br without
// allocating and returns its body length.
func readResponse(b *testing.B, br *bufio.Reader) int {
	status, err := br.ReadSlice('\n')
	if err != nil {
		b.Fatal(err)
	}
	if !bytes.HasPrefix(status, []byte("HTTP/1.1 200")) {
		b.Fatalf("status %q", status)
	}
	n := -1
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			b.Fatal(err)
		}
		if len(line) == 2 {
			break
		}
		if k, v, ok := bytes.Cut(line, []byte(":")); ok && bytes.EqualFold(k, []byte("Content-Length")) {
			n, _ = strconv.Atoi(string(bytes.TrimSpace(v)))
		}
	}
	if _, err := io.CopyN(io.Discard, br, int64(n)); err != nil {
		b.Fatal(err)
	}
	return n
}
