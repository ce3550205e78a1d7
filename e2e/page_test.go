package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/farmedge/edge/internal/testenv"
)

// TestStatusPage opens the admin listener's status page in Debian's
// chromium (headless, driven by playwright-core from e2e/page, see
// page.mjs) against an edge with two certificates from Pebble and a pool
// of two backends, one of them down. The page must show every certificate
// name and the backend down, then, once the test starts that backend, turn
// it up by itself without a reload; it must fit a phone's width. Then edge
// is reloaded with an admin token: the page without a session shows the
// login form and nothing private, a wrong token is refused, the right one
// makes an HttpOnly SameSite=Strict session, and logout clears the page.
//
// Screenshots (page.png, page-down.png, page-phone.png, page-login.png) are
// written to $TESTENV_LOGDIR/page/ when TESTENV_LOGDIR is set, else to
// e2e/artifacts/ (ignored by git). With CI set, a missing node, chromium or
// e2e/page/node_modules (scripts/install-deps installs them) fails the test.
func TestStatusPage(t *testing.T) {
	node := testenv.RequireTool(t, "node")
	testenv.RequireTool(t, "chromium")
	script, err := filepath.Abs(filepath.Join("page", "page.mjs"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join("page", "node_modules", "playwright-core")); err != nil {
		msg := "e2e/page/node_modules/playwright-core is missing: run scripts/install-deps"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	shots, err := filepath.Abs("artifacts")
	if err != nil {
		t.Fatal(err)
	}
	if d := os.Getenv("TESTENV_LOGDIR"); d != "" {
		shots = filepath.Join(d, "page")
	}
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}

	ports := testenv.FreePorts(t, 4)
	downPort := ports[3]
	peb := startPebbleHTTP01(t, ports[0])
	up := testenv.NewBackend(t, 1, 0)
	downURL := "http://" + testenv.Addr(downPort)
	names := []string{"status.test", "www.status.test", "shop.test"}
	conf := pConf{
		httpPort: ports[0], httpsPort: ports[1], adminPort: ports[2],
		peb: peb, storage: filepath.Join(t.TempDir(), "storage"),
		sites: []pSite{{hosts: names[:2]}, {hosts: names[2:]}},
		pools: []pPool{{name: "web", backends: []string{up.URL, downURL}}},
	}
	e := testenv.StartEdge(t, conf.yaml())
	if err := e.WaitReady(readyTimeout); err != nil {
		t.Fatal(err)
	}

	signals := t.TempDir()
	started := make(chan error, 1)
	go func() {
		// The page has shown the backend down: bring it up.
		seen := filepath.Join(signals, "seen-down")
		deadline := time.Now().Add(90 * time.Second)
		for {
			if _, err := os.Stat(seen); err == nil {
				break
			}
			if time.Now().After(deadline) {
				started <- fmt.Errorf("the page never reported %s down", downURL)
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		b, err := testenv.ServeBackend(2, testenv.Addr(downPort))
		if err == nil {
			t.Cleanup(b.Close)
		}
		started <- err
	}()
	runPage(t, node, script, e.AdminURL, map[string]string{
		"MODE": "open", "NAMES": strings.Join(names, ","), "DOWN": downURL, "SIGNAL_DIR": signals, "SHOTS": shots,
	})
	if err := <-started; err != nil {
		t.Fatal(err)
	}

	// The same edge, now with an admin token (a reload applies it at once).
	token := "page-test-token-0123456789"
	withToken := strings.Replace(conf.yaml(), fmt.Sprintf("admin: {listen: %q}", testenv.Addr(conf.adminPort)),
		fmt.Sprintf("admin: {listen: %q, token: %q}", testenv.Addr(conf.adminPort), token), 1)
	if withToken == conf.yaml() {
		t.Fatal("could not add the token to the config")
	}
	writeConfig(t, e.ConfigPath, withToken)
	if err := e.Reload(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(e.AdminURL + "/api/pools")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusUnauthorized {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the reload never made the token required (last: %v)", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	runPage(t, node, script, e.AdminURL, map[string]string{
		"MODE": "token", "NAMES": strings.Join(names, ","), "TOKEN": token, "SHOTS": shots,
	})
	t.Logf("screenshots in %s", shots)
}

// runPage runs page.mjs with env and fails the test if it fails; its output
// goes to the test log. Node and the browser it starts are one process
// group, killed together if they outlive the timeout.
func runPage(t *testing.T, node, script, adminURL string, env map[string]string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 150*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, script)
	cmd.Dir = filepath.Dir(script)
	cmd.Env = append(os.Environ(), "ADMIN_URL="+adminURL)
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	out, err := cmd.CombinedOutput()
	t.Logf("page.mjs %s:\n%s", env["MODE"], out)
	if err != nil {
		t.Fatalf("page.mjs %s: %v", env["MODE"], err)
	}
}
