package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
)

// Sentinel errors of the package.
var (
	// ErrNoUpstream means no backend of the pool was available; it maps to
	// 503 Service Unavailable.
	ErrNoUpstream = errors.New("no available backend")
	// ErrNoBackend means a pool or backend named to Drain does not exist.
	ErrNoBackend = errors.New("no such pool or backend")
	// ErrQueueFull means every available backend of the pool was at its
	// MaxConns and the pool's queue was full. It wraps ErrNoUpstream: 503.
	ErrQueueFull = fmt.Errorf("%w: every backend at max_conns and the queue full", ErrNoUpstream)
	// ErrQueueTimeout means a request waited QueueTimeout in the pool's
	// queue without a backend dropping below its MaxConns. It wraps
	// ErrNoUpstream: 503.
	ErrQueueTimeout = fmt.Errorf("%w: queue timeout, every backend at max_conns", ErrNoUpstream)
	// ErrInvalidConfig wraps every problem New finds in a Config.
	ErrInvalidConfig = errors.New("invalid proxy config")
	// errBrokenPool is newSite's answer for a route to a pool whose own
	// error New has already reported.
	errBrokenPool = errors.New("route to a pool that failed")
)

// StatusClientClosedRequest is the non-standard status (nginx's 499) recorded
// in metrics and logs when the client went away before the backend answered.
// It is never sent.
const StatusClientClosedRequest = 499

// Failure reasons, the values of the reason label of
// edge_backend_failures_total.
const (
	reasonConnect  = "connect"
	reasonTimeout  = "timeout"
	reasonProtocol = "protocol"
	reasonStatus   = "status" // an answer retry_on retries (502, 503, 504)
	reasonHealth   = "health_check"
)

// StatusForError maps an error from proxying a request to the status code
// answered to the client. It is the one place where that mapping lives:
//
//   - ErrNoUpstream (ErrQueueFull, ErrQueueTimeout): 503
//   - client canceled (context.Canceled): 499, which the caller logs but does
//     not send
//   - request body over the route's limit (*http.MaxBytesError): 413
//   - dial timeout, response header timeout, context deadline: 504
//   - anything else (refused, reset, bad response): 502
func StatusForError(err error) int {
	var mbe *http.MaxBytesError
	var ne net.Error
	var rse *retryStatusError
	switch {
	case err == nil:
		return http.StatusOK
	case errors.As(err, &rse):
		return rse.code
	case errors.Is(err, ErrNoUpstream):
		return http.StatusServiceUnavailable
	case errors.Is(err, context.Canceled):
		return StatusClientClosedRequest
	case errors.As(err, &mbe):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout
	case errors.As(err, &ne) && ne.Timeout():
		return http.StatusGatewayTimeout
	default:
		return http.StatusBadGateway
	}
}

// retryStatusError is an answer of the backend's that RetryOn.Statuses
// lists, turned into an error so that the request is tried on another
// backend (its body discarded). It is made only while another try is
// allowed.
type retryStatusError struct{ code int }

func (e *retryStatusError) Error() string { return fmt.Sprintf("backend answered %d", e.code) }

// retryStatusKey is the context key of the status codes a request may be
// retried on, set by forward only while another try is allowed.
type retryStatusKey struct{}

// isDialError reports whether err is a failure to connect to the backend, so
// that nothing of the request was sent and it may be retried elsewhere.
func isDialError(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "dial"
}

// failureReason classifies a proxy error as a backend failure. It returns ""
// for errors that are not the backend's fault (client gone, body too large).
func failureReason(err error) string {
	var rse *retryStatusError
	if errors.As(err, &rse) {
		return reasonStatus
	}
	switch StatusForError(err) {
	case StatusClientClosedRequest, http.StatusRequestEntityTooLarge, http.StatusServiceUnavailable:
		return ""
	case http.StatusGatewayTimeout:
		return reasonTimeout
	}
	if isDialError(err) {
		return reasonConnect
	}
	return reasonProtocol
}

// countsAsPassiveFailure reports whether a failure of this reason counts
// toward passive ejection: failures to connect and timeouts do, a backend
// that answers garbage does not (it is up, and retrying elsewhere would not
// be safe anyway).
func countsAsPassiveFailure(reason string) bool {
	return reason == reasonConnect || reason == reasonTimeout
}
