package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestHeaderRules: the site's rules, then the route's, on the request to
// the backend and on the response, with placeholders; host_header replaces
// the Host the backend sees.
func TestHeaderRules(t *testing.T) {
	var seen http.Header
	var seenHost string
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen, seenHost = r.Header.Clone(), r.Host
		w.Header().Set("Server", "Microsoft-IIS/10.0")
		w.Header().Set("X-Powered-By", "ASP.NET")
		w.Header().Set("X-Keep", "1")
		io.WriteString(w, "ok")
	}))
	t.Cleanup(b.Close)
	cfg := simpleConfig(mustURL(t, b.URL))
	cfg.Sites[0].RequestHeaders = HeaderRules{
		Set:    map[string]string{"X-Client": "{client_ip} via {scheme}://{host}{path}"},
		Remove: []string{"X-Debug"},
	}
	cfg.Sites[0].ResponseHeaders = HeaderRules{Remove: []string{"Server", "X-Powered-By"}, Set: map[string]string{"X-Frame-Options": "DENY"}}
	cfg.Sites[0].Routes[0].RequestHeaders = HeaderRules{Add: map[string]string{"X-Route": "root"}}
	cfg.Sites[0].Routes[0].ResponseHeaders = HeaderRules{Set: map[string]string{"X-Frame-Options": "SAMEORIGIN"}}
	cfg.Pools[0].HostHeader = "iis.internal"
	h := newHandler(t, cfg)
	w := serve(h, "GET", "https://example.com/app", func(r *http.Request) {
		r.Header.Set("X-Debug", "1")
		r.RemoteAddr = "192.0.2.7:5555"
	})
	if w.Code != 200 {
		t.Fatalf("%d", w.Code)
	}
	if got := seen.Get("X-Client"); got != "192.0.2.7 via https://example.com/app" {
		t.Errorf("X-Client %q", got)
	}
	if seen.Get("X-Debug") != "" || seen.Get("X-Route") != "root" {
		t.Errorf("request headers %v", seen)
	}
	if seenHost != "iis.internal" || seen.Get("X-Forwarded-Host") != "example.com" {
		t.Errorf("Host %q, X-Forwarded-Host %q: want iis.internal and the client's example.com", seenHost, seen.Get("X-Forwarded-Host"))
	}
	res := w.Result().Header
	if res.Get("Server") != "" || res.Get("X-Powered-By") != "" || res.Get("X-Keep") != "1" || res.Get("X-Frame-Options") != "SAMEORIGIN" {
		t.Errorf("response headers %v", res)
	}

	for _, bad := range []HeaderRules{
		{Set: map[string]string{"Bad Name": "x"}},
		{Set: map[string]string{"X-A": "{nope}"}},
		{Set: map[string]string{"X-A": "a\r\nb"}},
		{Remove: []string{"Transfer-Encoding"}},
		{Set: map[string]string{"Host": "x"}},
	} {
		cfg := simpleConfig(mustURL(t, b.URL))
		cfg.Sites[0].RequestHeaders = bad
		if err := Check(cfg); err == nil {
			t.Errorf("rules %+v accepted", bad)
		}
	}
}

// TestMaintenanceAndErrorPages: a site in maintenance answers 503 with its
// page and Retry-After, never contacting the backend; edge's own 502 and
// 503 carry the site's page or a line of text.
func TestMaintenanceAndErrorPages(t *testing.T) {
	hits := 0
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits++ }))
	t.Cleanup(b.Close)
	cfg := simpleConfig(mustURL(t, b.URL))
	cfg.Sites[0].Maintenance = true
	cfg.Sites[0].ErrorPages = map[int][]byte{503: []byte("<h1>Back soon</h1>")}
	w := serve(newHandler(t, cfg), "GET", "https://example.com/")
	if w.Code != 503 || w.Body.String() != "<h1>Back soon</h1>" || w.Header().Get("Retry-After") != "300" || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/html") {
		t.Errorf("maintenance: %d %q %v", w.Code, w.Body.String(), w.Header())
	}
	if w := serve(newHandler(t, cfg).HTTPHandler(), "GET", "http://example.com/"); w.Code != 503 {
		t.Errorf("maintenance on plain HTTP: %d", w.Code)
	}
	if hits != 0 {
		t.Errorf("the backend got %d requests during maintenance", hits)
	}

	dead := mustURL(t, "http://127.0.0.1:1")
	cfg = simpleConfig(dead)
	w = serve(newHandler(t, cfg), "GET", "https://example.com/")
	if w.Code != 502 || !strings.HasPrefix(w.Body.String(), "502 Bad Gateway") || strings.Contains(w.Body.String(), "127.0.0.1") {
		t.Errorf("a dead backend: %d %q (a line saying which, no backend named)", w.Code, w.Body.String())
	}
	cfg.Sites[0].ErrorPages = map[int][]byte{502: []byte("<p>oops</p>")}
	if w := serve(newHandler(t, cfg), "GET", "https://example.com/"); w.Body.String() != "<p>oops</p>" {
		t.Errorf("502 page: %q", w.Body.String())
	}
	cfg.Sites[0].ErrorPages = map[int][]byte{404: []byte("x")}
	if err := Check(cfg); err == nil {
		t.Error("a 404 page accepted")
	}
}
