package proxy

import (
	"bufio"
	"net"
	"net/http"
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
}

var _ http.Hijacker = (*recorder)(nil)

// WriteHeader implements http.ResponseWriter. Informational responses
// (1xx but 101) pass through without counting as the final status.
func (r *recorder) WriteHeader(code int) {
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		r.ResponseWriter.WriteHeader(code)
		return
	}
	if r.wrote {
		return
	}
	r.status, r.wrote = code, true
	r.setHSTS()
	r.ResponseWriter.WriteHeader(code)
}

// Write implements http.ResponseWriter.
func (r *recorder) Write(b []byte) (int, error) {
	if !r.wrote {
		r.status, r.wrote = http.StatusOK, true
		r.setHSTS()
	}
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
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
