package config

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
)

// base is a valid sites/pools tail appended to cases about other sections.
const base = `
sites:
  - hosts: [a.example.com]
    routes: [{path: /, pool: web}]
pools:
  web: {backends: ["http://127.0.0.1:8080"]}
`

func noEnv(string) (string, bool) { return "", false }

func mapEnv(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// problems parses src and returns each error as "LINE:COL: message".
func problems(t *testing.T, src string, env func(string) (string, bool)) []string {
	t.Helper()
	return problemsOf(t, src, env, false)
}

// previewProblems is problems with the features notBuilt refuses checked
// as if they were built.
func previewProblems(t *testing.T, src string, env func(string) (string, bool)) []string {
	t.Helper()
	return problemsOf(t, src, env, true)
}

func problemsOf(t *testing.T, src string, env func(string) (string, bool), preview bool) []string {
	t.Helper()
	_, err := parse("t.yaml", []byte(src), env, preview)
	if err == nil {
		return nil
	}
	var errs *Errors
	if !errors.As(err, &errs) {
		t.Fatalf("Parse error is %T, want *Errors: %v", err, err)
	}
	var out []string
	for _, e := range *errs {
		if e.File != "t.yaml" {
			t.Errorf("error file = %q, want t.yaml", e.File)
		}
		out = append(out, fmt.Sprintf("%d:%d: %s", e.Line, e.Col, e.Msg))
	}
	return out
}

// checkProblems asserts that got has one entry per want, in order, each
// with want's "LINE:COL: " prefix and containing the rest of want.
func checkProblems(t *testing.T, got, want []string) {
	t.Helper()
	ok := len(got) == len(want)
	for i := 0; ok && i < len(want); i++ {
		at, msg, _ := strings.Cut(want[i], " ")
		ok = strings.HasPrefix(got[i], at+" ") && strings.Contains(got[i], msg)
	}
	if !ok {
		t.Errorf("got errors:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func TestParseErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing")
	tests := []struct {
		name string
		src  string
		env  map[string]string
		want []string
	}{
		{"unknown top-level key", `listn: {http: ":80"}` + base, nil,
			[]string{`1:1: unknown key "listn" (did you mean "listen"?)`}},
		{"unknown nested key", `
pools:
  web:
    backends: ["http://127.0.0.1:8080"]
    polcy: random
sites: [{hosts: [a.example.com], routes: [{path: /, pool: web}]}]
`, nil, []string{`5:5: unknown key "polcy" (did you mean "policy"?)`}},
		{"unknown key in flow route", `
sites:
  - hosts: [a.example.com]
    routes: [{path: /, pool: web, maxbody: 1MB}]
pools: {web: {backends: ["http://127.0.0.1:8080"]}}
`, nil, []string{`4:35: unknown key "maxbody" (did you mean "max_body"?)`}},
		{"unknown key without hint", `
acme:
  dns:
    cf: {provider: cloudflare, api_token: x, colour: blue}
` + base, nil, []string{`4:46: unknown key "colour"`}},
		{"duplicate key", `
log: {level: info}
log: {level: debug}
` + base, nil, []string{`3:1: duplicate key "log" (first at line 2)`}},
		{"string for list", `
sites:
  - hosts: a.example.com
    routes: [{path: /, pool: web}]
pools: {web: {backends: ["http://127.0.0.1:8080"]}}
`, nil, []string{`3:12: expected a list of strings, got "a.example.com"`}},
		{"list for string", `acme: {email: [a, b]}` + base, nil,
			[]string{`1:15: expected a string, got a list`}},
		{"mapping for list of sites", `
sites: {hosts: [a.example.com]}
pools: {web: {backends: ["http://127.0.0.1:8080"]}}
`, nil, []string{`2:8: expected a list of sites, got a mapping`}},
		{"bad duration", `
pools:
  web:
    backends: ["http://127.0.0.1:8080"]
    timeouts: {connect: 5 seconds}
sites: [{hosts: [a.example.com], routes: [{path: /, pool: web}]}]
`, nil, []string{`5:25: expected a duration like 5s, got "5 seconds"`}},
		{"duration without unit", `limits: {idle_timeout: 30}` + base, nil,
			[]string{`1:24: expected a duration like 5s, got "30"`}},
		{"bad integer", `
pools:
  web: {backends: ["http://127.0.0.1:8080"], retries: two}
sites: [{hosts: [a.example.com], routes: [{path: /, pool: web}]}]
`, nil, []string{`3:55: expected an integer, got "two"`}},
		{"bad bool", `
sites:
  - hosts: [a.example.com]
    redirect_http: maybe
    routes: [{path: /, pool: web}]
pools: {web: {backends: ["http://127.0.0.1:8080"]}}
`, nil, []string{`4:20: expected true or false, got "maybe"`}},
		{"bad backend URLs", `
pools:
  web:
    backends:
      - ftp://10.0.0.1
      - 10.0.0.2:8080
      - http://
sites: [{hosts: [a.example.com], routes: [{path: /, pool: web}]}]
`, nil, []string{
			`5:9: invalid URL "ftp://10.0.0.1": expected an http or https URL with a host`,
			`6:9: invalid URL "10.0.0.2:8080"`,
			`7:9: invalid URL "http://"`,
		}},
		{"unknown CA name", `acme: {ca: letsencrpyt}` + base, nil,
			[]string{`1:12: unknown CA "letsencrpyt": expected letsencrypt, letsencrypt-staging, zerossl or an https directory URL (did you mean "letsencrypt"?)`}},
		{"http CA URL", `acme: {ca: "http://pebble:14000/dir"}` + base, nil,
			[]string{`1:12: unknown CA "http://pebble:14000/dir"`}},
		{"bad cluster peer", `cluster: {secret: s, peers: ["http://edge-2:80", "edge-3"]}` + base, nil,
			[]string{`1:50: invalid URL "edge-3"`}},
		{"only dns-01 for a site without dns", `acme: {challenges: [dns-01]}` + base, nil,
			[]string{`1:20: site`}},
		{"renewal ratio NaN", `acme: {renewal_window_ratio: .nan}` + base, nil,
			[]string{`1:30: expected a number, got ".nan"`}},
		{"peers without secret", `cluster: {peers: ["http://edge-2:80"]}` + base, nil,
			[]string{`1:10: cluster.peers needs secret or secret_file`}},
		{"unknown policy", `
pools:
  web: {policy: round-robin, backends: ["http://127.0.0.1:8080"]}
sites: [{hosts: [a.example.com], routes: [{path: /, pool: web}]}]
`, nil, []string{`3:17: unknown policy "round-robin": expected one of round_robin, least_conn, random, ip_hash, cookie, first, hash (did you mean "round_robin"?)`}},
		{"backend protocol and tls", `
pools:
  web: {protocol: h2, backends: ["http://127.0.0.1:8080"]}
  grpc: {protocol: h2c, backends: ["https://127.0.0.1:8443"], tls: {client_cert_file: /x.pem, server_name: "a b"}}
sites: [{hosts: [a.example.com], routes: [{path: /, pool: web}, {path: /g/, pool: grpc}]}]
`, nil, []string{`3:19: unknown backend protocol "h2": expected one of http, h2c (did you mean "h2c"?)`,
			`4:36: protocol h2c is HTTP/2 without TLS: backend "https://127.0.0.1:8443" must be http://`,
			`4:68: tls needs both client_cert_file and client_key_file, or neither`,
			`4:108: invalid server name "a b"`}},
		{"weighted backends", `
pools:
  web: {backends: ["http://127.0.0.1:8080", {url: "http://127.0.0.1:8081", weight: 3}, {url: "http://127.0.0.1:8082", weight: 500}, {uri: "http://x"}]}
sites: [{hosts: [a.example.com], routes: [{path: /, pool: web}]}]
`, nil, []string{`3:88: weight 500: must be between 1 and 100`, `3:133: backend needs url`, `3:134: unknown key "uri" (did you mean "url"?)`}},
		{"retry_on", `
pools:
  web: {retries: 2, retry_on: [connect, timeout, 503, 404, sometimes], backends: ["http://127.0.0.1:8080"]}
sites: [{hosts: [a.example.com], routes: [{path: /, pool: web}]}]
`, nil, []string{`3:55: unknown retry condition "404"`, `3:60: unknown retry condition "sometimes"`}},
		{"unknown challenge", `acme: {challenges: [http-01, dns01]}` + base, nil,
			[]string{`1:30: unknown challenge "dns01": expected one of http-01, tls-alpn-01, dns-01 (did you mean "dns-01"?)`}},
		{"route to undefined pool", `
sites:
  - hosts: [a.example.com]
    routes: [{path: /, pool: wbe}]
pools: {web: {backends: ["http://127.0.0.1:8080"]}}
`, nil, []string{`4:30: pool "wbe" is not defined in pools (did you mean "web"?)`}},
		{"route without pool", `
sites:
  - hosts: [a.example.com]
    routes:
      - path: /
pools: {web: {backends: ["http://127.0.0.1:8080"]}}
`, nil, []string{`5:9: route needs pool`}},
		{"route path without slash", `
sites:
  - hosts: [a.example.com]
    routes: [{path: api/, pool: web}]
pools: {web: {backends: ["http://127.0.0.1:8080"]}}
`, nil, []string{`4:21: route path "api/" must start with /`}},
		{"duplicate route path", `
sites:
  - hosts: [a.example.com]
    routes:
      - {path: /, pool: web}
      - {path: /, pool: web}
pools: {web: {backends: ["http://127.0.0.1:8080"]}}
`, nil, []string{`6:16: path "/" is already routed at line 5`}},
		{"bad max_body", `
sites:
  - hosts: [a.example.com]
    routes: [{path: /, pool: web, max_body: 10 parsecs}]
pools: {web: {backends: ["http://127.0.0.1:8080"]}}
`, nil, []string{`4:45: invalid max_body "10 parsecs": unknown size unit "parsecs"`}},
		{"host in two sites", `
sites:
  - hosts: [a.example.com, b.example.com]
    routes: [{path: /, pool: web}]
  - hosts:
      - c.example.com
      - B.example.com
    routes: [{path: /, pool: web}]
pools: {web: {backends: ["http://127.0.0.1:8080"]}}
`, nil, []string{`7:9: host "b.example.com" is already listed at line 3`}},
		{"wildcard without dns", `
sites:
  - hosts: ["*.apps.example.com"]
    routes: [{path: /, pool: web}]
pools: {web: {backends: ["http://127.0.0.1:8080"]}}
`, nil, []string{`3:13: wildcard host "*.apps.example.com" needs dns:`}},
		{"site dns undefined", `
acme:
  dns: {cf: {provider: cloudflare, api_token: x}}
sites:
  - hosts: ["*.apps.example.com"]
    dns: cff
    routes: [{path: /, pool: web}]
pools: {web: {backends: ["http://127.0.0.1:8080"]}}
`, nil, []string{`6:10: dns provider "cff" is not defined in acme.dns (did you mean "cf"?)`}},
		{"unknown dns provider", `
acme:
  dns:
    r53: {provider: route53}
` + base, nil, []string{`4:21: unknown dns provider "route53": expected one of cloudflare, rfc2136`}},
		{"dns provider missing", `
acme:
  dns:
    x: {api_token: t}
` + base, nil, []string{`4:8: missing provider`}},
		{"cloudflare without token", `
acme:
  dns:
    cf:
      provider: cloudflare
` + base, nil, []string{`5:7: cloudflare needs api_token or api_token_file`}},
		{"rfc2136 without server and key", `
acme:
  dns:
    lan: {provider: rfc2136, key_name: edge}
` + base, nil, []string{
			`4:10: rfc2136 needs server`,
			`4:10: rfc2136 needs key or key_file`,
		}},
		{"rfc2136 key not base64", `
acme:
  dns:
    lan: {provider: rfc2136, server: "ns:53", key_name: edge, key: "not base64!"}
` + base, nil, []string{`4:68: rfc2136 key is not base64`}},
		{"bad storage type", `storage: {type: s3}` + base, nil,
			[]string{`1:17: unknown storage type "s3": expected one of file, redis`}},
		{"redis without address", `
storage:
  type: redis
` + base, nil, []string{`3:3: redis storage needs address`}},
		{"invalid host names", `
sites:
  - hosts: ["exa mple.com", "-a.example.com", "a..example.com", "a.*.example.com", "example.com:443"]
    routes: [{path: /, pool: web}]
pools: {web: {backends: ["http://127.0.0.1:8080"]}}
`, nil, []string{
			`3:13: invalid host "exa mple.com": invalid character ' '`,
			`3:29: invalid host "-a.example.com": label starts or ends with -`,
			`3:47: invalid host "a..example.com": empty label`,
			`3:65: invalid host "a.*.example.com": * is only allowed as the whole leftmost label`,
			`3:84: invalid host "example.com:443": invalid character ':'`,
		}},
		{"site without hosts", `
sites:
  - routes: [{path: /, pool: web}]
pools: {web: {backends: ["http://127.0.0.1:8080"]}}
`, nil, []string{`3:5: site has no hosts`}},
		{"pool without backends", `
sites: [{hosts: [a.example.com], routes: [{path: /, pool: web}]}]
pools:
  web:
    policy: first
`, nil, []string{`5:5: pool "web" has no backends`}},
		{"bad health", `
pools:
  web:
    backends: ["http://127.0.0.1:8080"]
    health: {path: healthz, expect: 42}
sites: [{hosts: [a.example.com], routes: [{path: /, pool: web}]}]
`, nil, []string{
			`5:20: health path "healthz" must start with /`,
			`5:37: expect 42 is not an HTTP status code`,
		}},
		{"negative retries", `
pools:
  web: {backends: ["http://127.0.0.1:8080"], retries: -1}
sites: [{hosts: [a.example.com], routes: [{path: /, pool: web}]}]
`, nil, []string{`3:55: must not be negative`}},
		{"admin off loopback without token", `admin: {listen: ":9180"}` + base, nil,
			[]string{`1:17: admin.listen ":9180" is not a loopback address: set admin.token or admin.token_file`}},
		{"bad listen address", `listen: {https: "443"}` + base, nil,
			[]string{`1:17: invalid address "443": expected host:port`}},
		{"bad trusted proxy", `trusted_proxies: [10.0.0.0/33]` + base, nil,
			[]string{`1:19: invalid address "10.0.0.0/33"`}},
		{"bad email", `acme: {email: "ops at example.com"}` + base, nil,
			[]string{`1:15: invalid email address "ops at example.com"`}},
		{"bad log level", `log: {level: verbose}` + base, nil,
			[]string{`1:14: unknown log level "verbose"`}},
		{"unset variable", `acme: {email: "${EMAIL}"}` + base, nil,
			[]string{`1:15: environment variable EMAIL is not set (write ${EMAIL:-default} for a default)`}},
		{"unterminated variable", `acme: {email: "${EMAIL"}` + base, nil,
			[]string{`1:15: unterminated ${`}},
		{"invalid variable name", `acme: {email: "${1X}"}` + base, nil,
			[]string{`1:15: invalid variable name "1X"`}},
		{"variable expands to bad value", `limits: {idle_timeout: "${IDLE}"}` + base,
			map[string]string{"IDLE": "forever"},
			[]string{`1:24: expected a duration like 5s, got "forever"`}},
		{"secret and file both set", `admin: {token: t, token_file: /dev/null}` + base, nil,
			[]string{`1:31: both token and token_file are set; use one`}},
		{"unreadable secret file", `storage: {type: redis, address: "redis:6379", password_file: "` + missing + `"}` + base, nil,
			[]string{`1:62: password_file: stat ` + missing + `: no such file or directory`}},
		{"secret file not regular", `cluster: {secret_file: "` + dir + `"}` + base, nil,
			[]string{`1:24: secret_file: ` + dir + ` is not a regular file`}},
		{"empty document", ``, nil, []string{`1:1: no sites and no on_demand`}},
		{"not a mapping", `hello`, nil, []string{`1:1: expected a mapping, got "hello"`}},
		{"second document", "log: {level: info}\n---\nlog: {}\n", nil,
			[]string{`2:1: a second YAML document`}},
		{"anchor under an unknown key", `
defaults: &d {policy: random}
` + base, nil, []string{`2:1: unknown key "defaults"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkProblems(t, problems(t, tc.src, mapEnv(tc.env)), tc.want)
		})
	}
}

func TestAllErrorsAtOnce(t *testing.T) {
	src := `
listen: {htps: ":443"}
acme: {ca: nope, challenges: [http-01, dns01]}
sites:
  - hosts: ["*.example.com", a.example.com]
    routes: [{path: x, pool: api}]
  - hosts: [a.example.com]
pools:
  web: {policy: fastest, backends: ["10.0.0.1"], timeouts: {connect: soon}}
log: {level: loud}
`
	got := problems(t, src, noEnv)
	checkProblems(t, got, []string{
		`2:10: unknown key "htps" (did you mean "https"?)`,
		`3:12: unknown CA "nope"`,
		`3:40: unknown challenge "dns01"`,
		`5:13: wildcard host "*.example.com" needs dns:`,
		`6:21: route path "x" must start with /`,
		`6:30: pool "api" is not defined in pools`,
		`7:5: site a.example.com has no routes: add routes: [{path: /, pool: NAME}]`,
		`7:13: host "a.example.com" is already listed at line 5`,
		`9:17: unknown policy "fastest"`,
		`9:37: invalid URL "10.0.0.1"`,
		`9:70: expected a duration like 5s, got "soon"`,
		`10:14: unknown log level "loud"`,
	})
	_, err := Parse("t.yaml", []byte(src), noEnv)
	if lines := strings.Split(err.Error(), "\n"); len(lines) != len(got) || !strings.HasPrefix(lines[0], "t.yaml:2:10: ") {
		t.Errorf("Error() = %q, want one t.yaml:LINE:COL: line per problem", err.Error())
	}
}

func TestErrorUnwrap(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope")
	_, err := Parse("t.yaml", []byte(`admin: {token_file: "`+missing+`"}`+base), noEnv)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("errors.Is(err, fs.ErrNotExist) = false for %v", err)
	}
	var e *Error
	if !errors.As(err, &e) || e.Line != 1 || e.Col != 21 {
		t.Errorf("errors.As(*Error) = %+v", e)
	}
}

func TestErrorFormat(t *testing.T) {
	tests := []struct {
		err  Error
		want string
	}{
		{Error{File: "f.yaml", Line: 3, Col: 7, Msg: "m"}, "f.yaml:3:7: m"},
		{Error{File: "f.yaml", Line: 3, Msg: "m"}, "f.yaml:3: m"},
		{Error{File: "f.yaml", Msg: "m"}, "f.yaml: m"},
		{Error{Msg: "m"}, "m"},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			if got := tc.err.Error(); got != tc.want {
				t.Errorf("Error() = %q, want %q", got, tc.want)
			}
		})
	}
}
