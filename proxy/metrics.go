package proxy

import (
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics holds the proxy's Prometheus collectors. Create it once with
// NewMetrics and share it across reloads: every Handler built with it counts
// into the same series, and edge_backend_up reports the backends of the
// handlers not yet closed (the newest one wins where two overlap).
//
// The metric names are a contract (see DESIGN.md):
//
//	edge_http_requests_total{site,pool,code}
//	edge_http_request_duration_seconds{site,pool}
//	edge_http_requests_in_flight
//	edge_backend_up{pool,backend}
//	edge_backend_requests_total{pool,backend,code}
//	edge_backend_failures_total{pool,backend,reason}
//	edge_pool_queue_requests{pool}
//	edge_pool_queue_rejected_total{pool,reason}
//
// Requests for an unknown host count with site="" and pool=""; requests a
// site answers itself (redirect, no route) with pool="". The zero value is
// not usable; a *Metrics is safe for concurrent use.
type Metrics struct {
	requests        *prometheus.CounterVec
	duration        *prometheus.HistogramVec
	inFlight        prometheus.Gauge
	backendRequests *prometheus.CounterVec
	backendFailures *prometheus.CounterVec
	queued          *prometheus.GaugeVec
	queueRejected   *prometheus.CounterVec
	up              *upCollector
}

// NewMetrics creates the proxy's collectors and registers them with reg. A
// nil reg registers nothing (for tests).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_http_requests_total",
			Help: "Requests answered, by site, pool and status code.",
		}, []string{"site", "pool", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "edge_http_request_duration_seconds",
			Help:    "Time from receiving a request to the end of its response, by site and pool.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"site", "pool"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "edge_http_requests_in_flight",
			Help: "Requests being served.",
		}),
		backendRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_backend_requests_total",
			Help: "Responses received from backends, by pool, backend and status code.",
		}, []string{"pool", "backend", "code"}),
		backendFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_backend_failures_total",
			Help: "Failed attempts to reach a backend, by reason: connect, timeout, protocol, health_check, status (an answer retry_on retried).",
		}, []string{"pool", "backend", "reason"}),
		queued: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "edge_pool_queue_requests",
			Help: "Requests waiting for a backend of the pool below its max_conns.",
		}, []string{"pool"}),
		queueRejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_pool_queue_rejected_total",
			Help: "Requests answered 503 because every backend of the pool was at its max_conns, by reason: full (the queue), timeout (queue_timeout).",
		}, []string{"pool", "reason"}),
		up: &upCollector{desc: prometheus.NewDesc("edge_backend_up",
			"Whether the backend receives requests (1) or is down or ejected (0).",
			[]string{"pool", "backend"}, nil)},
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.inFlight, m.backendRequests, m.backendFailures, m.queued, m.queueRejected, m.up} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering proxy metrics: %w", err)
		}
	}
	return m, nil
}

// counterRef boxes a Counter so that it fits an atomic.Pointer.
type counterRef struct{ c prometheus.Counter }

// codeTable caches the counters of one (a, b) label pair by status code, so
// that the request path does no label lookup once a code has been seen.
type codeTable struct {
	vec   *prometheus.CounterVec
	a, b  string
	slots [500]atomic.Pointer[counterRef] // codes 100 to 599
}

func (t *codeTable) counter(code int) prometheus.Counter {
	if code < 100 || code > 599 {
		return t.vec.WithLabelValues(t.a, t.b, strconv.Itoa(code))
	}
	slot := &t.slots[code-100]
	if r := slot.Load(); r != nil {
		return r.c
	}
	// Two goroutines may race here; both get the same child counter.
	r := &counterRef{t.vec.WithLabelValues(t.a, t.b, strconv.Itoa(code))}
	slot.Store(r)
	return r.c
}

// requestStats are the cached series of one (site, pool).
type requestStats struct {
	codes    codeTable
	duration prometheus.Observer
}

func (m *Metrics) requestStats(site, pool string) *requestStats {
	return &requestStats{
		codes:    codeTable{vec: m.requests, a: site, b: pool},
		duration: m.duration.WithLabelValues(site, pool),
	}
}

// backendStats are the cached series of one (pool, backend).
type backendStats struct {
	codes                                      codeTable
	connect, timeout, protocol, health, status prometheus.Counter
}

func (m *Metrics) backendStats(pool, backend string) *backendStats {
	return &backendStats{
		codes:    codeTable{vec: m.backendRequests, a: pool, b: backend},
		connect:  m.backendFailures.WithLabelValues(pool, backend, reasonConnect),
		timeout:  m.backendFailures.WithLabelValues(pool, backend, reasonTimeout),
		protocol: m.backendFailures.WithLabelValues(pool, backend, reasonProtocol),
		health:   m.backendFailures.WithLabelValues(pool, backend, reasonHealth),
		status:   m.backendFailures.WithLabelValues(pool, backend, reasonStatus),
	}
}

// deleteBackend removes the series of a backend that left its pool.
func (m *Metrics) deleteBackend(pool, backend string) {
	l := prometheus.Labels{"pool": pool, "backend": backend}
	m.backendRequests.DeletePartialMatch(l)
	m.backendFailures.DeletePartialMatch(l)
}

// poolStats are the cached queue series of one pool.
type poolStats struct {
	queued        prometheus.Gauge
	full, timeout prometheus.Counter
}

func (m *Metrics) poolStats(pool string) *poolStats {
	return &poolStats{
		queued:  m.queued.WithLabelValues(pool),
		full:    m.queueRejected.WithLabelValues(pool, queueFull),
		timeout: m.queueRejected.WithLabelValues(pool, queueTimeout),
	}
}

// deletePool removes the series of a pool that left the State.
func (m *Metrics) deletePool(pool string) {
	l := prometheus.Labels{"pool": pool}
	m.queued.DeletePartialMatch(l)
	m.queueRejected.DeletePartialMatch(l)
}

func (s *backendStats) failure(reason string) prometheus.Counter {
	switch reason {
	case reasonConnect:
		return s.connect
	case reasonTimeout:
		return s.timeout
	case reasonHealth:
		return s.health
	case reasonStatus:
		return s.status
	default:
		return s.protocol
	}
}

// upCollector reports edge_backend_up from the live handlers at scrape time,
// so the value follows ejections as they expire and the backends of a closed
// handler disappear.
type upCollector struct {
	desc *prometheus.Desc
	mu   sync.Mutex
	live []*Handler // oldest first
}

func (c *upCollector) add(h *Handler) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.live = append(c.live, h)
}

func (c *upCollector) remove(h *Handler) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.live = slices.DeleteFunc(c.live, func(x *Handler) bool { return x == h })
}

// Describe implements prometheus.Collector.
func (c *upCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *upCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	live := slices.Clone(c.live)
	c.mu.Unlock()
	type key struct{ pool, backend string }
	seen := make(map[key]bool)
	for _, h := range slices.Backward(live) {
		for _, p := range h.poolList {
			for _, u := range p.upstreams {
				k := key{p.name, u.name}
				if seen[k] {
					continue
				}
				seen[k] = true
				v := 0.0
				if u.up() {
					v = 1
				}
				ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, v, p.name, u.name)
			}
		}
	}
}

var _ prometheus.Collector = (*upCollector)(nil)
