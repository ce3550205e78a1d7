package config

import (
	"fmt"
	"testing"
	"time"
)

// retryPool is a one-pool config with the given pool keys (a flow mapping's
// inside).
func retryPool(keys string) string {
	return `
sites: [{hosts: [a.example.com], routes: [{path: /, pool: web}]}]
pools:
  web: {backends: ["http://127.0.0.1:8080", "http://127.0.0.1:8081"], ` + keys + `}
`
}

func TestRetryTimes(t *testing.T) {
	p := mustParse(t, retryPool(`retries: 2, retry_on: [connect, timeout, 503], try_timeout: 2s, retry_window: 5s`), noEnv).Pools["web"]
	if p.TryTimeout != 2*time.Second || p.RetryWindow != 5*time.Second {
		t.Errorf("try_timeout %s, retry_window %s", p.TryTimeout, p.RetryWindow)
	}
	if d := mustParse(t, base, noEnv).Pools["web"]; d.TryTimeout != 0 || d.RetryWindow != 0 {
		t.Errorf("defaults: try_timeout %s, retry_window %s; want 0, 0", d.TryTimeout, d.RetryWindow)
	}
	checkProblems(t, problems(t, retryPool(`retries: 1, try_timeout: -1s, retry_window: soon`), noEnv), []string{
		`4:96: must not be negative`,
		`4:115: expected a duration like 5s, got "soon"`,
	})
}

func TestRetryTimesWarnings(t *testing.T) {
	for _, tc := range []struct{ keys, want string }{
		{`retries: 1, try_timeout: 1s`, `4:96: try_timeout applies to tries retried on a timeout: add timeout to retry_on`},
		{`retry_on: [timeout], try_timeout: 1s`, `4:105: try_timeout applies to tries that can be retried, and retries is 0`},
		{`retries: 1, retry_on: [timeout], try_timeout: 30s`, `4:117: try_timeout 30s is not shorter than timeouts.response_header 30s`},
		{`retry_window: 3s`, `4:85: retry_window bounds retries, and retries is 0`},
		{`retries: 1, retry_on: [timeout], try_timeout: 1s, retry_window: 3s`, ""},
	} {
		var got []string
		for _, w := range mustParse(t, retryPool(tc.keys), noEnv).Warnings() {
			got = append(got, fmt.Sprintf("%d:%d: %s", w.Line, w.Col, w.Msg))
		}
		var want []string
		if tc.want != "" {
			want = []string{tc.want}
		}
		checkProblems(t, got, want)
	}
}
