package proxy

import (
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"time"
)

// Upstream is one backend of a pool in one configuration generation: its
// address, the ReverseProxy that reaches it, and a pointer to its live state
// (health, ejection, in-flight count), which it shares with every other
// generation that lists the same backend in the same pool (see State).
// Policies only ask Available and InFlight.
//
// Build one with newUpstream; the zero value is not usable. All methods are
// safe for concurrent use.
type Upstream struct {
	*backendState

	url       *url.URL
	name      string // url.String(), the backend label
	hash      uint64 // fnv-64a of name, for ip_hash and cookie
	cookie    string // cookie value selecting this backend
	healthURL string // the active check's probe URL
	weight    int    // 1 unless PoolConfig.Weights says more

	pool   *pool
	proxy  *httputil.ReverseProxy
	direct bool   // requests may take the direct path (direct.go)
	addr   string // host:port of url, for the direct path
}

// newUpstream returns an available Upstream for u with a state of its own.
// It does not wire it to a pool; newPool replaces the state by the shared one.
func newUpstream(u *url.URL) *Upstream {
	name := u.String()
	sum := hashString(name)
	return &Upstream{
		backendState: &backendState{key: name},
		url:          u,
		name:         name,
		hash:         sum,
		cookie:       strconv.FormatUint(sum, 36),
		weight:       1,
	}
}

// URL returns the backend's base URL. The caller must not modify it.
func (u *Upstream) URL() *url.URL { return u.url }

// String returns the backend's URL as a string, as used in metrics labels.
func (u *Upstream) String() string { return u.name }

// Available reports whether the backend may receive requests: it passes its
// active health check, is not ejected by the passive one and is below its
// MaxConns (not Full). Selectors ask only this.
func (u *Upstream) Available() bool {
	return u.up() && !u.drained.Load() && !u.Full()
}

// Drained reports whether the backend is taken out of new traffic.
func (u *Upstream) Drained() bool { return u.drained.Load() }

// Full reports whether the backend has as many requests in flight as its
// MaxConns allows (never without a MaxConns).
func (u *Upstream) Full() bool {
	limit := u.maxConns.Load()
	return limit > 0 && u.inFlight.Load() >= limit
}

// up reports whether the backend is healthy and not ejected, full or not:
// edge_backend_up and BackendStatus.Up.
func (u *Upstream) up() bool {
	if u.down.Load() {
		return false
	}
	until := u.ejectedUntil.Load()
	if until == 0 {
		return true
	}
	if time.Now().UnixNano() < until {
		return false
	}
	if u.ejectedUntil.CompareAndSwap(until, 0) { // cooldown over
		u.markChanged(time.Unix(0, until))
	}
	return true
}

// Healthy reports the active health check's verdict (true when none runs).
func (u *Upstream) Healthy() bool { return !u.down.Load() }

// Ejected reports whether the passive check has ejected the backend.
func (u *Upstream) Ejected() bool {
	until := u.ejectedUntil.Load()
	return until != 0 && time.Now().UnixNano() < until
}

// InFlight returns the number of requests being proxied to the backend.
func (u *Upstream) InFlight() int64 { return u.inFlight.Load() }

// acquire counts one more request in flight unless that would exceed the
// backend's MaxConns.
func (u *Upstream) acquire() bool {
	for {
		n, limit := u.inFlight.Load(), u.maxConns.Load()
		if limit > 0 && n >= limit {
			return false
		}
		if u.inFlight.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// done ends a request acquire counted and wakes a request waiting in the
// pool's queue.
func (u *Upstream) done() {
	u.inFlight.Add(-1)
	if u.queue != nil {
		u.queue.wake()
	}
}

// serve proxies r to u, which the caller acquired; the request stays in
// flight until ServeHTTP returns, after the response body (also when
// ReverseProxy panics to abort the response).
func (u *Upstream) serve(rec *recorder, r *http.Request) {
	defer u.done()
	u.proxy.ServeHTTP(rec, r)
}

// serveAny sends r to the backend by the direct path when it may take it,
// else as serve.
func (u *Upstream) serveAny(h *Handler, rec *recorder, r *http.Request) {
	if !u.directOK(r) {
		u.serve(rec, r)
		return
	}
	defer u.done()
	h.serveDirect(rec, r, u)
}

// recordFailure counts a failed attempt of the given reason (see
// failureReason) and feeds the passive check.
func (u *Upstream) recordFailure(reason string, now time.Time) {
	u.fails.Add(1)
	u.recent.failure(now)
	if u.stats != nil {
		u.stats.failure(reason).Inc()
	}
	if u.pool != nil && countsAsPassiveFailure(reason) {
		if u.passive.fail(&u.pool.passive, now) {
			u.ejectedUntil.Store(now.Add(u.pool.passive.Cooldown).UnixNano())
			u.markChanged(now)
			u.pool.log.Warn("backend ejected", logKeyPool, u.pool.name, logKeyBackend, u.name,
				logKeyReason, reason, logKeyCooldown, u.pool.passive.Cooldown)
		}
	}
}

// PoolStatus is the live state of one pool, for the admin API. It is a
// snapshot: plain data, safe to marshal as JSON.
type PoolStatus struct {
	Name     string          `json:"name"`
	Policy   string          `json:"policy"`
	Backends []BackendStatus `json:"backends"`
}

// BackendStatus is the live state of one backend, part of PoolStatus.
type BackendStatus struct {
	URL      string `json:"url"`
	Up       bool   `json:"up"`      // healthy and not ejected (full or not)
	Healthy  bool   `json:"healthy"` // the active check's verdict
	Ejected  bool   `json:"ejected"` // ejected by the passive check
	Drained  bool   `json:"drained"` // out of new traffic (Handler.Drain)
	InFlight int64  `json:"in_flight"`
	Fails    uint64 `json:"fails"` // failures (connect, timeout, protocol, health) since the backend was configured
	// ChangedAt is when the backend last went up or down (active check,
	// ejection, end of ejection); zero if it never did.
	ChangedAt time.Time `json:"changed_at,omitzero"`
	// Requests and Errors are the proxied attempts and the failed ones
	// (connect, timeout, protocol; not health probes) in about the last
	// minute; ErrorRate is Errors/Requests, 0 without requests.
	Requests  int64   `json:"recent_requests"`
	Errors    int64   `json:"recent_errors"`
	ErrorRate float64 `json:"error_rate"`
}

func (u *Upstream) status() BackendStatus {
	var changed time.Time
	up := u.up() // first: it may end an ejection, which is a change
	if ns := u.changedAt.Load(); ns != 0 {
		changed = time.Unix(0, ns)
	}
	reqs, errs := u.recent.rate(time.Now())
	rate := 0.0
	if reqs > 0 {
		rate = min(1, float64(errs)/float64(reqs)) // a failure may land a bucket after its attempt
	}
	return BackendStatus{
		ChangedAt: changed, Requests: reqs, Errors: errs, ErrorRate: rate,
		URL:      u.name,
		Up:       up,
		Healthy:  u.Healthy(),
		Ejected:  u.Ejected(),
		Drained:  u.Drained(),
		InFlight: u.InFlight(),
		Fails:    u.fails.Load(),
	}
}
