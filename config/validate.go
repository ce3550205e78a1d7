package config

import (
	"encoding/base64"
	"fmt"
	"maps"
	"net"
	"net/mail"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Names accepted by the enumerated keys.
var (
	policies       = []string{"round_robin", "least_conn", "random", "ip_hash", "cookie", "first"}
	challengeTypes = []string{"http-01", "tls-alpn-01", "dns-01"}
	dnsProviders   = []string{"cloudflare", "rfc2136"}
	storageTypes   = []string{"file", "redis"}
	exportTypes    = []string{"pem_dir", "pfx_dir", "sftp", "exec", "azure_keyvault"}
	pfxEncryptions = []string{"modern", "legacy"}
	tsigAlgorithms = []string{"hmac-sha256", "hmac-sha384", "hmac-sha512", "hmac-sha224", "hmac-sha1"}
	logLevels      = []string{"debug", "info", "warn", "error"}
	logFormats     = []string{"json", "text"}
)

// Validate checks a config built in code and reports every problem at once
// as *Errors; Load and Parse already call it, with positions. Without
// positions each message starts with the field's path, such as
// "sites[0].routes[1].pool". Call ApplyDefaults first: Validate does not
// change c.
func (c *Config) Validate() error {
	v := &validator{c: c, file: c.File}
	v.run()
	return finish(v.errs)
}

// validator checks a decoded config. vals holds the position of each
// decoded value by path (nil for a config built in code); bad holds paths
// whose decoding failed, so they are not reported twice.
type validator struct {
	c    *Config
	file string
	vals map[string]pos
	bad  map[string]bool
	errs []*Error
}

// parent strips the last element of a path: "a.b[2]" -> "a.b" -> "a" -> "".
func parent(path string) string {
	if strings.HasSuffix(path, "]") {
		if i := strings.LastIndexByte(path, '['); i >= 0 {
			return path[:i]
		}
	}
	if i := strings.LastIndexByte(path, '.'); i >= 0 {
		return path[:i]
	}
	return ""
}

// at is the position of path, or of its nearest ancestor present in the
// file (for a missing key, the mapping that lacks it).
func (v *validator) at(path string) (pos, bool) {
	if v.vals == nil {
		return pos{}, false
	}
	for p := path; ; p = parent(p) {
		if x, ok := v.vals[p]; ok {
			return x, true
		}
		if p == "" {
			return pos{}, false
		}
	}
}

func (v *validator) errorf(path, format string, args ...any) {
	for p := path; ; p = parent(p) {
		if v.bad[p] {
			return
		}
		if p == "" {
			break
		}
	}
	msg := fmt.Sprintf(format, args...)
	p, ok := v.at(path)
	if !ok && path != "" {
		msg = path + ": " + msg
	}
	v.errs = append(v.errs, &Error{File: v.file, Line: p.line, Col: p.col, Msg: msg})
}

// where names the place of path in a hint: "line 12", or the path itself.
func (v *validator) where(path string) string {
	if p, ok := v.vals[path]; ok {
		return fmt.Sprintf("line %d", p.line)
	}
	return path
}

func (v *validator) oneOf(path, what, val string, names []string) {
	if !slices.Contains(names, val) {
		v.errorf(path, "unknown %s %q: expected one of %s%s", what, val, strings.Join(names, ", "), suggest(val, names))
	}
}

func (v *validator) addr(path, s, example string) {
	if err := checkAddr(s); err != nil {
		v.errorf(path, "invalid address %q: %v (like %q)", s, err, example)
	}
}

func (v *validator) url(path, s string, schemes ...string) {
	u, err := url.Parse(s)
	if err != nil || !slices.Contains(schemes, u.Scheme) || u.Host == "" || u.Fragment != "" {
		v.errorf(path, "invalid URL %q: expected an %s URL with a host", s, strings.Join(schemes, " or "))
	}
}

func (v *validator) nonNeg(path string, d time.Duration) {
	if d < 0 {
		v.errorf(path, "must not be negative")
	}
}

func (v *validator) nonNegInt(path string, n int) {
	if n < 0 {
		v.errorf(path, "must not be negative")
	}
}

func (v *validator) run() {
	c := v.c
	v.addr("listen.http", c.Listen.HTTP, ":80")
	v.addr("listen.https", c.Listen.HTTPS, ":443")
	v.admin()
	v.acme()
	v.onDemand()
	v.storage()
	for i, p := range c.Cluster.Peers {
		v.url(fmt.Sprintf("cluster.peers[%d]", i), p, "http", "https")
	}
	if len(c.Cluster.Peers) > 0 && c.Cluster.Secret == "" {
		v.errorf("cluster.secret", "cluster.peers needs secret or secret_file: peers refuse unsigned asks")
	}
	for i, p := range c.TrustedProxies {
		if _, err := netip.ParsePrefix(p); err != nil {
			if _, err := netip.ParseAddr(p); err != nil {
				v.errorf(fmt.Sprintf("trusted_proxies[%d]", i), "invalid address %q: expected an IP or a CIDR like 10.0.0.0/8", p)
			}
		}
	}
	v.nonNeg("limits.read_header_timeout", c.Limits.ReadHeaderTimeout)
	v.nonNeg("limits.idle_timeout", c.Limits.IdleTimeout)
	v.nonNegInt("limits.max_header_bytes", c.Limits.MaxHeaderBytes)
	v.nonNegInt("limits.max_conns_per_ip", c.Limits.MaxConnsPerIP)
	exports := v.exports()
	v.pools()
	v.sites(exports)
	v.oneOf("log.level", "log level", c.Log.Level, logLevels)
	v.oneOf("log.format", "log format", c.Log.Format, logFormats)
	if len(c.Sites) == 0 && c.OnDemand == nil {
		v.errorf("sites", "no sites and no on_demand: nothing to serve")
	}
}

func (v *validator) admin() {
	a := v.c.Admin
	if err := checkAddr(a.Listen); err != nil {
		v.addr("admin.listen", a.Listen, "127.0.0.1:9180")
		return
	}
	if !isLoopback(a.Listen) && a.Token == "" {
		v.errorf("admin.listen", "admin.listen %q is not a loopback address: set admin.token or admin.token_file", a.Listen)
	}
}

func (v *validator) acme() {
	a := v.c.ACME
	if a.Email != "" {
		if addr, err := mail.ParseAddress(a.Email); err != nil || addr.Address != a.Email {
			v.errorf("acme.email", "invalid email address %q", a.Email)
		}
	}
	if _, known := CADirectories()[a.CA]; !known {
		u, err := url.Parse(a.CA)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			names := slices.Sorted(maps.Keys(CADirectories()))
			v.errorf("acme.ca", "unknown CA %q: expected %s or an https directory URL%s",
				a.CA, strings.Join(names, ", "), suggest(a.CA, names))
		}
	}
	switch {
	case a.EAB.KeyID != "" && a.EAB.HMACKey == "":
		v.errorf("acme.eab.hmac_key", "eab.key_id needs hmac_key or hmac_key_file")
	case a.EAB.KeyID == "" && a.EAB.HMACKey != "":
		v.errorf("acme.eab.key_id", "eab.hmac_key needs key_id")
	}
	seen := map[string]bool{}
	for i, ch := range a.Challenges {
		p := fmt.Sprintf("acme.challenges[%d]", i)
		v.oneOf(p, "challenge", ch, challengeTypes)
		if seen[ch] {
			v.errorf(p, "challenge %q is listed twice", ch)
		}
		seen[ch] = true
	}
	if !seen["http-01"] && !seen["tls-alpn-01"] {
		for _, st := range v.c.Sites {
			if st.DNS == "" && len(st.Hosts) > 0 {
				v.errorf("acme.challenges", "site %s has no dns: so it needs http-01 or tls-alpn-01 (dns-01 is used only where a site sets dns)", st.Hosts[0])
				break
			}
		}
	}
	for i, r := range a.DNSResolvers {
		v.addr(fmt.Sprintf("acme.dns_resolvers[%d]", i), r, "1.1.1.1:53")
	}
	// A negative propagation timeout turns the check off (certmagic).
	v.nonNeg("acme.dns_propagation_delay", a.DNSPropagationDelay)
	v.nonNeg("acme.dns_propagation_interval", a.DNSPropagationInterval)
	if !(a.RenewalWindowRatio >= 0 && a.RenewalWindowRatio < 1) { // also refuses NaN
		v.errorf("acme.renewal_window_ratio", "must be between 0 and 1")
	}
	for _, name := range slices.Sorted(maps.Keys(a.DNS)) {
		v.dnsProvider("acme.dns["+name+"]", a.DNS[name])
	}
}

func (v *validator) dnsProvider(path string, d DNSProvider) {
	only := func(provider string, fields map[string]string) {
		for _, k := range slices.Sorted(maps.Keys(fields)) {
			if fields[k] != "" {
				v.errorf(path+"."+k, "%s is only used by provider %s", k, provider)
			}
		}
	}
	switch d.Provider {
	case "":
		v.errorf(path+".provider", "missing provider: expected one of %s", strings.Join(dnsProviders, ", "))
	case "cloudflare":
		if d.APIToken == "" {
			v.errorf(path+".api_token", "cloudflare needs api_token or api_token_file")
		}
		only("rfc2136", map[string]string{"server": d.Server, "key_name": d.KeyName, "key": d.Key, "key_alg": d.KeyAlg})
		if d.APIURL != "" {
			v.url(path+".api_url", d.APIURL, "http", "https")
		}
	case "rfc2136":
		if d.Server == "" {
			v.errorf(path+".server", "rfc2136 needs server")
		} else {
			v.addr(path+".server", d.Server, "10.0.0.53:53")
		}
		if d.Key == "" {
			v.errorf(path+".key", "rfc2136 needs key or key_file")
		} else if _, err := base64.StdEncoding.DecodeString(d.Key); err != nil {
			v.errorf(path+".key", "rfc2136 key is not base64 (the TSIG secret, as in a BIND key file)")
		}
		if d.KeyName == "" {
			v.errorf(path+".key_name", "rfc2136 needs key_name")
		}
		v.oneOf(path+".key_alg", "TSIG algorithm", d.KeyAlg, tsigAlgorithms)
		only("cloudflare", map[string]string{"api_token": d.APIToken, "zone_token": d.ZoneToken, "api_url": d.APIURL})
	default:
		v.oneOf(path+".provider", "dns provider", d.Provider, dnsProviders)
	}
}

func (v *validator) onDemand() {
	o := v.c.OnDemand
	if o == nil {
		return
	}
	if o.Ask != "" {
		v.url("on_demand.ask", o.Ask, "http", "https")
	}
	if o.Ask == "" && len(o.Allow) == 0 {
		v.errorf("on_demand.ask", "on_demand needs ask or allow, or anyone pointing a name at edge gets certificates")
	}
	if _, _, err := parseRate(o.Rate); err != nil {
		v.errorf("on_demand.rate", "invalid rate %q: %v", o.Rate, err)
	}
	for i, h := range o.Allow {
		if msg := checkHost(h, true, false); msg != "" {
			v.errorf(fmt.Sprintf("on_demand.allow[%d]", i), "invalid host %q: %s", h, msg)
		}
	}
}

func (v *validator) storage() {
	s := v.c.Storage
	switch s.Type {
	case "file":
	case "redis":
		if s.Address == "" {
			v.errorf("storage.address", "redis storage needs address")
		} else {
			// Several comma-separated addresses are a Redis Cluster seed list.
			for _, a := range strings.Split(s.Address, ",") {
				v.addr("storage.address", strings.TrimSpace(a), "redis:6379")
			}
		}
		v.nonNegInt("storage.db", s.DB)
	default:
		v.oneOf("storage.type", "storage type", s.Type, storageTypes)
	}
}

// exports checks exports and returns the path of each export's name.
func (v *validator) exports() map[string]string {
	names := map[string]string{}
	for i, e := range v.c.Exports {
		p := fmt.Sprintf("exports[%d]", i)
		if e.Name == "" {
			v.errorf(p+".name", "export needs a name")
		} else if first, dup := names[e.Name]; dup {
			v.errorf(p+".name", "export %q is already defined at %s", e.Name, v.where(first))
		} else {
			names[e.Name] = p + ".name"
		}
		need := func(key, val string) {
			if val == "" {
				v.errorf(p+"."+key, "%s export needs %s", e.Type, key)
			}
		}
		switch e.Type {
		case "pem_dir":
			need("path", e.Path)
		case "pfx_dir":
			need("path", e.Path)
			v.oneOf(p+".encryption", "pfx encryption", e.Encryption, pfxEncryptions)
		case "sftp":
			if len(e.Hosts) == 0 {
				v.errorf(p+".hosts", "sftp export needs hosts")
			}
			for j, h := range e.Hosts {
				hp := fmt.Sprintf("%s.hosts[%d]", p, j)
				if host, _, err := net.SplitHostPort(h); err == nil {
					h = host
				}
				if msg := checkHost(h, false, false); msg != "" {
					v.errorf(hp, "invalid host %q: %s", e.Hosts[j], msg)
				}
			}
			need("user", e.User)
			need("path", e.Path)
			need("known_hosts", e.KnownHosts)
			if e.KeyFile == "" && e.Password == "" {
				v.errorf(p+".key_file", "sftp export needs key_file or password")
			}
		case "exec":
			if len(e.Command) == 0 || e.Command[0] == "" {
				v.errorf(p+".command", "exec export needs command")
			}
		case "azure_keyvault":
			if e.Vault == "" {
				need("vault", e.Vault)
			} else {
				v.url(p+".vault", e.Vault, "https")
			}
			need("tenant_id", e.TenantID)
			need("client_id", e.ClientID)
			if e.ClientSecret == "" {
				v.errorf(p+".client_secret", "azure_keyvault export needs client_secret or client_secret_file")
			}
		case "":
			v.errorf(p+".type", "export needs a type: one of %s", strings.Join(exportTypes, ", "))
		default:
			v.oneOf(p+".type", "export type", e.Type, exportTypes)
		}
		v.nonNeg(p+".timeout", e.Timeout)
	}
	return names
}

func (v *validator) pools() {
	for _, name := range slices.Sorted(maps.Keys(v.c.Pools)) {
		pool, p := v.c.Pools[name], "pools["+name+"]"
		v.oneOf(p+".policy", "policy", pool.Policy, policies)
		if len(pool.Backends) == 0 {
			v.errorf(p+".backends", "pool %q has no backends", name)
		}
		seen := map[string]string{}
		for j, b := range pool.Backends {
			bp := fmt.Sprintf("%s.backends[%d]", p, j)
			v.url(bp, b, "http", "https")
			if first, dup := seen[b]; dup {
				v.errorf(bp, "backend %q is already listed at %s", b, v.where(first))
			}
			seen[b] = bp
		}
		if h := pool.Health; h != nil {
			hp := p + ".health"
			if !strings.HasPrefix(h.Path, "/") {
				v.errorf(hp+".path", "health path %q must start with /", h.Path)
			}
			v.nonNeg(hp+".interval", h.Interval)
			v.nonNeg(hp+".timeout", h.Timeout)
			if h.Expect < 100 || h.Expect > 599 {
				v.errorf(hp+".expect", "expect %d is not an HTTP status code", h.Expect)
			}
			v.nonNegInt(hp+".fails", h.Fails)
			v.nonNegInt(hp+".passes", h.Passes)
		}
		v.nonNegInt(p+".passive.fails", pool.Passive.Fails)
		v.nonNeg(p+".passive.window", pool.Passive.Window)
		v.nonNeg(p+".passive.cooldown", pool.Passive.Cooldown)
		v.nonNegInt(p+".retries", pool.Retries)
		v.nonNeg(p+".timeouts.connect", pool.Timeouts.Connect)
		v.nonNeg(p+".timeouts.response_header", pool.Timeouts.ResponseHeader)
		v.nonNeg(p+".timeouts.idle", pool.Timeouts.Idle)
	}
}

func (v *validator) sites(exports map[string]string) {
	c := v.c
	poolNames := slices.Sorted(maps.Keys(c.Pools))
	dnsNames := slices.Sorted(maps.Keys(c.ACME.DNS))
	exportNames := slices.Sorted(maps.Keys(exports))
	hosts := map[string]string{} // host -> path of its first occurrence
	for i, s := range c.Sites {
		p := fmt.Sprintf("sites[%d]", i)
		if len(s.Hosts) == 0 {
			v.errorf(p+".hosts", "site has no hosts")
		}
		for j, h := range s.Hosts {
			hp := fmt.Sprintf("%s.hosts[%d]", p, j)
			if msg := checkHost(h, true, false); msg != "" {
				v.errorf(hp, "invalid host %q: %s", h, msg)
				continue
			}
			key := strings.ToLower(h)
			if first, dup := hosts[key]; dup {
				v.errorf(hp, "host %q is already listed at %s", h, v.where(first))
				continue
			}
			hosts[key] = hp
			if strings.HasPrefix(h, "*.") && s.DNS == "" {
				v.errorf(hp, "wildcard host %q needs dns: (a provider from acme.dns): only DNS-01 can validate wildcards", h)
			}
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
		for j, e := range s.Exports {
			if _, ok := exports[e]; !ok {
				v.errorf(fmt.Sprintf("%s.exports[%d]", p, j), "export %q is not defined in exports%s", e, suggest(e, exportNames))
			}
		}
		v.routes(p, s.Routes, poolNames)
	}
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

// checkAddr checks a host:port listen or dial address.
func checkAddr(s string) error {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("expected host:port")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("invalid port %q", port)
	}
	return nil
}

func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// checkHost returns what is wrong with host name h, or "". IP addresses
// are accepted; wildcard allows a leftmost "*." label, underscore allows
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
