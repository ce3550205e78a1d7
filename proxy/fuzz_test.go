package proxy

import (
	"strings"
	"testing"
)

// FuzzMatchHost checks that MatchHost never panics, ignores ASCII case and a
// port, and agrees with the router New builds.
func FuzzMatchHost(f *testing.F) {
	for _, s := range [][2]string{
		{"example.com", "example.com"},
		{"*.example.com", "www.example.com:443"},
		{"*.example.com", "a.b.example.com"},
		{"Example.com.", "EXAMPLE.COM"},
		{"::1", "[::1]:8443"},
		{"*.", "."},
		{"", ":"},
		{"[x", "[x"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, host string) {
		got := MatchHost(pattern, host)
		if upper := strings.ToUpper(host); isASCII(host) && MatchHost(pattern, upper) != got {
			t.Errorf("MatchHost(%q, %q) = %v but not for %q", pattern, host, got, upper)
		}
		if !strings.Contains(host, ":") && !strings.HasSuffix(host, "]") {
			if MatchHost(pattern, host+":443") != got {
				t.Errorf("MatchHost(%q, %q) changes with a port", pattern, host)
			}
		}
		rt := router{exact: map[string]*site{}, wildcard: map[string]*site{}}
		s := &site{name: "s"}
		if err := rt.add(pattern, s); err != nil {
			return
		}
		if routed := rt.lookup(host) == s; routed != got {
			t.Errorf("MatchHost(%q, %q) = %v, router says %v", pattern, host, got, routed)
		}
	})
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
