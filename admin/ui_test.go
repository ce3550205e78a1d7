package admin

import (
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestUIAssets: the embedded page and its files are served with their
// content types and the page's CSP, also when a token is set (they hold no
// data), and the page refers to no other host.
func TestUIAssets(t *testing.T) {
	h := New(Options{Token: func() string { return "s3cret" }})
	for _, tc := range []struct {
		path, ctype, contains string
	}{
		{"/", "text/html; charset=utf-8", `<script src="/ui/app.js"`},
		{"/ui/app.js", "text/javascript; charset=utf-8", "function refresh"},
		{"/ui/style.css", "text/css; charset=utf-8", ".cards"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("GET", tc.path, nil))
			body := rec.Body.String()
			if rec.Code != 200 || rec.Header().Get("Content-Type") != tc.ctype || !strings.Contains(body, tc.contains) {
				t.Fatalf("GET %s: %d %q, %d bytes; want 200 %q containing %q", tc.path, rec.Code, rec.Header().Get("Content-Type"), len(body), tc.ctype, tc.contains)
			}
			if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
				t.Errorf("GET %s: CSP %q", tc.path, csp)
			}
			if rec.Header().Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("GET %s: no nosniff", tc.path)
			}
			for _, bad := range []string{"http://", "https://", "innerHTML", "s3cret"} {
				if strings.Contains(body, bad) {
					t.Errorf("GET %s contains %q", tc.path, bad)
				}
			}
		})
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/ui/missing.js", nil))
	if rec.Code != 404 {
		t.Errorf("GET /ui/missing.js: %d, want 404", rec.Code)
	}
}

// TestLogin walks the browser flow over a real listener: without a session
// the API refuses; a wrong token makes no session; the right one sets an
// HttpOnly, SameSite=Strict cookie holding no token, which then authorises
// GETs, and state changes only with the header; logout and a token
// rotation end the session.
func TestLogin(t *testing.T) {
	token := "s3cret-token"
	renews := 0
	srv := httptest.NewServer(New(Options{
		Token: func() string { return token },
		API: map[string]func(*http.Request) (any, error){
			"certificates": func(*http.Request) (any, error) { return []string{"private.test"}, nil },
			"renew":        func(*http.Request) (any, error) { renews++; return "ok", nil },
		},
	}))
	defer srv.Close()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	do := func(method, path string, form url.Values, header bool) (int, string, *http.Response) {
		t.Helper()
		var body io.Reader
		if form != nil {
			body = strings.NewReader(form.Encode())
		}
		req, _ := http.NewRequest(method, srv.URL+path, body)
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		if header {
			req.Header.Set(RequestHeader, "1")
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp
	}
	expect := func(what string, code int, body string, wantCode int, wantIn string) {
		t.Helper()
		if code != wantCode || !strings.Contains(body, wantIn) {
			t.Fatalf("%s: %d %q, want %d containing %q", what, code, body, wantCode, wantIn)
		}
	}

	code, body, _ := do("GET", "/api/certificates", nil, false)
	expect("api without session", code, body, 401, "")
	if strings.Contains(body, "private.test") {
		t.Fatal("unauthorised answer leaks data")
	}
	code, body, _ = do("GET", "/session", nil, false)
	expect("session before login", code, body, 200, `"authorized": false`)
	code, body, _ = do("POST", "/login", url.Values{"token": {"s3cret-token"}}, false)
	expect("login without the header", code, body, 403, RequestHeader)
	code, body, _ = do("POST", "/login", url.Values{"token": {"wrong"}}, true)
	expect("wrong token", code, body, 401, "wrong token")
	if len(jar.Cookies(mustURL(t, srv.URL))) != 0 {
		t.Fatal("a wrong token set a cookie")
	}

	code, body, resp := do("POST", "/login", url.Values{"token": {token}}, true)
	expect("login", code, body, 200, "logged_in")
	var ck *http.Cookie
	for _, k := range resp.Cookies() {
		if k.Name == SessionCookie {
			ck = k
		}
	}
	if ck == nil || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/" || ck.Secure {
		t.Fatalf("session cookie %+v: want HttpOnly, SameSite=Strict, Path=/, not Secure over plain HTTP", ck)
	}
	if strings.Contains(ck.Value, token) || len(ck.Value) < 40 {
		t.Fatalf("cookie value %q: want a random id, not the token", ck.Value)
	}
	code, body, _ = do("GET", "/api/certificates", nil, false)
	expect("api with session", code, body, 200, "private.test")
	code, body, _ = do("GET", "/session", nil, false)
	expect("session after login", code, body, 200, `"authorized": true`)
	code, body, _ = do("POST", "/api/renew", nil, false)
	expect("POST with cookie, no header", code, body, 403, RequestHeader)
	code, body, _ = do("POST", "/api/renew", nil, true)
	expect("POST with cookie and header", code, body, 200, "ok")
	if renews != 1 {
		t.Fatalf("renew called %d times, want 1", renews)
	}

	// A forged cookie is no session.
	jar2, _ := cookiejar.New(nil)
	jar2.SetCookies(mustURL(t, srv.URL), []*http.Cookie{{Name: SessionCookie, Value: "forged"}})
	req, _ := http.NewRequest("GET", srv.URL+"/api/certificates", nil)
	if r2, err := (&http.Client{Jar: jar2}).Do(req); err != nil || r2.StatusCode != 401 {
		t.Fatalf("forged cookie: %v %v, want 401", r2.StatusCode, err)
	} else {
		r2.Body.Close()
	}

	// Rotating the token ends the session.
	token = "rotated"
	code, body, _ = do("GET", "/api/certificates", nil, false)
	expect("session after rotation", code, body, 401, "")
	token = "s3cret-token"
	code, body, _ = do("GET", "/api/certificates", nil, false)
	expect("session with the old token back", code, body, 200, "private.test")

	code, body, resp = do("POST", "/logout", nil, true)
	expect("logout", code, body, 200, "")
	if len(resp.Cookies()) != 1 || resp.Cookies()[0].MaxAge >= 0 {
		t.Fatalf("logout cookies %v: want the session cookie deleted", resp.Cookies())
	}
	// The old id, replayed after logout, is refused.
	jar3, _ := cookiejar.New(nil)
	jar3.SetCookies(mustURL(t, srv.URL), []*http.Cookie{{Name: SessionCookie, Value: ck.Value}})
	req, _ = http.NewRequest("GET", srv.URL+"/api/certificates", nil)
	if r3, err := (&http.Client{Jar: jar3}).Do(req); err != nil || r3.StatusCode != 401 {
		t.Fatalf("session id after logout: %v %v, want 401", r3.StatusCode, err)
	} else {
		r3.Body.Close()
	}

	// The bearer token still works, without a cookie or header.
	req, _ = http.NewRequest("POST", srv.URL+"/api/renew", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	if r4, err := http.DefaultClient.Do(req); err != nil || r4.StatusCode != 200 {
		t.Fatalf("bearer POST: %v %v, want 200", r4.StatusCode, err)
	} else {
		r4.Body.Close()
	}
}

// TestLoginWithoutToken: with no token configured there is nothing to log
// in to, and the page's /session says it is authorised.
func TestLoginWithoutToken(t *testing.T) {
	h := New(Options{})
	rec := httptest.NewRecorder()
	r := httptest.NewRequest("POST", "/login", strings.NewReader("token=x"))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set(RequestHeader, "1")
	h.ServeHTTP(rec, r)
	if rec.Code != 400 || rec.Header().Get("Set-Cookie") != "" {
		t.Fatalf("login without a token configured: %d, cookie %q", rec.Code, rec.Header().Get("Set-Cookie"))
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/session", nil))
	if !strings.Contains(rec.Body.String(), `"token_required": false`) || !strings.Contains(rec.Body.String(), `"authorized": true`) {
		t.Fatalf("session: %s", rec.Body.String())
	}
}

// TestSecureCookieOverTLS: on a TLS admin listener the cookie is Secure.
func TestSecureCookieOverTLS(t *testing.T) {
	srv := httptest.NewTLSServer(New(Options{Token: func() string { return "tok" }}))
	defer srv.Close()
	req, _ := http.NewRequest("POST", srv.URL+"/login", strings.NewReader("token=tok"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set(RequestHeader, "1")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if len(resp.Cookies()) != 1 || !resp.Cookies()[0].Secure {
		t.Fatalf("cookies over TLS: %v, want one Secure", resp.Cookies())
	}
}

func TestEventsAPI(t *testing.T) {
	ev := NewEvents(3)
	h := New(Options{Events: ev, Token: func() string { return "tok" }})
	get := func(auth string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("GET", "/api/events", nil)
		if auth != "" {
			r.Header.Set("Authorization", auth)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		return rec
	}
	if rec := get(""); rec.Code != 401 {
		t.Fatalf("events without the token: %d, want 401", rec.Code)
	}
	if rec := get("Bearer tok"); rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != "[]" {
		t.Fatalf("empty events: %d %q, want []", rec.Code, rec.Body.String())
	}
	ev.Add(Event{Kind: EventObtained, Name: "a.test"})
	ev.Add(Event{Kind: EventExported, Name: "a.test", Target: "pem"})
	ev.Add(Event{Kind: EventReloaded, Detail: "1 site"})
	ev.Add(Event{Kind: EventFailed, Name: "b.test", Detail: "rate limited"})
	body := get("Bearer tok").Body.String()
	iFailed, iReload := strings.Index(body, `"failed"`), strings.Index(body, `"reloaded"`)
	if iFailed < 0 || iReload < 0 || iFailed > iReload || strings.Contains(body, `"obtained"`) || !strings.Contains(body, `"target": "pem"`) {
		t.Fatalf("events (3 kept, newest first):\n%s", body)
	}
}

func TestEventsRing(t *testing.T) {
	var zero Events
	for i := range DefaultEventCapacity + 5 {
		zero.Add(Event{Kind: EventRenewed, Name: fmt.Sprint(i)})
	}
	l := zero.List()
	if len(l) != DefaultEventCapacity || l[0].Name != fmt.Sprint(DefaultEventCapacity+4) || l[len(l)-1].Name != "5" {
		t.Fatalf("zero value: %d events, first %q last %q", len(l), l[0].Name, l[len(l)-1].Name)
	}
	if l[0].Time.IsZero() {
		t.Fatal("Add left Time zero")
	}
	for _, tc := range []struct {
		n, add int
		want   string
	}{
		{3, 0, ""},
		{3, 2, "1 0"},
		{3, 3, "2 1 0"},
		{3, 7, "6 5 4"},
		{1, 4, "3"},
	} {
		e := NewEvents(tc.n)
		for i := range tc.add {
			e.Add(Event{Name: fmt.Sprint(i)})
		}
		var got []string
		for _, ev := range e.List() {
			got = append(got, ev.Name)
		}
		if strings.Join(got, " ") != tc.want {
			t.Errorf("cap %d, %d added: %q, want %q", tc.n, tc.add, strings.Join(got, " "), tc.want)
		}
	}
	var nilEvents *Events
	nilEvents.Add(Event{Kind: EventFailed})
	if l := nilEvents.List(); len(l) != 0 {
		t.Fatalf("nil Events listed %v", l)
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestLoginThrottled: after loginFailures wrong tokens in a minute even the
// right one is answered 429 (with Retry-After); the bearer token still works.
func TestLoginThrottled(t *testing.T) {
	h := New(Options{Token: func() string { return "right" }, API: map[string]func(*http.Request) (any, error){
		"pools": func(*http.Request) (any, error) { return []string{}, nil },
	}})
	login := func(tok string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("POST", "/login", strings.NewReader(url.Values{"token": {tok}}.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.Header.Set(RequestHeader, "1")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		return rec
	}
	for i := range loginFailures {
		if rec := login(fmt.Sprint("guess", i)); rec.Code != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d, want 401", i, rec.Code)
		}
	}
	rec := login("right")
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") == "" || rec.Header().Get("Set-Cookie") != "" {
		t.Fatalf("after %d wrong tokens: %d, Retry-After %q, cookie %q; want 429, a Retry-After and no cookie",
			loginFailures, rec.Code, rec.Header().Get("Retry-After"), rec.Header().Get("Set-Cookie"))
	}
	r := httptest.NewRequest("GET", "/api/pools", nil)
	r.Header.Set("Authorization", "Bearer right")
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	if rec.Code != 200 {
		t.Fatalf("bearer while logins are throttled: %d", rec.Code)
	}
	var f failedLogins
	t0 := time.Now()
	for i := range loginFailures {
		f.add(t0.Add(time.Duration(i) * time.Second))
	}
	if b, _ := f.blocked(t0.Add(loginWindow - time.Second)); !b {
		t.Error("not blocked within the window")
	}
	if b, _ := f.blocked(t0.Add(loginWindow)); b {
		t.Error("still blocked once the oldest failure left the window")
	}
}
