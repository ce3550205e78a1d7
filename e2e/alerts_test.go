package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/farmedge/edge/internal/testenv"
)

// The files under docker/ cannot be run here (no Docker engine), so these
// tests check everything about them that the installed tools can:
// docker-compose parses compose.yaml, promtool checks and unit-tests the
// alert rules and the Prometheus config, HAProxy checks haproxy.cfg, edge
// validates its two configs, and a real edge's /metrics passes
// `promtool check metrics` and carries every series the alerts use.

// dockerDir is the absolute path of the repository's docker/ directory.
func dockerDir(t *testing.T) string {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, "docker")
}

// runTool runs a program and returns its combined output, failing the test
// with that output when it exits non-zero.
func runTool(t *testing.T, dir string, stdin []byte, env []string, path string, args ...string) string {
	t.Helper()
	cmd := exec.Command(path, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s (in %s): %v\n%s", filepath.Base(path), strings.Join(args, " "), dir, err, out)
	}
	return string(out)
}

// composeEnv clears the variables compose.yaml reads, so that the checks
// see its defaults whatever the caller's environment holds.
var composeEnv = []string{
	"EDGE_VERSION=", "EDGE_HOST=", "EDGE_ACME_EMAIL=", "EDGE_ACME_CA=", "ADMIN_TOKEN_FILE=",
	"EDGE_HTTP_PORT=", "EDGE_HTTPS_PORT=", "EDGE_ADMIN_PORT=", "PROMETHEUS_PORT=", "GRAFANA_PORT=", "GRAFANA_ADMIN_PASSWORD=",
	"CLUSTER_HTTP_PORT=", "CLUSTER_HTTPS_PORT=", "COMPOSE_PROFILES=", "COMPOSE_FILE=",
}

type composeService struct {
	Image       string            `yaml:"image"`
	Profiles    []string          `yaml:"profiles"`
	Command     any               `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
	Volumes     []string          `yaml:"volumes"`
	Secrets     []struct {
		Source string `yaml:"source"`
	} `yaml:"secrets"`
	Sysctls map[string]string `yaml:"sysctls"`
	User    string            `yaml:"user"`
}

// TestDockerComposeConfig: `docker-compose config` parses compose.yaml,
// with and without the cluster profile, and the resolved file wires what
// the configs rely on (secrets, mounts, Redis persistence).
func TestDockerComposeConfig(t *testing.T) {
	dc := testenv.RequireTool(t, "docker-compose")
	dir := dockerDir(t)
	root := filepath.Dir(dir)
	file := filepath.Join("docker", "compose.yaml")

	runTool(t, root, nil, composeEnv, dc, "-f", file, "config", "-q")

	out := runTool(t, root, nil, composeEnv, dc, "-f", file, "--profile", "cluster", "config", "--services")
	got := strings.Fields(out)
	sort.Strings(got)
	want := []string{"edge", "edge-1", "edge-2", "edge-3", "grafana", "haproxy", "prometheus", "redis", "web-1", "web-2"}
	if !slices.Equal(got, want) {
		t.Errorf("services with --profile cluster: %v, want %v", got, want)
	}

	cmd := exec.Command(dc, "-f", file, "--profile", "cluster", "config")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), composeEnv...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	resolved, err := cmd.Output()
	if err != nil {
		t.Fatalf("docker-compose config: %v\n%s", err, stderr.String())
	}
	var cf struct {
		Services map[string]composeService `yaml:"services"`
		Secrets  map[string]struct {
			File string `yaml:"file"`
		} `yaml:"secrets"`
	}
	if err := yaml.Unmarshal(resolved, &cf); err != nil {
		t.Fatalf("docker-compose config output: %v\n%s", err, resolved)
	}

	secret, ok := cf.Secrets["admin_token"]
	if !ok {
		t.Fatalf("no admin_token secret:\n%s", resolved)
	}
	if _, err := os.Stat(secret.File); err != nil {
		t.Errorf("admin_token secret file: %v", err)
	}
	hasSecret := func(s composeService) bool {
		for _, sec := range s.Secrets {
			if sec.Source == "admin_token" {
				return true
			}
		}
		return false
	}

	edges := map[string]string{"edge": "edge.yaml", "edge-1": "edge-cluster.yaml", "edge-2": "edge-cluster.yaml", "edge-3": "edge-cluster.yaml"}
	for name, cfgFile := range edges {
		s, ok := cf.Services[name]
		if !ok {
			t.Errorf("no service %s", name)
			continue
		}
		if !hasSecret(s) {
			t.Errorf("%s: no admin_token secret (edge.yaml reads it as admin.token_file)", name)
		}
		if v := s.Environment["EDGE_ADMIN_TOKEN_FILE"]; v != "/run/secrets/admin_token" {
			t.Errorf("%s: EDGE_ADMIN_TOKEN_FILE=%q, want /run/secrets/admin_token", name, v)
		}
		mount := filepath.Join(dir, cfgFile) + ":/etc/edge/edge.yaml:ro"
		if !slices.Contains(s.Volumes, mount) {
			t.Errorf("%s: volumes %v lack %s", name, s.Volumes, mount)
		}
		if s.Sysctls["net.ipv4.ip_unprivileged_port_start"] != "0" {
			t.Errorf("%s: the non-root edge needs net.ipv4.ip_unprivileged_port_start=0 to bind 80/443", name)
		}
		if wantCluster := name != "edge"; slices.Contains(s.Profiles, "cluster") != wantCluster {
			t.Errorf("%s: profiles %v", name, s.Profiles)
		}
	}
	if !hasSecret(cf.Services["prometheus"]) {
		t.Errorf("prometheus: no admin_token secret (prometheus.yml reads it as credentials_file)")
	}
	if cmd := strings.Join(anyStrings(cf.Services["redis"].Command), " "); !strings.Contains(cmd, "--appendonly yes") {
		t.Errorf("redis command %q: want --appendonly yes (locks survive a Redis restart)", cmd)
	}
	for _, name := range []string{"edge", "edge-1", "prometheus", "haproxy", "grafana"} {
		for _, v := range cf.Services[name].Volumes {
			src, _, _ := strings.Cut(v, ":")
			if filepath.IsAbs(src) {
				if _, err := os.Stat(src); err != nil {
					t.Errorf("%s mounts %s: %v", name, src, err)
				}
			}
		}
	}
}

func anyStrings(v any) []string {
	switch v := v.(type) {
	case string:
		return []string{v}
	case []any:
		var out []string
		for _, e := range v {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// TestDockerEdgeConfigs: both edge configs pass `edge validate` as they are
// (their defaults point token_file at the example secret, relative to the
// repository root) and as the containers see them (EDGE_ADMIN_TOKEN_FILE
// set, another working directory). Without the variable outside the
// checkout, validation fails: the admin API is never exposed without a token.
func TestDockerEdgeConfigs(t *testing.T) {
	bin := testenv.BuildEdge(t)
	dir := dockerDir(t)
	root := filepath.Dir(dir)
	elsewhere := t.TempDir()
	unset := []string{"EDGE_ADMIN_TOKEN_FILE=", "EDGE_HOST=", "EDGE_ACME_EMAIL=", "EDGE_ACME_CA="}
	for _, name := range []string{"edge.yaml", "edge-cluster.yaml"} {
		t.Run(name, func(t *testing.T) {
			runTool(t, root, nil, unset, bin, "validate", "-config", filepath.Join("docker", name))

			container := []string{
				"EDGE_ADMIN_TOKEN_FILE=" + filepath.Join(dir, "secrets", "admin_token.example"),
				"EDGE_HOST=www.example.org", "EDGE_ACME_EMAIL=ops@example.org", "EDGE_ACME_CA=letsencrypt",
			}
			runTool(t, elsewhere, nil, container, bin, "validate", "-config", filepath.Join(dir, name))

			cmd := exec.Command(bin, "validate", "-config", filepath.Join(dir, name))
			cmd.Dir = elsewhere
			cmd.Env = append(os.Environ(), unset...)
			out, err := cmd.CombinedOutput()
			if err == nil || !strings.Contains(string(out), "token_file") {
				t.Errorf("edge validate outside the checkout without EDGE_ADMIN_TOKEN_FILE: err %v, want a token_file error:\n%s", err, out)
			}
		})
	}
}

// TestPrometheusRules: promtool checks alerts.yml and runs its unit tests.
func TestPrometheusRules(t *testing.T) {
	promtool := testenv.RequireTool(t, "promtool")
	dir := filepath.Join(dockerDir(t), "prometheus")
	out := runTool(t, dir, nil, nil, promtool, "check", "rules", "alerts.yml")
	t.Logf("promtool check rules:\n%s", out)
	// Run from the repository root, as the README says.
	out = runTool(t, filepath.Dir(filepath.Dir(dir)), nil, nil, promtool, "test", "rules", filepath.Join("docker", "prometheus", "alerts_test.yml"))
	t.Logf("promtool test rules:\n%s", out)
	if !strings.Contains(out, "SUCCESS") {
		t.Errorf("promtool test rules did not report SUCCESS:\n%s", out)
	}
}

// TestPrometheusConfig: promtool checks prometheus.yml. It names the
// container's secret (/run/secrets/admin_token), and promtool insists that
// credentials_file exists, so the check runs on a copy pointing at the
// example secret, next to a copy of alerts.yml (rule_files is relative).
func TestPrometheusConfig(t *testing.T) {
	promtool := testenv.RequireTool(t, "promtool")
	dir := filepath.Join(dockerDir(t), "prometheus")
	cfg, err := os.ReadFile(filepath.Join(dir, "prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	const inContainer = "credentials_file: /run/secrets/admin_token"
	if !bytes.Contains(cfg, []byte(inContainer)) {
		t.Fatalf("prometheus.yml does not contain %q", inContainer)
	}
	example := filepath.Join(dockerDir(t), "secrets", "admin_token.example")
	cfg = bytes.ReplaceAll(cfg, []byte(inContainer), []byte("credentials_file: "+example))
	tmp := t.TempDir()
	if err := os.WriteFile(filepath.Join(tmp, "prometheus.yml"), cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	rules, err := os.ReadFile(filepath.Join(dir, "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "alerts.yml"), rules, 0o644); err != nil {
		t.Fatal(err)
	}
	out := runTool(t, tmp, nil, nil, promtool, "check", "config", "prometheus.yml")
	if !strings.Contains(out, "1 rule files found") {
		t.Errorf("promtool check config did not load alerts.yml:\n%s", out)
	}
}

// TestHAProxyConfig: `haproxy -c` accepts haproxy.cfg. The edge-N names
// resolve only inside compose's network, so "could not resolve" warnings
// are expected (init-addr none lets HAProxy start anyway); any other
// warning fails.
func TestHAProxyConfig(t *testing.T) {
	haproxy := testenv.RequireTool(t, "haproxy")
	out := runTool(t, dockerDir(t), nil, nil, haproxy, "-c", "-f", "haproxy.cfg")
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "[WARNING]") && !strings.Contains(line, "could not resolve address 'edge-") {
			t.Errorf("haproxy -c: %s", line)
		}
		if strings.Contains(line, "[ALERT]") {
			t.Errorf("haproxy -c: %s", line)
		}
	}
}

// alertMetricRE finds metric names in PromQL.
var alertMetricRE = regexp.MustCompile(`\bedge_[a-z_]+\b`)

// alertExprs returns alert name -> expr from alerts.yml.
func alertExprs(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dockerDir(t), "prometheus", "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			out[r.Alert] = r.Expr
		}
	}
	return out
}

// TestEdgeMetricsForAlerts runs a real edge (Pebble, HTTP-01, Redis as the
// shared store, a pool with one live and one dead backend), serves a few
// requests, then checks its
// /metrics with `promtool check metrics` and that every series and label
// the alerts use is there: a renamed metric would otherwise leave an alert
// that never fires.
func TestEdgeMetricsForAlerts(t *testing.T) {
	promtool := testenv.RequireTool(t, "promtool")
	exprs := alertExprs(t)
	if len(exprs) != 13 {
		t.Errorf("alerts.yml has %d alerts, want 13: %v", len(exprs), exprs)
	}

	cts := testenv.StartChallTestSrv(t)
	ports := testenv.FreePorts(t, 4)
	peb := testenv.StartPebble(t, testenv.PebbleOptions{HTTPPort: ports[0], DNSServer: cts.DNSAddr})
	live := testenv.NewBackend(t, 1, 0)
	dead := "http://" + testenv.Addr(ports[3]) // nothing listens there
	conf := edgeConf{
		httpPort: ports[0], httpsPort: ports[1], adminPort: ports[2],
		ca: peb.DirectoryURL, caRoot: peb.MinicaRootFile,
		challenges: []string{"http-01"},
		storage:    filepath.Join(t.TempDir(), "storage"),
		sites:      []site{{hosts: []string{"metrics.test"}}},
		backends:   []string{live.URL, dead},
	}
	// An export target, so that its series are there too; Redis, so that
	// the shared store's are.
	redis := testenv.StartRedis(t, testenv.RedisOptions{})
	cfgYAML := useRedis(t, conf.yaml(), redis.Addr, conf.storage) + fmt.Sprintf("exports: [{name: pem, type: pem_dir, path: %q}]\n", filepath.Join(t.TempDir(), "pem"))
	e := testenv.StartEdge(t, cfgYAML)
	if err := e.WaitReady(readyTimeout); err != nil {
		t.Fatalf("%v", err)
	}
	roots, err := peb.IssuingRoots()
	if err != nil {
		t.Fatal(err)
	}
	client := testenv.HTTPSClient(roots, e.HTTPSAddr)
	for range 4 {
		resp, err := client.Get("https://metrics.test/")
		if err != nil {
			t.Fatalf("GET https://metrics.test/: %v", err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}

	// Wait for the health check to mark the dead backend down.
	var text []byte
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(e.AdminURL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		text, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("/metrics: %v %s", err, resp.Status)
		}
		m, err := testenv.ParseMetrics(string(text))
		if err != nil {
			t.Fatal(err)
		}
		if v, ok := m.Get("edge_backend_up", "backend", dead); ok && v == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("edge_backend_up for %s never went to 0:\n%s", dead, m.Dump("edge_backend_up"))
		}
		time.Sleep(200 * time.Millisecond)
	}

	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(text)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}

	m, err := testenv.ParseMetrics(string(text))
	if err != nil {
		t.Fatal(err)
	}
	// The labels each alert's annotations or grouping use.
	labels := map[string][]string{
		"edge_certificate_not_after_timestamp_seconds":  {"name", "issuer"},
		"edge_certificate_renewal_timestamp_seconds":    {"name"},
		"edge_certificate_ready":                        {"name"},
		"edge_acme_orders_total":                        {"issuer", "result"},
		"edge_backend_up":                               {"pool", "backend"},
		"edge_config_last_reload_successful":            nil,
		"edge_http_requests_total":                      {"site", "pool", "code"},
		"edge_export_pending":                           {"target"},
		"edge_tls_handshakes_total":                     {"result"},
		"edge_storage_up":                               nil,
		"edge_storage_lock_lease_end_timestamp_seconds": {"name"},
	}
	// Series that exist only for a moment (a lock is held while an order
	// runs); their names and labels are tested where they are made
	// (tlsmgr/redisstore TestCollectorUpAndLeaseEnd).
	transient := map[string]bool{"edge_storage_lock_lease_end_timestamp_seconds": true}
	used := map[string]bool{}
	for alert, expr := range exprs {
		for _, name := range alertMetricRE.FindAllString(expr, -1) {
			used[name] = true
			if _, known := labels[name]; !known {
				t.Errorf("%s uses %s, which this test does not know: add it to labels", alert, name)
			}
		}
	}
	for name, keys := range labels {
		if !used[name] {
			t.Errorf("no alert uses %s any more: drop it from labels", name)
		}
		samples := m.Find(name)
		if len(samples) == 0 && transient[name] {
			continue
		}
		if len(samples) == 0 {
			t.Errorf("edge exposes no %s, which alerts.yml uses", name)
			continue
		}
		for _, k := range keys {
			if _, ok := samples[0].Labels[k]; !ok {
				t.Errorf("%s has no label %q (alerts use it): %v", name, k, samples[0].Labels)
			}
		}
	}
	if v, ok := m.Get("edge_certificate_ready", "name", "metrics.test"); !ok || v != 1 {
		t.Errorf("edge_certificate_ready{name=metrics.test} = %g (%v), want 1", v, ok)
	}
	if v, ok := m.Get("edge_config_last_reload_successful"); !ok || v != 1 {
		t.Errorf("edge_config_last_reload_successful = %g (%v), want 1", v, ok)
	}
	if v, ok := m.Get("edge_storage_up"); !ok || v != 1 {
		t.Errorf("edge_storage_up = %g (%v) with Redis running, want 1", v, ok)
	}
	if n := len(m.Find("edge_acme_orders_total", "result", "success")); n == 0 {
		t.Errorf("no edge_acme_orders_total{result=\"success\"}:\n%s", m.Dump("edge_acme_orders_total"))
	}
}

// useRedis replaces the file storage line of an edgeConf's YAML with Redis
// at addr (path keeps the local copy).
func useRedis(t *testing.T, cfgYAML, addr, path string) string {
	t.Helper()
	file := fmt.Sprintf("storage: {type: file, path: %q}\n", path)
	if !strings.Contains(cfgYAML, file) {
		t.Fatalf("no %q in the config:\n%s", file, cfgYAML)
	}
	return strings.Replace(cfgYAML, file, fmt.Sprintf("storage: {type: redis, address: %q, path: %q}\n", addr, path), 1)
}
