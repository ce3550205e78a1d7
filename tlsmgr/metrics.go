package tlsmgr

import (
	"context"
	"errors"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zapcore"
)

// Metrics are the counters tlsmgr updates. Make them once per process with
// NewMetrics; a nil *Metrics records nothing. Safe for concurrent use.
type Metrics struct {
	challenges *prometheus.CounterVec
	orders     *prometheus.CounterVec
	handshakes *prometheus.CounterVec
	decisions  *prometheus.CounterVec
}

// NewMetrics registers edge_acme_orders_total and edge_tls_handshakes_total.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		challenges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_acme_challenges_total",
			Help: "ACME challenges this instance attempted, by type (http-01, tls-alpn-01, dns-01) and result (success, failure).",
		}, []string{"type", "result"}),
		orders: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_acme_orders_total",
			Help: "ACME orders this instance completed, by CA directory URL and result (success, failure); with several CAs, each CA tried counts: a failure at the first then a success at the second.",
		}, []string{"issuer", "result"}),
		handshakes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_tls_handshakes_total",
			Help: "TLS handshakes on the HTTPS listener by result (ok, no_certificate, no_config).",
		}, []string{"result"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_on_demand_decisions_total",
			Help: "On-demand TLS decisions for names no site lists, by result (allowed, ask_yes, refused, ask_failed, rate_limited).",
		}, []string{"result"}),
	}
	for _, c := range []prometheus.Collector{m.challenges, m.orders, m.handshakes, m.decisions} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	// Expose zeros so rate() and alerts work before the first event.
	m.handshakes.WithLabelValues("ok")
	m.handshakes.WithLabelValues("no_certificate")
	return m, nil
}

// initOrders exposes zero counters for a CA so that increase() and alerts
// see the first failure after a start.
func (m *Metrics) initOrders(issuer string) {
	if m != nil {
		m.orders.WithLabelValues(issuer, "success")
		m.orders.WithLabelValues(issuer, "failure")
	}
}

func (m *Metrics) challenge(typ, result string) {
	if m != nil && typ != "" {
		m.challenges.WithLabelValues(typ, result).Inc()
	}
}

func (m *Metrics) order(issuer, result string) {
	if m != nil {
		m.orders.WithLabelValues(issuer, result).Inc()
	}
}

func (m *Metrics) decision(result string) {
	if m != nil {
		m.decisions.WithLabelValues(result).Inc()
	}
}

func (m *Metrics) handshake(result string) {
	if m != nil {
		m.handshakes.WithLabelValues(result).Inc()
	}
}

var (
	descNotAfter = prometheus.NewDesc("edge_certificate_not_after_timestamp_seconds",
		"Expiry of the certificate serving each managed name.", []string{"name", "issuer"}, nil)
	descNotBefore = prometheus.NewDesc("edge_certificate_not_before_timestamp_seconds",
		"Start of validity of the certificate serving each managed name.", []string{"name", "issuer"}, nil)
	descRenewal = prometheus.NewDesc("edge_certificate_renewal_timestamp_seconds",
		"When renewal of each managed name's certificate is planned: ARI's selected time, the renew_at share of the lifetime or the margin before expiry, whichever is first; after a failed order, the next retry.", []string{"name"}, nil)
	descReady = prometheus.NewDesc("edge_certificate_ready",
		"1 when the name has an unexpired certificate loaded, else 0.", []string{"name"}, nil)
)

var _ prometheus.Collector = (*Manager)(nil)

// Describe implements prometheus.Collector.
func (m *Manager) Describe(ch chan<- *prometheus.Desc) {
	ch <- descNotAfter
	ch <- descNotBefore
	ch <- descRenewal
	ch <- descReady
}

// Collect implements prometheus.Collector: one series per configured name,
// read from the certificate cache at scrape time, so a renewed certificate
// replaces its series and a removed name disappears.
func (m *Manager) Collect(ch chan<- prometheus.Metric) {
	for _, st := range m.Certificates() {
		name := st.Name
		ready := 0.0
		if !st.NotAfter.IsZero() {
			if st.State != StateExpired {
				ready = 1
			}
			ch <- prometheus.MustNewConstMetric(descNotAfter, prometheus.GaugeValue, float64(st.NotAfter.Unix()), name, st.Issuer)
			ch <- prometheus.MustNewConstMetric(descNotBefore, prometheus.GaugeValue, float64(st.NotBefore.Unix()), name, st.Issuer)
			renew := st.RenewalAt
			if st.NextRetry.After(renew) {
				renew = st.NextRetry // failed: the next try is the plan
			}
			ch <- prometheus.MustNewConstMetric(descRenewal, prometheus.GaugeValue, float64(renew.Unix()), name)
		}
		ch <- prometheus.MustNewConstMetric(descReady, prometheus.GaugeValue, ready, name)
	}
}

// msgIssuerFailed is what certmagic v0.25.6 logs (config.go, obtainCert
// and renewCert) each time one issuer of a config's list fails to issue,
// before it tries the next; its "issuer" field is the issuer key.
const msgIssuerFailed = "could not get certificate from issuer"

// issuerFailCore counts each failure certmagic logs at an issuer (the
// failure of one CA in the list, whether or not the next one issues),
// at any log level; work canceled by a reload or shutdown is not counted.
type issuerFailCore struct {
	zapcore.Core
	fail func(issuerKey string)
}

func (c issuerFailCore) With(f []zapcore.Field) zapcore.Core {
	return issuerFailCore{c.Core.With(f), c.fail}
}

func (c issuerFailCore) Check(ent zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if ent.Message == msgIssuerFailed {
		ce = ce.AddCore(ent, failCounter{c.fail})
	}
	return c.Core.Check(ent, ce)
}

// failCounter is the core that only counts issuerFailCore's entries.
type failCounter struct{ fail func(string) }

func (failCounter) Enabled(zapcore.Level) bool                                            { return true }
func (f failCounter) With([]zapcore.Field) zapcore.Core                                   { return f }
func (failCounter) Check(_ zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry { return ce }
func (failCounter) Sync() error                                                           { return nil }

func (f failCounter) Write(_ zapcore.Entry, fields []zapcore.Field) error {
	var key string
	for _, fl := range fields {
		switch {
		case fl.Key == "issuer" && fl.Type == zapcore.StringType:
			key = fl.String
		case fl.Type == zapcore.ErrorType:
			if err, ok := fl.Interface.(error); ok && (errors.Is(err, context.Canceled) || strings.Contains(err.Error(), context.Canceled.Error())) {
				return nil
			}
		}
	}
	f.fail(key)
	return nil
}
