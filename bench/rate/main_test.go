package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func tlsServer(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "https://")
}

// TestStallChargesQueuedRequests: one answer held for 300 ms on the only
// connection. Measured from the send time (closed loop) one request would
// be slow; measured from the due time, every request due during the stall
// waited behind it, so dozens are.
func TestStallChargesQueuedRequests(t *testing.T) {
	const stall = 300 * time.Millisecond
	var n atomic.Int64
	addr := tlsServer(t, func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 20 {
			time.Sleep(stall)
		}
		w.Write([]byte("ok"))
	})
	r, err := run(options{addr: addr, sni: "example.com", path: "/", rate: 200, conc: 1, dur: time.Second, grace: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if r.ok != 200 || r.errs != 0 || r.late != 0 {
		t.Fatalf("ok %d errors %d late %d (last error %q), want 200 0 0", r.ok, r.errs, r.late, r.lastErr)
	}
	slow := 0
	for _, l := range r.lats {
		if l >= 100*time.Millisecond {
			slow++
		}
	}
	// Due every 5 ms: the requests due in the first 200 ms of the stall
	// waited at least 100 ms each.
	if slow < 30 {
		t.Errorf("%d requests of %d took 100 ms or more, want at least 30 (the ones queued behind the stall); p50 %s p99 %s", slow, len(r.lats), r.pct(0.5), r.pct(0.99))
	}
	if r.pct(0.99) < 250*time.Millisecond {
		t.Errorf("p99 %s, want at least 250 ms", r.pct(0.99))
	}
}

// TestUnansweredAreLate: a server that stops answering after 5 requests.
// The request it holds and every one never sent count as late (not as
// errors), with the time waited when the run ended.
func TestUnansweredAreLate(t *testing.T) {
	release := make(chan struct{})
	var n atomic.Int64
	addr := tlsServer(t, func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) > 5 {
			<-release
		}
		w.Write([]byte("ok"))
	})
	defer close(release) // before the server's Close (cleanup) waits for the handler
	r, err := run(options{addr: addr, sni: "example.com", path: "/", rate: 100, conc: 1, dur: 500 * time.Millisecond, grace: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if r.ok != 5 || r.errs != 0 || r.late != 45 {
		t.Fatalf("ok %d errors %d late %d (last error %q), want 5 0 45", r.ok, r.errs, r.late, r.lastErr)
	}
	// The run ends 800 ms after the start; the held request was due at
	// 50 ms, the last one at 490 ms.
	if got := r.lats[len(r.lats)-1]; got < 700*time.Millisecond {
		t.Errorf("longest wait %s, want about 750 ms (the held request)", got)
	}
	if got := r.pct(0.5); got < 300*time.Millisecond {
		t.Errorf("p50 %s: the late requests (45 of 50) waited at least 300 ms each", got)
	}
}
