package config

import (
	"errors"
	"fmt"
	"io/fs"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// pebble is a custom directory URL, as the e2e tests use.
const pebble = `acme: {ca: "https://127.0.0.1:14000/dir"}`

// site is a one-site config for host h routed to pool web.
func site(h string) string {
	return `
sites:
  - hosts: [` + h + `]
    routes: [{path: /, pool: web}]
pools:
  web: {backends: ["http://127.0.0.1:8080"]}
`
}

func TestPassive(t *testing.T) {
	tests := []struct {
		name     string
		passive  string
		env      map[string]string
		on       bool
		fails    int
		window   time.Duration
		cooldown time.Duration
	}{
		{"default", ``, nil, true, 3, 10 * time.Second, 30 * time.Second},
		{"fails 0 turns it off", `{fails: 0}`, nil, false, 0, 10 * time.Second, 30 * time.Second},
		{"enabled false", `{enabled: false}`, nil, false, 3, 10 * time.Second, 30 * time.Second},
		{"enabled true", `{enabled: true, fails: 1, window: 5s, cooldown: 1m}`, nil, true, 1, 5 * time.Second, time.Minute},
		{"empty variable is the default", `{fails: "${FAILS:-}", enabled: "${ON:-}"}`, nil, true, 3, 10 * time.Second, 30 * time.Second},
		{"variable", `{fails: "${FAILS}"}`, map[string]string{"FAILS": "0"}, false, 0, 10 * time.Second, 30 * time.Second},
		{"null", `{fails: null, enabled: null}`, nil, true, 3, 10 * time.Second, 30 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := `
sites: [{hosts: [a.example.com], routes: [{path: /, pool: web}]}]
pools:
  web:
    backends: ["http://127.0.0.1:8080"]
`
			if tc.passive != "" {
				src += "    passive: " + tc.passive + "\n"
			}
			p := mustParse(t, src, mapEnv(tc.env)).Pools["web"].Passive
			if p.On() != tc.on || p.FailCount() != tc.fails || p.Window != tc.window || p.Cooldown != tc.cooldown {
				t.Errorf("passive = on %v, fails %d, window %s, cooldown %s; want %v, %d, %s, %s",
					p.On(), p.FailCount(), p.Window, p.Cooldown, tc.on, tc.fails, tc.window, tc.cooldown)
			}
		})
	}
	t.Run("zero value", func(t *testing.T) {
		if p := (Passive{}); p.On() || p.FailCount() != 0 {
			t.Errorf("Passive{}: On() = %v, FailCount() = %d; want false, 0", p.On(), p.FailCount())
		}
	})
}

func TestLimitTimeouts(t *testing.T) {
	c := mustParse(t, `limits: {read_timeout: 30s}`+base, noEnv)
	if c.Limits.ReadTimeout != 30*time.Second || c.Limits.WriteTimeout != DefaultWriteTimeout {
		t.Errorf("limits = %+v", c.Limits)
	}
	c = mustParse(t, base, noEnv)
	if c.Limits.ReadTimeout != DefaultReadTimeout || c.Limits.WriteTimeout != DefaultWriteTimeout || DefaultReadTimeout != time.Minute {
		t.Errorf("default limits = %+v", c.Limits)
	}
}

// TestValidateRules covers the checks that edge run used to make on its
// own, without a position.
func TestValidateRules(t *testing.T) {
	pool := func(lines string) string {
		return `
sites: [{hosts: [a.example.com], routes: [{path: /, pool: web}]}]
pools:
  web:
` + lines
	}
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{"passive fails negative", pool(`    backends: ["http://127.0.0.1:8080"]
    passive: {fails: -1}
`), []string{`6:22: must not be negative`}},
		{"negative read and write timeouts", `limits: {read_timeout: -1s, write_timeout: -2s}` + base,
			[]string{`1:24: must not be negative`, `1:44: must not be negative`}},
		{"backend query, fragment, user info", pool(`    backends:
      - "http://10.0.0.1:8080/?a=b"
      - "http://10.0.0.2:8080/#top"
      - "http://user:pw@10.0.0.3:8080"
      - "http://10.0.0.4:8080/base/"
`), []string{
			`6:9: invalid URL "http://10.0.0.1:8080/?a=b": no query, fragment or user info allowed in a backend URL`,
			`7:9: invalid URL "http://10.0.0.2:8080/#top": no query, fragment or user info allowed in a backend URL`,
			`8:9: invalid URL "http://user:pw@10.0.0.3:8080": no query, fragment or user info allowed in a backend URL`,
		}},
		{"backend listed twice in another spelling", pool(`    backends: ["http://10.0.0.1:8080", "HTTP://10.0.0.1:8080"]
`), []string{`5:40: backend "HTTP://10.0.0.1:8080" is already listed at line 5`}},
		{"health host", pool(`    backends: ["http://127.0.0.1:8080"]
    health: {host: "www example.com"}
`), []string{`6:20: health host "www example.com" is not a host name or address`}},
		{"health host accepted", pool(`    backends: ["http://127.0.0.1:8080"]
    health: {host: "[::1]:8080"}
`), nil},
		{"health path with a host", pool(`    backends: ["http://127.0.0.1:8080"]
    health: {path: "//evil.example/x"}
`), []string{`6:20: health path "//evil.example/x" is not a path`}},
		{"health path absolute URL", pool(`    backends: ["http://127.0.0.1:8080"]
    health: {path: "http://x/healthz"}
`), []string{`6:20: health path "http://x/healthz" must start with /`}},
		{"health path with a query", pool(`    backends: ["http://127.0.0.1:8080"]
    health: {path: "/status?full=1"}
`), nil},
		{"backend port out of range", pool(`    backends: ["http://10.0.0.1:70000", "http://10.0.0.2:0", "http://[::1]:65535"]
`), []string{
			`5:16: invalid URL "http://10.0.0.1:70000": invalid port "70000": expected 1 to 65535`,
			`5:41: invalid URL "http://10.0.0.2:0": invalid port "0"`,
		}},
		{"peer port", `cluster: {secret: s, peers: ["http://edge-2:99999"]}` + base,
			[]string{`1:30: invalid URL "http://edge-2:99999": invalid port "99999"`}},
		{"CA URL port", `acme: {ca: "https://pebble:140000/dir"}` + base,
			[]string{`1:12: invalid CA directory URL "https://pebble:140000/dir": invalid port "140000"`}},
		{"cloudflare api_url port", `acme: {dns: {cf: {provider: cloudflare, api_token: t, api_url: "http://127.0.0.1:0/v4"}}}` + base,
			[]string{`1:64: invalid URL "http://127.0.0.1:0/v4": invalid port "0"`}},
		{"dial addresses need a port", `
acme:
  dns_resolvers: ["1.1.1.1:0", "8.8.8.8:53"]
  dns: {lan: {provider: rfc2136, server: "10.0.0.53:0", key_name: k, key: dHNpZy1r}}
storage: {type: redis, address: "redis:6379, redis2:70000"}
` + base, []string{
			`3:19: invalid address "1.1.1.1:0": invalid port "0": expected 1 to 65535`,
			`4:42: invalid address "10.0.0.53:0": invalid port "0"`,
			`5:33: invalid address "redis2:70000": invalid port "70000"`,
		}},
		{"listen ports", `
listen: {http: ":0", https: ":65536"}
admin: {listen: "127.0.0.1:-1"}
` + base, []string{
			`2:29: invalid address ":65536": invalid port "65536": expected 0 to 65535`,
			`3:17: invalid address "127.0.0.1:-1": invalid port "-1"`,
		}},
		{"site without routes", `
sites:
  - hosts: [a.example.com]
  - hosts: [b.example.com]
    routes: []
` + `pools: {web: {backends: ["http://127.0.0.1:8080"]}}`, []string{
			`3:5: site a.example.com has no routes: add routes: [{path: /, pool: NAME}]`,
			`5:13: site b.example.com has no routes`,
		}},
		{"IP hosts without an IP profile", site(`10.0.0.1, "::1", "[2001:db8::1]", a.example.com`), []string{
			`3:13: IP address host "10.0.0.1" needs an IP certificate, which CAs issue only under the profiles in acme.ip_profiles [shortlived]; site 10.0.0.1 asks for no profile (the CA's default): set sites[0].profile (or acme.profile) to one of them`,
			`3:23: IP address host "::1" needs an IP certificate`,
			`3:30: IP address host "[2001:db8::1]": write it as 2001:db8::1`,
			`3:30: IP address host "[2001:db8::1]" needs an IP certificate`,
		}},
		{"localhost with a public CA", site(`localhost, app.localhost`), []string{
			`3:13: host "localhost" is a localhost name, which public CAs (acme.ca letsencrypt) do not certify`,
			`3:24: host "app.localhost" is a localhost name`,
		}},
		{"single label with a public CA", `acme: {ca: zerossl}` + site(`intranet`),
			[]string{`3:13: host "intranet" is a single-label name, which public CAs (acme.ca zerossl) do not certify`}},
		{"single label with a public CA's URL", `acme: {ca: "https://acme-staging-v02.api.letsencrypt.org/directory"}` + site(`intranet`),
			[]string{`3:13: host "intranet" is a single-label name`}},
		{"single label with a custom CA", pebble + site(`intranet, localhost, a.test, farm.test, www.farm.test`), nil},
		{"e2e names", pebble + site(`a.test, www.a.test, pre1.farm.test`), nil},
		// A value that failed decoding is reported once.
		{"routes of the wrong type", `
sites: [{hosts: [a.example.com], routes: web}]
pools: {web: {backends: ["http://127.0.0.1:8080"]}}
`, []string{`2:42: expected a list of routes, got "web"`}},
		{"health host of the wrong type", pool(`    backends: ["http://127.0.0.1:8080"]
    health: {host: [a, b]}
`), []string{`6:20: expected a string, got a list`}},
		{"passive fails of the wrong type", pool(`    backends: ["http://127.0.0.1:8080"]
    passive: {fails: lots, enabled: maybe}
`), []string{`6:22: expected an integer, got "lots"`, `6:37: expected true or false, got "maybe"`}},
		{"host with a bad variable", site(`"${HOST}"`), []string{`3:13: environment variable HOST is not set`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkProblems(t, problems(t, tc.src, noEnv), tc.want)
		})
	}
}

func TestWarnings(t *testing.T) {
	tests := []struct {
		name, src string
		want      []string
	}{
		{"none", base, nil},
		{"none for public names", pebble + site(`a.test, apps.farm.test`), nil},
		{"single label and localhost with a custom CA", pebble + `
sites:
  - hosts: [intranet, a.test]
    routes: [{path: /, pool: web}]
  - hosts: [web.localhost]
    routes: [{path: /, pool: web}]
pools: {web: {backends: ["http://127.0.0.1:8080"]}}
`, []string{
			`3:13: host "intranet" is a single-label name: only an internal ACME CA can certify it; make sure acme.ca https://127.0.0.1:14000/dir does`,
			`5:13: host "web.localhost" is a localhost name`,
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := mustParse(t, tc.src, noEnv)
			var got []string
			for _, w := range c.Warnings() {
				if w.File != "t.yaml" {
					t.Errorf("warning file = %q", w.File)
				}
				got = append(got, fmt.Sprintf("%d:%d: %s", w.Line, w.Col, w.Msg))
			}
			checkProblems(t, got, tc.want)
		})
	}
	t.Run("health timeout", func(t *testing.T) {
		c := mustParse(t, `
sites: [{hosts: [a.example.com], routes: [{path: /, pool: web}]}]
pools:
  web:
    backends: ["http://127.0.0.1:8080"]
    health: {interval: 1s, timeout: 3s}
`, noEnv)
		w := c.Warnings()
		if len(w) != 1 || w[0].Error() != "t.yaml:6:37: health timeout 3s is longer than interval 1s: a slow backend delays every round of checks past the interval" {
			t.Errorf("Warnings() = %v", w)
		}
	})
	t.Run("built in code", func(t *testing.T) {
		c := &Config{
			ACME:  ACME{CA: "https://ca.internal/dir"},
			Sites: []Site{{Hosts: []string{"intranet"}, Routes: []Route{{Path: "/", Pool: "web"}}}},
			Pools: map[string]Pool{"web": {Backends: []Backend{{URL: "http://127.0.0.1:8080"}}}},
		}
		c.ApplyDefaults()
		w := c.Warnings()
		if len(w) != 1 || !strings.HasPrefix(w[0].Error(), `sites[0].hosts[0]: host "intranet" is a single-label name`) {
			t.Errorf("Warnings() = %v", w)
		}
		if err := c.Validate(); err != nil {
			t.Errorf("Validate() = %v", err)
		}
	})
}

func TestNotBuilt(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{"on_demand", `on_demand: {ask: "app:8080/allowed", rate: ten}` + base,
			[]string{`1:18: invalid URL "app:8080/allowed"`, `1:44: invalid rate "ten"`}},
		{"catch-all without on_demand", `sites: [{hosts: ["*"], routes: [{path: /, pool: web}]}]
pools: {web: {backends: ["http://127.0.0.1:8080"]}}`,
			[]string{`1:18: the catch-all host "*" needs on_demand`}},
		{"proxy_protocol", `proxy_protocol: {from: [10.0.0.5/32, "10.0.0.0/33", nope]}` + base,
			[]string{`1:38: invalid address "10.0.0.0/33"`, `1:53: invalid address "nope"`}},
		{"proxy_protocol without from", `proxy_protocol: {optional: true}` + base,
			[]string{`1:17: proxy_protocol needs from`}},
		{"limits.rate", `limits: {rate: "fast", max_conns_per_ip: -1}` + base,
			[]string{`1:16: invalid rate "fast"`, `1:42: must not be negative`}},
		{"exports", `
exports:
  - {name: pem, type: pem_dri}
sites:
  - hosts: [a.example.com]
    exports: [pem, ccs]
    routes: [{path: /, pool: web}]
pools: {web: {backends: ["http://127.0.0.1:8080"]}}
`, []string{`3:23: unknown export type "pem_dri": expected one of pem_dir, pfx_dir, smb, sftp, exec, azure_keyvault (did you mean "pem_dir"?)`,
			`6:20: export "ccs" is not defined in exports`}},
		{"empty exports", `exports: []` + base, nil},
		{"max_conns_per_ip", `limits: {max_conns_per_ip: 10}` + base, nil},
		{"max_conns_per_ip of the wrong type", `limits: {max_conns_per_ip: many}` + base,
			[]string{`1:28: expected an integer, got "many"`}},
		{"on_demand of the wrong type", `on_demand: yes` + base,
			[]string{`1:12: expected a mapping, got "yes"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkProblems(t, problems(t, tc.src, noEnv), tc.want)
		})
	}
	t.Run("built in code", func(t *testing.T) {
		c := &Config{Limits: Limits{Rate: "10/s"}, OnDemand: &OnDemand{Ask: "http://app/ok"},
			Sites: []Site{{Hosts: []string{"*"}, Routes: []Route{{Path: "/", Pool: "web"}}}},
			Pools: map[string]Pool{"web": {Backends: []Backend{{URL: "http://127.0.0.1:8080"}}, MaxConns: 10}}}
		c.ApplyDefaults()
		if err := c.Validate(); err != nil {
			t.Errorf("Validate() = %v", err)
		}
		if s := c.Sites[0]; s.RateEvents != 10 || s.RateInterval != time.Second || s.RateBurst != 10 {
			t.Errorf("the site's rate: %d/%v burst %d, want limits.rate 10/s", s.RateEvents, s.RateInterval, s.RateBurst)
		}
	})
}

// TestPreviewChecks covers the checks of features notBuilt refuses, run as
// if they were built.
func TestPreviewChecks(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{"bad on_demand ask", `on_demand: {ask: "app:8080/allowed"}` + base,
			[]string{`1:18: invalid URL "app:8080/allowed"`}},
		{"on_demand ask port", `on_demand: {ask: "http://app:80800/allowed"}` + base,
			[]string{`1:18: invalid URL "http://app:80800/allowed": invalid port "80800"`}},
		{"on_demand without ask or allow", `on_demand: {rate: 10/m}` + base,
			[]string{`1:12: on_demand needs ask or allow`}},
		{"bad on_demand rate", `on_demand: {ask: "http://app/ok", rate: ten}` + base,
			[]string{`1:41: invalid rate "ten"`}},
		{"unknown export type", `
exports:
  - {name: pem, type: pem_dri, path: /etc/ssl/edge}
` + base, []string{`3:23: unknown export type "pem_dri": expected one of pem_dir, pfx_dir, smb, sftp, exec, azure_keyvault (did you mean "pem_dir"?)`}},
		{"site names undefined export", `
exports:
  - {name: pem, type: pem_dir, path: /etc/ssl/edge}
sites:
  - hosts: [a.example.com]
    exports: [pem, ccs]
    routes: [{path: /, pool: web}]
pools: {web: {backends: ["http://127.0.0.1:8080"]}}
`, []string{`6:20: export "ccs" is not defined in exports`}},
		{"duplicate export name", `
exports:
  - {name: pem, type: pem_dir, path: /a}
  - {name: pem, type: pem_dir, path: /b}
` + base, []string{`4:12: export "pem" is already defined at line 3`}},
		{"vault port", `
exports:
  - {name: kv, type: azure_keyvault, vault: "https://v.vault.azure.net:0", tenant_id: t, client_id: c, client_secret: s}
` + base, []string{`3:45: invalid URL "https://v.vault.azure.net:0": invalid port "0"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkProblems(t, previewProblems(t, tc.src, noEnv), tc.want)
		})
	}
}

func TestPoolNames(t *testing.T) {
	c := mustParse(t, `
sites: [{hosts: [a.example.com], routes: [{path: /, pool: zeta}]}]
pools:
  zeta: {backends: ["http://127.0.0.1:8080"]}
  alpha: {backends: ["http://127.0.0.1:8081"]}
  mid: {backends: ["http://127.0.0.1:8082"]}
`, noEnv)
	if got, want := c.PoolNames(), []string{"zeta", "alpha", "mid"}; !reflect.DeepEqual(got, want) {
		t.Errorf("PoolNames() = %q, want file order %q", got, want)
	}
	c.Pools["beta"] = Pool{}
	delete(c.Pools, "alpha")
	if got, want := c.PoolNames(), []string{"zeta", "mid", "beta"}; !reflect.DeepEqual(got, want) {
		t.Errorf("PoolNames() after changes = %q, want %q", got, want)
	}

	t.Run("built in code", func(t *testing.T) {
		c := &Config{Pools: map[string]Pool{"b": {}, "c": {}, "a": {}}}
		if got, want := c.PoolNames(), []string{"a", "b", "c"}; !reflect.DeepEqual(got, want) {
			t.Errorf("PoolNames() = %q, want sorted %q", got, want)
		}
	})

	t.Run("messages in pool order", func(t *testing.T) {
		c := &Config{
			Sites:     []Site{{Hosts: []string{"a.example.com"}, Routes: []Route{{Path: "/", Pool: "z"}}}},
			Pools:     map[string]Pool{"z": {}, "a": {}, "m": {}},
			poolOrder: []string{"z", "a", "m"},
		}
		c.ApplyDefaults()
		err := c.Validate()
		want := `pools[z].backends: pool "z" has no backends
pools[a].backends: pool "a" has no backends
pools[m].backends: pool "m" has no backends`
		if err == nil || err.Error() != want {
			t.Errorf("Validate() =\n%v\nwant\n%s", err, want)
		}
	})
}

func TestErrorAt(t *testing.T) {
	c := mustParse(t, `
sites:
  - hosts: [a.example.com]
    routes: [{path: /, pool: web}]
  - hosts: [b.example.com, c.example.com]
    routes: [{path: /, pool: web}]
pools:
  web:
    backends: ["http://127.0.0.1:8080", "http://127.0.0.1:8081"]
limits:
  idle_timeout: 1m
`, noEnv)
	tests := []struct {
		path, want string
	}{
		{"pools[web].backends[1]", `t.yaml:9:41: problem`},
		{"sites[1].hosts[1]", `t.yaml:5:28: problem`},
		{"limits.idle_timeout", `t.yaml:11:17: problem`},
		{"limits.read_timeout", `t.yaml:11:3: problem`}, // not in the file: the limits mapping
		{"pools[web].timeouts.connect", `t.yaml:9:5: problem`},
		{"storage", `t.yaml:2:1: problem`}, // the top-level mapping
		{"", `t.yaml:2:1: problem`},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			if got := c.ErrorAt(tc.path, "problem").Error(); got != tc.want {
				t.Errorf("ErrorAt(%q) = %q, want %q", tc.path, got, tc.want)
			}
		})
	}
	t.Run("wraps", func(t *testing.T) {
		e := c.ErrorAt("storage", "storage changed: %w", fs.ErrNotExist)
		if !errors.Is(e, fs.ErrNotExist) || e.Error() != "t.yaml:2:1: storage changed: file does not exist" {
			t.Errorf("ErrorAt = %q, Is(fs.ErrNotExist) = %v", e, errors.Is(e, fs.ErrNotExist))
		}
		if e := c.ErrorAt("storage", "storage changed: restart edge"); e.Err != nil {
			t.Errorf("Err = %v, want nil", e.Err)
		}
	})
	t.Run("built in code", func(t *testing.T) {
		c := &Config{}
		if got, want := c.ErrorAt("pools[web].backends[0]", "bad %s", "thing").Error(), "pools[web].backends[0]: bad thing"; got != want {
			t.Errorf("ErrorAt = %q, want %q", got, want)
		}
	})
}

func TestSyntaxErrors(t *testing.T) {
	const tabs = "invalid YAML: tabs are not allowed for indentation in YAML; indent with spaces"
	tests := []struct {
		name, src, want string
	}{
		{"tab indent", "log:\n\tlevel: info\n", "2:1: " + tabs},
		{"tab after spaces", "log:\n  level: info\n \tformat: json\n", "3:2: " + tabs},
		{"tab before a key", "log:\n  level: info\n\tformat: json\n", "3:1: " + tabs},
		{"tab in a list", "sites:\n  - hosts: [a]\n\t  routes: []\n", "3:1: " + tabs},
		{"tab in a block scalar", "a: |\n\tfoo\n", "2:1: " + tabs},
		{"tab before a list item", "acme:\n  challenges:\n  - http-01\n\t- dns-01\n", "4:1: " + tabs},
		{"bad indentation", "log:\n  level: info\n   format: json\n", "3:4: invalid YAML: mapping values are not allowed in this context"},
		{"unclosed flow list", "  a: [b\nc: d\n", "1:3: invalid YAML: did not find expected ',' or ']'"},
		{"tab after a key is fine elsewhere", "log:\n  level: info\n   format:\tjson\n", "3:4: invalid YAML: mapping values are not allowed in this context"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkProblems(t, problems(t, tc.src, noEnv), []string{tc.want})
			_, err := Parse("t.yaml", []byte(tc.src), noEnv)
			at, _, _ := strings.Cut(tc.want, " ")
			if err == nil || !strings.HasPrefix(err.Error(), "t.yaml:"+at+" ") {
				t.Errorf("Error() = %v, want t.yaml:%s ...", err, at)
			}
		})
	}
}

func TestEnums(t *testing.T) {
	tests := []struct {
		name string
		get  func() []string
		want []string
	}{
		{"Policies", Policies, []string{"round_robin", "least_conn", "random", "ip_hash", "cookie", "first", "hash"}},
		{"ChallengeTypes", ChallengeTypes, []string{"http-01", "tls-alpn-01", "dns-01"}},
		{"DNSProviderTypes", DNSProviderTypes, []string{"cloudflare", "rfc2136"}},
		{"StorageTypes", StorageTypes, []string{"file", "redis"}},
		{"ExportTypes", ExportTypes, []string{"pem_dir", "pfx_dir", "smb", "sftp", "exec", "azure_keyvault"}},
		{"TSIGAlgorithms", TSIGAlgorithms, []string{"hmac-sha256", "hmac-sha384", "hmac-sha512", "hmac-sha224", "hmac-sha1"}},
		{"LogLevels", LogLevels, []string{"debug", "info", "warn", "error"}},
		{"LogFormats", LogFormats, []string{"json", "text"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.get()
			if !slices.Equal(got, tc.want) {
				t.Errorf("%s() = %q, want %q", tc.name, got, tc.want)
			}
			got[0] = "changed"
			if tc.get()[0] == "changed" {
				t.Errorf("%s() returns the package's slice, not a copy", tc.name)
			}
		})
	}
}
