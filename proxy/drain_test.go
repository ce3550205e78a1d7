package proxy

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestDrain: draining a backend under load fails no request, lets its
// request in flight finish, sends it nothing new, survives a reload on the
// same State, and undrain puts it back.
func TestDrain(t *testing.T) {
	var hits [2]atomic.Int64
	release := make(chan struct{})
	var backends []*httptest.Server
	for i := range 2 {
		b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits[i].Add(1)
			if r.URL.Path == "/slow" {
				<-release
			}
		}))
		t.Cleanup(b.Close)
		backends = append(backends, b)
	}
	state := NewState()
	cfg := simpleConfig(mustURL(t, backends[0].URL), mustURL(t, backends[1].URL))
	cfg.Pools[0].Selector, cfg.State = new(RoundRobin), state
	h := newHandler(t, cfg)

	// A slow request on backend 0, in flight across the drain.
	slow := make(chan int, 1)
	go func() { slow <- serve(h, "GET", "https://example.com/slow").Code }()
	for hits[0].Load() == 0 {
		time.Sleep(time.Millisecond)
	}

	// Load on both while backend 0 is drained.
	var failed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for i := 0; i < 2000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if serve(h, "GET", "https://example.com/").Code != 200 {
					failed.Add(1)
				}
			}
		})
	}
	time.Sleep(20 * time.Millisecond)
	name := backends[0].URL
	if err := h.Drain("web", name, true); err != nil {
		t.Fatal(err)
	}
	// Requests that chose backend 0 before the call finish; then only the
	// slow one is in flight there, and nothing new may arrive.
	deadline := time.Now().Add(5 * time.Second)
	for h.Status()[0].Backends[0].InFlight > 1 {
		if time.Now().After(deadline) {
			t.Fatal("requests in flight on the drained backend did not finish")
		}
		time.Sleep(time.Millisecond)
	}
	after := hits[0].Load()
	time.Sleep(50 * time.Millisecond)
	close(stop)
	wg.Wait()
	if got := hits[0].Load(); got != after {
		t.Errorf("the drained backend got %d new requests", got-after)
	}
	if failed.Load() != 0 {
		t.Errorf("%d requests failed during the drain", failed.Load())
	}
	close(release)
	if code := <-slow; code != 200 {
		t.Errorf("the request in flight on the drained backend: %d", code)
	}
	if st := h.Status()[0].Backends[0]; !st.Drained || !st.Up {
		t.Errorf("status %+v: want drained and still up", st)
	}

	// A reload on the same State keeps the drain.
	h2 := newHandler(t, cfg)
	before := hits[0].Load()
	for range 20 {
		serve(h2, "GET", "https://example.com/")
	}
	if hits[0].Load() != before {
		t.Error("the drain did not survive a reload")
	}
	if err := h2.Drain("web", name, false); err != nil {
		t.Fatal(err)
	}
	for range 20 {
		serve(h2, "GET", "https://example.com/")
	}
	if hits[0].Load() == before {
		t.Error("undrain did not put the backend back")
	}
	if err := h2.Drain("web", "http://nowhere:1", true); !errors.Is(err, ErrNoBackend) {
		t.Errorf("an unknown backend: %v", err)
	}
}
