package admin

import (
	"encoding/json"
	"errors"
	"fmt"
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
	token := "s3cret"
	h := New(Options{
		Gatherer: reg,
		Ready:    func() (bool, []string) { return ready, []string{"a.test"} },
		API: map[string]func(*http.Request) (any, error){
			"certificates": func(*http.Request) (any, error) { return []string{"a.test"}, nil },
			"renew": func(*http.Request) (any, error) {
				return nil, &StatusError{Code: 404, Err: errors.New("x.test: name not managed")}
			},
		},
		Token: func() string { return token },
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
		{"profiles need the token", "/debug/pprof/", "", 401, "bearer token"},
		{"profiles", "/debug/pprof/", "s3cret", 200, "goroutine"},
		{"a heap profile", "/debug/pprof/heap?debug=1", "s3cret", 200, "heap profile"},
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
	// A reload rotates the token: the old one stops working at once.
	token = "rotated"
	if rec := do("/metrics", "s3cret"); rec.Code != 401 {
		t.Fatalf("old token after rotation: %d, want 401", rec.Code)
	}
	if rec := do("/metrics", "rotated"); rec.Code != 200 {
		t.Fatalf("new token after rotation: %d, want 200", rec.Code)
	}
}

// TestStateChangingNeedsHeader: without a token, a POST that a web page
// could send cross-site (no custom header) is refused; with the header, or
// with the token, it goes through; GETs need neither.
func TestStateChangingNeedsHeader(t *testing.T) {
	called := 0
	for _, token := range []string{"", "s3cret"} {
		h := New(Options{
			Token: func() string { return token },
			API: map[string]func(*http.Request) (any, error){
				"renew": func(*http.Request) (any, error) { called++; return "ok", nil },
			},
		})
		for _, tc := range []struct {
			method, header, auth string
			want                 int
		}{
			{"POST", "", "", http.StatusForbidden},
			{"POST", "1", "", http.StatusOK},
			{"GET", "", "", http.StatusOK},
			{"POST", "", "Bearer s3cret", http.StatusOK},
		} {
			if token != "" && tc.auth == "" {
				tc.want = http.StatusUnauthorized
			}
			if token == "" && tc.auth != "" && tc.header == "" && tc.method == "POST" {
				tc.want = http.StatusForbidden // a bearer edge does not check is no proof
			}
			r := httptest.NewRequest(tc.method, "/api/renew", nil)
			if tc.header != "" {
				r.Header.Set(RequestHeader, tc.header)
			}
			if tc.auth != "" {
				r.Header.Set("Authorization", tc.auth)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			if rec.Code != tc.want {
				t.Errorf("token %q: %s with header %q auth %q: %d, want %d", token, tc.method, tc.header, tc.auth, rec.Code, tc.want)
			}
		}
	}
	if called == 0 {
		t.Error("no request reached the API")
	}
}

// TestReadyzCapsProblems: with thousands of names still loading, /readyz
// lists the first 50 and counts the rest.
func TestReadyzCapsProblems(t *testing.T) {
	var names []string
	for i := range 60 {
		names = append(names, fmt.Sprintf("n%02d.test", i))
	}
	h := New(Options{Ready: func() (bool, []string) { return false, names }})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	var body struct {
		Ready    bool     `json:"ready"`
		Problems []string `json:"problems"`
		More     int      `json:"more_problems"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatal(err)
	}
	if rec.Code != 503 || body.Ready || len(body.Problems) != 50 || body.Problems[0] != "n00.test" || body.More != 10 {
		t.Errorf("%d %+v", rec.Code, body)
	}
}
