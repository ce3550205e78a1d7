// Command rate measures latency at a fixed offered load: -rate requests per
// second over -c TLS keep-alive connections (HTTP/1.1), for -d, open loop.
// Request i is due at start + i/rate whatever happened before it; a
// connection takes the next due request when it is free, sends it (at once
// if it is already late) and the latency is measured from the time it was
// due to the last byte of the answer, so a server that stalls is charged
// for the requests that waited behind the stall (no coordinated omission,
// as in wrk2).
//
//	rate -addr 127.0.0.1:8443 -sni bench.test -rate 20000 -c 50 -d 10s
//
// It prints one line: the offered and the achieved rate, p50, p90, p99 and
// p99.9 in milliseconds, the requests answered, errors, and "late": the
// requests still unsent when the run ended (-d plus -grace). A late request
// counts with the time it had waited by then, a lower bound, so a server
// that cannot keep up shows it in p99 rather than in a shorter list. A
// connection that fails is redialled; its request counts as an error.
package main

import (
	"bufio"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8443", "server address")
	sni := flag.String("sni", "bench.test", "TLS server name and Host header")
	path := flag.String("path", "/", "request path")
	rate := flag.Float64("rate", 1000, "offered requests per second (all connections together)")
	conc := flag.Int("c", 50, "keep-alive connections")
	dur := flag.Duration("d", 10*time.Second, "time over which requests are due")
	grace := flag.Duration("grace", 5*time.Second, "after -d, how long late requests may still be sent and answered")
	flag.Parse()
	if *rate <= 0 || *conc < 1 || *dur <= 0 {
		fmt.Fprintln(os.Stderr, "rate: -rate, -c and -d must be positive")
		os.Exit(2)
	}

	cfg := &tls.Config{
		ServerName:         *sni,
		InsecureSkipVerify: true, // a benchmark of the server; bench/run checks the chain once
		NextProtos:         []string{"http/1.1"},
		CurvePreferences:   []tls.CurveID{tls.X25519},
		MinVersion:         tls.VersionTLS12,
	}
	req := []byte("GET " + *path + " HTTP/1.1\r\nHost: " + *sni + "\r\nUser-Agent: rate\r\n\r\n")
	interval := time.Duration(float64(time.Second) / *rate)
	total := int64(dur.Seconds() * *rate)

	// Connect first: dialling is not part of the measured schedule.
	conns := make([]*conn, *conc)
	for i := range conns {
		c, err := dial(*addr, cfg)
		if err != nil {
			fmt.Fprintln(os.Stderr, "rate: connecting:", err)
			os.Exit(1)
		}
		conns[i] = c
	}

	var (
		next   atomic.Int64 // index of the next request to send
		mu     sync.Mutex
		lats   []time.Duration
		errs   int
		late   int
		errMsg string
		wg     sync.WaitGroup
	)
	start := time.Now().Add(10 * time.Millisecond)
	hard := start.Add(*dur + *grace) // nothing is sent or waited for after this
	for _, c := range conns {
		wg.Go(func() {
			local := make([]time.Duration, 0, int(total)/len(conns)+16)
			lerr, llate := 0, 0
			var lmsg string
			defer func() {
				if c != nil {
					c.Close()
				}
				mu.Lock()
				lats = append(lats, local...)
				errs += lerr
				late += llate
				if lmsg != "" {
					errMsg = lmsg
				}
				mu.Unlock()
			}()
			for {
				i := next.Add(1) - 1
				if i >= total {
					return
				}
				due := start.Add(time.Duration(i) * interval)
				if d := time.Until(due); d > 0 {
					time.Sleep(d)
				}
				if time.Now().After(hard) {
					// This one and every later one were never sent: each
					// has waited at least until hard.
					for ; i < total; i = next.Add(1) - 1 {
						local = append(local, hard.Sub(start.Add(time.Duration(i)*interval)))
						llate++
					}
					return
				}
				if c == nil {
					var err error
					if c, err = dial(*addr, cfg); err != nil {
						lerr++
						lmsg = err.Error()
						continue
					}
				}
				if err := c.do(req, hard); err != nil {
					if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() && !time.Now().Before(hard) {
						// Sent, but unanswered when the run ended: late.
						local = append(local, hard.Sub(due))
						llate++
						c.Close()
						c = nil
						continue
					}
					lerr++
					lmsg = err.Error()
					c.Close()
					c = nil
					continue
				}
				local = append(local, time.Since(due))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	answered := len(lats) - late
	slices.Sort(lats)
	pct := func(p float64) float64 {
		if len(lats) == 0 {
			return 0
		}
		i := int(float64(len(lats))*p+0.5) - 1
		i = max(0, min(i, len(lats)-1))
		return float64(lats[i].Microseconds()) / 1000
	}
	fmt.Printf("offered=%.0f rps=%.1f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f p999_ms=%.3f ok=%d errors=%d late=%d\n",
		*rate, float64(answered)/min(elapsed, *dur+*grace).Seconds(), pct(0.50), pct(0.90), pct(0.99), pct(0.999),
		answered, errs, late)
	if errMsg != "" {
		fmt.Fprintln(os.Stderr, "rate: last error:", errMsg)
	}
}

// conn is one keep-alive connection.
type conn struct {
	tc *tls.Conn
	br *bufio.Reader
}

func dial(addr string, cfg *tls.Config) (*conn, error) {
	raw, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	tc := tls.Client(raw, cfg)
	tc.SetDeadline(time.Now().Add(5 * time.Second))
	if err := tc.Handshake(); err != nil {
		raw.Close()
		return nil, err
	}
	tc.SetDeadline(time.Time{})
	return &conn{tc: tc, br: bufio.NewReaderSize(tc, 16<<10)}, nil
}

// do sends one request and reads the whole answer, by deadline at most.
func (c *conn) do(req []byte, deadline time.Time) error {
	c.tc.SetDeadline(deadline)
	if _, err := c.tc.Write(req); err != nil {
		return err
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %s", resp.Status)
	}
	if resp.Close {
		return fmt.Errorf("the server closed the keep-alive connection")
	}
	return nil
}

func (c *conn) Close() { c.tc.Close() }
