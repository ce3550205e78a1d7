package proxy

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/textproto"
	"slices"
	"strings"
	"sync/atomic"
)

// Selector picks the backend for a request among pool, skipping those that
// are not Available. It returns nil when none is available.
//
// Implementations MUST be safe for concurrent use and must not block: Select
// runs on the request path. They may set response headers on w (w may be nil
// in tests) but must not write the body.
type Selector interface {
	Select(pool []*Upstream, r *http.Request, w http.ResponseWriter) *Upstream
}

// Compile-time guards.
var (
	_ Selector = (*RoundRobin)(nil)
	_ Selector = (*LeastConn)(nil)
	_ Selector = (*Random)(nil)
	_ Selector = (*IPHash)(nil)
	_ Selector = (*Cookie)(nil)
	_ Selector = (*First)(nil)
	_ Selector = (*Hash)(nil)
)

// CookieName is the cookie a zero Cookie uses to pin a client to a backend.
// In a pool built by New the name is per pool, "edge_backend_<pool>" (see
// CookieNameFor), so that two cookie pools of one site do not overwrite each
// other's cookie.
const CookieName = "edge_backend"

// CookieNameFor returns the cookie name of the cookie policy in the pool
// named pool: CookieName, "_", and the pool name with every byte that may not
// appear in a cookie name (a token, RFC 6265 section 4.1.1 and RFC 9110
// section 5.6.2) replaced by '_'. Pool names that differ only in such bytes
// share the name; a cookie of the other pool then matches none of the
// backends and the client is pinned anew.
func CookieNameFor(pool string) string {
	b := make([]byte, 0, len(CookieName)+1+len(pool))
	b = append(b, CookieName...)
	b = append(b, '_')
	for i := 0; i < len(pool); i++ {
		c := pool[i]
		if !isTokenByte(c) {
			c = '_'
		}
		b = append(b, c)
	}
	return string(b)
}

// isTokenByte reports whether c is a tchar (RFC 9110, section 5.6.2).
func isTokenByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// selectors makes a fresh Selector per policy name.
var selectors = map[string]func() Selector{
	"round_robin": func() Selector { return new(RoundRobin) },
	"least_conn":  func() Selector { return LeastConn{} },
	"random":      func() Selector { return Random{} },
	"ip_hash":     func() Selector { return IPHash{} },
	"cookie":      func() Selector { return Cookie{} },
	"first":       func() Selector { return First{} },
	"hash":        func() Selector { return new(Hash) },
}

// Policies returns the policy names NewSelector accepts, sorted.
func Policies() []string { return slices.Sorted(maps.Keys(selectors)) }

// NewSelector returns the Selector for a policy name: round_robin (also ""),
// least_conn, random, ip_hash, cookie, first or hash (see Policies; a Hash
// from here has no key: build one with its fields). Resolve the name once,
// at load time.
func NewSelector(policy string) (Selector, error) {
	if policy == "" {
		policy = "round_robin"
	}
	if mk, ok := selectors[policy]; ok {
		return mk(), nil
	}
	return nil, fmt.Errorf("unknown balancing policy %q", policy)
}

// policyName returns the name of s for status output.
func policyName(s Selector) string {
	if n, ok := s.(fmt.Stringer); ok {
		return n.String()
	}
	return fmt.Sprintf("%T", s)
}

// RoundRobin cycles through the backends with an atomic counter, without a
// lock. The turn of a backend that is not available goes to the available
// ones in turn (a second counter), so its share is spread evenly over the
// survivors instead of falling to its neighbour in the ring, as nginx and
// HAProxy do. The zero value is ready; it must not be copied after use.
type RoundRobin struct {
	next  atomic.Uint32
	spill atomic.Uint32
}

// Select implements Selector.
func (s *RoundRobin) Select(pool []*Upstream, _ *http.Request, _ http.ResponseWriter) *Upstream {
	n := uint32(len(pool))
	if n == 0 {
		return nil
	}
	if u := pool[(s.next.Add(1)-1)%n]; u.Available() {
		return u
	}
	avail := uint32(0)
	for _, u := range pool {
		if u.Available() {
			avail++
		}
	}
	if avail == 0 {
		return nil
	}
	k := (s.spill.Add(1) - 1) % avail
	var last *Upstream
	for _, u := range pool {
		if !u.Available() {
			continue
		}
		if k == 0 {
			return u
		}
		k--
		last = u
	}
	return last // one went away between the two passes
}

// String returns the policy name, "round_robin".
func (*RoundRobin) String() string { return "round_robin" }

// LeastConn picks the available backend with the fewest requests in flight
// per weight (PoolConfig.Weights; 1 each without); ties are broken at random
// so that an idle pool still spreads the load. The zero value is ready and
// safe for concurrent use.
type LeastConn struct{}

// Select implements Selector.
func (LeastConn) Select(pool []*Upstream, _ *http.Request, _ http.ResponseWriter) *Upstream {
	var best *Upstream
	var bestN int64
	ties := 0
	for _, u := range pool {
		if !u.Available() {
			continue
		}
		n := u.InFlight()
		// n/u.weight against bestN/best.weight, without division.
		var less, equal bool
		if best != nil {
			a, b := n*int64(max(best.weight, 1)), bestN*int64(max(u.weight, 1))
			less, equal = a < b, a == b
		}
		switch {
		case best == nil || less:
			best, bestN, ties = u, n, 1
		case equal:
			// Reservoir sampling among equals.
			ties++
			if rand.IntN(ties) == 0 {
				best = u
			}
		}
	}
	return best
}

// String returns the policy name, "least_conn".
func (LeastConn) String() string { return "least_conn" }

// Random picks an available backend uniformly at random. The zero value is
// ready and safe for concurrent use.
type Random struct{}

// Select implements Selector.
func (Random) Select(pool []*Upstream, _ *http.Request, _ http.ResponseWriter) *Upstream {
	var pick *Upstream
	seen := 0
	for _, u := range pool {
		if !u.Available() {
			continue
		}
		seen++
		if rand.IntN(seen) == 0 {
			pick = u
		}
	}
	return pick
}

// String returns the policy name, "random".
func (Random) String() string { return "random" }

// IPHash maps a client address to a backend by rendezvous (highest random
// weight) hashing, so a client keeps its backend and only the clients of a
// backend that goes away move. In a Handler the client is the request's
// client address (behind a trusted proxy, from X-Forwarded-For: see
// Config.TrustedProxies), which the Handler offers through w; given any
// other w (or nil) it is the connection's remote address. The zero value is
// ready and safe for concurrent use.
type IPHash struct{}

// Select implements Selector.
func (IPHash) Select(pool []*Upstream, r *http.Request, w http.ResponseWriter) *Upstream {
	return rendezvous(pool, hashString(requestClient(r, w)))
}

// rendezvous returns the available upstream of pool with the highest
// weight for key (highest random weight hashing), nil when none is
// available.
func rendezvous(pool []*Upstream, key uint64) *Upstream {
	var best *Upstream
	var bestW uint64
	for _, u := range pool {
		if !u.Available() {
			continue
		}
		if w := mix(key ^ u.hash); best == nil || w > bestW {
			best, bestW = u, w
		}
	}
	return best
}

// String returns the policy name, "ip_hash".
func (IPHash) String() string { return "ip_hash" }

// Cookie pins a client to a backend with a cookie: CookieName for the zero
// value, CookieNameFor(pool) in a pool built by New. A client without the
// cookie, or whose backend is not available, gets the available backend
// that IPHash picks for its client address (so a client that keeps no
// cookies still stays put) and a new cookie. The cookie holds a hash of the
// backend's URL, not the URL. The zero value is ready and safe for
// concurrent use.
type Cookie struct {
	name string // "" for CookieName
}

// forPool returns the Cookie of the pool named pool.
func (Cookie) forPool(pool string) Selector { return Cookie{name: CookieNameFor(pool)} }

// Select implements Selector.
func (s Cookie) Select(pool []*Upstream, r *http.Request, w http.ResponseWriter) *Upstream {
	name := s.name
	if name == "" {
		name = CookieName
	}
	if r != nil {
		if c, err := r.Cookie(name); err == nil {
			for _, u := range pool {
				if u.cookie == c.Value && u.Available() {
					return u
				}
			}
		}
	}
	u := IPHash{}.Select(pool, r, w)
	if u != nil && w != nil {
		http.SetCookie(w, &http.Cookie{
			Name:     name,
			Value:    u.cookie,
			Path:     "/",
			HttpOnly: true,
			Secure:   r != nil && r.TLS != nil,
			SameSite: http.SameSiteLaxMode,
		})
	}
	return u
}

// String returns the policy name, "cookie".
func (Cookie) String() string { return "cookie" }

// Hash maps the value of a request header (Header) or of a cookie the
// application sets (Cookie, when Header is "") to a backend by rendezvous
// hashing, as IPHash does the client address: the same value keeps its
// backend, across reloads and across edges that list the same backends,
// and only the values of a backend that goes away move. A request without
// the value (or with neither field set) is balanced by round robin, or by
// IPHash with FallbackIP. Weights are not used. The zero value is ready
// and safe for concurrent use; it must not be copied after use.
type Hash struct {
	// Header names the request header hashed (session affinity by an
	// X-Session-Id, a tenant header); its first value counts.
	Header string
	// Cookie names the cookie hashed (the application's session cookie,
	// such as ASP.NET_SessionId) when Header is empty.
	Cookie string
	// FallbackIP balances the requests without the value by the client
	// address (IPHash) rather than round robin.
	FallbackIP bool

	rr RoundRobin
}

// forPool returns a Hash of its own for the pool, the header name in
// canonical form (so that the lookup does not allocate).
func (s *Hash) forPool(string) Selector {
	h := &Hash{Cookie: s.Cookie, FallbackIP: s.FallbackIP}
	if s.Header != "" {
		h.Header = textproto.CanonicalMIMEHeaderKey(s.Header)
	}
	return h
}

// Select implements Selector.
func (s *Hash) Select(pool []*Upstream, r *http.Request, w http.ResponseWriter) *Upstream {
	key, ok := s.key(r)
	if !ok {
		if s.FallbackIP {
			return IPHash{}.Select(pool, r, w)
		}
		return s.rr.Select(pool, r, w)
	}
	return rendezvous(pool, hashString(key))
}

// key returns the value hashed for r, ok false when r has none.
func (s *Hash) key(r *http.Request) (string, bool) {
	if r == nil {
		return "", false
	}
	if s.Header != "" {
		// Get allocates nothing for a canonical name, as forPool makes it.
		v := r.Header.Get(s.Header)
		return v, v != ""
	}
	if s.Cookie != "" {
		return cookieValue(r.Header["Cookie"], s.Cookie)
	}
	return "", false
}

// String returns the policy name with its key, "hash header NAME" or
// "hash cookie NAME" (and " ip_hash fallback"): a reload that changes the
// key then gets a new Selector from the State, not the old one.
func (s *Hash) String() string {
	n := "hash"
	switch {
	case s.Header != "":
		n += " header " + s.Header
	case s.Cookie != "":
		n += " cookie " + s.Cookie
	}
	if s.FallbackIP {
		n += " ip_hash fallback"
	}
	return n
}

// cookieValue returns the value of the first cookie called name in the
// Cookie header field values vs (RFC 6265, section 5.4), without
// allocating; a value in double quotes is returned without them. ok is
// false when there is none or it is empty.
func cookieValue(vs []string, name string) (string, bool) {
	for _, line := range vs {
		for line != "" {
			var part string
			if i := strings.IndexByte(line, ';'); i >= 0 {
				part, line = line[:i], line[i+1:]
			} else {
				part, line = line, ""
			}
			k, v, found := strings.Cut(strings.TrimSpace(part), "=")
			if !found || k != name {
				continue
			}
			if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			return v, v != ""
		}
	}
	return "", false
}

// First picks the first available backend in configuration order: a primary
// with fail-overs. The zero value is ready and safe for concurrent use.
type First struct{}

// Select implements Selector.
func (First) Select(pool []*Upstream, _ *http.Request, _ http.ResponseWriter) *Upstream {
	for _, u := range pool {
		if u.Available() {
			return u
		}
	}
	return nil
}

// String returns the policy name, "first".
func (First) String() string { return "first" }

// clientAddresser is the optional ability of the ResponseWriter a Handler
// gives a Selector (its recorder): it knows the client's address, as
// Handler.clientAddr determined it.
type clientAddresser interface {
	clientAddr() string
}

var _ clientAddresser = (*recorder)(nil)

// requestClient returns the client address of r: w's when w knows it, else
// the host part of r.RemoteAddr.
func requestClient(r *http.Request, w http.ResponseWriter) string {
	if c, ok := w.(clientAddresser); ok {
		if a := c.clientAddr(); a != "" {
			return a
		}
	}
	return clientHost(r)
}

// clientHost returns the host part of r.RemoteAddr without allocating.
func clientHost(r *http.Request) string {
	if r == nil {
		return ""
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// hashString is FNV-1a, 64 bits, without allocating.
func hashString(s string) uint64 {
	const offset, prime = 14695981039346656037, 1099511628211
	h := uint64(offset)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= prime
	}
	return h
}

// mix is splitmix64's finalizer: it spreads the bits of x.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
