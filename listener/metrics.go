package listener

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics holds the listeners' Prometheus collectors. Create it once with
// NewMetrics and pass it to every Wrap; each listener counts under its
// Options.Name. The metric names are a contract:
//
//	edge_connections_accepted_total{listener}
//	edge_connections_refused_total{listener,reason}
//	edge_connections_open{listener}
//
// accepted counts the connections handed to Accept (a connection refused
// later for an untrusted PROXY header counts in both); open counts those
// not yet closed. The reasons are max_conns_per_ip, proxy_header_missing,
// proxy_header_untrusted, proxy_header_invalid, proxy_header_timeout and
// proxy_pending_full. The zero value is not usable; a *Metrics is safe for
// concurrent use.
type Metrics struct {
	accepted *prometheus.CounterVec
	refused  *prometheus.CounterVec
	open     *prometheus.GaugeVec
}

// NewMetrics creates the collectors and registers them with reg. A nil reg
// registers nothing (for tests).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		accepted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_connections_accepted_total",
			Help: "Connections handed to TLS or HTTP, by listener.",
		}, []string{"listener"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_connections_refused_total",
			Help: "Connections closed at accept with nothing written, by listener and reason.",
		}, []string{"listener", "reason"}),
		open: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "edge_connections_open",
			Help: "Connections accepted and not yet closed, by listener.",
		}, []string{"listener"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.accepted, m.refused, m.open} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering listener metrics: %w", err)
		}
	}
	return m, nil
}

// reason is why a connection is refused.
type reason uint8

const (
	reasonNone reason = iota
	reasonMaxConns
	reasonMissing
	reasonUntrusted
	reasonInvalid
	reasonTimeout
	reasonPendingFull
	numReasons
)

var reasonNames = [numReasons]string{
	reasonNone:        "",
	reasonMaxConns:    "max_conns_per_ip",
	reasonMissing:     "proxy_header_missing",
	reasonUntrusted:   "proxy_header_untrusted",
	reasonInvalid:     "proxy_header_invalid",
	reasonTimeout:     "proxy_header_timeout",
	reasonPendingFull: "proxy_pending_full",
}

func (r reason) String() string { return reasonNames[r] }

// stats are one listener's series, resolved once so that accept does no
// label lookup. A nil *stats counts nothing.
type stats struct {
	accepted prometheus.Counter
	refusals [numReasons]prometheus.Counter
	open     prometheus.Gauge
}

func (m *Metrics) stats(name string) *stats {
	if m == nil {
		return nil
	}
	s := &stats{
		accepted: m.accepted.WithLabelValues(name),
		open:     m.open.WithLabelValues(name),
	}
	for r := reasonNone + 1; r < numReasons; r++ {
		s.refusals[r] = m.refused.WithLabelValues(name, r.String())
	}
	return s
}

func (s *stats) refused(r reason) {
	if s != nil && r != reasonNone {
		s.refusals[r].Inc()
	}
}

func (s *stats) opened() {
	if s != nil {
		s.accepted.Inc()
		s.open.Inc()
	}
}

func (s *stats) closed() {
	if s != nil {
		s.open.Dec()
	}
}
