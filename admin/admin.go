// Package admin serves edge's admin listener: /metrics, /healthz, /readyz
// and the JSON API under /api/. It knows nothing of certmagic or the proxy:
// cmd/edge plugs in the functions that answer.
package admin

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/pprof"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Options configure New. Every field may be nil/empty.
type Options struct {
	// Gatherer is what /metrics exposes.
	Gatherer prometheus.Gatherer
	// Ready reports readiness for /readyz and the problems seen (names
	// without a certificate, an unreachable store); problems may be listed
	// while still ready.
	Ready func() (bool, []string)
	// API maps a path under /api/ ("certificates") to a function whose
	// result is written as JSON. An error with StatusError sets the code.
	API map[string]func(*http.Request) (any, error)
	// Token, when non-nil and returning non-empty, is required as
	// "Authorization: Bearer TOKEN" on everything but /healthz and
	// /readyz. It is asked on every request, so a reload that rotates the
	// token takes effect at once.
	Token  func() string
	Logger *slog.Logger
}

// RequestHeader must be set (to any value) on every state-changing request
// (a method other than GET, HEAD or OPTIONS) that carries no bearer token. A
// web page cannot add it to a cross-site request without a CORS preflight,
// which edge never grants, so a page open in a browser on the admin host
// cannot make edge renew or export. edge's CLI sends it.
const RequestHeader = "X-Edge-Admin"

// StatusError is an error carrying the HTTP status to answer with.
type StatusError struct {
	Code int
	Err  error
}

func (e *StatusError) Error() string { return e.Err.Error() }
func (e *StatusError) Unwrap() error { return e.Err }

// New returns the admin handler.
func New(opts Options) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ready, problems := true, []string(nil)
		if opts.Ready != nil {
			ready, problems = opts.Ready()
		}
		code := http.StatusOK
		if !ready {
			code = http.StatusServiceUnavailable
		}
		writeJSON(w, code, map[string]any{"ready": ready, "problems": problems})
	})
	if opts.Gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(opts.Gatherer, promhttp.HandlerOpts{}))
	}
	for name, fn := range opts.API {
		mux.HandleFunc("/api/"+name, func(w http.ResponseWriter, r *http.Request) {
			v, err := fn(r)
			if err != nil {
				code := http.StatusInternalServerError
				var se *StatusError
				if errors.As(err, &se) {
					code = se.Code
				}
				writeJSON(w, code, map[string]string{"error": err.Error()})
				return
			}
			writeJSON(w, http.StatusOK, v)
		})
	}
	// Go's profiles, as Caddy's admin serves them: behind the token like
	// everything else here (go tool pprof http://127.0.0.1:9180/debug/pprof/profile).
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		paths := []string{"/metrics", "/healthz", "/readyz", "/debug/pprof/"}
		for name := range opts.API {
			paths = append(paths, "/api/"+name)
		}
		writeJSON(w, http.StatusOK, map[string]any{"service": "edge", "endpoints": paths})
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token := ""
		if opts.Token != nil {
			token = opts.Token()
		}
		if token != "" && r.URL.Path != "/healthz" && r.URL.Path != "/readyz" &&
			subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), []byte("Bearer "+token)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="edge"`)
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "missing or wrong bearer token"})
			return
		}
		switch r.Method {
		case http.MethodGet, http.MethodHead, http.MethodOptions:
		default:
			if token == "" && r.Header.Get(RequestHeader) == "" {
				writeJSON(w, http.StatusForbidden, map[string]string{"error": "state-changing requests need the " + RequestHeader + " header (or the bearer token)"})
				return
			}
		}
		mux.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
