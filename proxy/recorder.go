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
	r.ResponseWriter.WriteHeader(code)
}

// Write implements http.ResponseWriter.
func (r *recorder) Write(b []byte) (int, error) {
	if !r.wrote {
		r.status, r.wrote = http.StatusOK, true
	}
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

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
