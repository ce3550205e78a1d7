package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/farmedge/edge/internal/testenv"
)

// TestBackendMaxConnsQueue: a backend behind max_conns: 2, queue: 4 never
// sees a third concurrent request from edge; of seven concurrent clients
// two are in flight, four wait, and the seventh gets 503 at once; releasing
// the backend serves the six.
func TestBackendMaxConnsQueue(t *testing.T) {
	ports := testenv.FreePorts(t, 3)
	peb := startPebbleHTTP01(t, ports[0])
	var inFlight, peak, served atomic.Int64
	release := make(chan struct{})
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			return
		}
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		select {
		case <-release:
		case <-r.Context().Done():
		case <-time.After(30 * time.Second):
		}
		served.Add(1)
	}))
	t.Cleanup(backend.Close)
	cfg := fmt.Sprintf(`listen: {http: %q, https: %q}
admin: {listen: %q}
acme: {email: test@example.com, ca: %q, ca_root_file: %q, challenges: [http-01]}
storage: {type: file, path: %q}
log: {level: info, format: json, access: false}
sites:
  - hosts: [a.test]
    routes: [{path: /, pool: iis}]
pools:
  iis: {backends: [%q], max_conns: 2, queue: 4, queue_timeout: 30s}
`, testenv.Addr(ports[0]), testenv.Addr(ports[1]), testenv.Addr(ports[2]), peb.DirectoryURL, peb.MinicaRootFile,
		filepath.Join(t.TempDir(), "storage"), backend.URL)
	e, roots := startServing(t, peb, cfg)
	client := testenv.HTTPSClient(roots, e.HTTPSAddr)
	codes := make(chan int, 7)
	var wg sync.WaitGroup
	start := func() {
		wg.Go(func() {
			resp, err := client.Get("https://a.test/slow")
			if err != nil {
				t.Errorf("GET: %v", err)
				codes <- 0
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			codes <- resp.StatusCode
		})
	}
	for range 6 {
		start()
	}
	waitFor(t, 10*time.Second, "two requests at the backend and four in the queue", func() bool {
		m, err := e.Metrics()
		q, _ := m.Get("edge_pool_queue_requests", "pool", "iis")
		return err == nil && inFlight.Load() == 2 && q == 4
	})
	t0 := time.Now()
	start() // the seventh
	select {
	case c := <-codes:
		if c != http.StatusServiceUnavailable {
			t.Errorf("the seventh client got %d, want 503", c)
		}
		if d := time.Since(t0); d > 5*time.Second {
			t.Errorf("the seventh client waited %v for its 503", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the seventh client got no answer while the queue was full")
	}
	close(release)
	wg.Wait()
	close(codes)
	ok := 0
	for c := range codes {
		if c == 200 {
			ok++
		}
	}
	if ok != 6 {
		t.Errorf("%d of the six admitted clients got 200", ok)
	}
	if p := peak.Load(); p != 2 {
		t.Errorf("the backend saw %d concurrent requests, want at most (and here exactly) 2", p)
	}
	m, err := e.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Sum("edge_pool_queue_rejected_total", "pool", "iis", "reason", "full"); got != 1 {
		t.Errorf("edge_pool_queue_rejected_total{reason=full} = %v, want 1", got)
	}
	t.Logf("max_conns 2, queue 4, 7 clients: backend peak %d, %d served, one 503", peak.Load(), ok)
}

// TestRateLimit: with a site's rate at 5/s, a client's sixth request in a
// burst gets 429 with Retry-After and never reaches the backend; another
// site without a rate is not limited.
func TestRateLimit(t *testing.T) {
	ports := testenv.FreePorts(t, 3)
	peb := startPebbleHTTP01(t, ports[0])
	b := newSeenBackend(t)
	conf := pConf{
		httpPort: ports[0], httpsPort: ports[1], adminPort: ports[2],
		peb: peb, storage: filepath.Join(t.TempDir(), "storage"),
		sites: []pSite{{hosts: []string{"a.test"}, rate: "5/s"}, {hosts: []string{"b.test"}}},
		pools: []pPool{{name: "web", backends: []string{b.URL}}},
	}
	e, roots := startServing(t, peb, conf.yaml())
	client := testenv.HTTPSClient(roots, e.HTTPSAddr)
	get := func(host string) *http.Response {
		resp, err := client.Get("https://" + host + "/r")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	b.reset()
	limited := 0
	start := time.Now()
	for range 10 {
		if resp := get("a.test"); resp.StatusCode == http.StatusTooManyRequests {
			limited++
			if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || s < 1 {
				t.Errorf("429 with Retry-After %q, want whole seconds", resp.Header.Get("Retry-After"))
			}
		}
	}
	// A burst of 5, then a token every 200 ms: of ten requests sent in
	// took, at most 5 + took/200ms (rounded up) pass.
	took := time.Since(start)
	refills := int((took + 200*time.Millisecond - 1) / (200 * time.Millisecond))
	if most := 5 + refills; limited < 10-most || limited > 5 {
		t.Errorf("%d of 10 requests limited at 5/s in %v, want between %d and 5", limited, took, max(10-most, 0))
	}
	if got := len(b.seen()); got != 10-limited {
		t.Errorf("backend saw %d requests, want %d", got, 10-limited)
	}
	for range 10 {
		if resp := get("b.test"); resp.StatusCode != 200 {
			t.Fatalf("b.test (no rate): %d", resp.StatusCode)
		}
	}
	m, err := e.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Sum("edge_http_requests_total", "site", "a.test", "code", "429"); got != float64(limited) {
		t.Errorf("edge_http_requests_total{site=a.test,code=429} = %v, want %d", got, limited)
	}
}

// TestDrainUnderLoad: `edge drain` takes a backend out of new traffic while
// clients keep sending: no request fails, the drained backend gets nothing
// new once its requests in flight are done, and `edge undrain` puts it back.
func TestDrainUnderLoad(t *testing.T) {
	ports := testenv.FreePorts(t, 3)
	peb := startPebbleHTTP01(t, ports[0])
	b1, b2 := testenv.NewBackend(t, 1, 0), testenv.NewBackend(t, 2, 0)
	conf := pConf{
		httpPort: ports[0], httpsPort: ports[1], adminPort: ports[2],
		peb: peb, storage: filepath.Join(t.TempDir(), "storage"),
		sites: []pSite{{hosts: []string{"a.test"}}},
		pools: []pPool{{name: "web", backends: []string{b1.URL, b2.URL}}},
	}
	e, roots := startServing(t, peb, conf.yaml())
	bin := testenv.BuildEdge(t)
	edgeCLI := func(args ...string) {
		t.Helper()
		out, err := exec.Command(bin, append(args[:1:1], append([]string{"-admin", e.AdminURL}, args[1:]...)...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("edge %v: %v\n%s", args, err, out)
		}
		t.Logf("edge %v: %s", args, strings.TrimSpace(string(out)))
	}
	client := testenv.HTTPSClient(roots, e.HTTPSAddr)
	var failed, sent atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for i := 0; i < 5000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				sent.Add(1)
				resp, err := client.Get("https://a.test/")
				if err != nil {
					failed.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failed.Add(1)
				}
			}
		})
	}
	time.Sleep(300 * time.Millisecond)
	edgeCLI("drain", "web", b1.URL)
	waitFor(t, 5*time.Second, "the drained backend's requests in flight to finish", func() bool {
		var pools []struct {
			Name     string
			Backends []struct {
				URL      string
				Drained  bool
				InFlight int64 `json:"in_flight"`
			}
		}
		if err := getJSON(e.AdminURL+"/api/pools", &pools); err != nil {
			return false
		}
		b := pools[0].Backends[0]
		return b.Drained && b.InFlight == 0
	})
	after := b1.Requests()
	time.Sleep(500 * time.Millisecond)
	if got := b1.Requests() - after; got != 0 {
		t.Errorf("the drained backend got %d new requests", got)
	}
	edgeCLI("undrain", "web", b1.URL)
	waitFor(t, 5*time.Second, "the undrained backend to take requests", func() bool { return b1.Requests() > after })
	close(stop)
	wg.Wait()
	t.Logf("%d requests sent, %d failed; backends %d and %d", sent.Load(), failed.Load(), b1.Requests(), b2.Requests())
	if failed.Load() != 0 {
		t.Errorf("%d of %d requests failed across the drain", failed.Load(), sent.Load())
	}
}

func getJSON(url string, v any) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}
