package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// tryTimeoutError is the failure of a try whose backend sent no response
// headers within PoolConfig.TryTimeout. It is a timeout (net.Error), so it
// maps to 504 and is retried when RetryOn.Timeout is set.
type tryTimeoutError struct{ d time.Duration }

func (e *tryTimeoutError) Error() string {
	return fmt.Sprintf("no response headers within the try timeout (%s)", e.d)
}

// Timeout implements net.Error.
func (e *tryTimeoutError) Timeout() bool { return true }

// Temporary implements net.Error.
func (e *tryTimeoutError) Temporary() bool { return true }

// tryKey is the context key of a try's *tryTimer.
type tryKey struct{}

// tryTimer cancels a try that has no response headers within the pool's
// TryTimeout; the response's arrival (ModifyResponse) stops it.
type tryTimer struct {
	timer  *time.Timer
	ctx    context.Context
	cancel context.CancelCauseFunc
	err    *tryTimeoutError
}

// tryRequest returns the request for a try after which another is
// allowed: with the status codes RetryOn retries (see retryStatusKey),
// and, with TryTimeout and RetryOn.Timeout, a timer that cancels the try
// when no response headers came in time. The caller must call done on the
// timer (nil-safe) after the try. This path allocates: only pools with
// status retries or a try timeout take it.
func (p *pool) tryRequest(r *http.Request) (*http.Request, *tryTimer) {
	ctx := r.Context()
	if len(p.retryOn.Statuses) > 0 {
		ctx = context.WithValue(ctx, retryStatusKey{}, p.retryOn.Statuses)
	}
	if p.tryTimeout <= 0 || !p.retryOn.Timeout {
		return r.WithContext(ctx), nil
	}
	tt := &tryTimer{err: &tryTimeoutError{d: p.tryTimeout}}
	tt.ctx, tt.cancel = context.WithCancelCause(ctx)
	tt.timer = time.AfterFunc(p.tryTimeout, func() { tt.cancel(tt.err) })
	return r.WithContext(context.WithValue(tt.ctx, tryKey{}, tt)), tt
}

// mayTry reports whether another try is allowed now: a retry is due, and
// the pool's RetryWindow, counted from the first try's start, is not over.
func (p *pool) mayTry(attempt int, candidates int, start time.Time) bool {
	return attempt < p.retries && candidates > 1 && (p.retryWindow <= 0 || time.Since(start) < p.retryWindow)
}

// answered is ModifyResponse's part: the headers came; it returns the try
// timeout error when the timer fired first.
func (tt *tryTimer) answered() error {
	if tt.timer.Stop() {
		return nil
	}
	return tt.err
}

// done stops the timer after the try and, when it cut the try (and not the
// client), makes the try's error the try timeout rather than the
// cancellation the transport reports. Safe on nil.
func (tt *tryTimer) done(rec *recorder, client *http.Request) {
	if tt == nil {
		return
	}
	tt.timer.Stop()
	if rec.err != nil && client.Context().Err() == nil && errors.Is(context.Cause(tt.ctx), tt.err) {
		rec.err = tt.err
	}
	tt.cancel(nil)
}

// tryTimerOf returns the try timer of the request res answers, or nil.
func tryTimerOf(res *http.Response) *tryTimer {
	tt, _ := res.Request.Context().Value(tryKey{}).(*tryTimer)
	return tt
}

// retriable reports whether r may be tried again after failing with err:
// an idempotent request that can be replayed (see replayable), or any
// request without a body whose try failed to connect, since then nothing
// reached the backend (RFC 9110, section 9.2.2, asks no more). A request
// body is consumed by the try, so a POST with one is not tried again.
func retriable(r *http.Request, err error) bool {
	if replayable(r) {
		return true
	}
	return isDialError(err) && (r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0)
}
