// Command idle opens -n TLS connections to a server, sends one request on
// each and reads the answer (so each is an idle keep-alive connection, as a
// browser leaves them), prints "open N" once all are established and then
// holds them, sending nothing, until SIGTERM/SIGINT or -hold has passed.
// With -h2 the connections negotiate HTTP/2 (ALPN h2, refused otherwise)
// and the request is one stream, as a browser's connection is left after
// a page; without it, HTTP/1.1.
//
//	idle -addr 127.0.0.1:8443 -sni bench.test -n 2000 -hold 60s [-h2]
package main

import (
	"bufio"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/http2"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8443", "server address")
	sni := flag.String("sni", "bench.test", "TLS server name and Host header")
	n := flag.Int("n", 2000, "connections")
	par := flag.Int("p", 20, "connections opened in parallel")
	hold := flag.Duration("hold", 60*time.Second, "longest time to hold the connections")
	h2 := flag.Bool("h2", false, "HTTP/2 connections (ALPN h2) instead of HTTP/1.1")
	flag.Parse()

	cfg := &tls.Config{
		ServerName:         *sni,
		InsecureSkipVerify: true,
		NextProtos:         []string{"http/1.1"},
		CurvePreferences:   []tls.CurveID{tls.X25519},
	}
	if *h2 {
		cfg.NextProtos = []string{"h2"}
	}
	req := []byte("GET / HTTP/1.1\r\nHost: " + *sni + "\r\nUser-Agent: idle\r\n\r\n")
	conns := make([]io.Closer, *n)
	var next, failed atomic.Int64
	var lastErr atomic.Value
	var wg sync.WaitGroup
	for range *par {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= *n {
					return
				}
				c, err := open(*addr, cfg, req, *sni)
				if err != nil {
					failed.Add(1)
					lastErr.Store(err.Error())
					continue
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	if f := failed.Load(); f > 0 {
		fmt.Fprintf(os.Stderr, "idle: %d of %d connections failed; last error: %v\n", f, *n, lastErr.Load())
	}
	fmt.Printf("open %d\n", int64(*n)-failed.Load())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	select {
	case <-sig:
	case <-time.After(*hold):
	}
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
}

func open(addr string, cfg *tls.Config, req []byte, sni string) (io.Closer, error) {
	raw, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	raw.SetDeadline(time.Now().Add(10 * time.Second))
	c := tls.Client(raw, cfg)
	fail := func(err error) (io.Closer, error) { raw.Close(); return nil, err }
	if err := c.Handshake(); err != nil {
		return fail(err)
	}
	var held io.Closer = c
	var resp *http.Response
	if cfg.NextProtos[0] == "h2" {
		held, resp, err = getH2(c, sni)
	} else if _, err = c.Write(req); err == nil {
		resp, err = http.ReadResponse(bufio.NewReader(c), nil)
	}
	if err != nil {
		return fail(err)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return fail(err)
	}
	if resp.StatusCode != http.StatusOK {
		return fail(fmt.Errorf("status %s", resp.Status))
	}
	raw.SetDeadline(time.Time{})
	return held, nil
}

// getH2 sends one GET as stream 1 of an HTTP/2 connection and returns the
// client connection to hold and the answer. The client connection is
// x/net's (it acknowledges the server's SETTINGS and answers PINGs while
// held, as a browser's would); it sends nothing else on its own.
func getH2(c *tls.Conn, sni string) (io.Closer, *http.Response, error) {
	if p := c.ConnectionState().NegotiatedProtocol; p != "h2" {
		return nil, nil, fmt.Errorf("ALPN: the server chose %q, not h2", p)
	}
	cc, err := (&http2.Transport{}).NewClientConn(c)
	if err != nil {
		return nil, nil, err
	}
	req, err := http.NewRequest(http.MethodGet, "https://"+sni+"/", nil)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("User-Agent", "idle")
	resp, err := cc.RoundTrip(req)
	return cc, resp, err
}
