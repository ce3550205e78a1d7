package proxy

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"testing"
)

var testTrusted = []netip.Prefix{
	netip.MustParsePrefix("192.0.2.0/24"),
	netip.MustParsePrefix("2001:db8::/32"),
	netip.MustParsePrefix("10.0.0.0/8"),
}

// TestClientAddr checks the one function that decides a request's client
// address.
func TestClientAddr(t *testing.T) {
	tests := []struct {
		name   string
		remote string
		xff    []string
		want   string
	}{
		{"untrusted peer", "203.0.113.7:4000", nil, "203.0.113.7"},
		{"untrusted peer's X-Forwarded-For is ignored", "203.0.113.7:4000", []string{"6.6.6.6"}, "203.0.113.7"},
		{"untrusted ipv6", "[2001:db9::1]:4000", nil, "2001:db9::1"},
		{"no port", "203.0.113.7", nil, "203.0.113.7"},
		{"trusted without X-Forwarded-For", "192.0.2.10:4000", nil, "192.0.2.10"},
		{"trusted, one hop", "192.0.2.10:4000", []string{"198.51.100.1"}, "198.51.100.1"},
		{"rightmost untrusted hop", "192.0.2.10:4000", []string{"6.6.6.6, 198.51.100.1, 10.1.1.1"}, "198.51.100.1"},
		{"hops on several lines", "192.0.2.10:4000", []string{"6.6.6.6", "198.51.100.1", "10.1.1.1"}, "198.51.100.1"},
		{"all hops trusted: leftmost", "192.0.2.10:4000", []string{"10.2.2.2, 10.1.1.1"}, "10.2.2.2"},
		{"hop with port", "192.0.2.10:4000", []string{"198.51.100.1:4711"}, "198.51.100.1"},
		{"ipv4-mapped trusted peer", "[::ffff:192.0.2.10]:4000", []string{"198.51.100.1"}, "198.51.100.1"},
		{"malformed hop ends the walk", "192.0.2.10:4000", []string{"198.51.100.1, unknown, 10.1.1.1"}, "10.1.1.1"},
	}
	h := newHandler(t, Config{TrustedProxies: testTrusted})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "https://example.com/", nil)
			r.RemoteAddr = tc.remote
			if tc.xff != nil {
				r.Header["X-Forwarded-For"] = tc.xff
			}
			if got := h.clientAddr(r); got != tc.want {
				t.Errorf("clientAddr = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestClientAddrUsers: ip_hash and the access log use the client address
// behind a trusted proxy, not the proxy's.
func TestClientAddrUsers(t *testing.T) {
	backends := make([]*backend, 4)
	urls := make([]*url.URL, 4)
	for i := range backends {
		backends[i] = newBackend(t, "b"+strconv.Itoa(i))
		urls[i] = backends[i].url
	}
	var buf bytes.Buffer
	cfg := simpleConfig(urls...)
	cfg.Pools[0].Selector = IPHash{}
	cfg.TrustedProxies = testTrusted
	cfg.Logger = slog.New(slog.NewJSONHandler(&buf, nil))
	cfg.AccessLog = true
	h := newHandler(t, cfg)

	// Many clients behind one trusted proxy spread over the backends, each
	// one staying where ip_hash over its own address puts it.
	used := map[string]bool{}
	for i := range 32 {
		client := "198.51.100." + strconv.Itoa(i)
		w := serve(h, "GET", "https://example.com/", func(r *http.Request) {
			r.RemoteAddr = "192.0.2.10:4000"
			r.Header.Set("X-Forwarded-For", client)
		})
		got := w.Header().Get("X-Backend")
		used[got] = true
		want := IPHash{}.Select(h.poolList[0].upstreams, reqFrom(client+":1"), nil)
		if got != "b"+strconv.Itoa(indexOf(h.poolList[0].upstreams, want)) {
			t.Fatalf("client %s went to %s, ip_hash of its address says %s", client, got, want)
		}
	}
	if len(used) < 2 {
		t.Errorf("32 clients behind one proxy all went to %v", used)
	}

	buf.Reset()
	serve(h, "GET", "https://example.com/", func(r *http.Request) {
		r.RemoteAddr = "192.0.2.10:4000"
		r.Header.Set("X-Forwarded-For", "198.51.100.99, 10.0.0.1")
	})
	serve(h, "GET", "https://unknown.example/", func(r *http.Request) {
		r.RemoteAddr = "203.0.113.5:999"
	})
	var remotes []string
	dec := json.NewDecoder(&buf)
	for dec.More() {
		var rec map[string]any
		if err := dec.Decode(&rec); err != nil {
			t.Fatal(err)
		}
		if rec["msg"] == "request" {
			remotes = append(remotes, rec["remote"].(string))
		}
	}
	if want := []string{"198.51.100.99", "203.0.113.5"}; len(remotes) != 2 || remotes[0] != want[0] || remotes[1] != want[1] {
		t.Errorf("access log remotes = %q, want %q", remotes, want)
	}
}
