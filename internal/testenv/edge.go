package testenv

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"gopkg.in/yaml.v3"
)

var build struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// BuildEdge builds ./cmd/edge once per process and returns the binary's
// path. EDGE_BIN, when set, names a binary to use instead.
func BuildEdge(tb TB) string {
	tb.Helper()
	if p := os.Getenv("EDGE_BIN"); p != "" {
		return p
	}
	build.once.Do(func() {
		root, err := RepoRoot()
		if err != nil {
			build.err = err
			return
		}
		if _, err := os.Stat(filepath.Join(root, "cmd", "edge")); err != nil {
			build.err = fmt.Errorf("building edge: %w", err)
			return
		}
		build.dir, err = os.MkdirTemp("", "edge-build-")
		if err != nil {
			build.err = fmt.Errorf("building edge: %w", err)
			return
		}
		out := filepath.Join(build.dir, "edge")
		cmd := exec.Command("go", "build", "-o", out, "./cmd/edge")
		cmd.Dir = root
		if b, err := cmd.CombinedOutput(); err != nil {
			build.err = fmt.Errorf("go build ./cmd/edge: %w\n%s", err, b)
			return
		}
		build.path = out
	})
	if build.err != nil {
		tb.Fatalf("%v", build.err)
	}
	return build.path
}

// RemoveBuild deletes the binary BuildEdge built, if any. Call it at the end
// of TestMain or of the demo.
func RemoveBuild() {
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
}

// Edge is a running edge process.
type Edge struct {
	*Process
	// ConfigPath is the config file it was started with.
	ConfigPath string
	// AdminURL is "http://" + admin.listen.
	AdminURL string
	// HTTPAddr and HTTPSAddr are listen.http and listen.https from the config.
	HTTPAddr  string
	HTTPSAddr string
}

type edgeAddrs struct {
	Listen struct {
		HTTP  string `yaml:"http"`
		HTTPS string `yaml:"https"`
	} `yaml:"listen"`
	Admin struct {
		Listen string `yaml:"listen"`
	} `yaml:"admin"`
}

// StartEdge writes cfgYAML to a file, checks it with `edge validate`, starts
// `edge run -config FILE` and waits for the admin /healthz. The config must
// set admin.listen. Cleanup stops edge with SIGTERM; call Stop to check that
// it exits 0.
func StartEdge(tb TB, cfgYAML string) *Edge {
	tb.Helper()
	e := LaunchEdge(tb, cfgYAML)
	if err := e.WaitHealthy(30 * time.Second); err != nil {
		tb.Fatalf("%v", err)
	}
	return e
}

// LaunchEdge is StartEdge without the wait: several edges can be launched
// together and then waited for with WaitHealthy.
func LaunchEdge(tb TB, cfgYAML string) *Edge {
	tb.Helper()
	bin := BuildEdge(tb)
	var addrs edgeAddrs
	if err := yaml.Unmarshal([]byte(cfgYAML), &addrs); err != nil {
		tb.Fatalf("LaunchEdge: config is not YAML: %v", err)
	}
	if addrs.Admin.Listen == "" {
		tb.Fatalf("LaunchEdge: the config must set admin.listen")
	}
	dir := tb.TempDir()
	cfgPath := filepath.Join(dir, "edge.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfgYAML), 0o644); err != nil {
		tb.Fatalf("writing edge config: %v", err)
	}
	if out, err := exec.Command(bin, "validate", "-config", cfgPath).CombinedOutput(); err != nil {
		tb.Fatalf("edge validate -config %s: %v\n%s\nconfig:\n%s", cfgPath, err, out, cfgYAML)
	}
	// edge's temporary files (an exec export's PEM copies) go under the
	// test's directory: an edge a test kills mid-export cannot remove them.
	tmp := filepath.Join(dir, "tmp")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		tb.Fatalf("LaunchEdge: %v", err)
	}
	name := "edge-" + strings.ReplaceAll(addrs.Admin.Listen, ":", "_")
	p := Start(tb, Cmd{Name: name, Path: bin, Args: []string{"run", "-config", cfgPath}, Dir: dir, Env: []string{"TMPDIR=" + tmp}})
	return &Edge{
		Process:    p,
		ConfigPath: cfgPath,
		AdminURL:   "http://" + addrs.Admin.Listen,
		HTTPAddr:   addrs.Listen.HTTP,
		HTTPSAddr:  addrs.Listen.HTTPS,
	}
}

// WaitHealthy waits until the admin /healthz answers 200.
func (e *Edge) WaitHealthy(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		code, _, err := get(e.AdminURL + "/healthz")
		if err == nil && code == http.StatusOK {
			return nil
		}
		if e.Exited() {
			return fmt.Errorf("%s exited before /healthz answered: %v\n%s", e.Name, e.err, e.Tail(40))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s /healthz not 200 after %s (code %d, err %v)\n%s", e.Name, timeout, code, err, e.Tail(40))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Reload sends SIGHUP.
func (e *Edge) Reload() error { return e.Signal(syscall.SIGHUP) }

// WaitReady waits until the admin /readyz answers 200, that is until every
// configured name has a certificate.
func (e *Edge) WaitReady(timeout time.Duration) error {
	if err := WaitReady(e.AdminURL, timeout); err != nil {
		return fmt.Errorf("%w\n%s", err, e.Tail(30))
	}
	return nil
}

// WaitReady waits until adminURL/readyz answers 200.
func WaitReady(adminURL string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		code, body, err := get(adminURL + "/readyz")
		if err == nil && code == http.StatusOK {
			return nil
		}
		if time.Now().After(deadline) {
			if err != nil {
				return fmt.Errorf("%s/readyz not ready after %s: %w", adminURL, timeout, err)
			}
			return fmt.Errorf("%s/readyz not ready after %s: %d %s", adminURL, timeout, code, strings.TrimSpace(string(body)))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Readyz returns the status code of /readyz.
func (e *Edge) Readyz() (int, error) {
	code, _, err := get(e.AdminURL + "/readyz")
	return code, err
}

// CertificateStatus is one element of /api/certificates.
type CertificateStatus struct {
	Names     []string  `json:"names"`
	Issuer    string    `json:"issuer"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	State     string    `json:"state"`
	LastError string    `json:"last_error"`
}

// Certificates fetches /api/certificates.
func (e *Edge) Certificates() ([]CertificateStatus, error) {
	code, body, err := get(e.AdminURL + "/api/certificates")
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("/api/certificates: %d %s", code, body)
	}
	var out []CertificateStatus
	if err := json.Unmarshal(body, &out); err != nil {
		return nil, fmt.Errorf("/api/certificates: %w: %s", err, body)
	}
	return out, nil
}

// Metrics fetches and parses /metrics.
func (e *Edge) Metrics() (Metrics, error) { return FetchMetrics(e.AdminURL + "/metrics") }

var adminClient = &http.Client{Timeout: 5 * time.Second}

func get(url string) (int, []byte, error) {
	resp, err := adminClient.Get(url)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, nil, err
	}
	return resp.StatusCode, b, nil
}

// ExitCode returns the exit code of a finished command error: 0 for nil,
// -1 when err is not an exit status.
func ExitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}
