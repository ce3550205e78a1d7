package proxy

import (
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
)

// clientIPHeaders carry a client's address by the convention of some proxy
// or CDN (nginx, Akamai and Cloudflare, ...). Backends tend to believe them,
// so only a trusted proxy may send them: from any other peer they are
// dropped, in canonical form.
var clientIPHeaders = [...]string{
	"X-Real-Ip",
	"True-Client-Ip",
	"Cf-Connecting-Ip",
	"X-Client-Ip",
	"X-Cluster-Client-Ip",
}

// setForwarded sets the headers that tell the backend who the client is and
// how it reached edge, in out, the header of the request sent to the
// backend for in. Forwarded and X-Forwarded-* are already gone from out
// (ReverseProxy, and the direct path, remove them with the hop-by-hop
// headers).
//
// From a peer that is not in TrustedProxies: X-Forwarded-For, -Host and
// -Proto are edge's own, the headers of clientIPHeaders are dropped,
// X-Real-IP is the connection's remote IP (clientAddr) and Forwarded stays
// dropped.
//
// From a trusted proxy: its X-Forwarded-For chain is appended to, its
// X-Forwarded-Proto, X-Forwarded-Host, Forwarded (RFC 7239, passed on as
// sent: edge's own hop is in X-Forwarded-For) and client-IP headers are
// kept; X-Real-IP, when the proxy sent none, is the client address
// (clientAddr).
func (h *Handler) setForwarded(in *http.Request, out http.Header) {
	trusted := h.trustedPeer(in.RemoteAddr)
	if !trusted {
		for _, k := range clientIPHeaders {
			delete(out, k)
		}
	}
	h.setForwardedFrom(in, out, trusted)
}

// setForwardedFrom is setForwarded for an out that holds none of
// clientIPHeaders when the peer is not trusted (the direct path leaves
// them out as it copies the client's header); trusted is
// h.trustedPeer(in.RemoteAddr).
func (h *Handler) setForwardedFrom(in *http.Request, out http.Header, trusted bool) {
	if !trusted {
		setXForwarded(in, out, h.clientAddr(in))
		return
	}
	// setXForwarded replaces X-Forwarded-For unless out has one: give it
	// the trusted proxy's chain to append to.
	out["X-Forwarded-For"] = in.Header["X-Forwarded-For"]
	realIP := ""
	if v := out["X-Real-Ip"]; len(v) == 0 || v[0] == "" {
		realIP = h.clientAddr(in)
	}
	setXForwarded(in, out, realIP)
	// The proxy in front may have terminated TLS or rewritten the host:
	// keep what it says.
	for _, k := range [...]string{"X-Forwarded-Proto", "X-Forwarded-Host", "Forwarded"} {
		if v := in.Header[k]; len(v) > 0 {
			out[k] = v
		}
	}
}

// isClientIPHeader reports whether the canonical name k is one of
// clientIPHeaders.
func isClientIPHeader(k string) bool {
	return slices.Contains(clientIPHeaders[:], k)
}

// setXForwarded is httputil.ProxyRequest.SetXForwarded on a header: the
// client's IP appended to the X-Forwarded-For out has (or alone), the host
// the client asked for in X-Forwarded-Host, its scheme in
// X-Forwarded-Proto; and X-Real-IP set to realIP unless that is "". The
// values share one allocation.
func setXForwarded(in *http.Request, out http.Header, realIP string) {
	vals := make([]string, 4)
	if realIP != "" {
		vals[3] = realIP
		out["X-Real-Ip"] = vals[3:4:4]
	}
	if clientIP, _, err := net.SplitHostPort(in.RemoteAddr); err == nil {
		if prior := out["X-Forwarded-For"]; len(prior) > 0 {
			clientIP = strings.Join(prior, ", ") + ", " + clientIP
		}
		vals[0] = clientIP
		out["X-Forwarded-For"] = vals[0:1:1]
	} else {
		delete(out, "X-Forwarded-For")
	}
	vals[1] = in.Host
	out["X-Forwarded-Host"] = vals[1:2:2]
	vals[2] = "http"
	if in.TLS != nil {
		vals[2] = "https"
	}
	out["X-Forwarded-Proto"] = vals[2:3:3]
}

// clientAddr returns the address of the client that sent r, the one place
// that decides it: for ip_hash, the rate limits, the access log and
// X-Real-IP. When the TCP peer (r.RemoteAddr) is a trusted proxy it is
// realIP's answer from X-Forwarded-For; otherwise, or when that yields
// nothing, the peer's IP (r.RemoteAddr as is when it has no port). Behind a
// PROXY-protocol balancer r.RemoteAddr already is the client. It allocates
// only for an X-Forwarded-For entry with a port.
func (h *Handler) clientAddr(r *http.Request) string {
	if h.trustedPeer(r.RemoteAddr) {
		if ip := h.realIP(r); ip != "" {
			return ip
		}
	}
	return clientHost(r)
}

// realIP returns the client address of r, which comes from a trusted proxy:
// walking X-Forwarded-For from the right (the nearest hop), the first
// address that is not a trusted proxy; when every hop is trusted, the
// leftmost one, and without X-Forwarded-For the peer itself. This is
// nginx's real_ip_recursive. An entry may carry a port ("192.0.2.1:4711",
// "[2001:db8::1]:4711"); an entry that is not an address ends the walk, as
// nothing to its left can be believed, and the last address before it is
// the answer. It returns "" when r.RemoteAddr has no host.
func (h *Handler) realIP(r *http.Request) string {
	ip, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return ""
	}
	xff := r.Header["X-Forwarded-For"]
	for i := len(xff) - 1; i >= 0; i-- {
		rest := xff[i]
		for rest != "" {
			entry := rest
			if j := strings.LastIndexByte(rest, ','); j >= 0 {
				entry, rest = rest[j+1:], rest[:j]
			} else {
				rest = ""
			}
			entry = strings.TrimSpace(entry)
			if entry == "" {
				continue
			}
			a, err := netip.ParseAddr(entry)
			if err != nil {
				ap, err := netip.ParseAddrPort(entry)
				if err != nil {
					return ip
				}
				a, entry = ap.Addr(), ap.Addr().String()
			}
			ip = entry
			if !h.trustedAddr(a) {
				return ip
			}
		}
	}
	return ip
}

// trustedPeer reports whether remoteAddr is in the trusted proxies.
func (h *Handler) trustedPeer(remoteAddr string) bool {
	if len(h.trusted) == 0 {
		return false
	}
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return false
	}
	return h.trustedAddr(ap.Addr())
}

// trustedAddr reports whether a is in the trusted proxies.
func (h *Handler) trustedAddr(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range h.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
