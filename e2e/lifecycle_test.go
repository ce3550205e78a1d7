package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/farmedge/edge/internal/testenv"
)

// slowBackend answers /slow after a pause, and everything else at once.
func slowBackend(t *testing.T, pause time.Duration, id string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			time.Sleep(pause)
		}
		fmt.Fprintf(w, "%s %s", id, r.URL.Path)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

// TestLifecycle: a bad config on reload leaves the running one serving and
// says where the error is; a good one is applied; SIGTERM lets an in-flight
// request finish, then edge exits 0.
func TestLifecycle(t *testing.T) {
	cts := testenv.StartChallTestSrv(t)
	ports := testenv.FreePorts(t, 3)
	peb := testenv.StartPebble(t, testenv.PebbleOptions{HTTPPort: ports[0], DNSServer: cts.DNSAddr})
	one := slowBackend(t, 2*time.Second, "one")
	two := slowBackend(t, 0, "two")
	conf := edgeConf{
		httpPort: ports[0], httpsPort: ports[1], adminPort: ports[2],
		ca: peb.DirectoryURL, caRoot: peb.MinicaRootFile,
		challenges: []string{"http-01"},
		storage:    filepath.Join(t.TempDir(), "storage"),
		sites:      []site{{hosts: []string{"life.test"}}},
		backends:   []string{one},
	}
	e := testenv.StartEdge(t, conf.yaml())
	if err := e.WaitReady(readyTimeout); err != nil {
		t.Fatal(err)
	}
	roots, err := peb.IssuingRoots()
	if err != nil {
		t.Fatal(err)
	}
	client := testenv.HTTPSClient(roots, e.HTTPSAddr)
	body := func(path string) string {
		t.Helper()
		resp, err := client.Get("https://life.test" + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return fmt.Sprintf("%d %s", resp.StatusCode, b)
	}
	if got := body("/x"); got != "200 one /x" {
		t.Fatalf("before reload: %q", got)
	}

	t.Run("bad config keeps the running one", func(t *testing.T) {
		bad := strings.Replace(conf.yaml(), "policy: round_robin", "policy: round_robin\n    polcy: first", 1)
		if err := os.WriteFile(e.ConfigPath, []byte(bad), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := e.Reload(); err != nil {
			t.Fatal(err)
		}
		if err := e.WaitLog("reload failed", 10*time.Second); err != nil {
			t.Fatal(err)
		}
		if !logHasPosition(e.Log(), "polcy") {
			t.Errorf("reload error does not name the file position and key:\n%s", e.Tail(5))
		}
		if got := body("/x"); got != "200 one /x" {
			t.Errorf("after a failed reload: %q, want the old config serving", got)
		}
		m, err := e.Metrics()
		if err != nil {
			t.Fatal(err)
		}
		if v, _ := m.Get("edge_config_last_reload_successful"); v != 0 {
			t.Errorf("edge_config_last_reload_successful = %g after a bad reload, want 0", v)
		}
	})

	t.Run("changed listen address is refused", func(t *testing.T) {
		moved := conf
		moved.adminPort = testenv.FreePort(t)
		if err := os.WriteFile(e.ConfigPath, []byte(moved.yaml()), 0o644); err != nil {
			t.Fatal(err)
		}
		before := strings.Count(e.Log(), "reload failed")
		if err := e.Reload(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for strings.Count(e.Log(), "reload failed") == before {
			if time.Now().After(deadline) {
				t.Fatalf("a changed admin.listen was not refused:\n%s", e.Tail(5))
			}
			time.Sleep(50 * time.Millisecond)
		}
		if !strings.Contains(e.Log(), "admin.listen changed: restart edge to apply it") || !strings.Contains(e.Log(), "edge.yaml:2:") {
			t.Errorf("refusal does not say why:\n%s", e.Tail(5))
		}
		if got := body("/x"); got != "200 one /x" {
			t.Errorf("after a refused reload: %q", got)
		}
	})

	t.Run("good config is applied", func(t *testing.T) {
		good := conf
		good.backends = []string{two}
		if err := os.WriteFile(e.ConfigPath, []byte(good.yaml()), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := e.Reload(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for body("/x") != "200 two /x" {
			if time.Now().After(deadline) {
				t.Fatalf("new backend not used after reload:\n%s", e.Tail(10))
			}
			time.Sleep(100 * time.Millisecond)
		}
		m, err := e.Metrics()
		if err != nil {
			t.Fatal(err)
		}
		if v, _ := m.Get("edge_config_last_reload_successful"); v != 1 {
			t.Errorf("edge_config_last_reload_successful = %g after a good reload, want 1", v)
		}
		// Back to the slow backend for the drain case.
		if err := os.WriteFile(e.ConfigPath, []byte(conf.yaml()), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := e.Reload(); err != nil {
			t.Fatal(err)
		}
		for body("/x") != "200 one /x" {
			if time.Now().After(deadline) {
				t.Fatal("slow backend not back after reload")
			}
			time.Sleep(100 * time.Millisecond)
		}
	})

	t.Run("SIGTERM drains", func(t *testing.T) {
		type result struct {
			got string
			err error
		}
		done := make(chan result, 1)
		go func() {
			resp, err := client.Get("https://life.test/slow")
			if err != nil {
				done <- result{err: err}
				return
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			done <- result{fmt.Sprintf("%d %s", resp.StatusCode, b), err}
		}()
		time.Sleep(500 * time.Millisecond) // the request is now waiting on the backend
		if err := e.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		r := <-done
		if r.err != nil || r.got != "200 one /slow" {
			t.Errorf("in-flight request across SIGTERM: %q, %v; want it to finish", r.got, r.err)
		}
		if err := e.Wait(10 * time.Second); err != nil {
			t.Errorf("edge after SIGTERM: %v", err)
		}
	})
}

// logHasPosition reports whether a log line names edge.yaml:LINE:COL and key.
func logHasPosition(log, key string) bool {
	for line := range strings.SplitSeq(log, "\n") {
		if i := strings.Index(line, "edge.yaml:"); i >= 0 && strings.Contains(line, key) {
			var l, c int
			if _, err := fmt.Sscanf(line[i+len("edge.yaml:"):], "%d:%d", &l, &c); err == nil && l > 0 && c > 0 {
				return true
			}
		}
	}
	return false
}
