package proxy

import (
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"net/url"
	"slices"
	"strings"
	"time"
)

// PoolConfig is one pool of interchangeable backends.
//
// The zero value is not valid: a pool needs a Name and at least one backend.
type PoolConfig struct {
	// Name is referenced by routes and labels the pool's metrics.
	Name string
	// Backends are base URLs, http or https; a path is prefixed to the
	// request's.
	Backends []*url.URL
	// Weights, when not nil, holds one weight per backend, in Backends'
	// order (0 counts as 1): a backend's share of new requests under
	// round_robin (interleaved smoothly, as nginx does), random and
	// least_conn (requests in flight per weight). ip_hash, cookie and
	// first ignore them.
	Weights []int
	// Selector picks a backend per request; nil means round robin. A
	// Cookie is given the pool's own cookie name (CookieNameFor).
	Selector Selector
	// Health enables active health checks; nil disables them.
	Health *HealthCheck
	// Passive ejects failing backends; the zero value disables it.
	Passive PassiveCheck
	// Retries is how many other backends an idempotent request (without a
	// body, or one it can replay) is tried on when connecting to its
	// backend fails, or on what RetryOn adds. 0 disables retries.
	Retries int
	// RetryOn adds failures retried, within Retries, beyond a failure to
	// connect. The zero value adds none.
	RetryOn RetryOn
	// TryTimeout bounds the wait for the response headers of a try after
	// which another is allowed (an idempotent request, RetryOn.Timeout
	// set, tries and backends left): past it the try fails as a timeout
	// and the request goes to another backend. The last try, and requests
	// that are not retried, wait Timeouts.ResponseHeader. 0: every try
	// waits Timeouts.ResponseHeader.
	TryTimeout time.Duration
	// RetryWindow bounds the retries in time: no retry starts later than
	// this after the first try started. 0: Retries alone bounds them.
	RetryWindow time.Duration
	// Timeouts bound the talk with the backends.
	Timeouts Timeouts
	// MaxConns caps the requests each backend has in flight from this
	// process, counted from before a request is sent until its response
	// body is finished or it fails (an upgraded connection counts until it
	// closes), across every Handler of the State that lists the backend
	// (during a reload the smaller of two caps holds). Selection skips a
	// backend at its cap, retries too. 0 means no cap.
	MaxConns int
	// Queue is how many requests may wait, with MaxConns set, while every
	// available backend is at its cap; one more gets 503 at once. A waiting
	// request is woken, oldest first, when a backend drops below its cap.
	// 0 means none waits: 503 at once.
	Queue int
	// QueueTimeout is the longest a request waits in the queue before it
	// gets 503. 0 means it waits as long as its client does (the request's
	// context), which the server's timeouts may bound.
	QueueTimeout time.Duration
	// TLS is the client configuration for https backends (roots, SNI,
	// client certificate); it is cloned. nil verifies against the system
	// roots with the backend URL's host as server name.
	TLS *tls.Config
	// HostHeader, when set, is the Host the backends get instead of the
	// client's (an IIS binding on an internal name). X-Forwarded-Host
	// carries the client's.
	HostHeader string
	// H2C speaks HTTP/2 without TLS (prior knowledge) to http backends, for
	// gRPC; upgrades are then refused by the backends' HTTP/2. false:
	// HTTP/1.1 to http backends, HTTP/2 by ALPN to https ones.
	H2C bool
}

// RetryOn lists the failures, beyond a failure to connect, after which an
// idempotent request is tried on another backend.
type RetryOn struct {
	// Timeout retries a request its backend did not answer within
	// Timeouts.ResponseHeader (each try gets that long).
	Timeout bool
	// Statuses retries a request its backend answered with one of these
	// codes (502, 503, 504); that answer is discarded, and the last try's
	// answer is the client's whatever its code.
	Statuses []int
}

// perPoolSelector is a Selector whose state belongs to one pool, such as the
// cookie policy's cookie name. newPool calls forPool once with the pool's
// name and uses the Selector it returns; the caller's Selector is left as
// it was, so one may be shared by several PoolConfigs.
type perPoolSelector interface {
	Selector
	forPool(pool string) Selector
}

var (
	_ perPoolSelector = Cookie{}
	_ perPoolSelector = (*Hash)(nil)
)

// pool is the runtime form of a PoolConfig in one generation. Its
// backends' live state and its selector come from the Handler's State.
type pool struct {
	name       string
	upstreams  []*Upstream
	states     []*backendState // what this pool took from the State, to release
	selector   Selector
	retries    int
	retryOn    RetryOn
	hostHeader string
	// ring is what the selector chooses among on a first try: the
	// backends, each as often as its weight in smooth order when weights
	// differ and the policy uses them; otherwise upstreams itself.
	ring []*Upstream
	// maxConns, queueSize and queueTimeout are PoolConfig's; queue and
	// qstats are shared with the other generations through the State.
	maxConns     int
	queueSize    int
	queueTimeout time.Duration
	queue        *waitQueue
	qstats       *poolStats  // nil without metrics
	health       HealthCheck // valid when active
	active       bool
	passive      PassiveCheck
	transport    *http.Transport
	h1           *h1Transport // plain-http pools' requests; nil for https and h2c
	log          *slog.Logger
	// unjudged are the backends the active check has not decided about yet
	// (new ones): New probes them once before it returns.
	unjudged []*Upstream

	// tryTimeout and retryWindow are PoolConfig's (see retry.go).
	tryTimeout, retryWindow time.Duration
}

// newPool builds a pool and one ReverseProxy per backend, all sharing the
// pool's Transport and the handler's buffer pool. On success the pool holds
// its entries in h.state until release.
func newPool(c PoolConfig, h *Handler) (*pool, error) {
	if c.Name == "" {
		return nil, fmt.Errorf("pool without a name")
	}
	if len(c.Backends) == 0 {
		return nil, fmt.Errorf("pool %q: no backends", c.Name)
	}
	if c.Retries < 0 {
		return nil, fmt.Errorf("pool %q: negative retries", c.Name)
	}
	if c.Weights != nil && len(c.Weights) != len(c.Backends) {
		return nil, fmt.Errorf("pool %q: %d weights for %d backends", c.Name, len(c.Weights), len(c.Backends))
	}
	for _, w := range c.Weights {
		if w < 0 || w > maxWeight {
			return nil, fmt.Errorf("pool %q: weight %d out of 0..%d", c.Name, w, maxWeight)
		}
	}
	if c.MaxConns < 0 || c.Queue < 0 || c.QueueTimeout < 0 {
		return nil, fmt.Errorf("pool %q: negative max_conns, queue or queue timeout", c.Name)
	}
	if c.TryTimeout < 0 || c.RetryWindow < 0 {
		return nil, fmt.Errorf("pool %q: negative try timeout or retry window", c.Name)
	}
	passive, err := c.Passive.resolve()
	if err != nil {
		return nil, fmt.Errorf("pool %q: %w", c.Name, err)
	}
	p := &pool{
		name:         c.Name,
		retries:      c.Retries,
		hostHeader:   c.HostHeader,
		retryOn:      RetryOn{Timeout: c.RetryOn.Timeout, Statuses: slices.Clone(c.RetryOn.Statuses)},
		tryTimeout:   c.TryTimeout,
		retryWindow:  c.RetryWindow,
		passive:      passive,
		log:          h.log,
		maxConns:     c.MaxConns,
		queueSize:    c.Queue,
		queueTimeout: c.QueueTimeout,
	}
	sel := c.Selector
	if sel == nil {
		sel = new(RoundRobin)
	}
	if ps, ok := sel.(perPoolSelector); ok {
		sel = ps.forPool(p.name)
	}
	if c.Health != nil {
		p.active = true
		if p.health, err = c.Health.resolve(); err != nil {
			return nil, fmt.Errorf("pool %q: %w", c.Name, err)
		}
		if host := p.health.Host; host != "" && !validHostHeader(host) {
			return nil, fmt.Errorf("pool %q: health check host %q: not a host name or address", c.Name, host)
		}
	}
	https := false
	seen := make(map[string]bool)
	for _, bu := range c.Backends {
		if bu == nil || (bu.Scheme != "http" && bu.Scheme != "https") || bu.Host == "" {
			return nil, fmt.Errorf("pool %q: backend %v: want an http or https URL with a host", c.Name, bu)
		}
		if bu.RawQuery != "" || bu.Fragment != "" || bu.User != nil {
			return nil, fmt.Errorf("pool %q: backend %v: no query, fragment or user info allowed", c.Name, bu)
		}
		https = https || bu.Scheme == "https"
		u := newUpstream(bu)
		if seen[u.name] {
			return nil, fmt.Errorf("pool %q: backend %s listed twice", c.Name, u.name)
		}
		seen[u.name] = true
		u.pool = p
		if p.active {
			if u.healthURL, err = healthURL(bu, p.health.Path); err != nil {
				return nil, fmt.Errorf("pool %q: %w", c.Name, err)
			}
		}
		p.upstreams = append(p.upstreams, u)
	}
	if c.H2C && https {
		return nil, fmt.Errorf("pool %q: h2c is HTTP/2 without TLS: its backends must be http", c.Name)
	}
	// Everything checked: take the pool's entries in the State.
	ps, sel := h.state.acquire(p.name, sel, h.metrics)
	p.selector, p.queue, p.qstats = sel, &ps.queue, ps.stats
	for _, u := range p.upstreams {
		st, _ := h.state.backend(ps, p.name, u.name, h.metrics, p.maxConns)
		u.backendState = st
		p.states = append(p.states, st)
		st.health.mu.Lock()
		switch {
		case !p.active && st.health.judged:
			// Active checks were turned off: their last verdict no longer
			// holds.
			st.health.judged, st.health.fails, st.health.passes = false, 0, 0
			u.down.Store(false)
		case p.active && !st.health.judged:
			p.unjudged = append(p.unjudged, u)
		}
		st.health.mu.Unlock()
	}
	p.ring = p.upstreams
	if c.Weights != nil {
		for i, u := range p.upstreams {
			u.weight = max(c.Weights[i], 1)
		}
		switch p.selector.(type) {
		case *RoundRobin, Random:
			p.ring = weightedRing(p.upstreams)
		}
	}
	p.transport = newTransport(c.Timeouts, https)
	if c.TLS != nil {
		p.transport.TLSClientConfig = c.TLS.Clone()
	}
	if c.H2C {
		var protos http.Protocols
		protos.SetUnencryptedHTTP2(true)
		p.transport.Protocols = &protos
	}
	if !https && !c.H2C {
		p.h1 = newH1Transport(p.transport, c.Timeouts)
	}
	for _, u := range p.upstreams {
		u.proxy = h.newReverseProxy(p, u)
		if directEligible(p, u.url) && !h.noDirect {
			u.direct, u.addr = true, canonicalAddr(u.url)
		}
	}
	return p, nil
}

// maxWeight bounds a backend's weight, and so the ring at 100 entries per
// backend.
const maxWeight = 100

// weightedRing lists each upstream as often as its weight (divided by the
// weights' greatest common divisor), in nginx's smooth weighted round-robin
// order: for weights 5, 1, 1 it is a a b a c a a, not a a a a a b c. All
// weights equal: the upstreams themselves.
func weightedRing(ups []*Upstream) []*Upstream {
	g := 0
	for _, u := range ups {
		g = gcd(g, u.weight)
	}
	total := 0
	for _, u := range ups {
		total += u.weight / g
	}
	if total == len(ups) {
		return ups
	}
	ring := make([]*Upstream, 0, total)
	current := make([]int, len(ups))
	for range total {
		best := 0
		for i, u := range ups {
			current[i] += u.weight / g
			if current[i] > current[best] {
				best = i
			}
		}
		current[best] -= total
		ring = append(ring, ups[best])
	}
	return ring
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// roundTripper is what the pool's requests go through: edge's own HTTP/1.1
// client for plain-http backends, which hands the unusual ones to the
// Transport, or the Transport itself.
func (p *pool) roundTripper() http.RoundTripper {
	if p.h1 != nil {
		return p.h1
	}
	return p.transport
}

// closeIdle closes the pool's idle backend connections.
func (p *pool) closeIdle() {
	if p.h1 != nil {
		p.h1.CloseIdleConnections() // and the Transport's
		return
	}
	p.transport.CloseIdleConnections()
}

// release gives the pool's entries back to the State.
func (p *pool) release(s *State) {
	s.release(p.name, p.states, p.maxConns)
	p.states = nil
}

// newReverseProxy returns the ReverseProxy that sends requests to u. Its
// ErrorHandler does not answer: it hands the error to the request's
// recorder, and the handler decides between a retry and an error status.
func (h *Handler) newReverseProxy(p *pool, u *Upstream) *httputil.ReverseProxy {
	target := u.url
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host // the backend sees the name the client asked for
			h.setForwarded(pr.In, pr.Out.Header)
			if p.hostHeader != "" {
				pr.Out.Host = p.hostHeader
			}
		},
		Transport:  p.roundTripper(),
		BufferPool: h.buffers,
		ErrorLog:   h.errorLog,
		ModifyResponse: func(res *http.Response) error {
			if u.stats != nil {
				u.stats.codes.counter(res.StatusCode).Inc()
			}
			if tt := tryTimerOf(res); tt != nil {
				if err := tt.answered(); err != nil {
					return err // the try timeout cut the try as the headers came
				}
			}
			if codes, ok := res.Request.Context().Value(retryStatusKey{}).([]int); ok && slices.Contains(codes, res.StatusCode) {
				return &retryStatusError{code: res.StatusCode} // ReverseProxy closes the body
			}
			if res.StatusCode == http.StatusSwitchingProtocols {
				stripUpgradeHopHeaders(res.Header)
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			if rec, ok := w.(*recorder); ok {
				rec.err = err
				return
			}
			// Not reached: ServeHTTP is always given a *recorder.
			w.WriteHeader(StatusForError(err))
		},
	}
}

// upgradeHopHeaders are the hop-by-hop headers (RFC 9110, section 7.6.1)
// other than Connection and Upgrade, in canonical form.
var upgradeHopHeaders = [...]string{
	"Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization",
	"Te", "Trailer", "Transfer-Encoding",
}

// stripUpgradeHopHeaders removes from a backend's 101 Switching Protocols
// the hop-by-hop headers and those its Connection names, but Upgrade, and
// leaves Connection: Upgrade. ReverseProxy strips them from every other
// response, but copies a 101's header to the client as it came
// (handleUpgradeResponse), since it needs Connection and Upgrade there.
func stripUpgradeHopHeaders(h http.Header) {
	for _, v := range h["Connection"] {
		for tok := range strings.SplitSeq(v, ",") {
			if tok = textproto.TrimString(tok); tok != "" && !strings.EqualFold(tok, "upgrade") {
				delete(h, textproto.CanonicalMIMEHeaderKey(tok))
			}
		}
	}
	for _, k := range upgradeHopHeaders {
		delete(h, k)
	}
	h["Connection"] = []string{"Upgrade"}
}

// status returns a snapshot of the pool.
func (p *pool) status() PoolStatus {
	ps := PoolStatus{Name: p.name, Policy: policyName(p.selector), Backends: make([]BackendStatus, len(p.upstreams))}
	for i, u := range p.upstreams {
		ps.Backends[i] = u.status()
	}
	return ps
}

// newErrorLog returns the *log.Logger ReverseProxy writes its own rare
// complaints to, on top of the injected slog logger.
func newErrorLog(l *slog.Logger) *log.Logger {
	if l == nil {
		return log.New(io.Discard, "", 0)
	}
	return slog.NewLogLogger(l.Handler(), slog.LevelWarn)
}
