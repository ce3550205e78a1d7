// Package admin serves edge's admin listener: the status page at / (embedded,
// ui/), /metrics, /healthz, /readyz, the JSON API under /api/ (with the
// recent events of Events) and the browser login at /login. It knows nothing
// of certmagic or the proxy: cmd/edge plugs in the functions that answer.
package admin

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

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
	Token func() string
	// Events is what GET /api/events lists, newest first (unless API has
	// an "events" entry); nil lists none.
	Events *Events
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
//
// With a token, everything but /healthz, /readyz, the status page's static
// files (/ and /ui/, which hold no data) and /login, /logout, /session needs
// either "Authorization: Bearer TOKEN" or the cookie of a browser session
// made by POST /login. A state-changing request that is not made with the
// bearer token also needs RequestHeader.
func New(opts Options) http.Handler {
	a := &handler{opts: opts}
	mux := http.NewServeMux()
	const maxReadyProblems = 50
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
		body := map[string]any{"ready": ready, "problems": problems}
		if len(problems) > maxReadyProblems {
			// While thousands of certificates load, /readyz is polled
			// often: the first ones and a count say enough.
			body["problems"] = problems[:maxReadyProblems]
			body["more_problems"] = len(problems) - maxReadyProblems
		}
		writeJSON(w, code, body)
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
	if _, taken := opts.API["events"]; !taken {
		mux.HandleFunc("GET /api/events", func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusOK, opts.Events.List())
		})
	}
	mux.HandleFunc("GET /api/{$}", func(w http.ResponseWriter, r *http.Request) {
		paths := []string{"/", "/metrics", "/healthz", "/readyz", "/debug/pprof/", "/api/events", "/login", "/logout", "/session"}
		for name := range opts.API {
			paths = append(paths, "/api/"+name)
		}
		slices.Sort(paths)
		writeJSON(w, http.StatusOK, map[string]any{"service": "edge", "endpoints": slices.Compact(paths)})
	})
	// Go's profiles, as Caddy's admin serves them: behind the token like
	// everything else here (go tool pprof http://127.0.0.1:9180/debug/pprof/profile).
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	a.routeUI(mux)
	mux.HandleFunc("POST /login", a.login)
	mux.HandleFunc("POST /logout", a.logout)
	mux.HandleFunc("GET /session", a.session)
	a.mux = mux
	return a
}

// handler is the admin handler: authentication in front of mux.
type handler struct {
	opts     Options
	mux      *http.ServeMux
	sessions sessions
	failed   failedLogins
}

func (a *handler) token() string {
	if a.opts.Token == nil {
		return ""
	}
	return a.opts.Token()
}

// public reports whether r may be answered without credentials.
func public(r *http.Request) bool {
	switch p := r.URL.Path; {
	case p == "/healthz", p == "/readyz", p == "/login", p == "/logout", p == "/session":
		return true
	case r.Method == http.MethodGet || r.Method == http.MethodHead:
		return p == "/" || strings.HasPrefix(p, "/ui/")
	}
	return false
}

func (a *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	token := a.token()
	bearer := token != "" && tokenMatches(r.Header.Get("Authorization"), "Bearer "+token)
	if token != "" && !bearer && !public(r) && !a.sessions.valid(r, token, time.Now()) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="edge"`)
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "missing or wrong bearer token (or no browser session: POST /login)"})
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
	default:
		// A session cookie is sent by the browser itself, so it proves no
		// more than no token at all: a state-changing request needs the
		// header unless it carries the bearer token.
		if !bearer && r.Header.Get(RequestHeader) == "" {
			writeJSON(w, http.StatusForbidden, map[string]string{"error": "state-changing requests need the " + RequestHeader + " header (or the bearer token)"})
			return
		}
	}
	a.mux.ServeHTTP(w, r)
}

// login is POST /login with the form field token: a right token makes a
// browser session and sets its cookie.
func (a *handler) login(w http.ResponseWriter, r *http.Request) {
	token := a.token()
	if token == "" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "no admin token is configured: there is nothing to log in to"})
		return
	}
	if blocked, until := a.failed.blocked(time.Now()); blocked {
		w.Header().Set("Retry-After", strconv.Itoa(int(time.Until(until).Seconds())+1))
		writeJSON(w, http.StatusTooManyRequests, map[string]string{"error": "too many wrong tokens: try again later (the bearer token still works)"})
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "reading the login form: " + err.Error()})
		return
	}
	if !tokenMatches(r.PostForm.Get("token"), token) {
		a.failed.add(time.Now())
		if a.opts.Logger != nil {
			a.opts.Logger.Warn("admin login refused: wrong token", "remote", r.RemoteAddr)
		}
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "wrong token"})
		return
	}
	id, err := a.sessions.create(token, time.Now())
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "making a session: " + err.Error()})
		return
	}
	http.SetCookie(w, sessionCookie(r, id, int(sessionTTL/time.Second)))
	writeJSON(w, http.StatusOK, map[string]any{"logged_in": true})
}

// logout is POST /logout: the session ends and its cookie is deleted.
func (a *handler) logout(w http.ResponseWriter, r *http.Request) {
	a.sessions.end(r)
	http.SetCookie(w, sessionCookie(r, "", -1))
	writeJSON(w, http.StatusOK, map[string]any{"logged_in": false})
}

// session is GET /session: whether a token is required and whether this
// request is authorised (by bearer, session, or because no token is set).
func (a *handler) session(w http.ResponseWriter, r *http.Request) {
	token := a.token()
	ok := token == "" || tokenMatches(r.Header.Get("Authorization"), "Bearer "+token) ||
		a.sessions.valid(r, token, time.Now())
	writeJSON(w, http.StatusOK, map[string]any{"token_required": token != "", "authorized": ok})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
