package proxy

import (
	"fmt"
	"net/http"
	"net/textproto"
	"slices"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// HeaderRules change the headers of a request before it goes to the
// backend, or of a response before it goes to the client: Remove first,
// then Set (replacing), then Add. Values may hold placeholders, replaced
// per request: {client_ip} (the client address, see Config.TrustedProxies),
// {host} (the request's Host), {scheme} (https or http), {method}, {path}
// and {request_id} (X-Request-Id, see RequestIDHeader). The zero value
// changes nothing.
type HeaderRules struct {
	Set    map[string]string
	Add    map[string]string
	Remove []string
}

// headerRules is HeaderRules resolved: canonical names, values parsed into
// literal parts and placeholders.
type headerRules struct {
	remove []string
	set    []headerValue
	add    []headerValue
}

type headerValue struct {
	name  string
	parts []valuePart
}

// valuePart is a literal, or a placeholder when ph is set.
type valuePart struct {
	lit string
	ph  placeholder
}

type placeholder uint8

const (
	phNone placeholder = iota
	phClientIP
	phHost
	phScheme
	phMethod
	phPath
	phRequestID
)

var placeholders = map[string]placeholder{
	"client_ip": phClientIP, "host": phHost, "scheme": phScheme, "method": phMethod, "path": phPath,
	"request_id": phRequestID,
}

// hopHeaders may not be set by rules: they describe the connection, and
// Go's server and ReverseProxy manage them.
var hopHeaders = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade", "Content-Length", "Host"}

// Check reports what is wrong with r: an invalid header name or value, an
// unknown placeholder, a header that rules may not touch (Host,
// Connection, Transfer-Encoding and the other hop-by-hop ones).
func (r HeaderRules) Check() error {
	_, err := r.resolve()
	return err
}

// resolve checks r and parses its values.
func (r HeaderRules) resolve() (*headerRules, error) {
	if len(r.Set) == 0 && len(r.Add) == 0 && len(r.Remove) == 0 {
		return nil, nil
	}
	out := &headerRules{}
	check := func(name string) (string, error) {
		if !httpguts.ValidHeaderFieldName(name) {
			return "", fmt.Errorf("invalid header name %q", name)
		}
		c := textproto.CanonicalMIMEHeaderKey(name)
		for _, h := range hopHeaders {
			if c == h {
				return "", fmt.Errorf("header %s is not for rules: edge and Go's HTTP stack manage it", c)
			}
		}
		return c, nil
	}
	for _, name := range r.Remove {
		c, err := check(name)
		if err != nil {
			return nil, err
		}
		out.remove = append(out.remove, c)
	}
	for _, m := range []struct {
		from map[string]string
		to   *[]headerValue
	}{{r.Set, &out.set}, {r.Add, &out.add}} {
		for name, value := range m.from {
			c, err := check(name)
			if err != nil {
				return nil, err
			}
			parts, err := parseValue(value)
			if err != nil {
				return nil, fmt.Errorf("header %s: %w", c, err)
			}
			*m.to = append(*m.to, headerValue{name: c, parts: parts})
		}
	}
	// Map order is random; a stable order keeps the result deterministic.
	byName := func(a, b headerValue) int { return strings.Compare(a.name, b.name) }
	slices.SortFunc(out.set, byName)
	slices.SortFunc(out.add, byName)
	return out, nil
}

// parseValue splits a value into literals and {placeholders}.
func parseValue(v string) ([]valuePart, error) {
	var parts []valuePart
	for v != "" {
		i := strings.IndexByte(v, '{')
		if i < 0 {
			parts = append(parts, valuePart{lit: v})
			break
		}
		if i > 0 {
			parts = append(parts, valuePart{lit: v[:i]})
		}
		j := strings.IndexByte(v[i:], '}')
		if j < 0 {
			return nil, fmt.Errorf("unclosed { in %q", v)
		}
		name := v[i+1 : i+j]
		ph, ok := placeholders[name]
		if !ok {
			return nil, fmt.Errorf("unknown placeholder {%s}: expected {client_ip}, {host}, {scheme}, {method}, {path} or {request_id}", name)
		}
		parts = append(parts, valuePart{ph: ph})
		v = v[i+j+1:]
	}
	for _, p := range parts {
		if p.ph == phNone && !httpguts.ValidHeaderFieldValue(p.lit) {
			return nil, fmt.Errorf("invalid characters in value %q", p.lit)
		}
	}
	return parts, nil
}

// value renders v for request r from client.
func (v headerValue) value(r *http.Request, client string) string {
	if len(v.parts) == 1 && v.parts[0].ph == phNone {
		return v.parts[0].lit
	}
	var b strings.Builder
	for _, p := range v.parts {
		switch p.ph {
		case phNone:
			b.WriteString(p.lit)
		case phClientIP:
			b.WriteString(client)
		case phHost:
			b.WriteString(r.Host)
		case phScheme:
			if r.TLS != nil {
				b.WriteString("https")
			} else {
				b.WriteString("http")
			}
		case phMethod:
			b.WriteString(r.Method)
		case phPath:
			b.WriteString(r.URL.Path)
		case phRequestID:
			b.WriteString(r.Header.Get(RequestIDHeader))
		}
	}
	// A placeholder's value (a Host, a path) must not smuggle a line end in.
	return strings.Map(func(c rune) rune {
		if c == '\r' || c == '\n' || c == 0 {
			return -1
		}
		return c
	}, b.String())
}

// apply changes h by the rules. Safe on nil.
func (hr *headerRules) apply(h http.Header, r *http.Request, client string) {
	if hr == nil {
		return
	}
	for _, k := range hr.remove {
		delete(h, k)
	}
	for _, v := range hr.set {
		h[v.name] = []string{v.value(r, client)}
	}
	for _, v := range hr.add {
		h[v.name] = append(h[v.name], v.value(r, client))
	}
}
