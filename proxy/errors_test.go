package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"syscall"
	"testing"
)

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "timeout awaiting response headers" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestStatusForError(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	dialTimeout := &net.OpError{Op: "dial", Net: "tcp", Err: timeoutErr{}}
	reset := &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
	tests := []struct {
		name       string
		err        error
		wantStatus int
		wantReason string
		wantDial   bool
	}{
		{"none available", ErrNoUpstream, 503, "", false},
		{"none available wrapped", fmt.Errorf("pool web: %w", ErrNoUpstream), 503, "", false},
		{"client canceled", context.Canceled, 499, "", false},
		{"client canceled wrapped", fmt.Errorf("read: %w", context.Canceled), 499, "", false},
		{"body too large", &http.MaxBytesError{Limit: 10}, 413, "", false},
		{"deadline", context.DeadlineExceeded, 504, reasonTimeout, false},
		{"dial timeout", dialTimeout, 504, reasonTimeout, true},
		{"response header timeout", timeoutErr{}, 504, reasonTimeout, false},
		{"refused", refused, 502, reasonConnect, true},
		{"reset", reset, 502, reasonProtocol, false},
		{"other", errors.New("malformed HTTP response"), 502, reasonProtocol, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := StatusForError(tc.err); got != tc.wantStatus {
				t.Errorf("StatusForError = %d, want %d", got, tc.wantStatus)
			}
			if got := failureReason(tc.err); got != tc.wantReason {
				t.Errorf("failureReason = %q, want %q", got, tc.wantReason)
			}
			if got := isDialError(tc.err); got != tc.wantDial {
				t.Errorf("isDialError = %v, want %v", got, tc.wantDial)
			}
		})
	}
}
