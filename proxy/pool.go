package proxy

import (
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
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
	// Selector picks a backend per request; nil means round robin. A
	// Cookie is given the pool's own cookie name (CookieNameFor).
	Selector Selector
	// Health enables active health checks; nil disables them.
	Health *HealthCheck
	// Passive ejects failing backends; the zero value disables it.
	Passive PassiveCheck
	// Retries is how many other backends an idempotent request without a
	// body is tried on when connecting to its backend fails. 0 disables
	// retries.
	Retries int
	// Timeouts bound the talk with the backends.
	Timeouts Timeouts
}

// perPoolSelector is a Selector whose state belongs to one pool, such as the
// cookie policy's cookie name. newPool calls forPool once with the pool's
// name and uses the Selector it returns; the caller's Selector is left as
// it was, so one may be shared by several PoolConfigs.
type perPoolSelector interface {
	Selector
	forPool(pool string) Selector
}

var _ perPoolSelector = Cookie{}

// pool is the runtime form of a PoolConfig.
type pool struct {
	name      string
	upstreams []*Upstream
	selector  Selector
	retries   int
	health    HealthCheck // valid when active
	active    bool
	passive   PassiveCheck
	transport *http.Transport
	log       *slog.Logger
}

// newPool builds a pool and one ReverseProxy per backend, all sharing the
// pool's Transport and the handler's buffer pool.
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
	p := &pool{
		name:     c.Name,
		selector: c.Selector,
		retries:  c.Retries,
		passive:  c.Passive.withDefaults(),
		log:      h.log,
	}
	if p.selector == nil {
		p.selector = new(RoundRobin)
	}
	if ps, ok := p.selector.(perPoolSelector); ok {
		p.selector = ps.forPool(p.name)
	}
	if c.Health != nil {
		p.active = true
		p.health = c.Health.withDefaults()
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
			hu, err := healthURL(bu, p.health.Path)
			if err != nil {
				return nil, fmt.Errorf("pool %q: %w", c.Name, err)
			}
			u.health.url = hu
		}
		if h.metrics != nil {
			u.stats = h.metrics.backendStats(p.name, u.name)
		}
		p.upstreams = append(p.upstreams, u)
	}
	p.transport = newTransport(c.Timeouts, https)
	for _, u := range p.upstreams {
		u.proxy = h.newReverseProxy(p, u)
	}
	return p, nil
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
			h.setForwarded(pr)
		},
		Transport:  p.transport,
		BufferPool: h.buffers,
		ErrorLog:   h.errorLog,
		ModifyResponse: func(res *http.Response) error {
			if u.stats != nil {
				u.stats.codes.counter(res.StatusCode).Inc()
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
