// Package challenge answers ACME challenges: the HTTP-01 handler that sits
// in front of everything on edge's plain-HTTP listener (tokens this
// instance placed, tokens another instance placed in shared storage, tokens
// a peer knows), the DNS-01 providers, and preflight checks.
package challenge

import (
	"log/slog"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// PathPrefix is where ACME HTTP-01 requests arrive (RFC 8555 §8.3).
const PathPrefix = "/.well-known/acme-challenge/"

// Solver answers an HTTP-01 request it knows the token for and reports the
// source ("local", "storage"). tlsmgr.Manager implements it.
type Solver interface {
	HandleHTTPChallenge(w http.ResponseWriter, r *http.Request) (handled bool, source string)
}

// Fallback is asked when the Solver does not know a token; it reports
// whether it answered. Peers implements it.
type Fallback interface {
	ServeChallenge(w http.ResponseWriter, r *http.Request) bool
}

// HTTPOptions configure NewHTTPHandler. Solver is required.
type HTTPOptions struct {
	Solver Solver
	// Fallback, if non-nil, is asked for tokens the Solver does not know
	// (peers in a cluster without shared storage).
	Fallback Fallback
	Metrics  *Metrics
	Logger   *slog.Logger
	// Node, if set, is sent as X-Edge-Node on challenge-path answers so
	// preflight can tell which edge answered.
	Node string
}

// NewHTTPHandler answers requests under PathPrefix itself, whatever the
// host, and passes everything else to next. A token nobody knows gets 404,
// never a redirect: the CA must see a definite answer.
func NewHTTPHandler(opts HTTPOptions, next http.Handler) http.Handler {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, PathPrefix) {
			next.ServeHTTP(w, r)
			return
		}
		// Only probes learn which edge answered: the name of a node is no
		// business of anyone asking for random tokens.
		if opts.Node != "" && strings.HasPrefix(r.URL.Path, PathPrefix+probePrefix) {
			w.Header().Set(NodeHeader, opts.Node)
		}
		// RFC 8555 section 8.1: a token is base64url. Anything else is no
		// token of ours, and costs no storage lookup.
		if !validToken(strings.TrimPrefix(r.URL.Path, PathPrefix)) {
			opts.Metrics.request("unknown")
			http.Error(w, "unknown challenge token", http.StatusNotFound)
			return
		}
		if ok, source := opts.Solver.HandleHTTPChallenge(w, r); ok {
			opts.Metrics.request(source)
			return
		}
		if opts.Fallback != nil && opts.Fallback.ServeChallenge(w, r) {
			opts.Metrics.request("peer")
			return
		}
		opts.Metrics.request("unknown")
		log.Info("unknown acme challenge token", "host", r.Host, "path", r.URL.Path, "remote", r.RemoteAddr)
		http.Error(w, "unknown challenge token", http.StatusNotFound)
	})
}

// Metrics counts challenge requests; nil records nothing.
type Metrics struct {
	requests *prometheus.CounterVec
}

// NewMetrics registers edge_acme_challenge_requests_total{source}.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{requests: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "edge_acme_challenge_requests_total",
		Help: "HTTP-01 validation requests by where the answer came from (local, storage, peer, unknown).",
	}, []string{"source"})}
	if err := reg.Register(m.requests); err != nil {
		return nil, err
	}
	for _, s := range []string{"local", "storage", "peer", "unknown"} {
		m.requests.WithLabelValues(s)
	}
	return m, nil
}

func (m *Metrics) request(source string) {
	if m != nil {
		m.requests.WithLabelValues(source).Inc()
	}
}
