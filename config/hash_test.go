package config

import "testing"

// hashPool is a one-pool config whose pool has the given extra keys.
func hashPool(keys string) string {
	return `
sites: [{hosts: [a.example.com], routes: [{path: /, pool: web}]}]
pools:
  web:
    backends: ["http://127.0.0.1:8080", "http://127.0.0.1:8081"]
    ` + keys + `
`
}

func TestPoolHash(t *testing.T) {
	for _, tc := range []struct {
		keys                     string
		header, cookie, fallback string
	}{
		{"{policy: hash, hash: {header: X-Session-Id}}", "X-Session-Id", "", "round_robin"},
		{"{policy: hash, hash: {cookie: ASP.NET_SessionId, fallback: ip_hash}}", "", "ASP.NET_SessionId", "ip_hash"},
	} {
		src := `
sites: [{hosts: [a.example.com], routes: [{path: /, pool: web}]}]
pools:
  web: ` + tc.keys[:len(tc.keys)-1] + `, backends: ["http://127.0.0.1:8080"]}
`
		h := mustParse(t, src, noEnv).Pools["web"].Hash
		if h == nil || h.Header != tc.header || h.Cookie != tc.cookie || h.Fallback != tc.fallback {
			t.Errorf("%s: hash %+v", tc.keys, h)
		}
	}
}

func TestPoolHashErrors(t *testing.T) {
	for _, tc := range []struct {
		name, keys string
		want       []string
	}{
		{"hash without its key", "policy: hash", []string{`6:13: policy hash needs hash: {header: NAME} or {cookie: NAME}`}},
		{"key without policy hash", "hash: {header: X-A}", []string{`6:11: hash applies to policy: hash, and this pool's policy is round_robin`}},
		{"neither", "{policy: hash, hash: {fallback: ip_hash}}", []string{`6:30: hash needs header: NAME or cookie: NAME`}},
		{"both", "{policy: hash, hash: {header: X-A, cookie: sid}}", []string{`6:30: hash takes header or cookie, not both`}},
		{"bad header", `{policy: hash, hash: {header: "X A"}}`, []string{`6:39: invalid header name "X A"`}},
		{"bad cookie", `{policy: hash, hash: {cookie: "a;b"}}`, []string{`6:39: invalid cookie name "a;b"`}},
		{"bad fallback", "{policy: hash, hash: {cookie: sid, fallback: random}}", []string{`6:54: unknown hash fallback "random"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := hashPool(tc.keys)
			if tc.keys[0] == '{' { // a flow mapping replaces the pool's block
				src = `
sites: [{hosts: [a.example.com], routes: [{path: /, pool: web}]}]
pools:
  web:
    backends: ["http://127.0.0.1:8080", "http://127.0.0.1:8081"]
    <<: ` + tc.keys + `
`
			}
			checkProblems(t, problems(t, src, noEnv), tc.want)
		})
	}
}
