package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.uber.org/zap/zapcore"

	"github.com/farmedge/edge/challenge"
	"github.com/farmedge/edge/config"
	"github.com/farmedge/edge/proxy"
)

// TestEnumsMatchRuntime holds config's lists of accepted names against what
// the runtime packages accept, so that the two cannot drift apart again.
func TestEnumsMatchRuntime(t *testing.T) {
	if got, want := slices.Sorted(slices.Values(config.Policies())), proxy.Policies(); !slices.Equal(got, want) {
		t.Errorf("config policies %v, proxy accepts %v", got, want)
	}
	if got, want := config.CompressAlgorithms(), proxy.CompressAlgorithms(); !slices.Equal(got, want) {
		t.Errorf("config compress algorithms %v, proxy accepts %v", got, want)
	}
	for _, l := range config.LogLevels() {
		if _, err := zapcore.ParseLevel(l); err != nil {
			t.Errorf("log level %q: %v", l, err)
		}
	}
	for _, f := range config.LogFormats() {
		if _, err := buildLogger(config.Log{Level: "info", Format: f}); err != nil {
			t.Errorf("log format %q: %v", f, err)
		}
	}
	for _, f := range []string{"console", ""} {
		if _, err := buildLogger(config.Log{Level: "info", Format: f}); err == nil {
			t.Errorf("buildLogger accepts format %q, which config refuses", f)
		}
	}
	for _, alg := range config.TSIGAlgorithms() {
		if _, err := challenge.NewRFC2136("lan", challenge.RFC2136Options{Server: "127.0.0.1:53", KeyName: "k", KeyAlg: alg, Key: "c2VjcmV0"}); err != nil {
			t.Errorf("TSIG algorithm %q: %v", alg, err)
		}
	}
	for _, st := range config.StorageTypes() {
		sc := config.Storage{Type: st, Path: t.TempDir(), Address: "127.0.0.1:1", Prefix: "edge"}
		s, err := buildStorage(sc, storageDeps{node: "test"})
		if err != nil {
			t.Errorf("storage type %q: %v", st, err)
			continue
		}
		closeStorage(s)
	}
	for _, p := range config.DNSProviderTypes() {
		yaml := "acme: {ca: \"https://127.0.0.1:14000/dir\", dns: {d: {provider: " + p + ", api_token: t, server: \"127.0.0.1:53\", key_name: k, key: dHNpZy1r}}}\n" +
			"sites: [{hosts: [\"*.a.test\"], dns: d, routes: [{path: /, pool: web}]}]\npools: {web: {backends: [\"http://127.0.0.1:8080\"]}}\n"
		// Each provider refuses the other's keys; keep only its own.
		if p == "cloudflare" {
			yaml = strings.Replace(yaml, `, server: "127.0.0.1:53", key_name: k, key: dHNpZy1r`, "", 1)
		} else {
			yaml = strings.Replace(yaml, ", api_token: t", "", 1)
		}
		cfg, err := config.Parse("t.yaml", []byte(yaml), nil)
		if err != nil {
			t.Errorf("dns provider %q: %v", p, err)
			continue
		}
		if _, err := buildPlan(cfg); err != nil {
			t.Errorf("dns provider %q: %v", p, err)
		}
	}
}

// TestDefaultsReachRuntime: the values the runtime packages get from a
// config with every default are explicit, never a zero the runtime would
// read as "none".
func TestDefaultsReachRuntime(t *testing.T) {
	cfg, err := config.Parse("t.yaml", []byte(`
acme: {ca: "https://127.0.0.1:14000/dir"}
sites: [{hosts: [a.test], routes: [{path: /, pool: web}]}]
pools: {web: {backends: ["http://127.0.0.1:8080"], health: {}}}
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	pl, err := buildPlan(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p := pl.proxy.Pools[0]
	h := p.Health
	if h.Interval == 0 || h.Timeout == 0 || h.Expect == 0 || h.Fails == 0 || h.Passes == 0 || h.Path == "" {
		t.Errorf("health check with zero fields: %+v", *h)
	}
	if p.Passive.Fails == 0 || p.Passive.Window == 0 || p.Passive.Cooldown == 0 {
		t.Errorf("passive check off or partial by default: %+v", p.Passive)
	}
	if p.Timeouts.Connect == 0 || p.Timeouts.ResponseHeader == 0 || p.Timeouts.Idle == 0 {
		t.Errorf("timeouts with zero fields: %+v", p.Timeouts)
	}
	if pl.proxy.WriteTimeout == 0 || cfg.Limits.ReadTimeout == 0 {
		t.Errorf("write timeout %v, read timeout %v", pl.proxy.WriteTimeout, cfg.Limits.ReadTimeout)
	}

	off, err := config.Parse("t.yaml", []byte(`
acme: {ca: "https://127.0.0.1:14000/dir"}
sites: [{hosts: [a.test], routes: [{path: /, pool: web}]}]
pools: {web: {backends: ["http://127.0.0.1:8080"], passive: {fails: 0}}}
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if pl, err := buildPlan(off); err != nil || pl.proxy.Pools[0].Passive != (proxy.PassiveCheck{}) {
		t.Errorf("passive: {fails: 0} gives %+v, %v; want passive checks off", pl.proxy.Pools[0].Passive, err)
	}
}

var posLine = regexp.MustCompile(`^\S+\.yaml:\d+:\d+: `)

// TestRefusalsHavePositions: every config edge run refuses, edge validate
// refuses first, each problem on a line of its own at FILE:LINE:COL, and
// only once.
func TestRefusalsHavePositions(t *testing.T) {
	base := "acme: {ca: \"https://127.0.0.1:14000/dir\"}\n"
	site := "sites: [{hosts: [a.test], routes: [{path: /, pool: web}]}]\n"
	pools := "pools: {web: {backends: [\"http://127.0.0.1:8080\"]}}\n"
	for _, tc := range []struct{ name, yaml, want string }{
		{"health host", base + site + "pools: {web: {backends: [\"http://127.0.0.1:8080\"], health: {host: \"a b\"}}}\n", "health host"},
		{"backend userinfo", base + site + "pools: {web: {backends: [\"http://u:p@127.0.0.1:8080\"]}}\n", "user info"},
		{"backend query", base + site + "pools: {web: {backends: [\"http://127.0.0.1:8080/?x=1\"]}}\n", "query"},
		{"port out of range", base + site + "pools: {web: {backends: [\"http://127.0.0.1:70000\"]}}\n", "70000"},
		{"site without routes", base + "sites: [{hosts: [a.test]}]\n" + pools, "no routes"},
		{"unknown pool", base + "sites: [{hosts: [a.test], routes: [{path: /, pool: wbe}]}]\n" + pools, "wbe"},
		{"ip host", base + "sites: [{hosts: [\"192.0.2.1\"], routes: [{path: /, pool: web}]}]\n" + pools, "IP"},
		{"localhost with a public CA", "sites: [{hosts: [localhost], routes: [{path: /, pool: web}]}]\n" + pools, "localhost"},
		{"catch-all without on_demand", base + "sites: [{hosts: [\"*\"], routes: [{path: /, pool: web}]}]\n" + pools, "on_demand"},
		{"sftp key file missing", base + site + pools + "exports: [{name: apache, type: sftp, hosts: [\"127.0.0.1:22\"], user: deploy, key_file: /nonexistent/id, known_hosts: /nonexistent/known_hosts, path: /srv}]\n", "apache"},
		{"unknown export target", base + "sites: [{hosts: [a.test], exports: [pm], routes: [{path: /, pool: web}]}]\n" + pools + "exports: [{name: pem, type: pem_dir, path: /tmp/x}]\n", "pm"},
		{"bad header rule", base + "sites: [{hosts: [a.test], headers: {request: {set: {\"Bad Name\": x}}}, routes: [{path: /, pool: web}]}]\n" + pools, "Bad Name"},
		{"error page missing", base + "sites: [{hosts: [a.test], error_pages: {\"503\": /nonexistent/503.html}, routes: [{path: /, pool: web}]}]\n" + pools, "503"},
		{"error page for 404", base + "sites: [{hosts: [a.test], error_pages: {\"404\": /etc/hostname}, routes: [{path: /, pool: web}]}]\n" + pools, "404"},
		{"backend ca_file missing", base + site + "pools: {web: {backends: [\"https://127.0.0.1:8443\"], tls: {ca_file: /nonexistent/ca.pem}}}\n", "ca_file"},
		{"proxy_protocol from", base + site + pools + "proxy_protocol: {from: [\"10.0.0.0/40\"]}\n", "proxy_protocol"},
		{"peers without secret", base + site + pools + "cluster: {peers: [\"http://127.0.0.1:1\"]}\n", "secret"},
		{"missing ca_root_file", "acme: {ca: \"https://127.0.0.1:14000/dir\", ca_root_file: /nonexistent/root.pem}\n" + site + pools, "ca_root_file"},
		{"tab", base + site + "pools:\n\tweb: {backends: [\"http://127.0.0.1:8080\"]}\n", "tab"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "edge.yaml")
			data := "listen: {http: \"127.0.0.1:0\", https: \"127.0.0.1:0\"}\nadmin: {listen: \"127.0.0.1:0\"}\nstorage: {path: " + t.TempDir() + "}\n" + tc.yaml
			if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
			for _, cmd := range []string{"validate", "run"} {
				var out bytes.Buffer
				ctx, cancel := context.WithCancel(t.Context())
				if cmd == "run" {
					cancel() // had it started, it would stop at once
				}
				err := Run(ctx, []string{cmd, "-config", path}, &out, &out)
				cancel()
				if err == nil {
					t.Fatalf("edge %s accepted:\n%s", cmd, data)
				}
				lines := strings.Split(strings.TrimSpace(err.Error()), "\n")
				for _, l := range lines {
					if !posLine.MatchString(l) {
						t.Errorf("edge %s: line without FILE:LINE:COL: %q", cmd, l)
					}
				}
				if !strings.Contains(err.Error(), tc.want) {
					t.Errorf("edge %s: %v; want it to mention %q", cmd, err, tc.want)
				}
				seen := map[string]bool{}
				for _, l := range lines {
					if seen[l] {
						t.Errorf("edge %s: reported twice: %q", cmd, l)
					}
					seen[l] = true
				}
			}
		})
	}
}

// TestBuildProxyPools: the pool keys reach proxy as they read: retry_on,
// protocol, tls, max_conns and the queue, the site's rate.
func TestBuildProxyPools(t *testing.T) {
	cfg, err := config.Parse("t.yaml", []byte(`
acme: {ca: "https://127.0.0.1:14000/dir"}
limits: {rate: "20/s"}
sites: [{hosts: [a.test], routes: [{path: /, pool: web}, {path: /g/, pool: grpc}]}]
pools:
  web: {backends: ["https://127.0.0.1:8443"], retries: 2, retry_on: [connect, timeout, 502, 503], max_conns: 5, queue: 0, tls: {server_name: iis.internal}}
  grpc: {backends: ["http://127.0.0.1:9000"], protocol: h2c, host_header: grpc.internal}
`), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	pc, err := buildProxy(cfg)
	if err != nil {
		t.Fatal(err)
	}
	web, grpc := pc.Pools[0], pc.Pools[1]
	if !web.RetryOn.Timeout || !slices.Equal(web.RetryOn.Statuses, []int{502, 503}) || web.Retries != 2 {
		t.Errorf("web retries %d, retry_on %+v", web.Retries, web.RetryOn)
	}
	if web.MaxConns != 5 || web.Queue != 0 || web.QueueTimeout != config.DefaultQueueTimeout {
		t.Errorf("web max_conns %d queue %d queue_timeout %v", web.MaxConns, web.Queue, web.QueueTimeout)
	}
	if web.TLS == nil || web.TLS.ServerName != "iis.internal" || web.H2C {
		t.Errorf("web tls %+v h2c %v", web.TLS, web.H2C)
	}
	if !grpc.H2C || grpc.TLS != nil || grpc.RetryOn.Timeout || len(grpc.RetryOn.Statuses) != 0 {
		t.Errorf("grpc h2c %v tls %v retry_on %+v", grpc.H2C, grpc.TLS, grpc.RetryOn)
	}
	if r := pc.Sites[0].Rate; r.Events != 20 || r.Interval.Seconds() != 1 || r.Burst != 20 {
		t.Errorf("site rate %+v, want limits.rate 20/s", r)
	}
	if grpc.HostHeader != "grpc.internal" || web.HostHeader != "" {
		t.Errorf("host_header %q %q", web.HostHeader, grpc.HostHeader)
	}

	page := filepath.Join(t.TempDir(), "503.html")
	if err := os.WriteFile(page, []byte("<h1>soon</h1>"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err = config.Parse("t.yaml", []byte(`
acme: {ca: "https://127.0.0.1:14000/dir"}
sites:
  - hosts: [a.test]
    maintenance: true
    error_pages: {"503": `+page+`}
    headers: {response: {remove: [Server]}}
    routes: [{path: /, pool: web, headers: {request: {set: {X-Route: "{path}"}}}}]
pools: {web: {backends: ["http://127.0.0.1:8080"]}}
`), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	if pc, err = buildProxy(cfg); err != nil {
		t.Fatal(err)
	}
	s := pc.Sites[0]
	if !s.Maintenance || string(s.ErrorPages[503]) != "<h1>soon</h1>" || !slices.Equal(s.ResponseHeaders.Remove, []string{"Server"}) || s.Routes[0].RequestHeaders.Set["X-Route"] != "{path}" {
		t.Errorf("site %+v", s)
	}
}

// TestCLIConventions: every command's -h prints its flags and succeeds;
// plain edge and a stray argument are usage errors that say what to do.
func TestCLIConventions(t *testing.T) {
	for _, c := range commands {
		if c.name == "help" {
			continue
		}
		var out bytes.Buffer
		if err := Run(t.Context(), []string{c.name, "-h"}, &out, &out); err != nil {
			t.Errorf("edge %s -h: %v", c.name, err)
		}
		if !strings.HasPrefix(out.String(), "usage: edge "+c.name) {
			t.Errorf("edge %s -h printed %q", c.name, out.String())
		}
		if c.name != "version" && c.name != "completion" && !strings.Contains(out.String(), "flags:\n") { // completion takes only the shell
			t.Errorf("edge %s -h lists no flags:\n%s", c.name, out.String())
		}
	}
	var out bytes.Buffer
	if err := Run(t.Context(), []string{"help", "run"}, &out, &out); err != nil || !strings.Contains(out.String(), "-config") {
		t.Errorf("edge help run: %v %q", err, out.String())
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "edge: a command is needed"},
		{[]string{"validate", "edge.yaml"}, "did you mean -config edge.yaml?"},
		{[]string{"renew"}, "takes one NAME"},
		{[]string{"certs", "-nope"}, "flag provided but not defined: -nope"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
	} {
		err := Run(t.Context(), tc.args, io.Discard, io.Discard)
		if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("edge %q: %v, want a usage error containing %q", tc.args, err, tc.want)
		}
		if strings.Count(err.Error(), "usage: edge") > 1 {
			t.Errorf("edge %q prints the usage twice:\n%v", tc.args, err)
		}
	}
	out.Reset()
	if err := Run(t.Context(), []string{"version", "-json"}, &out, &out); err != nil || !strings.Contains(out.String(), `"go_version":"go`) {
		t.Errorf("edge version -json: %v %q", err, out.String())
	}
}
