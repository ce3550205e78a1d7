package proxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"
)

// recorder wraps the client's ResponseWriter for one request: it notes the
// status and the bytes written, and receives the proxy error (err) that the
// ReverseProxy's ErrorHandler hands over instead of answering. Recorders are
// pooled; one serves a single request at a time.
type recorder struct {
	http.ResponseWriter
	status int
	wrote  bool // a final status was sent (or the connection hijacked)
	bytes  int64
	err    error
	up     *Upstream // the backend tried last
	hsts   string    // the site's Strict-Transport-Security, "" for none
	// writeTO, when set, moves the connection's write deadline on at every
	// write (HTTP/1.x).
	writeTO time.Duration
	body    *watchedBody // the request body, nil when there is none
	client  string       // the client's address (Handler.clientAddr)
	// req and the rules change the response's header when the status goes
	// out (the site's, then the route's).
	req                   *http.Request
	siteRules, routeRules *headerRules
	upDur                 time.Duration // time spent with backends, all tries
	// own holds the fields edge put in the response before the backend
	// answered (Connection: close, a sticky cookie), nil when none: a 1xx
	// clears the header (ReverseProxy's Got1xxResponse, got1xx), and the
	// final answer gets them back. informed: a 1xx came in the current
	// try, after own was taken.
	own      http.Header
	informed bool
}

// keepOwn notes the fields edge has put in the response so far, before a
// try sends the request to a backend. When a 1xx of the try before cleared
// them, it first puts them back (forward has taken the failed backend's
// sticky cookie out of both; the retry's pick may have set another).
func (r *recorder) keepOwn() {
	r.restoreOwn()
	r.informed = false
	if h := r.ResponseWriter.Header(); len(h) > 0 {
		r.own = h.Clone()
	} else {
		r.own = nil
	}
}

// restoreOwn puts back the fields of edge's that a 1xx cleared, before the
// backend's values, where they were before it: for the final answer, or
// before a retry's snapshot (keepOwn).
func (r *recorder) restoreOwn() {
	if !r.informed || r.own == nil {
		return
	}
	h := r.ResponseWriter.Header()
	for k, vv := range r.own {
		h[k] = append(vv, h[k]...)
	}
	r.own = nil
}

// withoutOwn takes edge's fields out of the header of a try's first 1xx:
// they are for the final answer (restoreOwn), not for an interim one. The
// 1xx's own values were added after them (got1xx, ReverseProxy's
// Got1xxResponse), and the header is cleared after each 1xx, so they are
// the first values of their keys in the first 1xx alone.
func (r *recorder) withoutOwn() {
	h := r.ResponseWriter.Header()
	for k, own := range r.own {
		if vv := h[k]; len(vv) > len(own) {
			h[k] = vv[len(own):]
		} else {
			delete(h, k)
		}
	}
}

// clientAddr implements clientAddresser for IPHash.
func (r *recorder) clientAddr() string { return r.client }

var _ http.Hijacker = (*recorder)(nil)

// WriteHeader implements http.ResponseWriter. Informational responses
// (1xx but 101) pass through without counting as the final status.
func (r *recorder) WriteHeader(code int) {
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		first := !r.informed
		r.informed = true
		// RFC 9110, section 15.2: a server MUST NOT send a 1xx response to
		// an HTTP/1.0 client.
		if !r.wrote && r.req.ProtoAtLeast(1, 1) {
			if first {
				r.withoutOwn()
			}
			r.ResponseWriter.WriteHeader(code)
		}
		return
	}
	if r.wrote {
		return
	}
	r.status, r.wrote = code, true
	r.restoreOwn()
	r.setHSTS()
	r.applyRules()
	if r.writeTO > 0 {
		// The backend may have taken longer than the timeout to answer:
		// the client's clock starts now.
		setWriteDeadline(r.ResponseWriter, time.Now().Add(r.writeTO))
	}
	r.ResponseWriter.WriteHeader(code)
}

// Write implements http.ResponseWriter.
func (r *recorder) Write(b []byte) (int, error) {
	if !r.wrote {
		r.status, r.wrote = http.StatusOK, true
		r.restoreOwn()
		r.setHSTS()
		r.applyRules()
	}
	if r.writeTO > 0 {
		setWriteDeadline(r.ResponseWriter, time.Now().Add(r.writeTO))
	}
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

// applyRules applies the response header rules, once, as the status goes out.
func (r *recorder) applyRules() {
	if r.siteRules == nil && r.routeRules == nil {
		return
	}
	h := r.ResponseWriter.Header()
	r.siteRules.apply(h, r.req, r.client)
	r.routeRules.apply(h, r.req, r.client)
}

// setHSTS makes the site's Strict-Transport-Security the only one of the
// response. ReverseProxy adds the backend's header to the one ServeHTTP set
// first (RFC 6797, section 8.1: a browser heeds only the first), and a 1xx
// response clears them all. A 101 goes out through Hijack, not here: it may
// carry both, edge's first.
func (r *recorder) setHSTS() {
	if r.hsts == "" {
		return
	}
	h := r.ResponseWriter.Header()
	if v := h[hstsHeader]; len(v) > 0 && v[0] == r.hsts {
		h[hstsHeader] = v[:1]
		return
	}
	h[hstsHeader] = []string{r.hsts}
}

// hstsHeader is the canonical key of Strict-Transport-Security.
const hstsHeader = "Strict-Transport-Security"

// Unwrap lets http.ResponseController reach the connection's writer (Flush,
// deadlines).
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// Hijack takes over the connection for a protocol switch (WebSocket) and
// records it as status 101.
func (r *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(r.ResponseWriter).Hijack()
	if err == nil {
		r.status, r.wrote = http.StatusSwitchingProtocols, true
	}
	return c, brw, err
}

// setWriteDeadline sets the write deadline of the connection (HTTP/1.x) or
// stream (HTTP/2) under w, as http.ResponseController does, without
// allocating. Writers that cannot are left alone.
func setWriteDeadline(w http.ResponseWriter, t time.Time) {
	for {
		switch x := w.(type) {
		case interface{ SetWriteDeadline(time.Time) error }:
			_ = x.SetWriteDeadline(t)
			return
		case interface{ Unwrap() http.ResponseWriter }:
			w = x.Unwrap()
		default:
			return
		}
	}
}

// watchedBody is a request body that remembers whether a read hit the
// server's read deadline (limits.read_timeout) or failed otherwise (a
// malformed chunked body, a connection cut mid-body), so that the proxy
// answers 408 or 400 rather than blaming the backend.
type watchedBody struct {
	io.ReadCloser
	deadline atomic.Bool
	broken   atomic.Bool
}

// Read implements io.Reader.
func (b *watchedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		var tooBig *http.MaxBytesError
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			b.deadline.Store(true)
		case errors.As(err, &tooBig): // 413, from the route's max_body
		default:
			b.broken.Store(true)
		}
	}
	return n, err
}

// malformed reports whether reading the body failed for a reason other
// than its deadline: the client's fault, not the backend's. Safe on nil.
func (b *watchedBody) malformed() bool { return b != nil && b.broken.Load() }

// timedOut reports whether reading the body hit the read deadline. Safe on
// nil.
func (b *watchedBody) timedOut() bool { return b != nil && b.deadline.Load() }
