package proxy

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
)

// hashReq is a request from remote with the given header fields.
func hashReq(remote string, header ...string) *http.Request {
	r := httptest.NewRequest("GET", "https://example.com/", nil)
	r.RemoteAddr = remote
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Add(header[i], header[i+1])
	}
	return r
}

func TestHash(t *testing.T) {
	byHeader := (&Hash{Header: "x-session"}).forPool("web").(*Hash)
	byCookie := (&Hash{Cookie: "ASP.NET_SessionId"}).forPool("web").(*Hash)
	byCookieIP := (&Hash{Cookie: "sid", FallbackIP: true}).forPool("web").(*Hash)
	pool := fixturePool(t, 4)
	pick := func(s Selector, r *http.Request) int { return indexOf(pool, s.Select(pool, r, nil)) }

	for _, tc := range []struct {
		name string
		sel  *Hash
		a, b *http.Request // the same key from two clients
	}{
		{"header", byHeader, hashReq("192.0.2.1:1", "X-Session", "s-42"), hashReq("198.51.100.7:9", "X-Session", "s-42")},
		{"header of any case", byHeader, hashReq("192.0.2.1:1", "x-session", "s-43"), hashReq("192.0.2.2:1", "X-SESSION", "s-43")},
		{"cookie", byCookie, hashReq("192.0.2.1:1", "Cookie", "a=1; ASP.NET_SessionId=abc"), hashReq("192.0.2.9:1", "Cookie", "ASP.NET_SessionId=abc")},
		{"quoted cookie", byCookie, hashReq("192.0.2.1:1", "Cookie", `ASP.NET_SessionId="q1"`), hashReq("192.0.2.9:1", "Cookie", "x=y", "Cookie", "ASP.NET_SessionId=q1")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			first := pick(tc.sel, tc.a)
			for range 10 {
				if got := pick(tc.sel, tc.b); got != first {
					t.Fatalf("the same key went to %d, then %d", first, got)
				}
			}
			// A reload makes a new Selector: the same key, the same backend.
			again := (&Hash{Header: tc.sel.Header, Cookie: tc.sel.Cookie}).forPool("web")
			if got := pick(again, tc.a); got != first {
				t.Errorf("after a reload the key went to %d, before to %d", got, first)
			}
		})
	}

	t.Run("keys spread, and only a gone backend's keys move", func(t *testing.T) {
		before := map[string]int{}
		used := map[int]bool{}
		for i := range 200 {
			k := "session-" + strconv.Itoa(i)
			before[k] = pick(byHeader, hashReq("192.0.2.1:1", "X-Session", k))
			used[before[k]] = true
		}
		if len(used) != 4 {
			t.Errorf("200 keys used %d of 4 backends", len(used))
		}
		pool[1].down.Store(true)
		defer pool[1].down.Store(false)
		for k, was := range before {
			now := pick(byHeader, hashReq("192.0.2.1:1", "X-Session", k))
			if now == 1 {
				t.Fatalf("%s sent to a down backend", k)
			}
			if was != 1 && now != was {
				t.Errorf("%s moved from %d to %d though its backend is up", k, was, now)
			}
		}
	})

	t.Run("without the key: round robin", func(t *testing.T) {
		seen := map[int]int{}
		for range 8 {
			seen[pick(byHeader, hashReq("192.0.2.1:1"))]++
		}
		for i := range 4 {
			if seen[i] != 2 {
				t.Fatalf("8 requests without the header, one client: %v, want 2 each", seen)
			}
		}
		// An empty value and a cookie of another name are no key either.
		if got := pick(byCookie, hashReq("192.0.2.1:1", "Cookie", "ASP.NET_SessionId=; other=abc")); got < 0 {
			t.Error("no backend for a request with an empty cookie")
		}
	})

	t.Run("without the key: ip_hash", func(t *testing.T) {
		for i := range 20 {
			client := "192.0.2." + strconv.Itoa(i)
			want := pick(IPHash{}, hashReq(client+":1"))
			for _, port := range []string{":1", ":2", ":3"} {
				if got := pick(byCookieIP, hashReq(client+port, "Cookie", "other=1")); got != want {
					t.Fatalf("client %s without the cookie went to %d, ip_hash says %d", client, got, want)
				}
			}
		}
	})

	t.Run("all down", func(t *testing.T) {
		down := fixturePool(t, 2, 0, 1)
		if u := byHeader.Select(down, hashReq("192.0.2.1:1", "X-Session", "k"), nil); u != nil {
			t.Errorf("all down: %s", u)
		}
		if u := byHeader.Select(down, hashReq("192.0.2.1:1"), nil); u != nil {
			t.Errorf("all down, no key: %s", u)
		}
	})
}

func TestHashString(t *testing.T) {
	for _, tc := range []struct {
		h    *Hash
		want string
	}{
		{&Hash{}, "hash"},
		{(&Hash{Header: "x-tenant"}).forPool("p").(*Hash), "hash header X-Tenant"},
		{&Hash{Cookie: "sid", FallbackIP: true}, "hash cookie sid ip_hash fallback"},
	} {
		if got := tc.h.String(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.h, got, tc.want)
		}
	}
}

func TestCookieValue(t *testing.T) {
	for _, tc := range []struct {
		vs   []string
		want string
		ok   bool
	}{
		{[]string{"sid=abc"}, "abc", true},
		{[]string{"a=1;sid=abc;b=2"}, "abc", true},
		{[]string{"a=1", "sid=x"}, "x", true},
		{[]string{`sid="q"`}, "q", true},
		{[]string{"sidx=1; xsid=2"}, "", false},
		{[]string{"sid="}, "", false},
		{nil, "", false},
	} {
		if got, ok := cookieValue(tc.vs, "sid"); got != tc.want || ok != tc.ok {
			t.Errorf("%q: %q %v, want %q %v", tc.vs, got, ok, tc.want, tc.ok)
		}
	}
}

// TestHashAllocs: picking by a header or a cookie allocates nothing.
func TestHashAllocs(t *testing.T) {
	pool := fixturePool(t, 4)
	h := (&Hash{Header: "X-Session"}).forPool("web")
	c := (&Hash{Cookie: "sid"}).forPool("web")
	rh := hashReq("192.0.2.1:1", "X-Session", "abc")
	rc := hashReq("192.0.2.1:1", "Cookie", "a=b; sid=abc")
	if n := testing.AllocsPerRun(100, func() { h.Select(pool, rh, nil); c.Select(pool, rc, nil) }); n != 0 {
		t.Errorf("%.1f allocations per pick, want 0", n)
	}
}

// TestCookieFirstPickByClient: the cookie policy places a client without
// its cookie where ip_hash would, so a client that keeps no cookies stays
// on one backend.
func TestCookieFirstPickByClient(t *testing.T) {
	pool := fixturePool(t, 3)
	for i := range 20 {
		client := "203.0.113." + strconv.Itoa(i)
		want := indexOf(pool, IPHash{}.Select(pool, hashReq(client+":1"), nil))
		for _, port := range []string{":1", ":2"} {
			w := httptest.NewRecorder()
			if got := indexOf(pool, Cookie{}.Select(pool, hashReq(client+port), w)); got != want {
				t.Fatalf("client %s: %d, ip_hash says %d", client, got, want)
			}
		}
	}
}
