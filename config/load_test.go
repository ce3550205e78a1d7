package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func mustParse(t *testing.T, src string, env func(string) (string, bool)) *Config {
	t.Helper()
	return mustParseOf(t, src, env, false)
}

// mustPreview is mustParse with the features notBuilt refuses accepted.
func mustPreview(t *testing.T, src string, env func(string) (string, bool)) *Config {
	t.Helper()
	return mustParseOf(t, src, env, true)
}

func mustParseOf(t *testing.T, src string, env func(string) (string, bool), preview bool) *Config {
	t.Helper()
	c, err := parse("t.yaml", []byte(src), env, preview)
	if err != nil {
		t.Fatalf("Parse:\n%v", err)
	}
	return c
}

func TestExpand(t *testing.T) {
	env := mapEnv(map[string]string{"HOST": "example.com", "EMPTY": "", "PORT": "8443"})
	tests := []struct {
		in, want, err string
	}{
		{in: "plain", want: "plain"},
		{in: "${HOST}", want: "example.com"},
		{in: "www.${HOST}:${PORT}", want: "www.example.com:8443"},
		{in: "${MISSING:-fallback}", want: "fallback"},
		{in: "${EMPTY:-fallback}", want: "fallback"},
		{in: "${HOST:-fallback}", want: "example.com"},
		{in: "${MISSING:-}", want: ""},
		{in: "${EMPTY}", want: ""},
		{in: "${MISSING:-a:b-c}", want: "a:b-c"},
		{in: "$$HOST", want: "$HOST"},
		{in: "$${HOST}", want: "${HOST}"},
		{in: "cost $5", want: "cost $5"},
		{in: "end$", want: "end$"},
		{in: "${MISSING}", err: "environment variable MISSING is not set"},
		{in: "${HOST", err: "unterminated ${"},
		{in: "${}", err: "invalid variable name"},
		{in: "${A-B}", err: "invalid variable name"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := expand(tc.in, env)
			switch {
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Errorf("expand(%q) error = %v, want %q", tc.in, err, tc.err)
			case tc.err == "" && (err != nil || got != tc.want):
				t.Errorf("expand(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestEnvInConfig(t *testing.T) {
	src := `
acme:
  email: "ops@${DOMAIN}"
  dns: {cf: {provider: cloudflare, api_token: "${CF_TOKEN}"}}
sites:
  - hosts: ["${DOMAIN}", "www.${DOMAIN}", "*.apps.${DOMAIN}"]
    dns: cf
    hsts: ${HSTS:-31536000}
    routes: [{path: /, pool: web}]
pools:
  web:
    backends: ["http://${BACKEND:-127.0.0.1:8080}"]
    retries: ${RETRIES:-}
    timeouts: {connect: "${CONNECT:-1s}"}
`
	c := mustParse(t, src, mapEnv(map[string]string{"DOMAIN": "Example.COM", "CF_TOKEN": "tok"}))
	if c.ACME.Email != "ops@Example.COM" {
		t.Errorf("email = %q", c.ACME.Email)
	}
	if got := c.ACME.DNS["cf"].APIToken; got != "tok" {
		t.Errorf("api_token = %q", got)
	}
	if want := []string{"example.com", "www.example.com", "*.apps.example.com"}; !reflect.DeepEqual(c.Sites[0].Hosts, want) {
		t.Errorf("hosts = %q, want %q", c.Sites[0].Hosts, want)
	}
	if c.Sites[0].HSTS != 31536000 {
		t.Errorf("hsts = %d", c.Sites[0].HSTS)
	}
	p := c.Pools["web"]
	if p.Backends[0].URL != "http://127.0.0.1:8080" || p.Retries != 0 || p.Timeouts.Connect != time.Second {
		t.Errorf("pool = %+v", p)
	}
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestSecretFiles(t *testing.T) {
	dir := t.TempDir()
	f := func(name, content string) string { return writeFile(t, dir, name, content) }
	src := `
admin: {listen: "0.0.0.0:9180", token_file: "` + f("token", "admintoken\n") + `"}
acme:
  eab: {key_id: kid, hmac_key_file: "` + f("hmac", "hmac\r\n") + `"}
  dns:
    cf: {provider: cloudflare, api_token_file: "` + f("cf", "cftoken") + `", zone_token_file: "` + f("zone", "zonetoken\n\n") + `"}
    lan: {provider: rfc2136, server: "10.0.0.53:53", key_name: edge, key_file: "` + f("tsig", "dHNpZy1r\n") + `"}
storage: {type: redis, address: "redis:6379", password_file: "` + f("redis", "redispw\n") + `"}
cluster: {peers: ["http://edge-2"], secret_file: "` + f("peers", "peersecret\n") + `"}
exports:
  - {name: ccs, type: pfx_dir, path: /mnt/ccs, password_file: "` + f("pfx", "pfxpw\n") + `"}
  - {name: kv, type: azure_keyvault, vault: "https://v.vault.azure.net", tenant_id: t, client_id: c, client_secret_file: "` + f("azure", "azuresecret\n") + `"}
  - {name: web, type: sftp, hosts: [web1], user: u, path: /p, key_file: /nonexistent/id_ed25519, known_hosts: /nonexistent/kh}
` + base
	c := mustPreview(t, src, noEnv)
	checks := []struct{ name, got, want string }{
		{"admin.token", c.Admin.Token, "admintoken"},
		{"admin.token_file kept", c.Admin.TokenFile, filepath.Join(dir, "token")},
		{"acme.eab.hmac_key", c.ACME.EAB.HMACKey, "hmac"},
		{"cf api_token", c.ACME.DNS["cf"].APIToken, "cftoken"},
		{"cf zone_token", c.ACME.DNS["cf"].ZoneToken, "zonetoken"},
		{"rfc2136 key", c.ACME.DNS["lan"].Key, "dHNpZy1r"},
		{"rfc2136 key_file kept", c.ACME.DNS["lan"].KeyFile, filepath.Join(dir, "tsig")},
		{"storage.password", c.Storage.Password, "redispw"},
		{"cluster.secret", c.Cluster.Secret, "peersecret"},
		{"export password", c.Exports[0].Password, "pfxpw"},
		{"export client_secret", c.Exports[1].ClientSecret, "azuresecret"},
		{"sftp key_file is a path, not read", c.Exports[2].KeyFile, "/nonexistent/id_ed25519"},
	}
	for _, tc := range checks {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("got %q, want %q", tc.got, tc.want)
			}
		})
	}
}

func TestSecretFileErrorPositions(t *testing.T) {
	dir := t.TempDir()
	empty := writeFile(t, dir, "empty", "\n")
	notB64 := writeFile(t, dir, "tsig", "not base64!\n")
	src := `
acme:
  dns:
    lan:
      provider: rfc2136
      server: "10.0.0.53:53"
      key_name: edge
      key_file: "` + notB64 + `"
    cf:
      provider: cloudflare
      api_token: inline
      api_token_file: "` + empty + `"
admin:
  token_file: "` + empty + `"
` + base
	checkProblems(t, problems(t, src, noEnv), []string{
		`8:17: rfc2136 key is not base64`,
		`12:23: both api_token and api_token_file are set`,
		`14:15: token_file: ` + empty + ` is empty`,
	})
}

func TestDefaults(t *testing.T) {
	c := mustParse(t, `
sites:
  - hosts: [a.example.com]
    routes: [{path: /, pool: web, max_body: 10MB}, {path: /up/, pool: web, max_body: 512KiB}, {path: /b/, pool: web, max_body: 1048576}]
pools:
  web:
    backends: ["http://127.0.0.1:8080"]
    health: {}
  bare:
    backends: ["http://127.0.0.1:8081"]
    retries: 2
`, noEnv)
	tr, three, queue := true, 3, DefaultQueue
	want := &Config{
		Listen: Listen{HTTP: ":80", HTTPS: ":443", HTTP1: HTTP1Edge},
		Admin:  Admin{Listen: "127.0.0.1:9180"},
		ACME: ACME{
			CA:                     "letsencrypt",
			CADirectory:            "https://acme-v02.api.letsencrypt.org/directory",
			Challenges:             []string{"http-01", "tls-alpn-01"},
			DNSResolvers:           []string{"1.1.1.1:53", "8.8.8.8:53"},
			IPProfiles:             []string{"shortlived"},
			DNSPropagationTimeout:  2 * time.Minute,
			DNSPropagationInterval: 2 * time.Second,
		},
		Storage: Storage{Type: "file", Path: "/var/lib/edge"},
		Limits: Limits{ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 60 * time.Second, WriteTimeout: 60 * time.Second,
			IdleTimeout: 120 * time.Second, MaxHeaderBytes: 65536},
		Sites: []Site{{
			Hosts: []string{"a.example.com"},
			Routes: []Route{
				{Path: "/", Pool: "web", MaxBody: "10MB", MaxBodyBytes: 10_000_000},
				{Path: "/up/", Pool: "web", MaxBody: "512KiB", MaxBodyBytes: 512 << 10},
				{Path: "/b/", Pool: "web", MaxBody: "1048576", MaxBodyBytes: 1 << 20},
			},
		}},
		Pools: map[string]Pool{
			"web": {
				Policy:   "round_robin",
				Backends: []Backend{{URL: "http://127.0.0.1:8080"}},
				Health:   &Health{Path: "/", Interval: 5 * time.Second, Timeout: 2 * time.Second, Expect: 200, Fails: 2, Passes: 2},
				Passive:  Passive{Enabled: &tr, Fails: &three, Window: 10 * time.Second, Cooldown: 30 * time.Second},
				Timeouts: Timeouts{Connect: 3 * time.Second, ResponseHeader: 30 * time.Second, Idle: 90 * time.Second},
				Queue:    &queue, QueueTimeout: 10 * time.Second, Protocol: "http", RetryOn: []string{"connect"},
			},
			"bare": {
				Policy:   "round_robin",
				Backends: []Backend{{URL: "http://127.0.0.1:8081"}},
				Passive:  Passive{Enabled: &tr, Fails: &three, Window: 10 * time.Second, Cooldown: 30 * time.Second},
				Retries:  2,
				Timeouts: Timeouts{Connect: 3 * time.Second, ResponseHeader: 30 * time.Second, Idle: 90 * time.Second},
				Queue:    &queue, QueueTimeout: 10 * time.Second, Protocol: "http", RetryOn: []string{"connect"},
			},
		},
		ExportCheckInterval: 5 * time.Minute,
		Log:                 Log{Level: "info", Format: "json", Access: &tr},
		File:                "t.yaml",
	}
	if got, want := c.PoolNames(), []string{"web", "bare"}; !reflect.DeepEqual(got, want) {
		t.Errorf("PoolNames() = %q, want %q", got, want)
	}
	c.vals, c.poolOrder = nil, nil // positions: see TestErrorAt
	if !reflect.DeepEqual(c, want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", c, want)
	}
	if !c.Sites[0].Redirect() {
		t.Error("redirect_http should default to true")
	}
}

func TestCADirectory(t *testing.T) {
	tests := []struct{ ca, want string }{
		{"letsencrypt", "https://acme-v02.api.letsencrypt.org/directory"},
		{"letsencrypt-staging", "https://acme-staging-v02.api.letsencrypt.org/directory"},
		{"zerossl", "https://acme.zerossl.com/v2/DV90"},
		{"https://localhost:14000/dir", "https://localhost:14000/dir"},
		{"HTTPS://Pebble:14000//dir/", "HTTPS://Pebble:14000//dir/"}, // verbatim: certmagic keys storage by it
	}
	for _, tc := range tests {
		t.Run(tc.ca, func(t *testing.T) {
			c := mustParse(t, `acme: {ca: "`+tc.ca+`"}`+base, noEnv)
			if c.ACME.CADirectory != tc.want || c.ACME.CA != tc.ca {
				t.Errorf("CA %q: CADirectory = %q, want %q", c.ACME.CA, c.ACME.CADirectory, tc.want)
			}
		})
	}
}

func TestOnDemandRate(t *testing.T) {
	tests := []struct {
		rate  string
		n     int
		every time.Duration
	}{
		{"10/m", 10, time.Minute},
		{"1/s", 1, time.Second},
		{"100/h", 100, time.Hour},
		{"5/30s", 5, 30 * time.Second},
		{"", 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.rate, func(t *testing.T) {
			c := mustPreview(t, `on_demand: {ask: "http://app/ok", rate: "`+tc.rate+`"}`+base, noEnv)
			if c.OnDemand.RateEvents != tc.n || c.OnDemand.RateInterval != tc.every {
				t.Errorf("rate %q = %d/%s, want %d/%s", tc.rate, c.OnDemand.RateEvents, c.OnDemand.RateInterval, tc.n, tc.every)
			}
		})
	}
}

func TestMergeKeysAndAnchors(t *testing.T) {
	c := mustParse(t, `
x-timeouts: &timeouts {connect: 1s}
pools:
  web: &pool
    policy: least_conn
    backends: ["http://127.0.0.1:8080"]
    retries: 1
  api:
    <<: *pool
    retries: 3
    timeouts: *timeouts
sites:
  - hosts: [a.example.com]
    routes: &routes [{path: /, pool: web}]
  - hosts: [b.example.com]
    routes: *routes
`, noEnv)
	api := c.Pools["api"]
	if api.Policy != "least_conn" || api.Retries != 3 || len(api.Backends) != 1 || api.Timeouts.Connect != time.Second {
		t.Errorf("merged pool = %+v", api)
	}
	if len(c.Sites[1].Routes) != 1 || c.Sites[1].Routes[0].Pool != "web" {
		t.Errorf("aliased routes = %+v", c.Sites[1].Routes)
	}
}

func TestValidateWithoutPositions(t *testing.T) {
	c := &Config{
		Sites: []Site{{Hosts: []string{"a.example.com"}, Routes: []Route{{Path: "/", Pool: "nope"}}}},
		Pools: map[string]Pool{"web": {Backends: []Backend{{URL: "http://127.0.0.1:8080"}}}},
	}
	c.ApplyDefaults()
	err := c.Validate()
	if err == nil || err.Error() != `sites[0].routes[0].pool: pool "nope" is not defined in pools` {
		t.Errorf("Validate() = %v", err)
	}
	c.Sites[0].Routes[0].Pool = "web"
	if err := c.Validate(); err != nil {
		t.Errorf("Validate() = %v", err)
	}
}

func TestSummary(t *testing.T) {
	c := mustParse(t, `
sites:
  - hosts: [a.example.com, b.example.com]
    routes: [{path: /, pool: web}]
  - hosts: [c.example.com]
    routes: [{path: /, pool: api}]
pools:
  web: {backends: ["http://127.0.0.1:8080", "http://127.0.0.1:8081"]}
  api: {backends: ["http://127.0.0.1:9000"]}
storage: {type: redis, address: "redis:6379"}
`, noEnv)
	if got, want := c.Summary(), "2 sites, 3 hosts, 2 pools, 3 backends, storage redis"; got != want {
		t.Errorf("Summary() = %q, want %q", got, want)
	}
}

func TestLoad(t *testing.T) {
	path := writeFile(t, t.TempDir(), "edge.yaml", "log: {level: loud}"+base)
	_, err := Load(path)
	if err == nil || err.Error() != path+`:1:14: unknown log level "loud": expected one of debug, info, warn, error` {
		t.Errorf("Load() error = %v", err)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Error("Load(missing) succeeded")
	}
}

// TestBackendForms: a backend is a URL alone or {url, weight}.
func TestBackendForms(t *testing.T) {
	c := mustParseOf(t, `
pools:
  web: {backends: ["http://127.0.0.1:8080", {url: "http://127.0.0.1:8081", weight: 3}]}
sites: [{hosts: [a.example.com], routes: [{path: /, pool: web}]}]
`, func(string) (string, bool) { return "", false }, false)
	want := []Backend{{URL: "http://127.0.0.1:8080"}, {URL: "http://127.0.0.1:8081", Weight: 3}}
	if got := c.Pools["web"].Backends; !reflect.DeepEqual(got, want) {
		t.Errorf("backends %+v, want %+v", got, want)
	}
	if got := c.Pools["web"].URLs(); !reflect.DeepEqual(got, []string{"http://127.0.0.1:8080", "http://127.0.0.1:8081"}) {
		t.Errorf("URLs() = %q", got)
	}
}
