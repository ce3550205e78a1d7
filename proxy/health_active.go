package proxy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// HealthCheck configures active health checks: every Interval, each backend
// of the pool gets GET Path (with Host as the Host header), which must
// answer status Expect within Timeout.
// A backend is marked down after Fails consecutive failures and up again
// after Passes consecutive successes. A backend new to the pool (or whose
// pool had no active check before) is probed once before the Handler is
// returned, and that first probe alone decides whether it starts up or down.
//
// The caller (cmd/edge, from the config's defaults) sets the values; zero
// fields mean: Path "/", Host the backend's address (host and port of its
// URL), Timeout the Interval, Expect any 2xx status, Fails and Passes 1 (a
// single result decides). Interval must be positive. A nil *HealthCheck in
// PoolConfig disables active checks.
type HealthCheck struct {
	Path string
	// Host is sent as the Host header of every probe, for backends that
	// route by name (an IIS site bound to a host name answers 400 or 404 to
	// its IP address). It is a host name or address with an optional port,
	// "www.example.com" or "www.example.com:8080". It changes only the
	// header: the probe still connects to the backend's address, and the
	// TLS server name (SNI) of an https backend stays its URL's host.
	Host     string
	Interval time.Duration
	Timeout  time.Duration
	Expect   int
	Fails    int
	Passes   int
}

// resolve returns c with its zero fields given their meaning, or an error
// for values that have none.
func (c HealthCheck) resolve() (HealthCheck, error) {
	if c.Interval <= 0 {
		return c, fmt.Errorf("health check interval %v: must be positive", c.Interval)
	}
	if c.Timeout < 0 || c.Fails < 0 || c.Passes < 0 || c.Expect < 0 {
		return c, fmt.Errorf("health check timeout, fails, passes and expect must not be negative")
	}
	if c.Path == "" {
		c.Path = "/"
	}
	if c.Timeout == 0 {
		c.Timeout = c.Interval
	}
	c.Fails = max(c.Fails, 1)
	c.Passes = max(c.Passes, 1)
	return c, nil
}

// expected reports whether a probe's status passes.
func (c *HealthCheck) expected(code int) bool {
	if c.Expect == 0 {
		return code >= 200 && code < 300
	}
	return code == c.Expect
}

// activeState is a backend's run of consecutive probe results. Two
// generations' checkers may probe the same backend while a reload swaps
// them, so it has a lock of its own.
type activeState struct {
	mu     sync.Mutex
	fails  int
	passes int
	// judged is set once an active check has decided about the backend;
	// cleared when its pool stops checking, so that checks turned on again
	// start with a probe that decides alone.
	judged bool
}

// healthURL joins the backend's base URL and the check's path (which may
// carry a query).
func healthURL(base *url.URL, path string) (string, error) {
	ref, err := url.Parse(path)
	if err != nil || ref.IsAbs() || ref.Host != "" {
		return "", fmt.Errorf("health check path %q: not a path", path)
	}
	u := *base
	u.Path = strings.TrimSuffix(u.Path, "/") + "/" + strings.TrimPrefix(ref.Path, "/")
	u.RawPath = ""
	u.RawQuery = ref.RawQuery
	u.Fragment = ""
	return u.String(), nil
}

// validHostHeader reports whether host can be sent as a Host header: not
// empty, and only the characters of a host name, an IP literal in brackets
// and a port (RFC 3986, section 3.2.2; the reg-name's percent-encoding and
// sub-delims included). It is no stricter than net/http's own check.
func validHostHeader(host string) bool {
	if host == "" {
		return false
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("-._~%!$&'()*+,;=:[]", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// runHealth probes the pool's backends every Interval until ctx is done. It
// is started by New (after the first probe of new backends) and waited for
// by Close.
func (p *pool) runHealth(ctx context.Context) {
	t := time.NewTicker(p.health.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		p.probeAll(ctx, p.upstreams, false)
	}
}

// probeAll probes the given backends at once and waits for the results, so
// a slow backend delays the next round at most by Timeout (the ticker drops
// the rounds missed meanwhile). With first, each
// result alone decides whether the backend is up (see HealthCheck).
func (p *pool) probeAll(ctx context.Context, ups []*Upstream, first bool) {
	var wg sync.WaitGroup
	for _, u := range ups {
		wg.Go(func() {
			defer p.recoverPanic("health check")
			p.probe(ctx, u, first)
		})
	}
	wg.Wait()
}

// probe checks one backend and applies the thresholds.
func (p *pool) probe(ctx context.Context, u *Upstream, first bool) {
	err := p.check(ctx, u)
	if ctx.Err() != nil {
		return // shutting down: not the backend's fault
	}
	st := &u.health
	st.mu.Lock()
	defer st.mu.Unlock()
	st.judged = true
	if err != nil {
		st.passes = 0
		st.fails++
		u.fails.Add(1)
		if u.stats != nil {
			u.stats.failure(reasonHealth).Inc()
		}
		if (first || st.fails >= p.health.Fails) && !u.down.Load() {
			u.down.Store(true)
			u.markChanged(time.Now())
			p.log.Warn("backend down", logKeyPool, p.name, logKeyBackend, u.name, logKeyError, err)
		}
		return
	}
	st.fails = 0
	st.passes++
	if (first || st.passes >= p.health.Passes) && u.down.Load() {
		u.down.Store(false)
		u.markChanged(time.Now())
		p.log.Info("backend up", logKeyPool, p.name, logKeyBackend, u.name)
	}
}

// check makes one probe request.
func (p *pool) check(ctx context.Context, u *Upstream) error {
	ctx, cancel := context.WithTimeout(ctx, p.health.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.healthURL, nil)
	if err != nil {
		return fmt.Errorf("checking health of %s: %w", u.name, err)
	}
	req.Host = p.health.Host // "" sends the URL's host
	req.Header.Set("User-Agent", "edge-health-check")
	resp, err := p.transport.RoundTrip(req)
	if err != nil {
		return fmt.Errorf("checking health of %s: %w", u.name, err)
	}
	// Drain a little so the connection can be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if !p.health.expected(resp.StatusCode) {
		want := "2xx"
		if p.health.Expect != 0 {
			want = strconv.Itoa(p.health.Expect)
		}
		return fmt.Errorf("checking health of %s: status %d, want %s", u.name, resp.StatusCode, want)
	}
	return nil
}

// recoverPanic logs a panic of a background goroutine instead of crashing
// the process.
func (p *pool) recoverPanic(what string) {
	if v := recover(); v != nil {
		p.log.Error("panic in "+what, logKeyPool, p.name, logKeyPanic, v)
	}
}
