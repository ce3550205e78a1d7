package proxy

import (
	"strings"
	"testing"
)

// refHost is the reference for what a Host header names: an IPv6 literal
// in brackets (maybe with a port) is the text inside them; otherwise a
// single ":" starts a port (several are an unbracketed IPv6 address, kept
// whole); one trailing dot is dropped and ASCII letters are lowered (names
// on the wire are A-labels, so nothing else is folded).
func refHost(h string) string {
	if strings.HasPrefix(h, "[") {
		inside, _, ok := strings.Cut(h[1:], "]")
		if !ok {
			return "" // an unclosed IPv6 literal names no host
		}
		h = inside
	} else if strings.Count(h, ":") == 1 {
		h, _, _ = strings.Cut(h, ":")
	}
	return refLower(strings.TrimSuffix(h, "."))
}

// refLower lowers the ASCII letters of s, byte by byte.
func refLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c | 0x20
		}
	}
	return string(b)
}

// refMatch is the reference for MatchHost: an exact pattern matches the
// same name; "*.rest" matches a name of one more, non-empty, label.
func refMatch(pattern, host string) bool {
	h, p := refHost(host), refLower(strings.TrimSuffix(pattern, "."))
	if h == "" || p == "" {
		return false
	}
	if rest, ok := strings.CutPrefix(p, "*."); ok {
		labels := strings.Split(h, ".")
		return rest != "" && len(labels) > 1 && labels[0] != "" && strings.Join(labels[1:], ".") == rest
	}
	return h == p
}

// fuzzHosts are the site hosts of the router FuzzMatchHost builds
// besides the fuzzed pattern.
var fuzzHosts = []string{"example.com", "*.example.com", "www.example.com", "*.b.example.com",
	"xn--bcher-kva.example", "*.xn--bcher-kva.example", "localhost"}

// FuzzMatchHost checks MatchHost against refMatch, and the router against
// it: a router of one pattern finds the site exactly when MatchHost says
// so, and a router of several sites finds the exact match, else the
// wildcard match, else nothing.
func FuzzMatchHost(f *testing.F) {
	for _, s := range [][2]string{
		{"example.com", "example.com"},
		{"*.example.com", "www.example.com:443"},
		{"*.example.com", "a.b.example.com"},
		{"*.example.com", "example.com"},
		{"*.example.com", ".example.com"},
		{"Example.com.", "EXAMPLE.COM"},
		{"::1", "[::1]:8443"},
		{"*.", "."},
		{"", ":"},
		{"[x", "[x"},
		{"*", "anything.example"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, host string) {
		got := MatchHost(pattern, host)
		// "*" is the catch-all host, whose meaning the router defines;
		// only the agreement below holds for it.
		if normalizePattern(pattern) != "*" {
			if want := refMatch(pattern, host); got != want {
				t.Fatalf("MatchHost(%q, %q) = %v, reference says %v", pattern, host, got, want)
			}
		}
		rt := router{exact: map[string]*site{}, wildcard: map[string]*site{}}
		s := &site{name: "s"}
		if err := rt.add(pattern, s); err != nil {
			return
		}
		if routed := rt.lookup(host) == s; routed != got {
			t.Fatalf("MatchHost(%q, %q) = %v, router says %v", pattern, host, got, routed)
		}

		rt = router{exact: map[string]*site{}, wildcard: map[string]*site{}}
		var sites []*site
		for _, p := range append([]string{pattern}, fuzzHosts...) {
			s := &site{name: p}
			if rt.add(p, s) == nil {
				sites = append(sites, s)
			}
		}
		var exact, wild *site
		for _, s := range sites {
			if MatchHost(s.name, host) {
				if strings.HasPrefix(s.name, "*") {
					if wild != nil {
						t.Fatalf("host %q matches two wildcards, %q and %q", host, wild.name, s.name)
					}
					wild = s
				} else {
					if exact != nil {
						t.Fatalf("host %q matches two exact names, %q and %q", host, exact.name, s.name)
					}
					exact = s
				}
			}
		}
		want := exact
		if want == nil {
			want = wild
		}
		if got := rt.lookup(host); got != want {
			t.Fatalf("lookup(%q) = %s, want %s (sites %q)", host, siteName(got), siteName(want), fuzzHosts)
		}
	})
}

func siteName(s *site) string {
	if s == nil {
		return "no site"
	}
	return "site " + s.name
}

// fuzzRoutes are the route prefixes of the site FuzzRoute builds besides
// the fuzzed one.
var fuzzRoutes = []string{"/", "/api", "/api/", "/api/v1/", "/api/v1/users", "/static/", "/a", "/ab", "/%2e%2e/"}

// FuzzRoute checks that a site's route for a path is the route with the
// longest prefix of it (RouteConfig.Path "/" standing for ""), by brute
// force over the routes of the site, whatever order they were given in.
func FuzzRoute(f *testing.F) {
	for _, s := range [][2]string{
		{"/api/v1/users/7", "/api/v1/users/"},
		{"/api", "/api/v"},
		{"/api/", ""},
		{"/", "/"},
		{"", "/x"},
		{"/static/../api/v1/", "/static/.."},
		{"/ab/c", "/abc"},
		{"/%2e%2e/x", "/%2e"},
		{"*", "*"},
		{"/api/v1/usersx", "/api/v1/users/x"},
	} {
		f.Add(s[0], s[1])
	}
	pools := map[string]*pool{"p": {name: "p"}}
	f.Fuzz(func(t *testing.T, path, extra string) {
		for _, order := range []int{1, -1} {
			var rcs []RouteConfig
			for _, p := range append(fuzzRoutes, extra) {
				rcs = append(rcs, RouteConfig{Path: p, Pool: "p", MaxBody: int64(len(rcs))})
			}
			if order < 0 {
				for i, j := 0, len(rcs)-1; i < j; i, j = i+1, j-1 {
					rcs[i], rcs[j] = rcs[j], rcs[i]
				}
			}
			s, err := newSite(SiteConfig{Name: "s", Routes: rcs}, pools, nil)
			dup := contains(fuzzRoutes, extra) || routePrefix(extra) == ""
			if (err != nil) != dup {
				t.Fatalf("newSite with extra route %q: err = %v, want an error: %v", extra, err, dup)
			}
			if err != nil {
				continue
			}
			var want *RouteConfig
			for i, rc := range rcs {
				prefix := routePrefix(rc.Path)
				if strings.HasPrefix(path, prefix) && (want == nil || len(prefix) > len(routePrefix(want.Path))) {
					want = &rcs[i]
				}
			}
			got := s.route(path)
			switch {
			case want == nil && got != nil:
				t.Fatalf("route(%q) = %q, want none", path, got.prefix)
			case want != nil && got == nil:
				t.Fatalf("route(%q) = none, want %q", path, want.Path)
			case want != nil && (got.prefix != routePrefix(want.Path) || got.maxBody != want.MaxBody):
				t.Fatalf("route(%q) = %q (max body %d), want %q (%d)", path, got.prefix, got.maxBody, want.Path, want.MaxBody)
			}
		}
	})
}

// routePrefix is the prefix a RouteConfig.Path matches: "/" matches all.
func routePrefix(p string) string {
	if p == "/" {
		return ""
	}
	return p
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
