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
	var o options
	flag.StringVar(&o.addr, "addr", "127.0.0.1:8443", "server address")
	flag.StringVar(&o.sni, "sni", "bench.test", "TLS server name and Host header")
	flag.StringVar(&o.path, "path", "/", "request path")
	flag.Float64Var(&o.rate, "rate", 1000, "offered requests per second (all connections together)")
	flag.IntVar(&o.conc, "c", 50, "keep-alive connections")
	flag.DurationVar(&o.dur, "d", 10*time.Second, "time over which requests are due")
	flag.DurationVar(&o.grace, "grace", 5*time.Second, "after -d, how long late requests may still be sent and answered")
	flag.Parse()
	if o.rate <= 0 || o.conc < 1 || o.dur <= 0 {
		fmt.Fprintln(os.Stderr, "rate: -rate, -c and -d must be positive")
		os.Exit(2)
	}
	r, err := run(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "rate:", err)
		os.Exit(1)
	}
	fmt.Printf("offered=%.0f rps=%.1f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f p999_ms=%.3f ok=%d errors=%d late=%d\n",
		o.rate, r.rps, ms(r.pct(0.50)), ms(r.pct(0.90)), ms(r.pct(0.99)), ms(r.pct(0.999)), r.ok, r.errs, r.late)
	if r.lastErr != "" {
		fmt.Fprintln(os.Stderr, "rate: last error:", r.lastErr)
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// options are the flags.
type options struct {
	addr, sni, path string
	rate            float64
	conc            int
	dur, grace      time.Duration
}

// result is one run's outcome.
type result struct {
	lats     []time.Duration // sorted; answered and late requests
	rps      float64         // answered per second
	ok, errs int
	late     int // never sent or never answered by -d plus -grace
	lastErr  string
}

// pct returns the p-quantile of the latencies (nearest rank).
func (r result) pct(p float64) time.Duration {
	if len(r.lats) == 0 {
		return 0
	}
	i := int(float64(len(r.lats))*p+0.5) - 1
	return r.lats[max(0, min(i, len(r.lats)-1))]
}

// run offers o.rate requests per second for o.dur, open loop.
func run(o options) (result, error) {
	cfg := &tls.Config{
		ServerName:         o.sni,
		InsecureSkipVerify: true, // a benchmark of the server; bench/run checks the chain once
		NextProtos:         []string{"http/1.1"},
		CurvePreferences:   []tls.CurveID{tls.X25519},
		MinVersion:         tls.VersionTLS12,
	}
	req := []byte("GET " + o.path + " HTTP/1.1\r\nHost: " + o.sni + "\r\nUser-Agent: rate\r\n\r\n")
	interval := time.Duration(float64(time.Second) / o.rate)
	total := int64(o.dur.Seconds() * o.rate)

	// Connect first: dialling is not part of the measured schedule.
	conns := make([]*conn, o.conc)
	for i := range conns {
		c, err := dial(o.addr, cfg)
		if err != nil {
			for _, c := range conns[:i] {
				c.Close()
			}
			return result{}, fmt.Errorf("connecting: %w", err)
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
	hard := start.Add(o.dur + o.grace) // nothing is sent or waited for after this
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
					if c, err = dial(o.addr, cfg); err != nil {
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
	slices.Sort(lats)
	r := result{lats: lats, ok: len(lats) - late, errs: errs, late: late, lastErr: errMsg}
	r.rps = float64(r.ok) / min(elapsed, o.dur+o.grace).Seconds()
	return r, nil
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
