package config

import (
	"encoding/base64"
	"fmt"
	"maps"
	"net"
	"net/mail"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Validate checks a config built in code and reports every problem at once
// as *Errors; Load and Parse already call it. A config from Parse keeps its
// positions, so Validate reports at FILE:LINE:COL; without positions each
// message starts with the field's path, such as "sites[0].routes[1].pool".
// Call ApplyDefaults first: Validate does not change c.
func (c *Config) Validate() error {
	v := newValidator(c, nil)
	v.run()
	return finish(v.errs)
}

// Warnings returns what c accepts but is likely a mistake, such as a
// single-label host name that only an internal ACME CA would certify,
// positioned like Validate's errors and in file order. edge validate
// prints them and edge run logs them; they never refuse a config. nil
// means none. The result is computed from c as it is now.
func (c *Config) Warnings() []*Error {
	v := newValidator(c, nil)
	v.run()
	sortErrors(v.warns)
	return v.warns
}

// validator checks a decoded config. Positions come from c.vals (nil for a
// config built in code); bad holds paths whose decoding failed, so they
// are not reported twice.
type validator struct {
	c    *Config
	file string
	bad  map[string]bool
	// preview checks the features notBuilt refuses as if they were built
	// (for their tests).
	preview bool
	errs    []*Error
	warns   []*Error
}

func newValidator(c *Config, bad map[string]bool) *validator {
	if bad == nil {
		bad = map[string]bool{}
	}
	return &validator{c: c, file: c.File, bad: bad}
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

// isBad reports whether path or one of its ancestors already has an error.
func (v *validator) isBad(path string) bool {
	for p := path; ; p = parent(p) {
		if v.bad[p] {
			return true
		}
		if p == "" {
			return false
		}
	}
}

func (v *validator) errorf(path, format string, args ...any) {
	if !v.isBad(path) {
		v.errs = append(v.errs, v.c.errorAt(path, nil, fmt.Sprintf(format, args...)))
	}
}

// warnf records a warning at path, unless path already has an error.
func (v *validator) warnf(path, format string, args ...any) {
	if !v.isBad(path) {
		v.warns = append(v.warns, v.c.errorAt(path, nil, fmt.Sprintf(format, args...)))
	}
}

// where names the place of path in a hint: "line 12", or the path itself.
func (v *validator) where(path string) string {
	if p, ok := v.c.vals[path]; ok {
		return fmt.Sprintf("line %d", p.line)
	}
	return path
}

func (v *validator) oneOf(path, what, val string, names []string) {
	if !slices.Contains(names, val) {
		v.errorf(path, "unknown %s %q: expected one of %s%s", what, val, strings.Join(names, ", "), suggest(val, names))
	}
}

// addr checks a host:port address; minPort is listenPort or dialPort.
func (v *validator) addr(path, s, example string, minPort int) {
	if err := checkAddr(s, minPort); err != nil {
		v.errorf(path, "invalid address %q: %v (like %q)", s, err, example)
	}
}

// url checks an absolute URL of one of schemes, with a host, a port (if
// any) of 1..65535 and no fragment.
func (v *validator) url(path, s string, schemes ...string) {
	u, msg := checkURL(s, schemes...)
	if msg == "" && u.Fragment != "" {
		msg = fmt.Sprintf("expected an %s URL with a host", strings.Join(schemes, " or "))
	}
	if msg != "" {
		v.errorf(path, "invalid URL %q: %s", s, msg)
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
	v.notBuilt()
	v.addr("listen.http", c.Listen.HTTP, ":80", listenPort)
	v.addr("listen.https", c.Listen.HTTPS, ":443", listenPort)
	v.oneOf("listen.http1", "HTTP/1.1 server", c.Listen.HTTP1, []string{HTTP1Edge, HTTP1NetHTTP})
	v.admin()
	v.acme()
	v.onDemand()
	v.storage()
	v.placeholders()
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
	v.nonNeg("limits.read_timeout", c.Limits.ReadTimeout)
	v.nonNeg("limits.write_timeout", c.Limits.WriteTimeout)
	v.nonNeg("limits.idle_timeout", c.Limits.IdleTimeout)
	v.nonNegInt("limits.max_header_bytes", c.Limits.MaxHeaderBytes)
	v.nonNegInt("limits.max_conns_per_ip", c.Limits.MaxConnsPerIP)
	if _, _, err := parseRate(c.Limits.Rate); err != nil {
		v.errorf("limits.rate", "invalid rate %q: %v", c.Limits.Rate, err)
	}
	v.nonNegInt("limits.rate_burst", c.Limits.RateBurst)
	v.proxyProtocol()
	exports := v.exports()
	if c.ExportCheckInterval <= 0 && !v.isBad("export_check_interval") {
		v.errorf("export_check_interval", "must be positive")
	}
	v.pools()
	v.sites(exports)
	v.oneOf("log.level", "log level", c.Log.Level, logLevels)
	v.oneOf("log.format", "log format", c.Log.Format, logFormats)
	if len(c.Sites) == 0 && c.OnDemand == nil {
		v.errorf("sites", "no sites and no on_demand: nothing to serve")
	}
}

// notBuilt refuses, each at its position, the keys this build parses but
// does not implement yet, and marks them so that nothing under them is
// reported as well. The issue that implements one deletes its line.
func (v *validator) notBuilt() {
	if v.preview {
		return
	}
	// Every key of the schema is built. A key added to the schema before
	// its feature is refused here, at its position, with v.refuse.
}

// refuse reports msg (which names its key) at path when set, and marks
// path bad.
func (v *validator) refuse(set bool, path, msg string) {
	if !set || v.isBad(path) {
		return
	}
	e := v.c.errorAt(path, nil, msg)
	e.Msg = msg // no path prefix: msg names the key
	v.errs = append(v.errs, e)
	v.bad[path] = true
}

func (v *validator) admin() {
	a := v.c.Admin
	if err := checkAddr(a.Listen, listenPort); err != nil {
		v.addr("admin.listen", a.Listen, "127.0.0.1:9180", listenPort)
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
	v.acmeCAs()
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
		v.addr(fmt.Sprintf("acme.dns_resolvers[%d]", i), r, "1.1.1.1:53", dialPort)
	}
	// A negative propagation timeout turns the check off (certmagic).
	v.nonNeg("acme.dns_propagation_delay", a.DNSPropagationDelay)
	v.nonNeg("acme.dns_propagation_interval", a.DNSPropagationInterval)
	if !(a.RenewalWindowRatio >= 0 && a.RenewalWindowRatio < 1) { // also refuses NaN
		v.errorf("acme.renewal_window_ratio", "must be between 0 and 1")
	}
	v.acmeRenewal()
	v.acmeProfiles()
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
			v.addr(path+".server", d.Server, "10.0.0.53:53", dialPort)
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
	v.nonNegInt("on_demand.burst", o.Burst)
	v.nonNeg("on_demand.ask_timeout", o.AskTimeout)
	for i, h := range o.Allow {
		if msg := checkHost(h, true, false); msg != "" {
			v.errorf(fmt.Sprintf("on_demand.allow[%d]", i), "invalid host %q: %s", h, msg)
		}
	}
	catchAll := false
	for _, s := range v.c.Sites {
		catchAll = catchAll || slices.Contains(s.Hosts, CatchAll)
	}
	if !catchAll {
		v.warnf("on_demand", "on_demand has no effect without a site with hosts: [\"*\"], which routes the names it obtains certificates for")
	}
}

func (v *validator) proxyProtocol() {
	pp := v.c.ProxyProtocol
	if pp == nil {
		return
	}
	if len(pp.From) == 0 {
		v.errorf("proxy_protocol.from", "proxy_protocol needs from: the balancers allowed to send a PROXY header")
	}
	for i, p := range pp.From {
		if _, err := netip.ParsePrefix(p); err != nil {
			if _, err := netip.ParseAddr(p); err != nil {
				v.errorf(fmt.Sprintf("proxy_protocol.from[%d]", i), "invalid address %q: expected an IP or a CIDR like 10.0.0.5/32", p)
			}
		}
	}
	v.nonNeg("proxy_protocol.timeout", pp.Timeout)
}

func (v *validator) storage() {
	s := v.c.Storage
	switch s.Type {
	case "file":
		if s.Sentinel != nil {
			v.warnf("storage.sentinel", "sentinel applies to storage type redis; type file ignores it")
		}
	case "redis":
		switch {
		case s.Sentinel != nil && s.Address != "":
			v.errorf("storage.address", "set address or sentinel, not both: with sentinel, the sentinels name the master")
		case s.Sentinel == nil && s.Address == "":
			v.errorf("storage.address", "redis storage needs address (or sentinel)")
		case s.Sentinel == nil:
			// Several comma-separated addresses are a Redis Cluster seed list.
			for _, a := range strings.Split(s.Address, ",") {
				v.addr("storage.address", strings.TrimSpace(a), "redis:6379", dialPort)
			}
		}
		if sen := s.Sentinel; sen != nil {
			if sen.Master == "" {
				v.errorf("storage.sentinel.master", "sentinel needs master: the name the sentinels monitor (their \"sentinel monitor NAME ...\")")
			}
			if len(sen.Addresses) == 0 {
				v.errorf("storage.sentinel.addresses", "sentinel needs addresses: the sentinels, like [\"sentinel-1:26379\", \"sentinel-2:26379\"]")
			}
			for i, a := range sen.Addresses {
				v.addr(fmt.Sprintf("storage.sentinel.addresses[%d]", i), a, "sentinel-1:26379", dialPort)
			}
		}
		if s.TLSCAFile != "" && !s.TLS {
			v.errorf("storage.tls_ca_file", "tls_ca_file needs tls: true (it verifies Redis's TLS certificate)")
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
		case "smb":
			if len(e.Servers) == 0 {
				v.errorf(p+".servers", "smb export needs servers")
			}
			for j, srv := range e.Servers {
				if !strings.Contains(srv, ":") {
					srv += ":445"
				}
				v.addr(fmt.Sprintf("%s.servers[%d]", p, j), srv, "fs1.internal:445", dialPort)
			}
			need("share", e.Share)
			need("user", e.User)
			if e.Password == "" {
				v.errorf(p+".password", "smb export needs password or password_file (the NTLM logon)")
			}
			v.oneOf(p+".encryption", "pfx encryption", e.Encryption, pfxEncryptions)
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
			if e.ClientSecret != "" {
				// Without a secret, the managed identity (client_id picks a
				// user-assigned one).
				need("tenant_id", e.TenantID)
				need("client_id", e.ClientID)
			}
		case "":
			v.errorf(p+".type", "export needs a type: one of %s", strings.Join(exportTypes, ", "))
		default:
			v.oneOf(p+".type", "export type", e.Type, exportTypes)
		}
		v.nonNeg(p+".timeout", e.Timeout)
		for j, a := range e.Verify {
			v.addr(fmt.Sprintf("%s.verify[%d]", p, j), a, "web1.internal:443", dialPort)
		}
	}
	return names
}
