// Command tlsload measures new TLS connections per second: each of -c
// workers loops over dial, full TLS handshake (no session resumption: the
// client keeps no session cache), one HTTP/1.1 GET with "Connection: close",
// read the whole answer, close. wrk and h2load cannot do this: both resume
// the previous session on reconnect.
//
//	tlsload -addr 127.0.0.1:8443 -sni bench.test -c 50 -d 10s
//
// With -names FILE (one name a line), the connections rotate over those
// names, SNI and Host, instead of -sni: a server with many certificates has
// to find each one in turn.
//
// It prints one line: requests/s, p50 and p99 latency of the whole exchange
// (connect to last byte) in milliseconds, successes and errors. Key exchange
// is X25519 only, as OpenSSL 3.0 clients (wrk, h2load) offer, so Go servers
// do not get the costlier hybrid post-quantum exchange.
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
	"slices"
	"strings"
	"sync"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8443", "server address")
	sni := flag.String("sni", "bench.test", "TLS server name and Host header")
	conc := flag.Int("c", 50, "concurrent workers")
	dur := flag.Duration("d", 10*time.Second, "duration")
	maxReq := flag.Int("n", 1_000_000, "stop after this many requests in all")
	resume := flag.Bool("resume", false, "resume TLS sessions (a shared client session cache)")
	namesFile := flag.String("names", "", "a file of names, one a line: rotate SNI and Host over them instead of -sni")
	flag.Parse()
	names := []string{*sni}
	if *namesFile != "" {
		b, err := os.ReadFile(*namesFile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "tlsload:", err)
			os.Exit(2)
		}
		names = strings.Fields(string(b))
		if len(names) == 0 {
			fmt.Fprintln(os.Stderr, "tlsload: no names in", *namesFile)
			os.Exit(2)
		}
	}

	cfg := &tls.Config{
		ServerName:         *sni,
		InsecureSkipVerify: true, // a benchmark of the server's cost; the chain is checked by bench/run once
		NextProtos:         []string{"http/1.1"},
		CurvePreferences:   []tls.CurveID{tls.X25519},
		MinVersion:         tls.VersionTLS12,
	}
	if *resume {
		cfg.ClientSessionCache = tls.NewLRUClientSessionCache(max(*conc*2, len(names)))
	}
	// One config and one request per name.
	cfgs := make([]*tls.Config, len(names))
	reqs := make([][]byte, len(names))
	for i, n := range names {
		cfgs[i] = cfg.Clone()
		cfgs[i].ServerName = n
		reqs[i] = []byte("GET / HTTP/1.1\r\nHost: " + n + "\r\nUser-Agent: tlsload\r\nConnection: close\r\n\r\n")
	}

	var (
		mu     sync.Mutex
		lats   []time.Duration
		errs   int
		res    int
		errMsg string
		left   = *maxReq
		seq    int // next name
	)
	deadline := time.Now().Add(*dur)
	start := time.Now()
	var wg sync.WaitGroup
	for range *conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]time.Duration, 0, 4096)
			lerr, lres := 0, 0
			var lmsg string
			for time.Now().Before(deadline) {
				mu.Lock()
				if left == 0 {
					mu.Unlock()
					break
				}
				left--
				k := seq
				seq = (seq + 1) % len(names)
				mu.Unlock()
				t0 := time.Now()
				resumed, err := once(*addr, cfgs[k], reqs[k], deadline.Add(5*time.Second))
				if err != nil {
					lerr++
					lmsg = err.Error()
					continue
				}
				local = append(local, time.Since(t0))
				if resumed {
					lres++
				}
			}
			mu.Lock()
			lats = append(lats, local...)
			errs += lerr
			res += lres
			if lmsg != "" {
				errMsg = lmsg
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	slices.Sort(lats)
	pct := func(p float64) float64 {
		if len(lats) == 0 {
			return 0
		}
		i := int(float64(len(lats))*p+0.5) - 1
		i = max(0, min(i, len(lats)-1))
		return float64(lats[i].Microseconds()) / 1000
	}
	fmt.Printf("rps=%.1f p50_ms=%.3f p99_ms=%.3f ok=%d errors=%d resumed=%d\n",
		float64(len(lats))/elapsed.Seconds(), pct(0.50), pct(0.99), len(lats), errs, res)
	if errMsg != "" {
		fmt.Fprintln(os.Stderr, "tlsload: last error:", errMsg)
	}
}

// once makes one exchange on a new connection and reports whether the TLS
// session was resumed.
func once(addr string, cfg *tls.Config, req []byte, deadline time.Time) (bool, error) {
	raw, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return false, err
	}
	defer raw.Close()
	raw.SetDeadline(deadline)
	c := tls.Client(raw, cfg)
	if err := c.Handshake(); err != nil {
		return false, err
	}
	if _, err := c.Write(req); err != nil {
		return false, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return false, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return false, err
	}
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("status %s", resp.Status)
	}
	return c.ConnectionState().DidResume, nil
}
