package e2e

import (
	"context"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/farmedge/edge/internal/testenv"
)

// startFarm starts Pebble (HTTP-01 on edge's port 80), three testenv
// backends in pool "web" and an edge for one site, and waits until its
// certificate is ready and every backend is up.
func startFarm(t *testing.T, host string) (*testenv.Edge, pConf, []*testenv.Backend, *http.Client, func(i int) *http.Client) {
	t.Helper()
	ports := testenv.FreePorts(t, 3)
	peb := startPebbleHTTP01(t, ports[0])
	bs := []*testenv.Backend{testenv.NewBackend(t, 1, 0), testenv.NewBackend(t, 2, 0), testenv.NewBackend(t, 3, 0)}
	conf := pConf{
		httpPort: ports[0], httpsPort: ports[1], adminPort: ports[2],
		peb: peb, storage: filepath.Join(t.TempDir(), "storage"),
		sites: []pSite{{hosts: []string{host}}},
		pools: []pPool{{name: "web", backends: []string{bs[0].URL, bs[1].URL, bs[2].URL}, retries: 2}},
	}
	e := testenv.StartEdge(t, conf.yaml())
	if err := e.WaitReady(readyTimeout); err != nil {
		t.Fatal(err)
	}
	for _, b := range bs {
		waitBackendUp(t, e, "web", b.URL, 1, 10*time.Second)
	}
	roots, err := peb.IssuingRoots()
	if err != nil {
		t.Fatal(err)
	}
	// Half the load clients speak HTTP/2, half HTTP/1.1; each holds its own
	// keep-alive connection.
	mk := func(i int) *http.Client {
		if i%2 == 0 {
			return testenv.HTTPSClient(roots, e.HTTPSAddr)
		}
		return testenv.HTTPS1Client(roots, e.HTTPSAddr)
	}
	return e, conf, bs, testenv.HTTPSClient(roots, e.HTTPSAddr), mk
}

// deadCounts is what /metrics says a backend was sent: responses, and
// failures other than the active checker's.
func deadCounts(t *testing.T, e *testenv.Edge, backend string) (requests, failures, health float64) {
	t.Helper()
	m, err := e.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	requests = m.Sum("edge_backend_requests_total", "pool", "web", "backend", backend)
	for _, s := range m.Find("edge_backend_failures_total", "pool", "web", "backend", backend) {
		if s.Labels["reason"] == "health_check" {
			health += s.Value
		} else {
			failures += s.Value
		}
	}
	return requests, failures, health
}

// TestReloadKeepsFarm: with one of three backends dead and marked down,
// ten reloads under HTTPS load (SIGHUP and the file watcher, unrelated
// changes, identical bytes, one invalid file) fail no request and never
// send one to the dead backend: the proxy state that knows it is down
// outlives every config generation.
func TestReloadKeepsFarm(t *testing.T) {
	const site = "reload.test"
	e, conf, bs, client, mk := startFarm(t, site)
	dead := bs[2]

	// Every backend takes its turn before one dies.
	for range 30 {
		if err := getOK(client, "https://"+site+"/"); err != nil {
			t.Fatal(err)
		}
	}
	if dead.Requests() == 0 {
		t.Fatalf("backend 3 got none of 30 requests before the kill (backends: %d %d %d)", bs[0].Requests(), bs[1].Requests(), dead.Requests())
	}
	dead.Close()
	if err := testenv.WaitTCP(dead.Addr, 200*time.Millisecond); err == nil {
		t.Fatalf("backend 3 on %s still accepts connections after Close", dead.Addr)
	}
	waitBackendUp(t, e, "web", dead.URL, 0, 10*time.Second)
	req0, fail0, health0 := deadCounts(t, e, dead.URL)
	live0 := []int64{bs[0].Requests(), bs[1].Requests()}

	logs := &logReader{path: e.LogPath}
	logs.next() // from here on
	ld := startLoad(t.Context(), 4, mk, "https://"+site+"/", 1_000_000, 90*time.Second)
	loadStart := time.Now()
	defer ld.Stop()

	type step struct {
		name    string
		change  func(c *pConf) // nil: the same bytes again
		sighup  bool           // else the file watcher (polled every 2 s)
		touch   bool           // only a new modification time
		invalid bool
	}
	steps := []step{
		{name: "site hsts", change: func(c *pConf) { c.sites[0].hsts = 600 }, sighup: true},
		{name: "access log on", change: func(c *pConf) { c.access = true }},
		{name: "unused pool added", change: func(c *pConf) {
			c.pools = append(c.pools, pPool{name: "spare", backends: []string{bs[0].URL}, retries: 1})
		}, sighup: true},
		{name: "retries changed", change: func(c *pConf) { c.pools[0].retries = 1 }},
		{name: "touched, same bytes", touch: true},
		{name: "same bytes, SIGHUP", sighup: true},
		{name: "invalid key", invalid: true, sighup: true},
		{name: "valid again, hsts off", change: func(c *pConf) { c.sites[0].hsts = 0 }},
		{name: "access log off, retries back", change: func(c *pConf) { c.access = false; c.pools[0].retries = 2 }, sighup: true},
		{name: "unused pool removed", change: func(c *pConf) { c.pools = c.pools[:1] }},
	}
	reloads, failedReloads := 0, 0
	for i, st := range steps {
		m, err := e.Metrics()
		if err != nil {
			t.Fatal(err)
		}
		ts0, _ := m.Get("edge_config_last_reload_success_timestamp_seconds")
		trigger := `"trigger":"file changed"`
		if st.sighup {
			trigger = `"trigger":"SIGHUP"`
		}
		switch {
		case st.touch:
			now := time.Now()
			if err := os.Chtimes(e.ConfigPath, now, now); err != nil {
				t.Fatal(err)
			}
		case st.invalid:
			bad := strings.Replace(conf.yaml(), "policy: round_robin", "policy: round_robin\n    polcy: first", 1)
			writeConfig(t, e.ConfigPath, bad)
		case st.change != nil:
			// Deep enough a copy: sites and pools are rebuilt, not shared.
			conf.sites = append([]pSite(nil), conf.sites...)
			conf.pools = append([]pPool(nil), conf.pools...)
			st.change(&conf)
			writeConfig(t, e.ConfigPath, conf.yaml())
		default:
			writeConfig(t, e.ConfigPath, conf.yaml())
		}
		if st.sighup {
			if err := e.Reload(); err != nil {
				t.Fatal(err)
			}
		}

		if st.touch {
			// Identical bytes are not applied again: nothing is logged. An
			// absence can only be waited for; two watcher periods are enough
			// for the watcher to have looked.
			applied := false
			deadline := time.Now().Add(4500 * time.Millisecond)
			for time.Now().Before(deadline) {
				for _, line := range logs.next() {
					if strings.Contains(line, `"msg":"reloaded"`) || strings.Contains(line, "reload failed") || strings.Contains(line, "config applied") {
						applied = true
						t.Errorf("step %d (%s): a touch of the file with identical bytes was applied: %s", i+1, st.name, line)
					}
				}
				time.Sleep(100 * time.Millisecond)
			}
			m, err := e.Metrics()
			if err != nil {
				t.Fatal(err)
			}
			if ts, _ := m.Get("edge_config_last_reload_success_timestamp_seconds"); ts != ts0 {
				applied = true
				t.Errorf("step %d (%s): reload timestamp moved from %f to %f", i+1, st.name, ts0, ts)
			}
			if !applied {
				t.Logf("step %d (%s): nothing applied, as it should be", i+1, st.name)
			}
			continue
		}

		if st.invalid {
			line, _, err := logs.waitLine([]string{"reload failed", trigger}, 15*time.Second)
			if err != nil {
				t.Fatalf("step %d (%s): %v\n%s", i+1, st.name, err, e.Tail(10))
			}
			failedReloads++
			if !logHasPosition(line, "polcy") {
				t.Errorf("step %d (%s): the failure does not name edge.yaml:LINE:COL and the key: %s", i+1, st.name, line)
			}
			m, err := e.Metrics()
			if err != nil {
				t.Fatal(err)
			}
			if v, _ := m.Get("edge_config_last_reload_successful"); v != 0 {
				t.Errorf("step %d (%s): edge_config_last_reload_successful = %g, want 0", i+1, st.name, v)
			}
			t.Logf("step %d (%s): refused: %s", i+1, st.name, line)
			continue
		}

		line, seen, err := logs.waitLine([]string{`"msg":"reloaded"`, trigger}, 15*time.Second)
		if err != nil {
			t.Fatalf("step %d (%s): %v\n%s", i+1, st.name, err, e.Tail(10))
		}
		for _, l := range seen {
			if strings.Contains(l, "reload failed") {
				t.Errorf("step %d (%s): unexpected failed reload: %s", i+1, st.name, l)
			}
		}
		reloads++
		m, err = e.Metrics()
		if err != nil {
			t.Fatal(err)
		}
		if v, _ := m.Get("edge_config_last_reload_successful"); v != 1 {
			t.Errorf("step %d (%s): edge_config_last_reload_successful = %g, want 1", i+1, st.name, v)
		}
		if ts, _ := m.Get("edge_config_last_reload_success_timestamp_seconds"); ts <= ts0 {
			t.Errorf("step %d (%s): edge_config_last_reload_success_timestamp_seconds did not move (%f, before %f)", i+1, st.name, ts, ts0)
		}
		if up := poolBackendUp(m, "web", dead.URL); up != 0 {
			t.Errorf("step %d (%s): the dead backend's edge_backend_up = %g after the reload, want 0", i+1, st.name, up)
		}
		if i == 0 {
			// The change is live: the running generation was replaced.
			resp, err := client.Get("https://" + site + "/")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if h := resp.Header.Get("Strict-Transport-Security"); !strings.Contains(h, "max-age=600") {
				t.Errorf("after hsts: 600 was reloaded, Strict-Transport-Security: %q", h)
			}
		}
		t.Logf("step %d (%s): %s", i+1, st.name, strings.TrimSpace(line))
	}

	// The first and eighth reloads are visible: HSTS on, then off.
	resp, err := client.Get("https://" + site + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if h := resp.Header.Get("Strict-Transport-Security"); h != "" {
		t.Errorf("after hsts was removed again, Strict-Transport-Security: %q", h)
	}

	// A little load after the last reload, then stop.
	time.Sleep(time.Second)
	res := ld.Stop()
	took := time.Since(loadStart)
	req1, fail1, health1 := deadCounts(t, e, dead.URL)
	live := []int64{bs[0].Requests() - live0[0], bs[1].Requests() - live0[1]}
	m, err := e.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("load: %d requests ok, %d failed in %s over 4 clients (2 h2, 2 HTTP/1.1); backends 1 and 2 answered %d and %d; %d reloads applied, %d refused",
		res.ok, res.failed, took.Round(time.Millisecond), live[0], live[1], reloads, failedReloads)
	t.Logf("dead backend %s: edge_backend_requests_total %g -> %g, failures (not health) %g -> %g, health-check failures %g -> %g",
		dead.URL, req0, req1, fail0, fail1, health0, health1)
	t.Logf("edge_http_requests_total{site=%q} = %g", site, m.Sum("edge_http_requests_total", "site", site))

	if res.failed != 0 {
		t.Errorf("%d of %d requests failed across the reloads; first: %q", res.failed, res.ok+res.failed, res.errs)
	}
	if res.ok == 0 {
		t.Errorf("no request succeeded")
	}
	if req1 != req0 || fail1 != fail0 {
		t.Errorf("the dead backend was sent traffic after it was marked down: requests %g -> %g, failures %g -> %g\n%s",
			req0, req1, fail0, fail1, m.Dump("edge_backend_failures_total", "edge_backend_requests_total", "edge_backend_up"))
	}
	if live[0] == 0 || live[1] == 0 {
		t.Errorf("a live backend got no requests: %v", live)
	}
	if reloads != 8 || failedReloads != 1 {
		t.Errorf("reloads applied %d (want 8), refused %d (want 1)", reloads, failedReloads)
	}
}

// TestRoundRobinFairAfterKill: under HTTPS load, one of three round-robin
// backends dies; from the moment edge marks it down, the two survivors
// share its turns evenly (before the fix, the next backend in the ring took
// them all: 2:1).
func TestRoundRobinFairAfterKill(t *testing.T) {
	const site = "fair.test"
	const workers = 4
	e, _, bs, _, mk := startFarm(t, site)
	dead := bs[2]

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ld := startLoad(ctx, workers, mk, "https://"+site+"/", 1_000_000, 60*time.Second)
	defer ld.Stop()

	// The load reaches every backend before the kill.
	deadline := time.Now().Add(15 * time.Second)
	for bs[0].Requests() < 200 || bs[1].Requests() < 200 || dead.Requests() < 200 {
		if time.Now().After(deadline) {
			t.Fatalf("load did not reach every backend: %d %d %d; failures %d", bs[0].Requests(), bs[1].Requests(), dead.Requests(), ld.failed.Load())
		}
		time.Sleep(20 * time.Millisecond)
	}
	failedBefore := ld.failed.Load()
	dead.Close()
	waitBackendUp(t, e, "web", dead.URL, 0, 10*time.Second)
	r1, r2 := bs[0].Requests(), bs[1].Requests()
	downAt := time.Now()

	// Enough requests after the kill to judge a 5 % difference, over many
	// rounds of health checks (every 250 ms): at least 6000 and 5 s, at
	// most 15 s.
	deadline = time.Now().Add(15 * time.Second)
	for (bs[0].Requests()-r1+bs[1].Requests()-r2 < 6000 || time.Since(downAt) < 5*time.Second) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	d1, d2 := bs[0].Requests()-r1, bs[1].Requests()-r2
	res := ld.Stop()
	t.Logf("after backend 3 was marked down (%s of load): backend 1 answered %d, backend 2 answered %d (difference %.2f%%); load %d ok, %d failed (%d before the kill)",
		time.Since(downAt).Round(time.Millisecond), d1, d2, 100*math.Abs(float64(d1-d2))/math.Max(float64(max(d1, d2)), 1), res.ok, res.failed, failedBefore)
	if d1+d2 < 400 {
		t.Fatalf("only %d requests after the kill: too few to judge fairness", d1+d2)
	}
	if diff := math.Abs(float64(d1 - d2)); diff > 0.05*float64(max(d1, d2)) {
		t.Errorf("survivors answered %d and %d after the kill: more than 5%% apart", d1, d2)
	}
	// Only a request in flight to backend 3 at the kill may fail; the
	// others are retried on a connect failure.
	if res.failed-failedBefore > workers {
		t.Errorf("%d requests failed around the kill, want at most one per client (%d); first: %q", res.failed-failedBefore, workers, res.errs)
	}
	if failedBefore != 0 {
		t.Errorf("%d requests failed before the kill: %q", failedBefore, res.errs)
	}
}
