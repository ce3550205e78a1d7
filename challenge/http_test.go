package challenge

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// fakeSolver knows one token for one host, as certmagic's issuer would.
type fakeSolver struct{ host, token, source string }

func (f fakeSolver) HandleHTTPChallenge(w http.ResponseWriter, r *http.Request) (bool, string) {
	if r.Host != f.host || r.URL.Path != PathPrefix+f.token {
		return false, ""
	}
	_, _ = w.Write([]byte(f.token + ".thumb"))
	return true, f.source
}

type fakeFallback struct{ token string }

func (f fakeFallback) ServeChallenge(w http.ResponseWriter, r *http.Request) bool {
	if !strings.HasSuffix(r.URL.Path, f.token) {
		return false
	}
	_, _ = w.Write([]byte("from-peer"))
	return true
}

// Tokens of the shape RFC 8555 gives them: 43 base64url characters.
const (
	tok1    = "tok1-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	peerTok = "peer-BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"
)

func TestHTTPHandler(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "https://"+r.Host+r.URL.Path, http.StatusPermanentRedirect)
	})
	h := NewHTTPHandler(HTTPOptions{
		Solver:   fakeSolver{host: "a.test", token: tok1, source: "storage"},
		Fallback: fakeFallback{token: peerTok},
		Metrics:  m,
	}, next)

	tests := []struct {
		name, host, path string
		code             int
		body             string
	}{
		{"known token", "a.test", PathPrefix + tok1, 200, tok1 + ".thumb"},
		{"peer token", "a.test", PathPrefix + peerTok, 200, "from-peer"},
		{"unknown token is 404 not redirect", "a.test", PathPrefix + "nope-nope-nope-nope-nope-nope", 404, "unknown challenge token\n"},
		// Not a token's shape (RFC 8555 base64url): 404 without asking the
		// solver, which would have answered the suffix.
		{"too short", "a.test", PathPrefix + "tok", 404, "unknown challenge token\n"},
		{"dot segments", "a.test", PathPrefix + "../../" + tok1, 404, "unknown challenge token\n"},
		{"a slash", "a.test", PathPrefix + "x/" + tok1, 404, "unknown challenge token\n"},
		{"other paths go to next", "a.test", "/index.html", 308, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			r := httptest.NewRequest("GET", "http://"+tc.host+tc.path, nil)
			h.ServeHTTP(rec, r)
			if rec.Code != tc.code {
				t.Fatalf("code = %d, want %d", rec.Code, tc.code)
			}
			if tc.body != "" && rec.Body.String() != tc.body {
				t.Fatalf("body = %q, want %q", rec.Body.String(), tc.body)
			}
		})
	}
	for source, want := range map[string]float64{"storage": 1, "peer": 1, "unknown": 4, "local": 0} {
		if got := testutil.ToFloat64(m.requests.WithLabelValues(source)); got != want {
			t.Errorf("edge_acme_challenge_requests_total{source=%q} = %v, want %v", source, got, want)
		}
	}
}
