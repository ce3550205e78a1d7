package e2e

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/farmedge/edge/internal/testenv"
)

// TestStopWithOpenConnections: SIGTERM stops edge promptly while clients
// hold connections open: a keep-alive HTTP/1.1 and an HTTP/2 connection,
// idle after a request; HAProxy's pooled keep-alive connections to :80; and
// one connection per listener that never sends a request (a peer's pooled,
// unused connection, a browser's preconnect: net/http's Shutdown waits 5 s
// for those by itself, which is what made TestPeersFarm hang). The stop logs
// nothing above info.
func TestStopWithOpenConnections(t *testing.T) {
	cts := testenv.StartChallTestSrv(t)
	ports := testenv.FreePorts(t, 3)
	peb := testenv.StartPebble(t, testenv.PebbleOptions{HTTPPort: ports[0], DNSServer: cts.DNSAddr})
	b := testenv.NewBackend(t, 1, 0)
	conf := edgeConf{
		httpPort: ports[0], httpsPort: ports[1], adminPort: ports[2],
		ca: peb.DirectoryURL, caRoot: peb.MinicaRootFile,
		challenges: []string{"http-01"},
		storage:    filepath.Join(t.TempDir(), "storage"),
		sites:      []site{{hosts: []string{"stop.test"}}},
		backends:   []string{b.URL},
	}
	e := testenv.StartEdge(t, conf.yaml())
	if err := e.WaitReady(readyTimeout); err != nil {
		t.Fatal(err)
	}
	roots, err := peb.IssuingRoots()
	if err != nil {
		t.Fatal(err)
	}
	lb := testenv.StartHAProxy(t, testenv.HAProxyOptions{Backends: []string{e.HTTPAddr}, Mode: "http"})

	get := func(c *http.Client, url string) *http.Response {
		t.Helper()
		resp, err := c.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	h1 := testenv.HTTPS1Client(roots, e.HTTPSAddr)
	h2 := testenv.HTTPSClient(roots, e.HTTPSAddr)
	if r := get(h1, "https://stop.test/"); r.StatusCode != 200 || r.ProtoMajor != 1 {
		t.Fatalf("HTTP/1.1: %d %s", r.StatusCode, r.Proto)
	}
	if r := get(h2, "https://stop.test/"); r.StatusCode != 200 || r.ProtoMajor != 2 {
		t.Fatalf("HTTP/2: %d %s", r.StatusCode, r.Proto)
	}
	viaLB := testenv.HTTPClient(lb.Addr)
	for range 4 {
		if r := get(viaLB, "http://stop.test/"); r.StatusCode != http.StatusPermanentRedirect {
			t.Fatalf("through HAProxy: %d", r.StatusCode)
		}
	}
	for _, addr := range []string{e.HTTPAddr, e.HTTPSAddr, strings.TrimPrefix(e.AdminURL, "http://")} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	time.Sleep(100 * time.Millisecond) // let the server accept them

	mark := len(e.Log())
	start := time.Now()
	if err := e.Stop(); err != nil {
		t.Fatalf("SIGTERM: %v\n%s", err, e.Tail(20))
	}
	took := time.Since(start)
	t.Logf("edge exited %v after SIGTERM with idle, pooled and silent connections open", took.Round(time.Millisecond))
	if took > 3*time.Second {
		t.Errorf("stop took %v; nothing was in flight", took)
	}
	sc := bufio.NewScanner(strings.NewReader(e.Log()[mark:]))
	for sc.Scan() {
		var line struct{ Level string }
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Level != "" && line.Level != "debug" && line.Level != "info" {
			t.Errorf("a clean stop logged at %s: %s", line.Level, sc.Text())
		}
	}
}
