package proxy

import (
	"cmp"
	"fmt"
	"maps"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// SiteConfig is one site: the hosts it answers and its routes.
//
// The zero value answers no host.
type SiteConfig struct {
	// Name labels the site's metrics; by convention its first host.
	Name string
	// Hosts are exact names ("example.com"), wildcards of one label
	// ("*.example.com") or the catch-all "*", matched case-insensitively.
	// An exact name wins over a wildcard; the catch-all answers any
	// non-empty host that no exact name and no wildcard of any site
	// matches (for on-demand TLS), and at most one site may list it.
	Hosts []string
	// Routes are matched by longest path prefix; a request no route matches
	// gets 404.
	Routes []RouteConfig
	// HSTS is the Strict-Transport-Security max-age in seconds sent on HTTPS
	// responses; 0 sends none.
	HSTS int
	// RedirectHTTP makes the plain-HTTP handler answer 308 to https instead
	// of proxying.
	RedirectHTTP bool
	// Rate limits each client address's requests to the site, on both
	// listeners, before routing: 429 beyond it (counted in
	// edge_http_requests_total with pool=""). Redirects to https are not
	// limited. The zero value limits nothing. The buckets live in the
	// Config's State and survive a reload that keeps the site's Name and
	// Rate.
	Rate RateLimit
	// RequestHeaders change each request before it goes to the backend,
	// ResponseHeaders each response, the backend's or edge's own; the
	// site's apply first, then the route's.
	RequestHeaders, ResponseHeaders HeaderRules
	// Maintenance answers every request of the site (on both listeners,
	// but the ACME challenge path, which is served before) with 503, the
	// 503 page and Retry-After: 300, without contacting a backend.
	Maintenance bool
	// ErrorPages are bodies (HTML) for the 502, 503 and 504 answers edge
	// gives itself; a code without one gets a line of text saying which.
	// A backend's own 5xx passes as it is.
	ErrorPages map[int][]byte
	// Compress, when set, compresses the site's responses that the
	// backend did not (see Compression); nil compresses nothing.
	Compress *Compression
}

// RouteConfig sends requests whose path starts with Path to the pool named
// Pool.
type RouteConfig struct {
	// Path is a plain prefix: "/api/" matches "/api/x" but not "/api"; ""
	// and "/" match everything.
	Path string
	// Pool names a PoolConfig of the same Config.
	Pool string
	// MaxBody limits the request body in bytes (413 beyond); 0 means no
	// limit.
	MaxBody int64
	// RequestHeaders and ResponseHeaders apply after the site's.
	RequestHeaders, ResponseHeaders HeaderRules
}

// site is the runtime form of a SiteConfig.
type site struct {
	name         string
	hsts         string // precomputed header value, "" for none
	redirectHTTP bool
	routes       []*route // longest prefix first
	stats        *requestStats
	rate         RateLimit  // resolved
	limiter      *rateTable // nil without a rate limit
	reqRules     *headerRules
	respRules    *headerRules
	maintenance  bool
	errorPages   map[int][]byte
	compress     *compressor // nil: no compression
}

type route struct {
	prefix    string
	pool      *pool
	maxBody   int64
	stats     *requestStats
	reqRules  *headerRules
	respRules *headerRules
}

// route returns the route with the longest prefix of path, or nil.
func (s *site) route(path string) *route {
	for _, rt := range s.routes {
		if strings.HasPrefix(path, rt.prefix) {
			return rt
		}
	}
	return nil
}

// router finds the site of a host: exact names by map lookup, then
// wildcards by a map lookup of the host's parent domain, then the
// catch-all.
type router struct {
	exact    map[string]*site
	wildcard map[string]*site // "example.com" for "*.example.com"
	catchAll *site            // the site of "*", nil for none
}

// catchAllHost is the host pattern that matches every host no other
// pattern matches.
const catchAllHost = "*"

// lookup returns the site for a Host header value, or nil.
func (rt *router) lookup(hostport string) *site {
	host := normalizeHost(hostport)
	if s, ok := rt.exact[host]; ok {
		return s
	}
	if len(rt.wildcard) > 0 {
		if i := strings.IndexByte(host, '.'); i > 0 {
			if s, ok := rt.wildcard[host[i+1:]]; ok {
				return s
			}
		}
	}
	if host == "" {
		return nil
	}
	return rt.catchAll
}

// add registers a host pattern for s.
func (rt *router) add(pattern string, s *site) error {
	if pattern == catchAllHost {
		if rt.catchAll != nil {
			return fmt.Errorf("site %q: host %q already belongs to site %q", s.name, pattern, rt.catchAll.name)
		}
		rt.catchAll = s
		return nil
	}
	p := normalizePattern(pattern)
	m := rt.exact
	if rest, ok := strings.CutPrefix(p, "*."); ok {
		p, m = rest, rt.wildcard
	}
	ip, err := netip.ParseAddr(p)
	ipv6 := err == nil && ip.Zone() == "" && !strings.HasPrefix(normalizePattern(pattern), "*.") // such as ::1: a host
	if !ipv6 && (p == "" || strings.ContainsAny(p, "*:/ ")) {
		return fmt.Errorf("site %q: invalid host %q", s.name, pattern)
	}
	if other, dup := m[p]; dup {
		return fmt.Errorf("site %q: host %q already belongs to site %q", s.name, pattern, other.name)
	}
	m[p] = s
	return nil
}

// newSite builds the runtime site for c; pools resolves pool names.
func newSite(c SiteConfig, pools map[string]*pool, m *Metrics) (*site, error) {
	s := &site{name: c.Name, redirectHTTP: c.RedirectHTTP}
	var err error
	if s.rate, err = c.Rate.resolve(); err != nil {
		return nil, fmt.Errorf("site %q: %w", c.Name, err)
	}
	if c.HSTS > 0 {
		s.hsts = "max-age=" + strconv.Itoa(c.HSTS)
	}
	if s.reqRules, err = c.RequestHeaders.resolve(); err != nil {
		return nil, fmt.Errorf("site %q: request headers: %w", c.Name, err)
	}
	if s.respRules, err = c.ResponseHeaders.resolve(); err != nil {
		return nil, fmt.Errorf("site %q: response headers: %w", c.Name, err)
	}
	s.maintenance = c.Maintenance
	for code := range c.ErrorPages {
		if code < 500 || code > 599 {
			return nil, fmt.Errorf("site %q: error page for %d: only 5xx answers have pages", c.Name, code)
		}
	}
	s.errorPages = maps.Clone(c.ErrorPages)
	if c.Compress != nil {
		if s.compress, err = c.Compress.resolve(); err != nil {
			return nil, fmt.Errorf("site %q: %w", c.Name, err)
		}
	}
	if m != nil {
		s.stats = m.requestStats(c.Name, "")
	}
	seen := make(map[string]bool)
	for _, rc := range c.Routes {
		p, ok := pools[rc.Pool]
		if !ok {
			return nil, fmt.Errorf("site %q: route %q: unknown pool %q", c.Name, rc.Path, rc.Pool)
		}
		if p == nil {
			return nil, errBrokenPool
		}
		prefix := rc.Path
		if prefix == "/" {
			prefix = ""
		}
		if seen[prefix] {
			return nil, fmt.Errorf("site %q: route %q defined twice", c.Name, rc.Path)
		}
		seen[prefix] = true
		r := &route{prefix: prefix, pool: p, maxBody: rc.MaxBody}
		if r.reqRules, err = rc.RequestHeaders.resolve(); err != nil {
			return nil, fmt.Errorf("site %q: route %q: request headers: %w", c.Name, rc.Path, err)
		}
		if r.respRules, err = rc.ResponseHeaders.resolve(); err != nil {
			return nil, fmt.Errorf("site %q: route %q: response headers: %w", c.Name, rc.Path, err)
		}
		if m != nil {
			r.stats = m.requestStats(c.Name, p.name)
		}
		s.routes = append(s.routes, r)
	}
	slices.SortStableFunc(s.routes, func(a, b *route) int { return cmp.Compare(len(b.prefix), len(a.prefix)) })
	return s, nil
}

// normalizeHost strips the port and a trailing dot from a Host header value
// and lowercases it (ASCII only: names on the wire are IDNA A-labels),
// allocating only when the host has upper-case letters.
func normalizeHost(hostport string) string {
	host := hostport
	if i := strings.IndexByte(host, ']'); i > 0 && host[0] == '[' {
		host = host[1:i] // IPv6 literal, maybe with a port
	} else if host != "" && host[0] == '[' {
		return "" // an unclosed IPv6 literal names no host (found by FuzzMatchHost)
	} else if i := strings.LastIndexByte(host, ':'); i >= 0 && strings.IndexByte(host, ':') == i {
		host = host[:i]
	}
	return asciiLower(strings.TrimSuffix(host, "."))
}

// normalizePattern lowercases a host pattern and strips a trailing dot.
func normalizePattern(pattern string) string {
	return asciiLower(strings.TrimSuffix(pattern, "."))
}

// asciiLower lowercases ASCII letters, allocating only when there is one to
// change.
func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if c := b[j]; 'A' <= c && c <= 'Z' {
					b[j] = c + ('a' - 'A')
				}
			}
			return string(b)
		}
	}
	return s
}

// MatchHost reports whether host matches pattern: an exact name, a
// wildcard "*.example.com", which matches exactly one more label
// ("a.example.com", not "example.com" nor "a.b.example.com"), or the
// catch-all "*", which matches every non-empty host. The comparison ignores
// ASCII case, a port on host and a trailing dot. It agrees with the routing
// of New for one pattern alone; among several sites the catch-all's site
// gets only the hosts no other site matches. Safe for concurrent use.
func MatchHost(pattern, host string) bool {
	h := normalizeHost(host)
	if h == "" {
		return false
	}
	if pattern == catchAllHost {
		return true
	}
	p := normalizePattern(pattern)
	if p == "" {
		return false
	}
	if rest, ok := strings.CutPrefix(p, "*."); ok {
		i := strings.IndexByte(h, '.')
		return rest != "" && i > 0 && h[i+1:] == rest
	}
	return h == p
}

// redirectTarget returns https://host[:port]{path}?{query} for a request on
// the plain-HTTP listener.
func redirectTarget(r *http.Request, httpsPort int) string {
	host := normalizeHost(r.Host)
	var b strings.Builder
	b.Grow(len("https://") + len(host) + 6 + len(r.URL.Path) + 1 + len(r.URL.RawQuery))
	b.WriteString("https://")
	if strings.IndexByte(host, ':') >= 0 {
		b.WriteByte('[')
		b.WriteString(host)
		b.WriteByte(']')
	} else {
		b.WriteString(host)
	}
	if httpsPort != 0 && httpsPort != 443 {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(httpsPort))
	}
	p := r.URL.EscapedPath()
	if p == "" {
		p = "/"
	}
	b.WriteString(p)
	if r.URL.RawQuery != "" {
		b.WriteByte('?')
		b.WriteString(r.URL.RawQuery)
	}
	return b.String()
}
