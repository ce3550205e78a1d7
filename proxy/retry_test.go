package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestRetryOn: a backend that answers 503, or stalls past the response
// header timeout, is retried on the other for GET when RetryOn says so,
// never for POST, and never when RetryOn is empty.
func TestRetryOn(t *testing.T) {
	var badHits, goodHits atomic.Int64
	unavailable := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		badHits.Add(1)
		http.Error(w, "maintenance", http.StatusServiceUnavailable)
	}))
	t.Cleanup(unavailable.Close)
	stall := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		badHits.Add(1)
		select {
		case <-r.Context().Done():
		case <-time.After(2 * time.Second):
		}
	}))
	t.Cleanup(stall.Close)
	good := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		goodHits.Add(1)
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "good")
	}))
	t.Cleanup(good.Close)

	for _, tc := range []struct {
		name    string
		bad     *httptest.Server
		retryOn RetryOn
		method  string
		code    int
		body    string
	}{
		{"503 retried for GET", unavailable, RetryOn{Statuses: []int{502, 503, 504}}, "GET", 200, "good"},
		{"503 not retried for POST", unavailable, RetryOn{Statuses: []int{503}}, "POST", 503, "maintenance\n"},
		{"503 not retried without retry_on", unavailable, RetryOn{}, "GET", 503, "maintenance\n"},
		{"a stall retried for GET", stall, RetryOn{Timeout: true}, "GET", 200, "good"},
		{"a stall not retried for POST", stall, RetryOn{Timeout: true}, "POST", 504, ""},
		{"a stall not retried without timeout", stall, RetryOn{Statuses: []int{503}}, "GET", 504, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			badHits.Store(0)
			goodHits.Store(0)
			cfg := simpleConfig(mustURL(t, tc.bad.URL), mustURL(t, good.URL))
			cfg.Pools[0].Retries, cfg.Pools[0].RetryOn = 1, tc.retryOn
			cfg.Pools[0].Timeouts.ResponseHeader = 300 * time.Millisecond
			h := newHandler(t, cfg) // First: the bad backend is tried first
			w := serve(h, tc.method, "https://example.com/", func(r *http.Request) {
				if tc.method == "POST" {
					r.Body = io.NopCloser(strings.NewReader("form=1"))
					r.ContentLength = 6
				}
			})
			if w.Code != tc.code || (tc.body != "" && w.Body.String() != tc.body) {
				t.Errorf("%d %q, want %d %q", w.Code, w.Body.String(), tc.code, tc.body)
			}
			if badHits.Load() != 1 {
				t.Errorf("the failing backend got %d tries, want 1", badHits.Load())
			}
			wantGood := int64(0)
			if tc.code == 200 {
				wantGood = 1
			}
			if goodHits.Load() != wantGood {
				t.Errorf("the good backend got %d requests, want %d", goodHits.Load(), wantGood)
			}
		})
	}

	t.Run("the last try's answer is the client's", func(t *testing.T) {
		cfg := simpleConfig(mustURL(t, unavailable.URL))
		cfg.Pools[0].Retries, cfg.Pools[0].RetryOn = 2, RetryOn{Statuses: []int{503}}
		w := serve(newHandler(t, cfg), "GET", "https://example.com/")
		if w.Code != 503 || w.Body.String() != "maintenance\n" {
			t.Errorf("one backend answering 503: %d %q", w.Code, w.Body.String())
		}
	})
}
