package proxy

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
)

func TestMatchHost(t *testing.T) {
	tests := []struct {
		pattern, host string
		want          bool
	}{
		{"example.com", "example.com", true},
		{"example.com", "EXAMPLE.com", true},
		{"Example.COM", "example.com", true},
		{"example.com", "example.com:8443", true},
		{"example.com", "example.com.", true},
		{"example.com", "www.example.com", false},
		{"*.example.com", "www.example.com", true},
		{"*.example.com", "WWW.Example.Com:443", true},
		{"*.example.com", "example.com", false},
		{"*.example.com", "a.b.example.com", false},
		{"*.example.com", ".example.com", false},
		{"*.", "a.", false},
		{"", "", false},
		{"::1", "[::1]:443", true},
		{"10.0.0.1", "10.0.0.1:80", true},
		{"*", "anything.example.org", true},
		{"*", "Other.COM:8443", true},
		{"*", "10.0.0.1", true},
		{"*", "", false},
		{"*", ":443", false},
		{"*.", "a.", false},
		{"**", "a", false},
	}
	for _, tc := range tests {
		t.Run(tc.pattern+"/"+tc.host, func(t *testing.T) {
			if got := MatchHost(tc.pattern, tc.host); got != tc.want {
				t.Errorf("MatchHost(%q, %q) = %v, want %v", tc.pattern, tc.host, got, tc.want)
			}
		})
	}
}

// TestCatchAll: the site of "*" answers every host that no exact name and
// no wildcard matches, and only those.
func TestCatchAll(t *testing.T) {
	exact := newBackend(t, "exact")
	wild := newBackend(t, "wild")
	any := newBackend(t, "any")
	cfg := Config{
		Sites: []SiteConfig{
			{Name: "*", Hosts: []string{"*"}, Routes: []RouteConfig{{Path: "/", Pool: "any"}}},
			{Name: "example.com", Hosts: []string{"example.com"}, Routes: []RouteConfig{{Path: "/", Pool: "exact"}}},
			{Name: "*.example.com", Hosts: []string{"*.example.com"}, Routes: []RouteConfig{{Path: "/", Pool: "wild"}}},
		},
		Pools: []PoolConfig{
			{Name: "exact", Backends: []*url.URL{exact.url}},
			{Name: "wild", Backends: []*url.URL{wild.url}},
			{Name: "any", Backends: []*url.URL{any.url}},
		},
	}
	h := newHandler(t, cfg)
	tests := []struct {
		name, host  string
		https       bool
		wantCode    int
		wantBackend string
	}{
		{"exact wins", "example.com", true, 200, "exact"},
		{"wildcard wins", "www.example.com", true, 200, "wild"},
		{"two labels below the wildcard", "a.b.example.com", true, 200, "any"},
		{"other name", "customer.example.net", true, 200, "any"},
		{"other name with port and case", "Customer.Example.NET:8443", true, 200, "any"},
		{"ip literal", "192.0.2.1", true, 200, "any"},
		{"plain http", "customer.example.net", false, 200, "any"},
		{"no host", "", true, 421, ""},
		{"no host http", "", false, 404, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var hh http.Handler = h
			if !tc.https {
				hh = h.HTTPHandler()
			}
			w := serve(hh, "GET", "http://placeholder/", func(r *http.Request) { r.Host = tc.host })
			if w.Code != tc.wantCode {
				t.Fatalf("code = %d, want %d", w.Code, tc.wantCode)
			}
			if got := w.Header().Get("X-Backend"); got != tc.wantBackend {
				t.Errorf("backend = %q, want %q", got, tc.wantBackend)
			}
		})
	}

	t.Run("twice", func(t *testing.T) {
		bad := cfg
		bad.Sites = append(slices.Clone(cfg.Sites), SiteConfig{Name: "again", Hosts: []string{"*"}, Routes: []RouteConfig{{Path: "/", Pool: "any"}}})
		_, err := New(t.Context(), bad)
		if err == nil || !strings.Contains(err.Error(), `host "*" already belongs to site "*"`) {
			t.Fatalf("err = %v, want the catch-all listed twice", err)
		}
	})
}

func TestRouting(t *testing.T) {
	root := newBackend(t, "root")
	api := newBackend(t, "api")
	apiV2 := newBackend(t, "api-v2")
	wild := newBackend(t, "wild")
	exactSub := newBackend(t, "exact-sub")
	cfg := Config{
		Sites: []SiteConfig{
			{Name: "example.com", Hosts: []string{"example.com", "www.example.com"}, Routes: []RouteConfig{
				{Path: "/", Pool: "root"},
				{Path: "/api/", Pool: "api"},
				{Path: "/api/v2/", Pool: "api-v2"},
			}},
			{Name: "*.apps.example.com", Hosts: []string{"*.apps.example.com"}, Routes: []RouteConfig{{Path: "/", Pool: "wild"}}},
			{Name: "special.apps.example.com", Hosts: []string{"special.apps.example.com"}, Routes: []RouteConfig{{Path: "/", Pool: "exact-sub"}}},
			{Name: "narrow.example.com", Hosts: []string{"narrow.example.com"}, Routes: []RouteConfig{{Path: "/only/", Pool: "root"}}},
		},
		Pools: []PoolConfig{
			{Name: "root", Backends: []*url.URL{root.url}},
			{Name: "api", Backends: []*url.URL{api.url}},
			{Name: "api-v2", Backends: []*url.URL{apiV2.url}},
			{Name: "wild", Backends: []*url.URL{wild.url}},
			{Name: "exact-sub", Backends: []*url.URL{exactSub.url}},
		},
	}
	h := newHandler(t, cfg)
	tests := []struct {
		name, host, path string
		https            bool
		wantCode         int
		wantBackend      string
	}{
		{"exact root", "example.com", "/", true, 200, "root"},
		{"second host", "www.example.com", "/x", true, 200, "root"},
		{"port and case", "WWW.Example.COM:8443", "/x", true, 200, "root"},
		{"prefix", "example.com", "/api/users", true, 200, "api"},
		{"longest prefix", "example.com", "/api/v2/users", true, 200, "api-v2"},
		{"prefix is not a directory match", "example.com", "/api", true, 200, "root"},
		{"wildcard", "foo.apps.example.com", "/", true, 200, "wild"},
		{"exact before wildcard", "special.apps.example.com", "/", true, 200, "exact-sub"},
		{"wildcard is one label", "a.b.apps.example.com", "/", true, 421, ""},
		{"unknown host https", "other.com", "/", true, 421, ""},
		{"unknown host http", "other.com", "/", false, 404, ""},
		{"no route", "narrow.example.com", "/elsewhere", true, 404, ""},
		{"http proxies without redirect", "example.com", "/api/x", false, 200, "api"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var hh http.Handler = h
			if !tc.https {
				hh = h.HTTPHandler()
			}
			w := serve(hh, "GET", "http://"+tc.host+tc.path, func(r *http.Request) { r.Host = tc.host })
			if w.Code != tc.wantCode {
				t.Fatalf("code = %d, want %d", w.Code, tc.wantCode)
			}
			if got := w.Header().Get("X-Backend"); got != tc.wantBackend {
				t.Errorf("backend = %q, want %q", got, tc.wantBackend)
			}
			if tc.wantBackend != "" {
				if got := w.Header().Get("X-Seen-Host"); got != tc.host {
					t.Errorf("backend saw Host %q, want %q as sent", got, tc.host)
				}
				if got := w.Header().Get("X-Seen-Path"); got != tc.path {
					t.Errorf("backend saw path %q, want %q", got, tc.path)
				}
			}
		})
	}
}

func TestBackendBasePath(t *testing.T) {
	b := newBackend(t, "b")
	h := newHandler(t, simpleConfig(mustURL(t, b.URL+"/base/")))
	w := serve(h, "GET", "https://example.com/x/y?q=1")
	if got := w.Header().Get("X-Seen-Path"); got != "/base/x/y?q=1" {
		t.Errorf("backend saw %q, want /base/x/y?q=1", got)
	}
	if w := serve(h, "CONNECT", "example.com:443", func(r *http.Request) { r.Host = "example.com" }); w.Code != http.StatusMethodNotAllowed {
		t.Errorf("CONNECT: code %d, want 405", w.Code)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	b := mustURL(t, "http://127.0.0.1:1")
	cfg := Config{
		Sites: []SiteConfig{
			{Name: "a", Hosts: []string{"a.com"}, Routes: []RouteConfig{{Path: "/", Pool: "missing"}}},
			{Name: "b", Hosts: []string{"b.com", "B.com."}, Routes: []RouteConfig{{Path: "/", Pool: "web"}}},
		},
		Pools: []PoolConfig{
			{Name: "web", Backends: []*url.URL{b}},
			{Name: "web", Backends: []*url.URL{b}},
			{Name: "ftp", Backends: []*url.URL{mustURL(t, "ftp://x")}},
			{Name: "empty"},
		},
	}
	_, err := New(t.Context(), cfg)
	if err == nil {
		t.Fatal("New accepted a bad config")
	}
	for _, want := range []string{`unknown pool "missing"`, `host "B.com." already belongs`, `pool "web" defined twice`, `backend ftp://x`, `pool "empty": no backends`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestRedirectHTTP(t *testing.T) {
	b := newBackend(t, "b")
	cfg := simpleConfig(b.url)
	cfg.Sites[0].RedirectHTTP = true
	for _, tc := range []struct {
		name   string
		port   int
		target string
		want   string
	}{
		{"query kept", 0, "http://Example.com/a%20b/c?x=1&y=%2F", "https://example.com/a%20b/c?x=1&y=%2F"},
		{"root", 443, "http://example.com", "https://example.com/"},
		{"non-default https port", 8443, "http://example.com:8080/p?q", "https://example.com:8443/p?q"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg.HTTPSPort = tc.port
			h := newHandler(t, cfg)
			w := serve(h.HTTPHandler(), "POST", tc.target)
			if w.Code != http.StatusPermanentRedirect {
				t.Fatalf("code = %d, want 308", w.Code)
			}
			if got := w.Header().Get("Location"); got != tc.want {
				t.Errorf("Location = %q, want %q", got, tc.want)
			}
			if b.hits.Load() != 0 {
				t.Error("a redirected request reached the backend")
			}
		})
	}
}

func TestHSTS(t *testing.T) {
	b := newBackend(t, "b")
	for _, tc := range []struct {
		name string
		hsts int
		want string
	}{
		{"on", 31536000, "max-age=31536000"},
		{"off", 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := simpleConfig(b.url)
			cfg.Sites[0].HSTS = tc.hsts
			h := newHandler(t, cfg)
			w := serve(h, "GET", "https://example.com/")
			if got := w.Header().Get("Strict-Transport-Security"); got != tc.want {
				t.Errorf("HTTPS: HSTS = %q, want %q", got, tc.want)
			}
			w = serve(h.HTTPHandler(), "GET", "http://example.com/")
			if got := w.Header().Get("Strict-Transport-Security"); got != "" {
				t.Errorf("plain HTTP: HSTS = %q, want none", got)
			}
		})
	}
}

// TestHSTSOnce checks, on the wire, that a response carries exactly one
// Strict-Transport-Security header: edge's when the site sets HSTS (also
// after a 103 Early Hints, which makes ReverseProxy clear the headers), the
// backend's otherwise.
func TestHSTSOnce(t *testing.T) {
	back := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Test-103") != "" {
			w.Header().Set("Link", "</style.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			delete(w.Header(), "Link")
		}
		if v := r.Header.Get("X-Test-Hsts"); v != "" {
			w.Header().Add("Strict-Transport-Security", v)
			w.Header().Add("Strict-Transport-Security", "max-age=1")
		}
	}))
	t.Cleanup(back.Close)
	const edgeHSTS = "max-age=31536000"
	tests := []struct {
		name        string
		hsts        int // the site's
		plainHTTP   bool
		path        string
		backendHSTS string
		early       bool
		wantCode    int
		want        []string
	}{
		{"site only", 31536000, false, "/app/", "", false, 200, []string{edgeHSTS}},
		{"both", 31536000, false, "/app/", "max-age=60; includeSubDomains", false, 200, []string{edgeHSTS}},
		{"both, same value", 31536000, false, "/app/", edgeHSTS, false, 200, []string{edgeHSTS}},
		{"both, after 103", 31536000, false, "/app/", "max-age=60", true, 200, []string{edgeHSTS}},
		{"site only, after 103", 31536000, false, "/app/", "", true, 200, []string{edgeHSTS}},
		{"site, no route", 31536000, false, "/nowhere", "", false, 404, []string{edgeHSTS}},
		{"site, backend down", 31536000, false, "/down/", "", false, 502, []string{edgeHSTS}},
		{"backend only", 0, false, "/app/", "max-age=60", false, 200, []string{"max-age=60", "max-age=1"}},
		{"neither", 0, false, "/app/", "", false, 200, nil},
		{"plain HTTP keeps the backend's", 31536000, true, "/app/", "max-age=60", false, 200, []string{"max-age=60", "max-age=1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := simpleConfig(mustURL(t, back.URL))
			cfg.Sites[0].HSTS = tc.hsts
			cfg.Sites[0].Routes = []RouteConfig{{Path: "/app/", Pool: "web"}, {Path: "/down/", Pool: "down"}}
			cfg.Pools = append(cfg.Pools, PoolConfig{Name: "down", Backends: []*url.URL{closedURL(t)}})
			h := newHandler(t, cfg)
			var edge *httptest.Server
			if tc.plainHTTP {
				edge = httptest.NewServer(h.HTTPHandler())
			} else {
				edge = httptest.NewTLSServer(h)
			}
			t.Cleanup(edge.Close)
			req, err := http.NewRequestWithContext(t.Context(), "GET", edge.URL+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Host = "example.com"
			if tc.backendHSTS != "" {
				req.Header.Set("X-Test-Hsts", tc.backendHSTS)
			}
			if tc.early {
				req.Header.Set("X-Test-103", "1")
			}
			res, err := edge.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != tc.wantCode {
				t.Fatalf("code = %d, want %d", res.StatusCode, tc.wantCode)
			}
			if got := res.Header["Strict-Transport-Security"]; !slices.Equal(got, tc.want) {
				t.Errorf("Strict-Transport-Security = %q, want %q", got, tc.want)
			}
		})
	}
}
