package export

import (
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the export series. The names are a contract (DESIGN.md):
//
//	edge_export_total{target,result}                      attempts, result success|failure
//	edge_export_last_success_timestamp_seconds{target,name}
//	edge_export_pending{target}                           certificates not delivered yet
//
// A nil *Metrics counts nothing; methods are safe for concurrent use.
type Metrics struct {
	total    *prometheus.CounterVec
	last     *prometheus.GaugeVec
	pendingG *prometheus.GaugeVec

	mu    sync.Mutex
	known map[string]bool // targets of the last plan
}

// NewMetrics creates the export metrics and registers them with reg (nil:
// none registered, for tests).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		total: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_export_total",
			Help: "Deliveries of a certificate to an export target, by target and result (success, failure).",
		}, []string{"target", "result"}),
		last: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "edge_export_last_success_timestamp_seconds",
			Help: "When the certificate of name was last delivered to target (by any edge of the farm).",
		}, []string{"target", "name"}),
		pendingG: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "edge_export_pending",
			Help: "Certificates whose newest version the target does not have yet.",
		}, []string{"target"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.total, m.last, m.pendingG} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering export metrics: %w", err)
		}
	}
	return m, nil
}

// targets sets up the series of a plan: both results of every target exist
// from the start (so rate() and alerts see them), series of removed
// targets go.
func (m *Metrics) targets(p Plan) {
	if m == nil {
		return
	}
	keep := map[string]bool{}
	for _, t := range p.Targets {
		keep[t.Name] = true
		m.total.WithLabelValues(t.Name, "success")
		m.total.WithLabelValues(t.Name, "failure")
		m.pendingG.WithLabelValues(t.Name)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for t := range m.known {
		if !keep[t] {
			l := prometheus.Labels{"target": t}
			m.total.DeletePartialMatch(l)
			m.last.DeletePartialMatch(l)
			m.pendingG.DeletePartialMatch(l)
		}
	}
	m.known = keep
}

func (m *Metrics) result(target, result string) {
	if m != nil {
		m.total.WithLabelValues(target, result).Inc()
	}
}

func (m *Metrics) delivered(target, name string, at time.Time) {
	if m != nil && !at.IsZero() {
		m.last.WithLabelValues(target, name).Set(float64(at.Unix()))
	}
}

func (m *Metrics) pending(byTarget map[string]int) {
	if m == nil {
		return
	}
	for t, n := range byTarget {
		m.pendingG.WithLabelValues(t).Set(float64(n))
	}
}
