package proxy

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
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

// TestTryTimeout: a backend that stalls past the try timeout loses the
// request to the other backend for GET; a POST with a body is not retried
// and waits the response header timeout; the last try waits that too; a
// retry window over stops the retries; no backend is tried twice.
func TestTryTimeout(t *testing.T) {
	stallHits := make([]atomic.Int64, 2)
	var stalls []*httptest.Server
	for i := range stallHits {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			stallHits[i].Add(1)
			io.Copy(io.Discard, r.Body)
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		}))
		t.Cleanup(s.Close)
		stalls = append(stalls, s)
	}
	var goodHits atomic.Int64
	good := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		goodHits.Add(1)
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "good")
	}))
	t.Cleanup(good.Close)
	stall0, stall1, goodURL := mustURL(t, stalls[0].URL), mustURL(t, stalls[1].URL), mustURL(t, good.URL)

	const tryTimeout, headerTimeout = 200 * time.Millisecond, 1500 * time.Millisecond
	for _, tc := range []struct {
		name        string
		backends    []*url.URL
		retries     int
		window      time.Duration
		method      string
		code        int
		stallTries  int64 // over both stalling backends
		goodTries   int64
		least, most time.Duration // the client's wait
	}{
		{"GET goes to the other backend", []*url.URL{stall0, goodURL}, 1, 0, "GET", 200, 1, 1, tryTimeout, headerTimeout},
		{"POST is not retried", []*url.URL{stall0, goodURL}, 1, 0, "POST", 504, 1, 0, headerTimeout, 3 * headerTimeout},
		{"the last try waits the header timeout", []*url.URL{stall0, stall1}, 1, 0, "GET", 504, 2, 0, tryTimeout + headerTimeout, 3 * headerTimeout},
		{"two stalls, then the good one", []*url.URL{stall0, stall1, goodURL}, 2, 0, "GET", 200, 2, 1, 2 * tryTimeout, headerTimeout},
		{"a retry window over stops the retries", []*url.URL{stall0, stall1, goodURL}, 2, 300 * time.Millisecond, "GET", 504, 2, 0, 2 * tryTimeout, 3 * headerTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stallHits[0].Store(0)
			stallHits[1].Store(0)
			goodHits.Store(0)
			cfg := simpleConfig(tc.backends...) // First: in this order
			p := &cfg.Pools[0]
			p.Retries, p.RetryOn = tc.retries, RetryOn{Timeout: true}
			p.TryTimeout, p.RetryWindow = tryTimeout, tc.window
			p.Timeouts.ResponseHeader = headerTimeout
			h := newHandler(t, cfg)
			t0 := time.Now()
			w := serve(h, tc.method, "https://example.com/", func(r *http.Request) {
				if tc.method == "POST" {
					r.Body = io.NopCloser(strings.NewReader("form=1"))
					r.ContentLength = 6
				}
			})
			took := time.Since(t0)
			t.Logf("%s: %d after %s", tc.name, w.Code, took.Round(time.Millisecond))
			if w.Code != tc.code {
				t.Errorf("code %d, want %d", w.Code, tc.code)
			}
			if got := stallHits[0].Load() + stallHits[1].Load(); got != tc.stallTries || stallHits[0].Load() > 1 || stallHits[1].Load() > 1 {
				t.Errorf("stalling backends tried %d and %d times, want %d in all, once each at most", stallHits[0].Load(), stallHits[1].Load(), tc.stallTries)
			}
			if goodHits.Load() != tc.goodTries {
				t.Errorf("the good backend got %d requests, want %d", goodHits.Load(), tc.goodTries)
			}
			if took < tc.least || took > tc.most {
				t.Errorf("the client waited %s, want %s to %s", took, tc.least, tc.most)
			}
		})
	}
}

// TestRetryNeverTheSameBackend: with more retries than backends, each
// backend answering 503 is tried once, and the last answer is the client's.
func TestRetryNeverTheSameBackend(t *testing.T) {
	hits := make([]atomic.Int64, 3)
	var backends []*url.URL
	for i := range hits {
		b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits[i].Add(1)
			http.Error(w, "busy "+strconv.Itoa(i), http.StatusServiceUnavailable)
		}))
		t.Cleanup(b.Close)
		backends = append(backends, mustURL(t, b.URL))
	}
	for _, sel := range []Selector{First{}, new(RoundRobin), Random{}} {
		for i := range hits {
			hits[i].Store(0)
		}
		cfg := simpleConfig(backends...)
		cfg.Pools[0].Selector, cfg.Pools[0].Retries = sel, 10
		cfg.Pools[0].RetryOn = RetryOn{Statuses: []int{503}}
		w := serve(newHandler(t, cfg), "GET", "https://example.com/")
		if w.Code != 503 || !strings.HasPrefix(w.Body.String(), "busy ") {
			t.Errorf("%s: %d %q", policyName(sel), w.Code, w.Body.String())
		}
		for i := range hits {
			if hits[i].Load() != 1 {
				t.Errorf("%s: backend %d tried %d times, want once", policyName(sel), i, hits[i].Load())
			}
		}
	}
}

// TestRetryAfterInformationalKeepsEdgesFields: a try that sends a 1xx (which
// clears the response header) and then fails with a RetryOn status, retried
// on the other backend: the final answer still has edge's Connection: close
// (an HTTP/1.0 keep-alive request, closeAfterAmbiguousFraming), and one
// sticky cookie, the one naming the backend that answered.
func TestRetryAfterInformationalKeepsEdgesFields(t *testing.T) {
	forEachServer(t, func(t *testing.T, serveOn func(http.Handler) string) {
		var hits atomic.Int64
		backend := func(name string) *httptest.Server {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if hits.Add(1) == 1 {
					w.Header().Set("Link", "</a.css>; rel=preload")
					w.WriteHeader(http.StatusEarlyHints)
					w.Header().Del("Link")
					http.Error(w, "maintenance", http.StatusServiceUnavailable)
					return
				}
				io.WriteString(w, name)
			}))
			t.Cleanup(srv.Close)
			return srv
		}
		a, b := backend("a"), backend("b")
		cfg := simpleConfig(mustURL(t, a.URL), mustURL(t, b.URL))
		cfg.Pools[0].Selector = Cookie{}
		cfg.Pools[0].Retries, cfg.Pools[0].RetryOn = 1, RetryOn{Statuses: []int{503}}
		addr := serveOn(newHandler(t, cfg).HTTPHandler())

		out := exchangeRaw(t, addr, "GET / HTTP/1.0\r\nHost: example.com\r\nConnection: keep-alive\r\n\r\n")
		if hits.Load() != 2 {
			t.Fatalf("%d backend requests, want 2 (a 503 retried):\n%s", hits.Load(), out)
		}
		if !strings.HasPrefix(out, "200 OK") || !strings.Contains(out, "close=true") {
			t.Errorf("want a 200 that closes the connection:\n%s", out)
		}
		name := CookieNameFor("web") + "="
		var cookies []string // the values of every Set-Cookie line, as %q prints them
		for _, l := range strings.Split(out, "\n") {
			if v, ok := strings.CutPrefix(l, "Set-Cookie: "); ok {
				cookies = append(cookies, v)
			}
		}
		if len(cookies) != 1 || strings.Count(cookies[0], name) != 1 {
			t.Fatalf("Set-Cookie %v, want one %s cookie:\n%s", cookies, name, out)
		}
		answered := out[strings.Index(out, "body ")+len("body "):]
		// The cookie pins the client to the backend that answered.
		value := strings.SplitN(strings.SplitN(cookies[0], name, 2)[1], ";", 2)[0]
		again := exchangeRaw(t, addr, "GET / HTTP/1.1\r\nHost: example.com\r\nCookie: "+name+value+"\r\nConnection: close\r\n\r\n")
		if got := again[strings.Index(again, "body ")+len("body "):]; got != answered {
			t.Errorf("with the cookie, answered by %s, want %s (the retry's backend)", got, answered)
		}
	})
}

// TestRetryAfterInformationalWithNoBackendLeft: a try that sends a 1xx and
// then a RetryOn status, when no other backend can be taken (the other is
// drained by then): the final 503 carries no sticky cookie, neither the
// failed backend's (forward deletes it, here also from the copy kept
// across the 1xx) nor any other, as without the 1xx.
func TestRetryAfterInformationalWithNoBackendLeft(t *testing.T) {
	for _, hints := range []bool{false, true} {
		t.Run(fmt.Sprintf("1xx=%v", hints), func(t *testing.T) {
			forEachServer(t, func(t *testing.T, serveOn func(http.Handler) string) {
				var h *Handler
				var hits atomic.Int64
				var urls [2]string
				backend := func(i int) *httptest.Server {
					srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
						hits.Add(1)
						if err := h.Drain("web", urls[1-i], true); err != nil {
							t.Error(err)
						}
						if hints {
							w.Header().Set("Link", "</a.css>; rel=preload")
							w.WriteHeader(http.StatusEarlyHints)
							w.Header().Del("Link")
						}
						http.Error(w, "maintenance", http.StatusServiceUnavailable)
					}))
					t.Cleanup(srv.Close)
					return srv
				}
				a, b := mustURL(t, backend(0).URL), mustURL(t, backend(1).URL)
				urls = [2]string{a.String(), b.String()}
				cfg := simpleConfig(a, b)
				cfg.Pools[0].Selector = Cookie{}
				cfg.Pools[0].Retries, cfg.Pools[0].RetryOn = 1, RetryOn{Statuses: []int{503}}
				h = newHandler(t, cfg)
				out := exchangeRaw(t, serveOn(h.HTTPHandler()), "GET / HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
				if hits.Load() != 1 {
					t.Fatalf("%d backend requests, want 1 (the other backend drained):\n%s", hits.Load(), out)
				}
				final := out[strings.Index(out, "503 Service Unavailable HTTP/"):] // exchangeRaw's line for it
				if strings.Contains(final, "Set-Cookie") {
					t.Errorf("the 503 carries a sticky cookie:\n%s", out)
				}
			})
		})
	}
}

// TestInformationalCarriesOnlyTheBackendsFields: a 1xx the backend sends
// reaches the client with the backend's fields alone; edge's own (the
// sticky cookie of the pick, Connection: close for an HTTP/1.0 client's
// keep-alive) are for the final answer, which gets them once.
func TestInformationalCarriesOnlyTheBackendsFields(t *testing.T) {
	forEachServer(t, func(t *testing.T, serveOn func(http.Handler) string) {
		backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Link", "</a.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			w.Header().Del("Link")
			io.WriteString(w, "a")
		}))
		t.Cleanup(backend.Close)
		cfg := simpleConfig(mustURL(t, backend.URL))
		cfg.Pools[0].Selector = Cookie{}
		addr := serveOn(newHandler(t, cfg).HTTPHandler())

		out := exchangeRaw(t, addr, "GET / HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
		early, final, ok := strings.Cut(out, "body \"\"\n")
		if !ok || !strings.HasPrefix(early, "103 Early Hints") {
			t.Fatalf("want a 103, then the answer:\n%s", out)
		}
		if !strings.Contains(early, "Link: ") || strings.Contains(early, "Set-Cookie") || strings.Contains(early, "Connection") {
			t.Errorf("the 103 carries other fields than the backend's Link:\n%s", early)
		}
		if n := strings.Count(final, "Set-Cookie: "); !strings.HasPrefix(final, "200 OK") || n != 1 {
			t.Errorf("want a 200 with one Set-Cookie (%d):\n%s", n, final)
		}
	})
}

// TestFailedBackendGetsNoCookie: edge's error page for a try that failed
// (here a backend that refuses connections, no other to retry on) carries
// no sticky cookie: it would pin the client to the backend that failed.
func TestFailedBackendGetsNoCookie(t *testing.T) {
	forEachServer(t, func(t *testing.T, serveOn func(http.Handler) string) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		dead := mustURL(t, "http://"+ln.Addr().String())
		ln.Close() // nothing listens there now: connections are refused
		cfg := simpleConfig(dead)
		cfg.Pools[0].Selector = Cookie{}
		addr := serveOn(newHandler(t, cfg).HTTPHandler())
		out := exchangeRaw(t, addr, "GET / HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
		if !strings.HasPrefix(out, "502 ") || strings.Contains(out, "Set-Cookie") {
			t.Errorf("want a 502 without a sticky cookie:\n%s", out)
		}
	})
}
