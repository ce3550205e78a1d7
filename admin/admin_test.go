package admin

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestAdmin(t *testing.T) {
	reg := prometheus.NewRegistry()
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "edge_test_gauge", Help: "x"})
	reg.MustRegister(g)
	ready := false
	h := New(Options{
		Gatherer: reg,
		Ready:    func() (bool, []string) { return ready, []string{"a.test"} },
		API: map[string]func(*http.Request) (any, error){
			"certificates": func(*http.Request) (any, error) { return []string{"a.test"}, nil },
			"renew": func(*http.Request) (any, error) {
				return nil, &StatusError{Code: 404, Err: errors.New("x.test: name not managed")}
			},
		},
		Token: "s3cret",
	})
	do := func(path, token string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("GET", path, nil)
		if token != "" {
			r.Header.Set("Authorization", "Bearer "+token)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		return rec
	}
	tests := []struct {
		name, path, token string
		code              int
		contains          string
	}{
		{"healthz needs no token", "/healthz", "", 200, "ok"},
		{"readyz not ready", "/readyz", "", 503, `"a.test"`},
		{"metrics needs token", "/metrics", "", 401, "bearer token"},
		{"metrics wrong token", "/metrics", "nope", 401, ""},
		{"metrics", "/metrics", "s3cret", 200, "edge_test_gauge"},
		{"api", "/api/certificates", "s3cret", 200, `"a.test"`},
		{"api status error", "/api/renew", "s3cret", 404, "not managed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := do(tc.path, tc.token)
			if rec.Code != tc.code || !strings.Contains(rec.Body.String(), tc.contains) {
				t.Fatalf("GET %s: %d %q, want %d containing %q", tc.path, rec.Code, rec.Body.String(), tc.code, tc.contains)
			}
		})
	}
	ready = true
	if rec := do("/readyz", ""); rec.Code != 200 {
		t.Fatalf("readyz after ready: %d", rec.Code)
	}
}

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:9180": true, "[::1]:9180": true, "localhost:1": true,
		":9180": false, "0.0.0.0:9180": false, "10.0.0.1:80": false,
	} {
		if got := IsLoopback(addr); got != want {
			t.Errorf("IsLoopback(%q) = %v, want %v", addr, got, want)
		}
	}
}
