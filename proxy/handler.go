package proxy

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Config is everything New needs: plain data, built by cmd/edge from the
// configuration file.
type Config struct {
	Sites []SiteConfig
	Pools []PoolConfig
	// TrustedProxies are the peers whose X-Forwarded-For (appended to),
	// X-Forwarded-Proto, X-Forwarded-Host, Forwarded and client-IP headers
	// (X-Real-IP, True-Client-IP, CF-Connecting-IP, X-Client-IP,
	// X-Cluster-Client-IP) are believed and kept. From any other peer they
	// are replaced or dropped, and X-Real-IP is set to the peer's address.
	// See setForwarded.
	//
	// They also decide a request's client address, the one ip_hash, the
	// sites' rate limits, the access log and X-Real-IP use: from a trusted
	// peer, the rightmost X-Forwarded-For address that is not itself a
	// trusted proxy (the leftmost when all are); from any other peer, the
	// peer's IP. Nil trusts no one.
	TrustedProxies []netip.Prefix
	// State holds what outlives a configuration: backends' health,
	// ejection and in-flight counts, balancing positions. Give every Handler
	// of the process the same one. Nil gives the Handler a State of its own,
	// which nothing else shares.
	State *State
	// CertCovers reports whether the certificate served on a TLS connection
	// for serverName (the SNI) also covers host, a request's Host. A request
	// whose Host differs from the connection's server name gets 421
	// Misdirected Request unless CertCovers says yes (HTTP/2 connection
	// coalescing, RFC 9113 section 9.1.1). Nil: only equal names pass.
	CertCovers func(serverName, host string) bool
	// WriteTimeout is the longest a client may take to accept each write of
	// a response (nginx's send_timeout): the deadline is set when the
	// request starts and moved on at every write. 0 means no limit.
	WriteTimeout time.Duration
	// Metrics, shared across reloads; nil counts nothing.
	Metrics *Metrics
	// Logger receives backend state changes and, with AccessLog, one line
	// per request at Info; nil discards.
	Logger *slog.Logger
	// AccessLog enables the per-request log line.
	AccessLog bool
	// AccessLogNoQuery leaves the query string out of the access log
	// (it may carry tokens).
	AccessLogNoQuery bool
	// HTTPSPort is the port the plain-HTTP redirect points at; 0 or 443
	// leaves it out of the URL.
	HTTPSPort int

	// viaReverseProxy sends every request through httputil.ReverseProxy,
	// never by the direct path (direct.go): for tests that hold both paths
	// to the same behaviour.
	viaReverseProxy bool
}

// Handler is the proxy's handler tree for one configuration generation. It
// serves HTTPS itself (ServeHTTP) and plain HTTP through HTTPHandler.
//
// Build it with New; the zero value is not usable. It is safe for
// concurrent use. A reload builds a new Handler, swaps it in and then closes
// the old one; requests in flight on the old one finish there.
type Handler struct {
	router    router
	poolList  []*pool
	limiters  []limiterKey // the rate-limit tables taken from state
	state     *State
	covers    func(serverName, host string) bool
	writeTO   time.Duration
	trusted   []netip.Prefix
	metrics   *Metrics
	unknown   *requestStats // site "" pool ""
	log       *slog.Logger
	errorLog  *log.Logger
	noDirect  bool // Config.viaReverseProxy
	accessLog bool
	logQuery  bool
	httpsPort int
	buffers   *bufferPool
	recorders sync.Pool

	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// Log keys, shared by every line of the package.
const (
	logKeyPool     = "pool"
	logKeyBackend  = "backend"
	logKeyReason   = "reason"
	logKeyCooldown = "cooldown"
	logKeyError    = "error"
	logKeyPanic    = "panic"
	logKeyMethod   = "method"
	logKeyHost     = "host"
	logKeyPath     = "path"
	logKeyStatus   = "status"
	logKeyDuration = "duration"
	logKeyBytes    = "bytes"
	logKeyRemote   = "remote"
	logKeySite     = "site"

	logKeyRequestID        = "request_id"
	logKeyProto            = "proto"
	logKeyQuery            = "query"
	logKeyUpstreamDuration = "upstream_duration"
	logKeyUserAgent        = "user_agent"
	logKeyTLS              = "tls"
	logKeySNI              = "sni"
)

// New builds the handler tree for cfg, probes the backends the active checks
// have not judged yet (see HealthCheck) and starts the active health checks,
// which run until ctx is cancelled or Close is called. It reports every
// problem of cfg at once, each wrapping ErrInvalidConfig.
func New(ctx context.Context, cfg Config) (*Handler, error) {
	h, err := build(cfg)
	if err != nil {
		return nil, err
	}
	h.start(ctx)
	return h, nil
}

// Check reports what New would refuse in cfg, without contacting a backend
// and without touching cfg.State.
func Check(cfg Config) error {
	cfg.State, cfg.Metrics = nil, nil
	h, err := build(cfg)
	if err != nil {
		return err
	}
	h.release()
	return nil
}

// release gives the pools' and the sites' entries back to the State and
// drops the pools' idle connections.
func (h *Handler) release() {
	for _, p := range h.poolList {
		p.closeIdle()
		p.release(h.state)
	}
	for _, k := range h.limiters {
		h.state.releaseLimiter(k)
	}
	h.limiters = nil
}

// build makes the handler tree of cfg; its pools hold their entries in the
// State.
func build(cfg Config) (*Handler, error) {
	h := &Handler{
		router:    router{exact: make(map[string]*site), wildcard: make(map[string]*site)},
		trusted:   slices.Clone(cfg.TrustedProxies),
		metrics:   cfg.Metrics,
		log:       cfg.Logger,
		errorLog:  newErrorLog(cfg.Logger),
		accessLog: cfg.AccessLog && cfg.Logger != nil,
		logQuery:  !cfg.AccessLogNoQuery,
		httpsPort: cfg.HTTPSPort,
		buffers:   newBufferPool(),
		state:     cfg.State,
		covers:    cfg.CertCovers,
		writeTO:   max(cfg.WriteTimeout, 0),
		noDirect:  cfg.viaReverseProxy,
	}
	if h.state == nil {
		h.state = NewState()
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	h.recorders.New = func() any { return new(recorder) }
	if h.metrics != nil {
		h.unknown = h.metrics.requestStats("", "")
	}

	var errs []error
	pools := make(map[string]*pool, len(cfg.Pools))
	for _, pc := range cfg.Pools {
		if _, dup := pools[pc.Name]; dup {
			errs = append(errs, fmt.Errorf("pool %q defined twice", pc.Name))
			continue
		}
		p, err := newPool(pc, h)
		if err != nil {
			errs = append(errs, err)
			pools[pc.Name] = nil // reported: routes to it are not reported again
			continue
		}
		pools[p.name] = p
		h.poolList = append(h.poolList, p)
	}
	for _, sc := range cfg.Sites {
		s, err := newSite(sc, pools, h.metrics)
		if errors.Is(err, errBrokenPool) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if s.rate.Events > 0 {
			k := limiterKey{site: s.name, rate: s.rate}
			s.limiter = h.state.acquireLimiter(k)
			h.limiters = append(h.limiters, k)
		}
		for _, host := range sc.Hosts {
			if err := h.router.add(host, s); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if len(errs) > 0 {
		h.release()
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(errs...))
	}
	return h, nil
}

// start probes the unjudged backends, then starts the health checkers.
func (h *Handler) start(ctx context.Context) {
	ctx, h.cancel = context.WithCancel(ctx)
	// Backends the active checks have not judged yet (new ones) start as
	// their first probe says, so that a reload never sends requests to a
	// backend that is down. The probes run at once, bounded by each pool's
	// timeout.
	var first sync.WaitGroup
	for _, p := range h.poolList {
		if len(p.unjudged) > 0 {
			first.Go(func() { p.probeAll(ctx, p.unjudged, true) })
		}
	}
	first.Wait()
	for _, p := range h.poolList {
		p.unjudged = nil
		if p.active {
			h.wg.Go(func() {
				defer p.recoverPanic("health checker")
				p.runHealth(ctx)
			})
		}
	}
	if h.metrics != nil {
		h.metrics.up.add(h)
	}
}

// Close stops the health checks and waits for them, drops idle backend
// connections and gives the pools' and sites' entries back to the State (a
// backend no other open Handler lists leaves it, with its metric series; so
// do rate-limit buckets). Requests in flight finish. Safe to call more than
// once.
func (h *Handler) Close() {
	h.closeOnce.Do(func() {
		h.cancel()
		h.wg.Wait()
		if h.metrics != nil {
			h.metrics.up.remove(h)
		}
		h.release()
	})
}

// Drain takes the backend named backend (its URL as BackendStatus shows
// it) of pool out of new traffic, or, with drain false, puts it back. Its
// requests in flight finish; health checks go on. The mark is kept in the
// State, so it outlives reloads that keep the backend. It returns
// ErrNoBackend when the pool has no such backend.
func (h *Handler) Drain(pool, backend string, drain bool) error {
	for _, p := range h.poolList {
		if p.name != pool {
			continue
		}
		for _, u := range p.upstreams {
			if u.name == backend {
				if u.drained.Swap(drain) != drain {
					h.log.Info("backend drain changed", logKeyPool, pool, logKeyBackend, backend, "drained", drain)
					if !drain && p.queue != nil {
						p.queue.wake() // requests waiting for a slot may take this one
					}
				}
				return nil
			}
		}
	}
	return fmt.Errorf("pool %q, backend %q: %w", pool, backend, ErrNoBackend)
}

// Status returns a snapshot of every pool, in configuration order. Safe for
// concurrent use.
func (h *Handler) Status() []PoolStatus {
	out := make([]PoolStatus, len(h.poolList))
	for i, p := range h.poolList {
		out[i] = p.status()
	}
	return out
}

// ServeHTTP is the HTTPS handler. A host no site answers gets 421
// Misdirected Request (RFC 9110, section 15.5.20): the client reused a
// connection for a name this server does not serve. So does a Host that
// differs from the connection's TLS server name, unless the connection's
// certificate covers it too (Config.CertCovers): a client may coalesce
// requests for several names of one certificate on one connection (RFC 9113,
// section 9.1.1), but no other. Sites with HSTS get the
// Strict-Transport-Security header on every response, once: edge's value
// replaces the backend's.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor == 2 {
		growStack() // a goroutine per stream (stack.go)
	}
	h.startWriteDeadline(w, r)
	closeAfterAmbiguousFraming(w, r)
	s := h.router.lookup(r.Host)
	if s == nil || (r.TLS != nil && !h.sameAuthority(r.TLS.ServerName, r.Host)) {
		h.answer(w, r, nil, http.StatusMisdirectedRequest)
		return
	}
	if s.hsts != "" {
		w.Header()[hstsHeader] = []string{s.hsts}
	}
	h.proxy(w, r, s, s.hsts)
}

// sameAuthority reports whether a request for host may be served on a TLS
// connection made for serverName. Without SNI there is nothing to compare.
func (h *Handler) sameAuthority(serverName, host string) bool {
	if serverName == "" {
		return true
	}
	hn, sn := normalizeHost(host), normalizeHost(serverName)
	if hn == sn {
		return true
	}
	return h.covers != nil && h.covers(sn, hn)
}

// closeAfterAmbiguousFraming ends the connection after the response to a
// request whose body framing a device in front of edge may have read
// differently: any HTTP/1.1 request with Transfer-Encoding (net/http frames
// it by TE and drops a Content-Length, RFC 9112 section 6.3, and it accepts
// obfuscated spellings and bare-LF line ends that others do not), and every
// HTTP/1.0 request (net/http ignores Transfer-Encoding there and uses
// Content-Length). RFC 9112 section 6.1: a server MUST close the connection
// after a request with both. So no second request is ever read from bytes
// another parser took as a body. By the time the handler runs, net/http has
// removed the headers that would tell the cases apart, hence the wider rule;
// browsers send request bodies with Content-Length and keep their
// connections.
func closeAfterAmbiguousFraming(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor == 1 && (r.ProtoMinor == 0 || len(r.TransferEncoding) > 0) {
		w.Header()["Connection"] = []string{"close"}
	}
}

// startWriteDeadline gives an HTTP/1.x response WriteTimeout for its first
// write (the recorder moves it on at every write). HTTP/2 streams are left to
// flow control: each deadline change there is a message to the connection's
// goroutine.
func (h *Handler) startWriteDeadline(w http.ResponseWriter, r *http.Request) {
	if h.writeTO > 0 && r.ProtoMajor == 1 {
		setWriteDeadline(w, time.Now().Add(h.writeTO))
	}
}

// HTTPHandler returns the handler for the plain-HTTP listener: a site with
// RedirectHTTP answers 308 to the same URL on https, other sites are
// proxied, and an unknown host gets 404. The ACME HTTP-01 path must be
// handled before this handler.
func (h *Handler) HTTPHandler() http.Handler { return httpHandler{h} }

type httpHandler struct{ h *Handler }

var (
	_ http.Handler = (*Handler)(nil)
	_ http.Handler = httpHandler{}
)

// ServeHTTP implements http.Handler for the plain-HTTP listener.
func (hh httpHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := hh.h
	h.startWriteDeadline(w, r)
	closeAfterAmbiguousFraming(w, r)
	s := h.router.lookup(r.Host)
	switch {
	case s == nil:
		h.answer(w, r, nil, http.StatusNotFound)
	case s.redirectHTTP:
		// 308 keeps the method and body (RFC 9110, section 15.4.9).
		w.Header()["Location"] = []string{redirectTarget(r, h.httpsPort)}
		h.answer(w, r, s, http.StatusPermanentRedirect)
	default:
		h.proxy(w, r, s, "")
	}
}

// answer writes a bodiless status that the proxy decides itself, and
// accounts for it under the site (or site "" when s is nil).
func (h *Handler) answer(w http.ResponseWriter, r *http.Request, s *site, code int) {
	start := time.Now()
	ensureRequestID(r)
	if s != nil {
		s.respRules.apply(w.Header(), r, h.clientAddr(r))
	}
	w.WriteHeader(code)
	stats := h.unknown
	name := ""
	if s != nil {
		stats, name = s.stats, s.name
	}
	h.account(r, stats, name, code, 0, nil, 0, start)
}

// proxy serves a request of a known site. hsts is the
// Strict-Transport-Security value the response must carry, and carry alone;
// "" leaves the backend's.
func (h *Handler) proxy(w http.ResponseWriter, r *http.Request, s *site, hsts string) {
	start := time.Now()
	client := h.clientAddr(r)
	ensureRequestID(r)
	if s.limiter != nil {
		if d := s.limiter.delay(client, start); d > 0 {
			w.Header()["Retry-After"] = []string{strconv.FormatInt(retryAfter(d), 10)}
			h.answer(w, r, s, http.StatusTooManyRequests)
			return
		}
	}
	if s.maintenance {
		w.Header()["Retry-After"] = []string{maintenanceRetryAfter}
		s.respRules.apply(w.Header(), r, client)
		writeErrorPage(w, s, http.StatusServiceUnavailable)
		h.account(r, s.stats, s.name, http.StatusServiceUnavailable, 0, nil, 0, start)
		return
	}
	if r.Method == http.MethodConnect {
		// Not a forward proxy. (Extended CONNECT, RFC 8441, is not enabled
		// on net/http's HTTP/2 server.)
		w.WriteHeader(http.StatusMethodNotAllowed)
		h.account(r, s.stats, s.name, http.StatusMethodNotAllowed, 0, nil, 0, start)
		return
	}
	rt := s.route(r.URL.Path)
	if rt == nil {
		w.WriteHeader(http.StatusNotFound)
		h.account(r, s.stats, s.name, http.StatusNotFound, 0, nil, 0, start)
		return
	}
	if h.metrics != nil {
		h.metrics.inFlight.Inc()
		defer h.metrics.inFlight.Dec()
	}
	if rt.maxBody > 0 && r.Body != nil && r.Body != http.NoBody {
		if r.ContentLength > rt.maxBody {
			w.Header()["Connection"] = []string{"close"}
			w.WriteHeader(http.StatusRequestEntityTooLarge)
			h.account(r, rt.stats, s.name, http.StatusRequestEntityTooLarge, 0, nil, 0, start)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, rt.maxBody)
	}

	s.reqRules.apply(r.Header, r, client)
	rt.reqRules.apply(r.Header, r, client)
	rec := h.recorders.Get().(*recorder)
	rec.ResponseWriter, rec.hsts, rec.client = w, hsts, client
	cw := s.compress.wrap(w, r) // nil unless the client accepts a coding
	if cw != nil {
		rec.ResponseWriter = cw
	}
	rec.req, rec.siteRules, rec.routeRules = r, s.respRules, rt.respRules
	if h.writeTO > 0 && r.ProtoMajor == 1 {
		rec.writeTO = h.writeTO
	}
	if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
		// Not in the pooled recorder: the Transport may read the body after
		// the response is done.
		rec.body = &watchedBody{ReadCloser: r.Body}
		r.Body = rec.body
	}
	defer func() {
		if v := recover(); v != nil {
			// ReverseProxy aborts a response whose body copy failed with
			// http.ErrAbortHandler once the status is out: count it, then let
			// net/http close the connection. The recorder is not reused.
			h.account(r, rt.stats, s.name, cmp.Or(rec.status, http.StatusBadGateway), rec.bytes, rec.up, rec.upDur, start)
			panic(v)
		}
	}()
	h.forward(rec, r, rt.pool)
	h.finish(rec, r, s, rt, start)
	if cw != nil {
		cw.close() // the end of the compressed stream
	}
	*rec = recorder{}
	h.recorders.Put(rec)
}

// finish answers the error forward left in rec, if any and if nothing was
// sent yet, then accounts for the request.
func (h *Handler) finish(rec *recorder, r *http.Request, s *site, rt *route, start time.Time) {
	code := rec.status
	if code == 0 {
		code = http.StatusOK // the backend wrote nothing, as net/http then answers
	}
	if rec.err != nil && !rec.wrote {
		code = StatusForError(rec.err)
		rec.restoreOwn() // before the Connection: close below, not on top of it
		switch {
		case rec.body.timedOut():
			// The client did not send its body within limits.read_timeout;
			// the rest of it may still come, so the connection ends here.
			code = http.StatusRequestTimeout
			rec.Header()["Connection"] = []string{"close"}
		case rec.body.malformed() && r.Context().Err() == nil:
			// A body that does not parse (a junk chunk size): its framing
			// is lost, so the connection ends here too.
			code = http.StatusBadRequest
			rec.Header()["Connection"] = []string{"close"}
		}
		if code != StatusClientClosedRequest {
			writeErrorPage(rec, s, code)
		}
	}
	h.account(r, rt.stats, s.name, code, rec.bytes, rec.up, rec.upDur, start)
	switch {
	case rec.err == nil:
	case code == StatusClientClosedRequest:
		h.log.LogAttrs(r.Context(), slog.LevelDebug, "client closed request",
			slog.String(logKeySite, s.name), slog.String(logKeyPath, r.URL.Path))
	case code == http.StatusRequestTimeout:
		h.log.LogAttrs(r.Context(), slog.LevelInfo, "request body read timed out",
			slog.String(logKeySite, s.name), slog.String(logKeyPath, r.URL.Path), slog.String(logKeyRemote, h.clientAddr(r)))
	case code == http.StatusBadRequest:
		h.log.LogAttrs(r.Context(), slog.LevelInfo, "malformed request body",
			slog.String(logKeySite, s.name), slog.String(logKeyPath, r.URL.Path), slog.String(logKeyRemote, h.clientAddr(r)),
			slog.String(logKeyError, rec.err.Error()))
	case code >= 500 && !errors.Is(rec.err, ErrNoUpstream):
		backend := ""
		if rec.up != nil {
			backend = rec.up.name
		}
		h.log.LogAttrs(r.Context(), slog.LevelWarn, "proxy error",
			slog.String(logKeySite, s.name), slog.String(logKeyPool, rt.pool.name),
			slog.String(logKeyBackend, backend), slog.Int(logKeyStatus, code),
			slog.String(logKeyError, rec.err.Error()))
	}
}

// maintenanceRetryAfter is the Retry-After of a site in maintenance, in
// seconds.
const maintenanceRetryAfter = "300"

// errorText are the bodies of edge's own 5xx answers without a page: a
// line saying which, naming no backend.
var errorText = map[int]string{
	http.StatusBadGateway:         "502 Bad Gateway: no usable answer from the backend\n",
	http.StatusServiceUnavailable: "503 Service Unavailable: no backend can take the request now\n",
	http.StatusGatewayTimeout:     "504 Gateway Timeout: the backend did not answer in time\n",
}

// writeErrorPage answers code with the site's page for it, or the line of
// errorText, or no body. The status goes through w.WriteHeader, so a
// recorder applies its header rules.
func writeErrorPage(w http.ResponseWriter, s *site, code int) {
	page, ok := s.errorPages[code]
	ctype := "text/html; charset=utf-8"
	if !ok {
		text, has := errorText[code]
		if !has {
			w.WriteHeader(code)
			return
		}
		page, ctype = []byte(text), "text/plain; charset=utf-8"
	}
	hdr := w.Header()
	hdr["Content-Type"] = []string{ctype}
	hdr["Content-Length"] = []string{strconv.Itoa(len(page))}
	hdr["X-Content-Type-Options"] = []string{"nosniff"}
	w.WriteHeader(code)
	_, _ = w.Write(page)
}

// forward sends r to a backend of p, retrying a failure to connect on the
// other backends when that is safe; each attempt takes a slot below the
// backend's MaxConns, waiting in the pool's queue when all are at their cap
// (see pool.take). It leaves the outcome in rec: the
// backend tried last in rec.up (nil when none was available), and a written
// response or rec.err for finish to map to a status.
func (h *Handler) forward(rec *recorder, r *http.Request, p *pool) {
	candidates := p.ring
	var triedBuf [4]*Upstream
	tried := triedBuf[:0]
	var start time.Time // of the first try, for RetryWindow
	for attempt := 0; ; attempt++ {
		u, err := p.take(rec, r, candidates)
		if u == nil {
			if rec.up == nil || r.Context().Err() != nil {
				rec.err = err
			}
			// else keep the last attempt's error: more telling than 503
			return
		}
		rec.up, rec.err = u, nil
		rec.keepOwn()
		t0 := time.Now()
		if attempt == 0 {
			start = t0
		}
		if (len(p.retryOn.Statuses) > 0 || p.tryTimeout > 0) && replayable(r) && p.mayTry(attempt, len(candidates), start) {
			// Another try is allowed: answers of RetryOn's codes become
			// errors, and the try has TryTimeout for its headers (retry.go).
			sr, tt := p.tryRequest(r)
			u.serve(rec, sr)
			tt.done(rec, r)
		} else {
			u.serveAny(h, rec, r)
		}
		d := time.Since(t0)
		rec.upDur += d
		u.recent.attempt(t0.Add(d))
		if rec.err == nil {
			return
		}
		reason := failureReason(rec.err)
		if reason == "" || rec.body.timedOut() || rec.body.malformed() {
			return // the client's fault: no failure of the backend's
		}
		u.recordFailure(reason, time.Now())
		if !rec.wrote {
			// The answer, a retry's or edge's error page, is not this
			// backend's: no sticky cookie for it.
			delete(rec.Header(), "Set-Cookie")
			delete(rec.own, "Set-Cookie") // and its copy, should a 1xx have cleared the header
		}
		if rec.wrote || !p.mayTry(attempt, len(p.upstreams), start) || !p.retryable(rec.err) || !retriable(r, rec.err) || r.Context().Err() != nil {
			return
		}
		// Retry on a backend not tried yet. This path is rare: allocate.
		tried = append(tried, u)
		candidates = slices.DeleteFunc(slices.Clone(p.upstreams), func(x *Upstream) bool {
			return slices.Contains(tried, x)
		})
		if r.GetBody != nil && r.Body != nil && r.Body != http.NoBody {
			body, err := r.GetBody()
			if err != nil {
				return
			}
			r.Body = body
		}
	}
}

// retryable reports whether a try that failed with err may be repeated on
// another backend: a failure to connect always (nothing was sent), a
// timeout or a listed status when RetryOn says so.
func (p *pool) retryable(err error) bool {
	var rse *retryStatusError
	switch {
	case isDialError(err), errors.As(err, &rse):
		return true
	case p.retryOn.Timeout:
		return StatusForError(err) == http.StatusGatewayTimeout
	}
	return false
}

// replayable reports whether r may be sent again: an idempotent method
// (RFC 9110, section 9.2.2) and no body, or one that GetBody can replay.
func replayable(r *http.Request) bool {
	if !idempotent(r.Method) {
		return false
	}
	// Go's HTTP/2 server gives every request a Body, even a GET without
	// one; a declared length of zero is as replayable as no body.
	return r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 || r.GetBody != nil
}

// account records a finished request in the metrics and the access log.
func (h *Handler) account(r *http.Request, stats *requestStats, siteName string, code int, bytes int64, up *Upstream, upDur time.Duration, start time.Time) {
	d := time.Since(start)
	if stats != nil {
		stats.codes.counter(code).Inc()
		stats.duration.Observe(d.Seconds())
	}
	if !h.accessLog {
		return
	}
	ctx := r.Context()
	if !h.log.Enabled(ctx, slog.LevelInfo) {
		return
	}
	backend := ""
	if up != nil {
		backend = up.name
	}
	query := ""
	if h.logQuery {
		query = r.URL.RawQuery
	}
	tlsVersion, sni := "", ""
	if r.TLS != nil {
		tlsVersion, sni = tls.VersionName(r.TLS.Version), r.TLS.ServerName
	}
	h.log.LogAttrs(ctx, slog.LevelInfo, "request",
		slog.String(logKeySite, siteName),
		slog.String(logKeyRequestID, r.Header.Get(RequestIDHeader)),
		slog.String(logKeyProto, r.Proto),
		slog.String(logKeyMethod, r.Method),
		slog.String(logKeyHost, r.Host),
		slog.String(logKeyPath, r.URL.Path),
		slog.String(logKeyQuery, query),
		slog.Int(logKeyStatus, code),
		slog.Duration(logKeyDuration, d),
		slog.Duration(logKeyUpstreamDuration, upDur),
		slog.String(logKeyBackend, backend),
		slog.Int64(logKeyBytes, bytes),
		slog.String(logKeyRemote, h.clientAddr(r)),
		slog.String(logKeyUserAgent, r.UserAgent()),
		slog.String(logKeyTLS, tlsVersion),
		slog.String(logKeySNI, sni),
	)
}
