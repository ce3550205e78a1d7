package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/farmedge/edge/internal/testenv"
)

// Grafana is not installed here (nor can it be), so the dashboard is
// checked the way Grafana would use it: every panel query, with Grafana's
// variables filled in, goes to a real Prometheus (Debian's) scraping a
// real edge, and must parse and return data.

// grafanaDashboard is the part of docker/grafana/edge.json these tests read.
type grafanaDashboard struct {
	UID           string         `json:"uid"`
	SchemaVersion int            `json:"schemaVersion"`
	Panels        []grafanaPanel `json:"panels"`
	Templating    struct {
		List []struct {
			Name       string `json:"name"`
			Type       string `json:"type"`
			Definition string `json:"definition"`
		} `json:"list"`
	} `json:"templating"`
}

type grafanaPanel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	GridPos struct{ X, Y, W, H int } `json:"gridPos"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
	Panels []grafanaPanel `json:"panels"` // a collapsed row's
}

func loadDashboard(t *testing.T) grafanaDashboard {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dockerDir(t), "grafana", "edge.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d grafanaDashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("edge.json: %v", err)
	}
	return d
}

// dashboardPanels flattens rows: every panel that queries.
func dashboardPanels(d grafanaDashboard) []grafanaPanel {
	var out []grafanaPanel
	var walk func([]grafanaPanel)
	walk = func(ps []grafanaPanel) {
		for _, p := range ps {
			if p.Type == "row" {
				walk(p.Panels)
				continue
			}
			out = append(out, p)
		}
	}
	walk(d.Panels)
	return out
}

// grafanaVarRE matches $name, ${name} and ${name:format}.
var grafanaVarRE = regexp.MustCompile(`\$\{(\w+)(?::\w+)?\}|\$(\w+)`)

// grafanaVars are the values the test gives Grafana's variables: the
// built-in intervals as Grafana would compute them for a short range, and
// "All" (.*) for the dashboard's own.
var grafanaVars = map[string]string{
	"__rate_interval": "1m", "__interval": "15s", "__range": "5m",
	"job": "edge", "instance": ".*", "site": ".*", "pool": ".*",
}

func expandGrafana(t *testing.T, expr string) string {
	t.Helper()
	return grafanaVarRE.ReplaceAllStringFunc(expr, func(m string) string {
		sub := grafanaVarRE.FindStringSubmatch(m)
		name := sub[1] + sub[2]
		v, ok := grafanaVars[name]
		if !ok {
			t.Errorf("query %q uses $%s, which neither the dashboard nor this test defines", expr, name)
		}
		return v
	})
}

// TestDashboardShape: edge.json is a Grafana dashboard that provisioning
// and import both take: schema version, unique ids, every panel on the
// 24-column grid, every query through the datasource variable, every
// variable it uses defined.
func TestDashboardShape(t *testing.T) {
	d := loadDashboard(t)
	if d.UID == "" || d.SchemaVersion < 36 {
		t.Errorf("uid %q, schemaVersion %d: want a uid and schemaVersion >= 36", d.UID, d.SchemaVersion)
	}
	defined := map[string]bool{}
	for _, v := range d.Templating.List {
		defined[v.Name] = true
	}
	for _, name := range []string{"datasource", "job", "instance", "site", "pool"} {
		if !defined[name] {
			t.Errorf("no template variable %q", name)
		}
	}
	ids := map[int]string{}
	var check func([]grafanaPanel)
	check = func(ps []grafanaPanel) {
		for _, p := range ps {
			if prev, dup := ids[p.ID]; dup || p.ID == 0 {
				t.Errorf("panel %q: id %d (also %q)", p.Title, p.ID, prev)
			}
			ids[p.ID] = p.Title
			if p.GridPos.W <= 0 || p.GridPos.X+p.GridPos.W > 24 || p.GridPos.H <= 0 {
				t.Errorf("panel %q: gridPos %+v off the 24-column grid", p.Title, p.GridPos)
			}
			if p.Type == "row" {
				check(p.Panels)
				continue
			}
			if p.Datasource == nil || p.Datasource.Type != "prometheus" || p.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q: datasource %+v, want prometheus ${datasource}", p.Title, p.Datasource)
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, tg := range p.Targets {
				for _, m := range grafanaVarRE.FindAllStringSubmatch(tg.Expr, -1) {
					name := m[1] + m[2]
					if !defined[name] && !strings.HasPrefix(name, "__") {
						t.Errorf("panel %q uses $%s, which is not a template variable", p.Title, name)
					}
				}
			}
		}
	}
	check(d.Panels)
}

// TestGrafanaProvisioning: compose.yaml mounts the provisioning directory
// and edge.json where the dashboard provider looks, and the data source is
// the stack's Prometheus.
func TestGrafanaProvisioning(t *testing.T) {
	dir := dockerDir(t)
	var prov struct {
		Providers []struct {
			Type    string `yaml:"type"`
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	readYAML(t, filepath.Join(dir, "grafana", "provisioning", "dashboards", "edge.yaml"), &prov)
	if len(prov.Providers) != 1 || prov.Providers[0].Type != "file" {
		t.Fatalf("dashboard providers: %+v", prov.Providers)
	}
	var ds struct {
		Datasources []struct {
			Type, URL, UID string
			IsDefault      bool `yaml:"isDefault"`
		} `yaml:"datasources"`
	}
	readYAML(t, filepath.Join(dir, "grafana", "provisioning", "datasources", "prometheus.yaml"), &ds)
	if len(ds.Datasources) != 1 || ds.Datasources[0].Type != "prometheus" || ds.Datasources[0].URL != "http://prometheus:9090" || !ds.Datasources[0].IsDefault {
		t.Errorf("data sources: %+v, want the default one, prometheus at http://prometheus:9090", ds.Datasources)
	}
	var cf struct {
		Services map[string]struct {
			Volumes []string `yaml:"volumes"`
		} `yaml:"services"`
	}
	readYAML(t, filepath.Join(dir, "compose.yaml"), &cf)
	vols := cf.Services["grafana"].Volumes
	for _, want := range []string{
		"./grafana/provisioning:/etc/grafana/provisioning:ro",
		"./grafana/edge.json:" + prov.Providers[0].Options.Path + "/edge.json:ro",
	} {
		if !slices.Contains(vols, want) {
			t.Errorf("grafana volumes %v lack %s", vols, want)
		}
	}
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// promQuery runs an instant query and returns the status, the number of
// series (or 1 for a scalar) and the error text.
func promQuery(base, q string) (status string, n int, errText string, err error) {
	resp, err := http.Get(base + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return "", 0, "", err
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return "", 0, "", fmt.Errorf("query %q: %w", q, err)
	}
	switch r.Data.ResultType {
	case "scalar", "string":
		n = 1
	default:
		var series []json.RawMessage
		_ = json.Unmarshal(r.Data.Result, &series)
		n = len(series)
	}
	return r.Status, n, r.Error, nil
}

// promSeriesValues returns the label sets of an instant query's vector.
func promSeriesValues(t *testing.T, base, q string) []map[string]string {
	t.Helper()
	resp, err := http.Get(base + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct {
		Data struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatal(err)
	}
	var out []map[string]string
	for _, s := range r.Data.Result {
		out = append(out, s.Metric)
	}
	return out
}

// startPrometheus runs Debian's prometheus on a free loopback port,
// scraping target (host:port, /metrics) every second as job "edge".
// Cleanup stops it by PID (testenv).
func startPrometheus(t *testing.T, target string) string {
	t.Helper()
	bin := testenv.RequireTool(t, "prometheus")
	dir := t.TempDir()
	cfg := fmt.Sprintf(`global: {scrape_interval: 1s, evaluation_interval: 1s}
scrape_configs:
  - job_name: edge
    static_configs: [{targets: [%q]}]
`, target)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := testenv.Addr(testenv.FreePort(t))
	p := testenv.Start(t, testenv.Cmd{Name: "prometheus", Path: bin, Dir: dir, Args: []string{
		"--config.file=" + filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path=" + filepath.Join(dir, "data"),
		"--web.listen-address=" + addr,
	}})
	base := "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(base + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return base
			}
		}
		if p.Exited() || time.Now().After(deadline) {
			t.Fatalf("prometheus not ready at %s: %v\n%s", base, err, p.Tail(30))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestDashboardQueries runs a real edge (Pebble, Redis as the shared store,
// a live and a dead backend, a pem_dir export), sends traffic (keep-alive
// and new TLS connections, a handshake for a name it has no certificate
// for), lets a real Prometheus scrape it every second, then sends every
// panel's query in edge.json to Prometheus's query API: each must parse and
// return at least one series. The label_values() queries of the template
// variables must return values too.
func TestDashboardQueries(t *testing.T) {
	testenv.RequireTool(t, "prometheus")
	d := loadDashboard(t)

	cts := testenv.StartChallTestSrv(t)
	ports := testenv.FreePorts(t, 4)
	peb := testenv.StartPebble(t, testenv.PebbleOptions{HTTPPort: ports[0], DNSServer: cts.DNSAddr})
	redis := testenv.StartRedis(t, testenv.RedisOptions{})
	live := testenv.NewBackend(t, 1, 0)
	dead := "http://" + testenv.Addr(ports[3]) // nothing listens there
	conf := edgeConf{
		httpPort: ports[0], httpsPort: ports[1], adminPort: ports[2],
		ca: peb.DirectoryURL, caRoot: peb.MinicaRootFile,
		challenges: []string{"http-01"},
		storage:    filepath.Join(t.TempDir(), "storage"),
		sites:      []site{{hosts: []string{"dash.test"}}},
		backends:   []string{live.URL, dead},
	}
	pemDir := filepath.Join(t.TempDir(), "pem")
	cfgYAML := useRedis(t, conf.yaml(), redis.Addr, conf.storage) + fmt.Sprintf("exports: [{name: pem, type: pem_dir, path: %q}]\n", pemDir)
	e, roots := startServing(t, peb, cfgYAML)

	// Traffic until the queries are done: keep-alive requests, a new TLS
	// connection now and then, and a handshake for a name edge has no
	// certificate for (edge_tls_handshakes_total{result="no_certificate"}).
	keep := testenv.HTTPSClient(roots, e.HTTPSAddr)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			c := keep
			if i%10 == 0 {
				c = testenv.HTTPSClient(roots, e.HTTPSAddr) // a new connection: a full handshake
			}
			if resp, err := c.Get("https://dash.test/"); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			if i%20 == 0 {
				_, _ = testenv.Handshake(e.HTTPSAddr, "unknown.test", roots) // fails: no certificate
			}
		}
	})
	defer func() {
		close(stop)
		wg.Wait()
	}()

	// The export has delivered (edge_export_total, last success).
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(pemDir, "dash.test", "fullchain.pem")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pem export never wrote dash.test/fullchain.pem\n%s", e.Tail(30))
		}
		time.Sleep(100 * time.Millisecond)
	}

	base := startPrometheus(t, strings.TrimPrefix(e.AdminURL, "http://"))
	// Wait for enough scrapes that a rate over 1m has several points, with
	// traffic between them.
	deadline = time.Now().Add(60 * time.Second)
	for {
		_, n, _, err := promQuery(base, `count_over_time(up{job="edge"}[1m]) >= 8 and on() sum(up{job="edge"}) == 1`)
		if err == nil && n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus did not scrape edge 8 times in 60 s (err %v)", err)
		}
		time.Sleep(250 * time.Millisecond)
	}

	queries, answered := 0, 0
	for _, p := range dashboardPanels(d) {
		for _, tg := range p.Targets {
			expr := expandGrafana(t, tg.Expr)
			queries++
			status, n, errText, err := promQuery(base, expr)
			switch {
			case err != nil:
				t.Errorf("panel %q %s: %v", p.Title, tg.RefID, err)
			case status != "success":
				t.Errorf("panel %q %s: %s: %s\n  %s", p.Title, tg.RefID, status, errText, expr)
			case n == 0:
				t.Errorf("panel %q %s: no data\n  %s", p.Title, tg.RefID, expr)
			default:
				answered++
			}
		}
	}
	t.Logf("%d of %d panel queries answered with data", answered, queries)

	// The variables' label_values(METRIC, LABEL) queries.
	labelValuesRE := regexp.MustCompile(`^label_values\((.+),\s*(\w+)\)$`)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		m := labelValuesRE.FindStringSubmatch(v.Definition)
		if m == nil {
			t.Errorf("variable %s: %q is not label_values(METRIC, LABEL)", v.Name, v.Definition)
			continue
		}
		series := promSeriesValues(t, base, expandGrafana(t, m[1]))
		var vals []string
		for _, s := range series {
			if s[m[2]] != "" {
				vals = append(vals, s[m[2]])
			}
		}
		if len(vals) == 0 {
			t.Errorf("variable %s: %s has no values", v.Name, v.Definition)
		}
	}

	// edge_build_info carries what edge version -json prints for the
	// same binary (a label Prometheus dropped is an empty one).
	bi := promSeriesValues(t, base, `edge_build_info{job="edge"} == 1`)
	if len(bi) != 1 {
		t.Fatalf("edge_build_info == 1: %d series, want 1", len(bi))
	}
	out, err := exec.Command(testenv.BuildEdge(t), "version", "-json").Output()
	if err != nil {
		t.Fatalf("edge version -json: %v", err)
	}
	var v struct {
		Version   string `json:"version"`
		Commit    string `json:"commit"`
		Modified  bool   `json:"modified"`
		GoVersion string `json:"go_version"`
	}
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("edge version -json: %v\n%s", err, out)
	}
	if v.Commit != "" && v.Modified {
		v.Commit += "+modified"
	}
	want := map[string]string{"version": v.Version, "commit": v.Commit, "goversion": v.GoVersion}
	for k, w := range want {
		if got := bi[0][k]; got != w {
			t.Errorf("edge_build_info %s=%q, edge version says %q (%v)", k, got, w, bi[0])
		}
	}
	if v.GoVersion != runtime.Version() && os.Getenv("EDGE_BIN") == "" {
		t.Errorf("edge version's Go %q, want %q (the toolchain that built it)", v.GoVersion, runtime.Version())
	}
}
