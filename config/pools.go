package config

import (
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// pools checks each pool, in file order. The rules on backend URLs and
// health checks are those proxy.New applies, so that edge validate finds
// what edge run would refuse.
func (v *validator) pools() {
	for _, name := range v.c.PoolNames() {
		pool, p := v.c.Pools[name], "pools["+name+"]"
		v.oneOf(p+".policy", "policy", pool.Policy, policies)
		if len(pool.Backends) == 0 {
			v.errorf(p+".backends", "pool %q has no backends", name)
		}
		seen := map[string]string{}
		weighted := false
		for j, b := range pool.Backends {
			bp := fmt.Sprintf("%s.backends[%d]", p, j)
			if b.Weight < 0 || b.Weight > MaxWeight {
				v.errorf(bp, "weight %d: must be between 1 and %d", b.Weight, MaxWeight)
			}
			weighted = weighted || (b.Weight > 1)
			if b.URL == "" {
				v.errorf(bp, "backend needs url")
				continue
			}
			u, ok := v.backend(bp, b.URL)
			if !ok {
				continue
			}
			key := u.String() // what proxy names the backend by
			if first, dup := seen[key]; dup {
				v.errorf(bp, "backend %q is already listed at %s", b.URL, v.where(first))
			}
			seen[key] = bp
		}
		v.poolHash(p, pool)
		switch pool.Policy {
		case "ip_hash", "cookie", "first", "hash":
			if weighted {
				v.warnf(p+".policy", "policy %s does not use weights (round_robin, least_conn and random do)", pool.Policy)
			}
		}
		if h := pool.Health; h != nil {
			v.health(p+".health", h)
		}
		v.nonNegInt(p+".passive.fails", pool.Passive.FailCount())
		v.nonNeg(p+".passive.window", pool.Passive.Window)
		v.nonNeg(p+".passive.cooldown", pool.Passive.Cooldown)
		v.nonNegInt(p+".retries", pool.Retries)
		v.nonNeg(p+".timeouts.connect", pool.Timeouts.Connect)
		v.nonNeg(p+".timeouts.response_header", pool.Timeouts.ResponseHeader)
		v.nonNeg(p+".timeouts.idle", pool.Timeouts.Idle)
		v.poolProtocol(p, pool)
		for j, r := range pool.RetryOn {
			if _, _, ok := RetryCondition(r); !ok {
				v.errorf(fmt.Sprintf("%s.retry_on[%d]", p, j), "unknown retry condition %q: expected connect, timeout or a status code 500-599", r)
			}
		}
		v.retryTimes(p, pool)
		v.nonNegInt(p+".max_conns", pool.MaxConns)
		v.nonNegInt(p+".queue", pool.QueueSize())
		v.nonNeg(p+".queue_timeout", pool.QueueTimeout)
	}
}

// backend checks a backend URL as proxy's newPool does: http or https,
// a host, a port (if any) of 1..65535, no query, fragment or user info.
func (v *validator) backend(path, s string) (*url.URL, bool) {
	u, msg := checkURL(s, "http", "https")
	if msg == "" && (u.RawQuery != "" || u.Fragment != "" || u.User != nil) {
		msg = "no query, fragment or user info allowed in a backend URL"
	}
	if msg != "" {
		v.errorf(path, "invalid URL %q: %s", s, msg)
		return nil, false
	}
	return u, true
}

// health checks an active health check as proxy's HealthCheck.resolve and
// healthURL do.
func (v *validator) health(hp string, h *Health) {
	if !strings.HasPrefix(h.Path, "/") {
		v.errorf(hp+".path", "health path %q must start with /", h.Path)
	} else if ref, err := url.Parse(h.Path); err != nil || ref.IsAbs() || ref.Host != "" {
		v.errorf(hp+".path", "health path %q is not a path (like /healthz or /status?full=1)", h.Path)
	}
	if h.Host != "" && !validHostHeader(h.Host) {
		v.errorf(hp+".host", "health host %q is not a host name or address (a Host header: NAME, IP or [IPv6], with an optional :PORT)", h.Host)
	}
	v.nonNeg(hp+".interval", h.Interval)
	v.nonNeg(hp+".timeout", h.Timeout)
	if h.Interval > 0 && h.Timeout > h.Interval {
		v.warnf(hp+".timeout", "health timeout %s is longer than interval %s: a slow backend delays every round of checks past the interval", h.Timeout, h.Interval)
	}
	if h.Expect < 100 || h.Expect > 599 {
		v.errorf(hp+".expect", "expect %d is not an HTTP status code", h.Expect)
	}
	v.nonNegInt(hp+".fails", h.Fails)
	v.nonNegInt(hp+".passes", h.Passes)
}

// validHostHeader reports whether host can be sent as a Host header: not
// empty, and only the characters of a host name, an IP literal in brackets
// and a port (RFC 3986, section 3.2.2; the reg-name's percent-encoding and
// sub-delims included). It is the rule of proxy's validHostHeader, which
// is no stricter than net/http's own check.
func validHostHeader(host string) bool {
	if host == "" {
		return false
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("-._~%!$&'()*+,;=:[]", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// MaxWeight is the largest backend weight.
const MaxWeight = 100

// poolProtocol checks protocol and tls of the pool at path p against its
// backends' schemes.
func (v *validator) poolProtocol(p string, pool Pool) {
	v.oneOf(p+".protocol", "backend protocol", pool.Protocol, backendProtocols)
	https := false
	for j, b := range pool.Backends {
		u, err := url.Parse(b.URL)
		if err != nil {
			continue // reported by backend
		}
		https = https || u.Scheme == "https"
		if pool.Protocol == "h2c" && u.Scheme != "http" {
			v.errorf(fmt.Sprintf("%s.backends[%d]", p, j), "protocol h2c is HTTP/2 without TLS: backend %q must be http:// (https backends get HTTP/2 by ALPN with protocol http)", b.URL)
		}
	}
	t := pool.TLS
	if t == nil {
		return
	}
	if !https {
		v.warnf(p+".tls", "tls applies to https:// backends and this pool has none")
	}
	if (t.ClientCertFile == "") != (t.ClientKeyFile == "") {
		v.errorf(p+".tls", "tls needs both client_cert_file and client_key_file, or neither")
	}
	if t.ServerName != "" {
		if msg := checkHost(t.ServerName, false, false); msg != "" {
			v.errorf(p+".tls.server_name", "invalid server name %q: %s", t.ServerName, msg)
		}
	}
	if t.InsecureSkipVerify {
		v.warnf(p+".tls.insecure_skip_verify", "insecure_skip_verify: any certificate is accepted from the backends, and anyone between edge and them can read and change the traffic")
	}
}

// retryTimes checks try_timeout and retry_window at pool path p.
func (v *validator) retryTimes(p string, pool Pool) {
	v.nonNeg(p+".try_timeout", pool.TryTimeout)
	v.nonNeg(p+".retry_window", pool.RetryWindow)
	if pool.TryTimeout > 0 {
		switch {
		case !slices.Contains(pool.RetryOn, "timeout"):
			v.warnf(p+".try_timeout", "try_timeout applies to tries retried on a timeout: add timeout to retry_on")
		case pool.Retries == 0:
			v.warnf(p+".try_timeout", "try_timeout applies to tries that can be retried, and retries is 0")
		case pool.Timeouts.ResponseHeader > 0 && pool.TryTimeout >= pool.Timeouts.ResponseHeader:
			v.warnf(p+".try_timeout", "try_timeout %s is not shorter than timeouts.response_header %s: it never cuts a try", pool.TryTimeout, pool.Timeouts.ResponseHeader)
		}
	}
	if pool.RetryWindow > 0 && pool.Retries == 0 {
		v.warnf(p+".retry_window", "retry_window bounds retries, and retries is 0")
	}
}

// PoolHash is the key of policy hash: the value of a request header
// (Header) or of a cookie the application sets (Cookie), one of the two,
// hashed onto the backends by rendezvous hashing, so that one value keeps
// its backend across reloads and across edges. Requests without the value
// are balanced by Fallback.
type PoolHash struct {
	Header string `yaml:"header"`
	Cookie string `yaml:"cookie"`
	// Fallback balances the requests without the value: round_robin
	// (default) or ip_hash (by the client address).
	Fallback string `yaml:"fallback"`
}

// hashFallbacks are pools[].hash.fallback's values.
var hashFallbacks = []string{"round_robin", "ip_hash"}

// poolHash checks policy hash and its key at pool path p.
func (v *validator) poolHash(p string, pool Pool) {
	h := pool.Hash
	switch {
	case pool.Policy == "hash" && h == nil:
		v.errorf(p+".policy", "policy hash needs hash: {header: NAME} or {cookie: NAME}")
		return
	case h == nil:
		return
	case pool.Policy != "hash":
		v.errorf(p+".hash", "hash applies to policy: hash, and this pool's policy is %s", pool.Policy)
		return
	}
	switch {
	case h.Header == "" && h.Cookie == "":
		v.errorf(p+".hash", "hash needs header: NAME or cookie: NAME")
	case h.Header != "" && h.Cookie != "":
		v.errorf(p+".hash", "hash takes header or cookie, not both")
	case h.Header != "" && !isToken(h.Header):
		v.errorf(p+".hash.header", "invalid header name %q", h.Header)
	case h.Cookie != "" && !isToken(h.Cookie):
		v.errorf(p+".hash.cookie", "invalid cookie name %q (a token: letters, digits and !#$%%&'*+-.^_`|~)", h.Cookie)
	}
	v.oneOf(p+".hash.fallback", "hash fallback", h.Fallback, hashFallbacks)
}

// RetryCondition parses one pools[].retry_on entry: timeout reports
// "timeout", status a code 500-599, ok false for anything else ("connect"
// is ok with neither).
func RetryCondition(s string) (timeout bool, status int, ok bool) {
	switch s {
	case "connect":
		return false, 0, true
	case "timeout":
		return true, 0, true
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 500 || n > 599 {
		return false, 0, false
	}
	return false, n, true
}
