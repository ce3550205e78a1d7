package proxy

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestReplayable(t *testing.T) {
	body := func() io.ReadCloser { return io.NopCloser(strings.NewReader("x")) }
	tests := []struct {
		name   string
		method string
		body   io.ReadCloser
		length int64
		want   bool
	}{
		{"GET no body", "GET", nil, 0, true},
		{"GET NoBody", "GET", http.NoBody, 0, true},
		// What Go's HTTP/2 server hands over for a GET: a body, length 0.
		{"HTTP/2 GET", "GET", body(), 0, true},
		{"GET with a body of unknown length", "GET", body(), -1, false},
		{"PUT with a body", "PUT", body(), 1, false},
		{"POST never", "POST", nil, 0, false},
		{"PATCH never", "PATCH", nil, 0, false},
		{"DELETE no body", "DELETE", nil, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := http.NewRequest(tc.method, "http://a.test/", nil)
			r.Body, r.ContentLength, r.GetBody = tc.body, tc.length, nil
			if got := replayable(r); got != tc.want {
				t.Fatalf("replayable = %v, want %v", got, tc.want)
			}
		})
	}
}
