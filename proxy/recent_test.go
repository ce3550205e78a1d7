package proxy

import (
	"net/url"
	"testing"
	"time"
)

func TestRecentCounts(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	type ev struct {
		at     time.Duration // after t0, in time order
		failed bool
	}
	for _, tc := range []struct {
		name         string
		events       []ev
		at           time.Duration
		wantA, wantF int64
	}{
		{"empty", nil, 0, 0, 0},
		{"within the minute", []ev{{0, false}, {time.Second, true}, {30 * time.Second, false}}, 40 * time.Second, 3, 1},
		{"older than a minute drops out", []ev{{0, true}, {65 * time.Second, false}}, 70 * time.Second, 1, 0},
		{"a reused bucket starts from zero", []ev{{0, true}, {0, false}, {60 * time.Second, true}}, 60 * time.Second, 1, 1},
		{"all gone after two minutes", []ev{{0, true}}, 2 * time.Minute, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c recentCounts
			for _, e := range tc.events {
				c.attempt(t0.Add(e.at))
				if e.failed {
					c.failure(t0.Add(e.at))
				}
			}
			a, f := c.rate(t0.Add(tc.at))
			if a != tc.wantA || f != tc.wantF {
				t.Fatalf("rate: %d attempts %d failures, want %d %d", a, f, tc.wantA, tc.wantF)
			}
		})
	}
}

// TestBackendStatusRecent: /api/pools shows the last up/down change (also
// the end of an ejection) and the last minute's error rate.
func TestBackendStatusRecent(t *testing.T) {
	u := newUpstream(&url.URL{Scheme: "http", Host: "127.0.0.1:1"})
	if st := u.status(); !st.ChangedAt.IsZero() || st.Requests != 0 || st.ErrorRate != 0 {
		t.Fatalf("fresh backend: %+v", st)
	}
	now := time.Now()
	for i := range 4 {
		u.recent.attempt(now)
		if i == 0 {
			u.recordFailure(reasonConnect, now) // no pool: counted, not ejected
		}
	}
	ended := now.Add(-time.Second).Truncate(time.Microsecond)
	u.ejectedUntil.Store(ended.UnixNano()) // an ejection whose cooldown is over
	st := u.status()
	if !st.Up || !st.ChangedAt.Equal(ended) {
		t.Errorf("after the ejection ended: up %v changed %v, want up at %v", st.Up, st.ChangedAt, ended)
	}
	if st.Requests != 4 || st.Errors != 1 || st.ErrorRate != 0.25 {
		t.Errorf("recent: %d requests %d errors rate %v, want 4 1 0.25", st.Requests, st.Errors, st.ErrorRate)
	}
}
