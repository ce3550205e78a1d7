package proxy

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"testing"
)

// newHeaderEcho starts a backend that answers the request headers it got,
// as JSON.
func newHeaderEcho(t *testing.T) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(r.Header)
	}))
	t.Cleanup(s.Close)
	return s
}

// TestClientIPHeaders checks what the backend learns of the client: the
// client-IP headers and Forwarded (RFC 7239) of an untrusted peer are
// dropped and X-Real-IP is its address; a trusted proxy's are kept, and
// X-Real-IP, unless it sent one, is the nearest untrusted hop of its
// X-Forwarded-For.
func TestClientIPHeaders(t *testing.T) {
	echo := newHeaderEcho(t)
	spoofed := http.Header{
		"X-Real-Ip":           {"6.6.6.6"},
		"True-Client-Ip":      {"6.6.6.6"},
		"Cf-Connecting-Ip":    {"6.6.6.6"},
		"X-Client-Ip":         {"6.6.6.6"},
		"X-Cluster-Client-Ip": {"6.6.6.6"},
		"Forwarded":           {"for=6.6.6.6;proto=https", "for=7.7.7.7"},
	}
	const absent = "<absent>"
	tests := []struct {
		name   string
		remote string
		in     http.Header
		want   map[string][]string // absent: the header must not reach the backend
	}{
		{
			name: "untrusted spoofing", remote: "203.0.113.7:4000", in: spoofed,
			want: map[string][]string{
				"X-Real-Ip": {"203.0.113.7"}, "X-Forwarded-For": {"203.0.113.7"},
				"True-Client-Ip": {absent}, "Cf-Connecting-Ip": {absent}, "X-Client-Ip": {absent},
				"X-Cluster-Client-Ip": {absent}, "Forwarded": {absent},
			},
		},
		{
			name: "untrusted plain", remote: "203.0.113.7:4000",
			want: map[string][]string{"X-Real-Ip": {"203.0.113.7"}, "Forwarded": {absent}},
		},
		{
			name: "untrusted ipv6", remote: "[2001:db9::1]:4000", in: http.Header{"X-Real-Ip": {"6.6.6.6"}},
			want: map[string][]string{"X-Real-Ip": {"2001:db9::1"}},
		},
		{
			name: "untrusted X-Forwarded-For does not set X-Real-IP", remote: "203.0.113.7:4000",
			in:   http.Header{"X-Forwarded-For": {"6.6.6.6"}},
			want: map[string][]string{"X-Real-Ip": {"203.0.113.7"}, "X-Forwarded-For": {"203.0.113.7"}},
		},
		{
			name: "trusted keeps everything", remote: "192.0.2.10:4000", in: spoofed,
			want: map[string][]string{
				"X-Real-Ip": {"6.6.6.6"}, "True-Client-Ip": {"6.6.6.6"}, "Cf-Connecting-Ip": {"6.6.6.6"},
				"X-Client-Ip": {"6.6.6.6"}, "X-Cluster-Client-Ip": {"6.6.6.6"},
				"Forwarded": {"for=6.6.6.6;proto=https", "for=7.7.7.7"},
			},
		},
		{
			name: "trusted without headers", remote: "192.0.2.10:4000",
			want: map[string][]string{"X-Real-Ip": {"192.0.2.10"}, "Forwarded": {absent}},
		},
		{
			name: "trusted ipv4-mapped", remote: "[::ffff:192.0.2.10]:4000",
			in:   http.Header{"X-Forwarded-For": {"198.51.100.1"}},
			want: map[string][]string{"X-Real-Ip": {"198.51.100.1"}},
		},
		{
			name: "trusted empty X-Real-IP", remote: "192.0.2.10:4000",
			in:   http.Header{"X-Real-Ip": {""}, "X-Forwarded-For": {"198.51.100.1"}},
			want: map[string][]string{"X-Real-Ip": {"198.51.100.1"}},
		},
		{
			name: "first untrusted hop", remote: "192.0.2.10:4000",
			in:   http.Header{"X-Forwarded-For": {"6.6.6.6, 198.51.100.1, 10.1.1.1"}},
			want: map[string][]string{"X-Real-Ip": {"198.51.100.1"}, "X-Forwarded-For": {"6.6.6.6, 198.51.100.1, 10.1.1.1, 192.0.2.10"}},
		},
		{
			name: "hops on several lines", remote: "192.0.2.10:4000",
			in:   http.Header{"X-Forwarded-For": {"6.6.6.6, 198.51.100.1", " 10.1.1.1 ,,"}},
			want: map[string][]string{"X-Real-Ip": {"198.51.100.1"}},
		},
		{
			name: "all hops trusted", remote: "192.0.2.10:4000",
			in:   http.Header{"X-Forwarded-For": {"10.2.2.2, 10.1.1.1"}},
			want: map[string][]string{"X-Real-Ip": {"10.2.2.2"}},
		},
		{
			name: "hop with port", remote: "192.0.2.10:4000",
			in:   http.Header{"X-Forwarded-For": {"198.51.100.1:4711"}},
			want: map[string][]string{"X-Real-Ip": {"198.51.100.1"}},
		},
		{
			name: "ipv6 hop with port", remote: "[2001:db8::5]:4000",
			in:   http.Header{"X-Forwarded-For": {"[2001:db9::2]:443"}},
			want: map[string][]string{"X-Real-Ip": {"2001:db9::2"}},
		},
		{
			name: "malformed hop ends the walk", remote: "192.0.2.10:4000",
			in:   http.Header{"X-Forwarded-For": {"198.51.100.1, unknown, 10.1.1.1"}},
			want: map[string][]string{"X-Real-Ip": {"10.1.1.1"}},
		},
	}
	cfg := simpleConfig(mustURL(t, echo.URL))
	cfg.TrustedProxies = []netip.Prefix{
		netip.MustParsePrefix("192.0.2.0/24"),
		netip.MustParsePrefix("2001:db8::/32"),
		netip.MustParsePrefix("10.0.0.0/8"),
	}
	h := newHandler(t, cfg)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := serve(h, "GET", "https://example.com/", func(r *http.Request) {
				r.RemoteAddr = tc.remote
				for k, v := range tc.in {
					r.Header[k] = slices.Clone(v)
				}
			})
			if w.Code != 200 {
				t.Fatalf("code = %d", w.Code)
			}
			var got http.Header
			if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			for k, want := range tc.want {
				v, ok := got[k]
				if want[0] == absent {
					if ok {
						t.Errorf("%s = %q reached the backend", k, v)
					}
					continue
				}
				if !slices.Equal(v, want) {
					t.Errorf("%s = %q, want %q", k, v, want)
				}
			}
		})
	}
}

// TestIsClientIPHeader: the direct path's filter names the same fields as
// clientIPHeaders, which setForwarded deletes.
func TestIsClientIPHeader(t *testing.T) {
	for _, k := range clientIPHeaders {
		if !isClientIPHeader(k) {
			t.Errorf("isClientIPHeader(%q) = false", k)
		}
	}
	for _, k := range []string{"X-Forwarded-For", "Forwarded", "X-Real-IP", "Host", ""} {
		if isClientIPHeader(k) {
			t.Errorf("isClientIPHeader(%q) = true", k)
		}
	}
}
