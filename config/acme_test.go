package config

import (
	"strings"
	"testing"
	"time"
)

func TestACMEProfilesAndIPHosts(t *testing.T) {
	pools := "pools:\n  web: {backends: [\"http://127.0.0.1:8080\"]}\n"
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{"IP hosts under shortlived", pebble + `
sites:
  - hosts: ["127.0.0.1", "::1", "2001:db8::1"]
    profile: shortlived
    routes: [{path: /, pool: web}]
` + pools, nil},
		{"acme.profile applies to sites without one", `acme: {ca: "https://127.0.0.1:14000/dir", profile: shortlived}
sites: [{hosts: ["10.0.0.1"], routes: [{path: /, pool: web}]}]
` + pools, nil},
		{"a site's profile replaces acme's", `acme: {ca: "https://127.0.0.1:14000/dir", profile: shortlived}
sites: [{hosts: ["10.0.0.1"], profile: classic, routes: [{path: /, pool: web}]}]
` + pools, []string{`2:18: IP address host "10.0.0.1" needs an IP certificate, which CAs issue only under the profiles in acme.ip_profiles [shortlived]; site 10.0.0.1 asks for profile "classic": set sites[0].profile (or acme.profile) to one of them`}},
		{"ip_profiles lists others", `acme: {ca: "https://127.0.0.1:14000/dir", ip_profiles: [short, tiny]}
sites: [{hosts: ["10.0.0.1"], profile: tiny, routes: [{path: /, pool: web}]},
        {hosts: ["10.0.0.2"], profile: shortlived, routes: [{path: /, pool: web}]}]
` + pools, []string{`3:18: IP address host "10.0.0.2" needs an IP certificate, which CAs issue only under the profiles in acme.ip_profiles [short tiny]`}},
		{"IP host with dns", `acme: {ca: "https://127.0.0.1:14000/dir", dns: {lan: {provider: rfc2136, server: "10.0.0.53:53", key_name: k, key: dHNpZy1r}}}
sites: [{hosts: ["10.0.0.1"], profile: shortlived, dns: lan, routes: [{path: /, pool: web}]}]
` + pools, []string{`2:18: IP address host "10.0.0.1" cannot use dns: (DNS-01 validates names only, RFC 8738)`}},
		{"IP host not canonical", pebble + `
sites: [{hosts: ["0:0::1", "127.0.0.1"], profile: shortlived, routes: [{path: /, pool: web}]}]
` + pools, []string{`2:18: IP address host "0:0::1": write it as ::1`}},
		{"duplicate IP host", pebble + `
sites: [{hosts: ["::1", "::1"], profile: shortlived, routes: [{path: /, pool: web}]}]
` + pools, []string{`2:25: host "::1" is already listed at line 2`}},
		{"bad profile names", `acme: {ca: "https://127.0.0.1:14000/dir", profile: "short lived", ip_profiles: ["a/b"]}
sites: [{hosts: [a.test], profile: "x y", routes: [{path: /, pool: web}]}]
` + pools, []string{
			`1:52: invalid profile name "short lived"`,
			`1:81: invalid profile name "a/b"`,
			`2:36: invalid profile name "x y"`,
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkProblems(t, problems(t, tc.src, noEnv), tc.want)
		})
	}
}

func TestRenewAt(t *testing.T) {
	tests := []struct {
		name  string
		acme  string
		ratio float64
		err   string
	}{
		{"unset: certmagic's default", `{}`, 0, ""},
		{"renew_at 0.66 leaves 0.34", `{renew_at: 0.66}`, 0.34, ""},
		{"renew_at 0.5", `{renew_at: 0.5}`, 0.5, ""},
		{"renewal_window_ratio alone", `{renewal_window_ratio: 0.25}`, 0.25, ""},
		{"both agreeing", `{renew_at: 0.75, renewal_window_ratio: 0.25}`, 0.25, ""},
		{"both disagreeing", `{renew_at: 0.66, renewal_window_ratio: 0.5}`, 0, `1:18: renew_at 0.66 and renewal_window_ratio 0.5 disagree`},
		{"renew_at 1", `{renew_at: 1}`, 0, `1:18: renew_at 1 must be between 0 and 1`},
		{"renew_at negative", `{renew_at: -0.2}`, 0, `1:18: renew_at -0.2 must be between 0 and 1`},
		{"renew_at NaN is not a number", `{renew_at: .nan}`, 0, `1:18: expected a number, got ".nan"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := `acme: ` + tc.acme + site(`a.example.com`)
			if tc.err != "" {
				checkProblems(t, problems(t, src, noEnv), []string{tc.err})
				return
			}
			c := mustParse(t, src, noEnv)
			if got := c.ACME.RenewalRatio(); got < tc.ratio-1e-9 || got > tc.ratio+1e-9 {
				t.Errorf("RenewalRatio() = %v, want %v", got, tc.ratio)
			}
			if got := strings.Join(c.ACME.IPProfiles, ","); got != "shortlived" {
				t.Errorf("ip_profiles default = %q, want shortlived", got)
			}
		})
	}
}

func TestARIRefresh(t *testing.T) {
	tests := []struct {
		name string
		acme string
		want time.Duration
		err  string
	}{
		{"unset: follow the CA's Retry-After", `{}`, 0, ""},
		{"zero", `{ari_refresh: 0s}`, 0, ""},
		{"two seconds", `{ari_refresh: 2s}`, 2 * time.Second, ""},
		{"an hour", `{ari_refresh: 1h}`, time.Hour, ""},
		{"under a second", `{ari_refresh: 500ms}`, 0, `1:21: ari_refresh 500ms must be 0 (follow the CA's Retry-After) or at least 1s`},
		{"negative", `{ari_refresh: -5s}`, 0, `1:21: ari_refresh -5s must be 0`},
		{"not a duration", `{ari_refresh: often}`, 0, `1:21: `},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := `acme: ` + tc.acme + site(`a.example.com`)
			if tc.err != "" {
				checkProblems(t, problems(t, src, noEnv), []string{tc.err})
				return
			}
			if got := mustParse(t, src, noEnv).ACME.ARIRefresh; got != tc.want {
				t.Errorf("ARIRefresh = %v, want %v", got, tc.want)
			}
		})
	}
}
