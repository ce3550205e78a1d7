package config

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
)

func (v *validator) sites(exports map[string]string) {
	c := v.c
	poolNames := c.PoolNames()
	dnsNames := slices.Sorted(maps.Keys(c.ACME.DNS))
	exportNames := slices.Sorted(maps.Keys(exports))
	hosts := map[string]string{} // host -> path of its first occurrence
	for i, s := range c.Sites {
		p := fmt.Sprintf("sites[%d]", i)
		if len(s.Hosts) == 0 {
			v.errorf(p+".hosts", "site has no hosts")
		}
		for j, h := range s.Hosts {
			v.host(fmt.Sprintf("%s.hosts[%d]", p, j), h, s, hosts)
		}
		if len(s.Routes) == 0 {
			v.errorf(p+".routes", "site %s has no routes: add routes: [{path: /, pool: NAME}]", siteName(s, p))
		}
		if s.DNS != "" && !slices.Contains(dnsNames, s.DNS) {
			v.errorf(p+".dns", "dns provider %q is not defined in acme.dns%s", s.DNS, suggest(s.DNS, dnsNames))
		}
		if s.Delegate != "" {
			if s.DNS == "" {
				v.errorf(p+".delegate", "delegate needs dns: (the provider that writes the delegated zone)")
			}
			if msg := checkHost(s.Delegate, false, true); msg != "" {
				v.errorf(p+".delegate", "invalid delegate name %q: %s", s.Delegate, msg)
			}
		}
		v.nonNegInt(p+".hsts", s.HSTS)
		if s.Rate != "off" {
			if _, _, err := parseRate(s.Rate); err != nil {
				v.errorf(p+".rate", "invalid rate %q: %v (or off)", s.Rate, err)
			}
		}
		if !v.bad["exports"] { // refused as a whole: its names are not checked
			for j, e := range s.Exports {
				if _, ok := exports[e]; !ok {
					v.errorf(fmt.Sprintf("%s.exports[%d]", p, j), "export %q is not defined in exports%s", e, suggest(e, exportNames))
				}
			}
		}
		v.routes(p, s.Routes, poolNames)
		if s.Compress != nil {
			v.compress(p+".compress", s.Compress)
		}
	}
}

// Compress is a site's response compression, gzip and zstd of the text
// responses its backends did not compress. In YAML "compress: true" is
// {} (on, defaults); a mapping turns it on unless it says enabled: false.
// A response passes as it is when it has a Content-Encoding, says
// Cache-Control: no-transform, is 204, 206 or 304, answers HEAD or an
// Upgrade, or declares a Content-Length below MinSize.
type Compress struct {
	// Enabled nil means true (the mapping alone turns compression on).
	Enabled *bool `yaml:"enabled,shorthand"`
	// MinSize is the smallest Content-Length compressed (default
	// DefaultCompressMinSize, 1KiB); a response of unknown length is
	// compressed whatever its size. MinSizeBytes is the parsed value.
	MinSize      string `yaml:"min_size"`
	MinSizeBytes int64  `yaml:"-"`
	// Types are the media types compressed, "text/*" for a whole type;
	// empty: the usual list (text/*, application/json, application/javascript,
	// application/xml, image/svg+xml and the other textual types).
	Types []string `yaml:"types"`
	// Algorithms are zstd and gzip, in the order preferred when a client
	// accepts both equally (default [zstd, gzip]).
	Algorithms []string `yaml:"algorithms"`
}

// DefaultCompressMinSize is compress.min_size's default, nginx's
// gzip_min_length order of size.
const DefaultCompressMinSize = "1KiB"

// On reports whether c compresses: set, and Enabled nil or true.
func (c *Compress) On() bool { return c != nil && (c.Enabled == nil || *c.Enabled) }

// applyDefaults sets MinSize and resolves MinSizeBytes.
func (c *Compress) applyDefaults() {
	setStr(&c.MinSize, DefaultCompressMinSize)
	if n, err := parseSize(c.MinSize); err == nil {
		c.MinSizeBytes = n
	}
}

// compress checks a site's compress mapping at path cp as proxy's
// Compression.Check does.
func (v *validator) compress(cp string, c *Compress) {
	if _, err := parseSize(c.MinSize); err != nil {
		v.errorf(cp+".min_size", "invalid min_size %q: %v", c.MinSize, err)
	}
	for j, t := range c.Types {
		main, sub, ok := strings.Cut(strings.ToLower(t), "/")
		if !ok || main == "*" || !isToken(main) || (sub != "*" && !isToken(sub)) {
			v.errorf(fmt.Sprintf("%s.types[%d]", cp, j), "invalid media type %q: want TYPE/SUBTYPE or TYPE/* (such as application/json or text/*)", t)
		}
	}
	seen := map[string]bool{}
	for j, a := range c.Algorithms {
		ap := fmt.Sprintf("%s.algorithms[%d]", cp, j)
		if !slices.Contains(compressAlgorithms, a) {
			v.errorf(ap, "unknown algorithm %q: expected %s", a, strings.Join(compressAlgorithms, " or "))
			continue
		}
		if seen[a] {
			v.errorf(ap, "algorithm %s is listed twice", a)
		}
		seen[a] = true
	}
	if c.Algorithms != nil && len(c.Algorithms) == 0 {
		v.errorf(cp+".algorithms", "no algorithms: list zstd, gzip or both (or enabled: false)")
	}
}

// isToken reports whether s is a non-empty token (RFC 9110, section
// 5.6.2), as a media type's type and subtype are.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// compressAlgorithms are compress.algorithms' values, in the default order.
var compressAlgorithms = []string{"zstd", "gzip"}

// CompressAlgorithms returns the names compress.algorithms accepts (a new
// slice), in the default order of preference.
func CompressAlgorithms() []string { return slices.Clone(compressAlgorithms) }

// CatchAll is the site host that matches every name no other site lists
// (on-demand TLS only).
const CatchAll = "*"

// siteName names a site in messages: its first host, else its path.
func siteName(s Site, path string) string {
	if len(s.Hosts) > 0 && s.Hosts[0] != "" {
		return s.Hosts[0]
	}
	return path
}

// host checks one host of site s at path hp; hosts maps each host seen so
// far to the path of its first occurrence.
func (v *validator) host(hp, h string, s Site, hosts map[string]string) {
	if h == CatchAll {
		if first, dup := hosts[h]; dup {
			v.errorf(hp, "the catch-all host \"*\" is already listed at %s", v.where(first))
			return
		}
		hosts[h] = hp
		if v.c.OnDemand == nil {
			v.errorf(hp, "the catch-all host \"*\" needs on_demand: without it no certificate can be had for the names it would serve")
		}
		if s.DNS != "" {
			v.errorf(hp, "the catch-all host \"*\" takes its certificates by http-01 or tls-alpn-01 at the first handshake; remove dns")
		}
		return
	}
	if v.ipSiteHost(hp, h, s) {
		key := strings.Trim(h, "[]")
		if first, dup := hosts[key]; dup {
			v.errorf(hp, "host %q is already listed at %s", h, v.where(first))
		}
		hosts[key] = hp
		return
	}
	if msg := checkHost(h, true, false); msg != "" {
		v.errorf(hp, "invalid host %q: %s", h, msg)
		return
	}
	key := strings.ToLower(h)
	if first, dup := hosts[key]; dup {
		v.errorf(hp, "host %q is already listed at %s", h, v.where(first))
		return
	}
	hosts[key] = hp
	if strings.HasPrefix(h, "*.") && s.DNS == "" {
		v.errorf(hp, "wildcard host %q needs dns: (a provider from acme.dns): only DNS-01 can validate wildcards", h)
	}
	if kind := internalName(h); kind != "" {
		a := v.c.ACME
		if publicCA(a) {
			v.errorf(hp, "host %q is %s, which public CAs (acme.ca %s) do not certify: use a public name, or set acme.ca to an internal ACME CA's directory URL", h, kind, a.CA)
		} else {
			v.warnf(hp, "host %q is %s: only an internal ACME CA can certify it; make sure acme.ca %s does", h, kind, a.CA)
		}
	}
}

// internalName describes h when public CAs never certify it: "a localhost
// name" (localhost or under .localhost, RFC 6761) or "a single-label name"
// (no dot, such as intranet), a wildcard's base name included. It returns
// "" for other names.
func internalName(h string) string {
	name := strings.TrimPrefix(strings.ToLower(h), "*.")
	switch {
	case name == "localhost" || strings.HasSuffix(name, ".localhost"):
		return "a localhost name"
	case !strings.Contains(name, "."):
		return "a single-label name"
	}
	return ""
}

// publicCA reports whether acme.ca is one of the public CAs edge knows by
// name (letsencrypt, letsencrypt-staging, zerossl), given by name or by
// its directory URL.
func publicCA(a ACME) bool {
	dirs := CADirectories()
	if _, ok := dirs[a.CA]; ok {
		return true
	}
	for _, dir := range dirs {
		if a.CA == dir || (a.CADirectory != "" && a.CADirectory == dir) {
			return true
		}
	}
	return false
}

func (v *validator) routes(site string, routes []Route, poolNames []string) {
	paths := map[string]string{}
	for k, r := range routes {
		p := fmt.Sprintf("%s.routes[%d]", site, k)
		switch {
		case r.Path == "":
			v.errorf(p+".path", "route needs path")
		case !strings.HasPrefix(r.Path, "/"):
			v.errorf(p+".path", "route path %q must start with /", r.Path)
		default:
			if first, dup := paths[r.Path]; dup {
				v.errorf(p+".path", "path %q is already routed at %s", r.Path, v.where(first))
			}
			paths[r.Path] = p + ".path"
		}
		switch {
		case r.Pool == "":
			v.errorf(p+".pool", "route needs pool")
		case !slices.Contains(poolNames, r.Pool):
			v.errorf(p+".pool", "pool %q is not defined in pools%s", r.Pool, suggest(r.Pool, poolNames))
		}
		if _, err := parseSize(r.MaxBody); err != nil {
			v.errorf(p+".max_body", "invalid max_body %q: %v", r.MaxBody, err)
		}
	}
}

// checkHost returns what is wrong with host name h, or "". IP addresses
// are accepted (sites check them first, in ipSiteHost); wildcard allows a leftmost "*." label, underscore allows
// "_" in labels (for DNS names such as _acme-challenge.example.net).
func checkHost(h string, wildcard, underscore bool) string {
	if h == "" {
		return "empty host name"
	}
	if _, err := netip.ParseAddr(h); err == nil {
		return ""
	}
	name := h
	if rest, ok := strings.CutPrefix(h, "*."); ok && wildcard {
		name = rest
	}
	if strings.HasSuffix(name, ".") {
		return "trailing dot"
	}
	if len(name) > 253 {
		return "longer than 253 characters"
	}
	for label := range strings.SplitSeq(name, ".") {
		switch {
		case label == "":
			return "empty label"
		case label == "*" && wildcard:
			return "* is only allowed as the whole leftmost label"
		case len(label) > 63:
			return "label longer than 63 characters"
		case label[0] == '-' || label[len(label)-1] == '-':
			return "label starts or ends with -"
		}
		for _, r := range label {
			switch {
			case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9', r == '-':
			case r == '_' && underscore:
			default:
				return fmt.Sprintf("invalid character %q", r)
			}
		}
	}
	return ""
}
