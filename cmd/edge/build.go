package main

// build.go is the only translator from config (YAML as data) to the typed
// options of proxy, tlsmgr, challenge and admin.

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/caddyserver/certmagic"
	"github.com/mholt/acmez/v3/acme"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/farmedge/edge/challenge"
	"github.com/farmedge/edge/config"
	"github.com/farmedge/edge/export"
	"github.com/farmedge/edge/listener"
	"github.com/farmedge/edge/proxy"
	"github.com/farmedge/edge/tlsmgr"
	"github.com/farmedge/edge/tlsmgr/redisstore"
)

// buildLogger makes the root logger from log: {level, format}, as the
// config resolved them (config holds the defaults).
func buildLogger(lc config.Log) (*zap.Logger, error) {
	level, err := zapcore.ParseLevel(lc.Level)
	if err != nil {
		return nil, fmt.Errorf("log.level: %w", err)
	}
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.TimeKey = "ts"
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
	var enc zapcore.Encoder
	switch lc.Format {
	case "json":
		enc = zapcore.NewJSONEncoder(encCfg)
	case "text":
		encCfg.EncodeLevel = zapcore.CapitalLevelEncoder
		enc = zapcore.NewConsoleEncoder(encCfg)
	default:
		return nil, fmt.Errorf("log.format: unknown format %q (json, text)", lc.Format)
	}
	core := zapcore.NewCore(enc, zapcore.Lock(os.Stderr), level)
	return zap.New(core), nil
}

// storageDeps are the process-wide parts a storage needs.
type storageDeps struct {
	node    string // holder name in lock listings
	logger  *zap.Logger
	metrics *redisstore.Metrics
}

// buildStorage makes the certmagic storage named by storage.type. For
// redis it wraps the store in a tlsmgr.Mirror, a local read-only copy of
// certificates under storage.path used while Redis is unreachable.
func buildStorage(sc config.Storage, deps storageDeps) (certmagic.Storage, error) {
	dir := sc.Path
	switch sc.Type {
	case "file":
		return &certmagic.FileStorage{Path: dir}, nil
	case "redis":
		tc, err := redisTLS(sc)
		if err != nil {
			return nil, fmt.Errorf("storage: %w", err)
		}
		opts := redisstore.Options{
			Addrs:    splitTrim(sc.Address),
			Username: sc.Username,
			Password: sc.Password,
			TLS:      tc,
			DB:       sc.DB,
			Prefix:   sc.Prefix,
			Instance: deps.node,
			Metrics:  deps.metrics,
			Logger:   deps.logger,
		}
		if sen := sc.Sentinel; sen != nil {
			opts.Addrs, opts.MasterName = sen.Addresses, sen.Master
			opts.SentinelUsername, opts.SentinelPassword = sen.Username, sen.Password
		}
		rs, err := redisstore.New(opts)
		if err != nil {
			return nil, fmt.Errorf("storage: %w", err)
		}
		// The store's keepalive holds a live holder's lock; certmagic's
		// minutes-long lease requests would only keep a crashed holder's.
		return &tlsmgr.Mirror{Storage: rs, Dir: filepath.Join(dir, "redis-copy"), Logger: deps.logger, MaxLockLease: redisstore.DefaultLockLease}, nil
	}
	return nil, fmt.Errorf("storage.type %q is not supported by this build", sc.Type)
}

// redisTLS is the TLS configuration for Redis and its sentinels: nil
// without storage.tls; with tls_ca_file, that file's roots alone (an
// internal CA), else the system roots.
func redisTLS(sc config.Storage) (*tls.Config, error) {
	if !sc.TLS {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if sc.TLSCAFile != "" {
		pem, err := os.ReadFile(sc.TLSCAFile)
		if err != nil {
			return nil, fmt.Errorf("tls_ca_file: %w", err)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls_ca_file %s: no PEM certificates found", sc.TLSCAFile)
		}
		tc.RootCAs = roots
	}
	return tc, nil
}

// splitTrim splits a comma-separated list and trims each item.
func splitTrim(s string) []string {
	var out []string
	for p := range strings.SplitSeq(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// managedNames lists every site host, in config order, but the catch-all
// "*" (whose names come on demand).
func managedNames(cfg *config.Config) []string {
	var names []string
	for _, s := range cfg.Sites {
		for _, h := range s.Hosts {
			if h != config.CatchAll {
				names = append(names, strings.ToLower(h))
			}
		}
	}
	return names
}

// hasCatchAll reports whether a site lists the catch-all host "*".
func hasCatchAll(cfg *config.Config) bool {
	for _, s := range cfg.Sites {
		if slices.Contains(s.Hosts, config.CatchAll) {
			return true
		}
	}
	return false
}

// buildTLS translates acme, listen and sites into tlsmgr.Options (Storage
// left for apply to fill). Its errors are at the config's positions.
func buildTLS(cfg *config.Config) (tlsmgr.Options, error) {
	opts := tlsmgr.Options{
		CA:                 cfg.ACME.CADirectory,
		Email:              cfg.ACME.Email,
		RenewalWindowRatio: cfg.ACME.RenewalRatio(),
		ARIRefresh:         cfg.ACME.ARIRefresh,
	}
	for _, c := range cfg.ACME.Challenges {
		switch c {
		case "http-01":
			opts.HTTP01 = true
		case "tls-alpn-01":
			opts.TLSALPN01 = true
		}
	}
	var errs []error
	// acme.ca, one CA or a list: one tlsmgr.CA each, in order.
	for i, ca := range cfg.ACME.CAList() {
		c := tlsmgr.CA{URL: ca.Directory, Profile: ca.Profile}
		if ca.CARootFile != "" {
			at := "acme.ca_root_file"
			if cfg.ACME.CAs != nil && cfg.ACME.CAs[i].CARootFile != "" {
				at = cfg.CAPath(i) + ".ca_root_file"
			}
			pem, err := os.ReadFile(ca.CARootFile)
			pool := x509.NewCertPool()
			switch {
			case err != nil:
				errs = append(errs, cfg.ErrorAt(at, "%v", err))
			case !pool.AppendCertsFromPEM(pem):
				errs = append(errs, cfg.ErrorAt(at, "%s: no PEM certificates found", ca.CARootFile))
			default:
				c.TrustedRoots = pool
			}
		}
		if ca.EAB.KeyID != "" {
			c.EAB = &acme.EAB{KeyID: ca.EAB.KeyID, MACKey: ca.EAB.HMACKey}
		}
		opts.CAs = append(opts.CAs, c)
	}
	if len(opts.CAs) == 1 { // the single form, as before
		opts.TrustedRoots, opts.EAB, opts.CAs = opts.CAs[0].TrustedRoots, opts.CAs[0].EAB, nil
	}
	var err error
	if opts.ListenHost, opts.HTTPPort, err = splitListen(cfg.Listen.HTTP); err != nil {
		errs = append(errs, cfg.ErrorAt("listen.http", "%v", err))
	}
	if _, opts.TLSPort, err = splitListen(cfg.Listen.HTTPS); err != nil {
		errs = append(errs, cfg.ErrorAt("listen.https", "%v", err))
	}
	// Names without DNS-01 form one group per profile, in config order.
	var plain []tlsmgr.Group
	for i, s := range cfg.Sites {
		if s.DNS == "" {
			own := s.Profile != ""
			k := slices.IndexFunc(plain, func(g tlsmgr.Group) bool { return g.Profile == cfg.SiteProfile(s) && g.OwnProfile == own })
			if k < 0 {
				k = len(plain)
				plain = append(plain, tlsmgr.Group{Profile: cfg.SiteProfile(s), OwnProfile: own})
			}
			for _, h := range s.Hosts {
				if h != config.CatchAll {
					plain[k].Names = append(plain[k].Names, strings.ToLower(h))
				}
			}
			continue
		}
		dns, err := buildDNS(cfg, i)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		names := make([]string, 0, len(s.Hosts))
		for _, h := range s.Hosts {
			names = append(names, strings.ToLower(h))
		}
		opts.Groups = append(opts.Groups, tlsmgr.Group{Names: names, DNS: dns, Profile: cfg.SiteProfile(s), OwnProfile: s.Profile != ""})
	}
	plain = slices.DeleteFunc(plain, func(g tlsmgr.Group) bool { return len(g.Names) == 0 }) // catch-all only
	opts.Groups = append(plain, opts.Groups...)
	// On-demand names are routed by the catch-all site only: without one,
	// a certificate obtained on demand would serve nothing (Validate warns).
	if o := cfg.OnDemand; o != nil && hasCatchAll(cfg) {
		opts.OnDemand = &tlsmgr.OnDemand{
			Allow: slices.Clone(o.Allow), Ask: o.Ask, AskTimeout: o.AskTimeout, AskCache: o.AskCache,
			RateEvents: o.RateEvents, RateInterval: o.RateInterval, Burst: o.Burst,
		}
		for _, s := range cfg.Sites {
			if slices.Contains(s.Hosts, config.CatchAll) {
				opts.OnDemand.Profile = cfg.SiteProfile(s)
			}
		}
	}
	return opts, errors.Join(errs...)
}

// buildDNS makes the DNS-01 options of site i, which sets dns:.
func buildDNS(cfg *config.Config, i int) (*tlsmgr.DNSOptions, error) {
	s := cfg.Sites[i]
	pc, ok := cfg.ACME.DNS[s.DNS]
	if !ok {
		return nil, cfg.ErrorAt(fmt.Sprintf("sites[%d].dns", i), "dns provider %q is not defined under acme.dns", s.DNS)
	}
	var (
		p   challenge.DNSProvider
		err error
	)
	switch pc.Provider {
	case "cloudflare":
		p, err = challenge.NewCloudflare(s.DNS, challenge.CloudflareOptions{APIToken: pc.APIToken, ZoneToken: pc.ZoneToken, BaseURL: pc.APIURL})
	case "rfc2136":
		p, err = challenge.NewRFC2136(s.DNS, challenge.RFC2136Options{Server: pc.Server, KeyName: pc.KeyName, KeyAlg: pc.KeyAlg, Key: pc.Key})
	default:
		err = fmt.Errorf("unknown provider type %q", pc.Provider)
	}
	if err != nil {
		return nil, errors.Join(errorsAt(cfg, "acme.dns["+s.DNS+"]", "", err)...)
	}
	// edge checks propagation itself (its errors say which resolver saw
	// what, and it removes the record when the check fails), so certmagic's
	// own check is turned off (-1). A negative timeout turns both off.
	a := cfg.ACME
	prop := challenge.Propagation{
		Resolvers: a.DNSResolvers,
		Timeout:   a.DNSPropagationTimeout,
		Interval:  a.DNSPropagationInterval,
		Delay:     a.DNSPropagationDelay,
	}
	if a.DNSPropagationTimeout >= 0 {
		p = challenge.WithPropagationCheck(p, prop)
	}
	return &tlsmgr.DNSOptions{
		ProviderName: s.DNS,
		Provider:     p,
		// Everything the provider is built from: a reload that changes
		// none of it keeps the group and its orders.
		Fingerprint: fingerprint(pc, prop),
		// certmagic appends its own "." to OverrideDomain.
		OverrideDomain: strings.TrimSuffix(strings.ToLower(s.Delegate), "."),
		// certmagic still uses them to find each record's zone (SOA).
		Resolvers:          a.DNSResolvers,
		PropagationTimeout: -1,
	}, nil
}

// fingerprint hashes the values a DNS provider is built from (secrets
// included, so only the hash is kept).
func fingerprint(vs ...any) string {
	h := sha256.New()
	for _, v := range vs {
		fmt.Fprintf(h, "%#v\x00", v)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// buildPeers makes the peer asker of cluster:, or nil when there is none.
// Peers need the shared secret: without it every ask is refused, so
// tokens placed by another edge would fail validation silently.
func buildPeers(cc config.Cluster, logger *slog.Logger) (*challenge.Peers, error) {
	if len(cc.Peers) == 0 && cc.Secret == "" {
		return nil, nil
	}
	if cc.Secret == "" {
		return nil, errors.New("cluster.peers: set cluster.secret or cluster.secret_file (the same on every edge); peers refuse unsigned asks")
	}
	return &challenge.Peers{URLs: cc.Peers, Secret: []byte(cc.Secret), Logger: logger}, nil
}

func splitListen(addr string) (string, int, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return "", 0, fmt.Errorf("port %q: %w", port, err)
	}
	return host, p, nil
}

// buildProxy translates sites, pools, trusted_proxies and limits into
// proxy.Config, pools in configuration order, and checks it as proxy.New
// would. Its errors are at the config's positions.
func buildProxy(cfg *config.Config) (proxy.Config, error) {
	pc := proxy.Config{
		AccessLog:        cfg.Log.Access == nil || *cfg.Log.Access,
		AccessLogNoQuery: cfg.Log.AccessQuery != nil && !*cfg.Log.AccessQuery,
		WriteTimeout:     cfg.Limits.WriteTimeout,
	}
	if _, port, err := splitListen(cfg.Listen.HTTPS); err == nil {
		pc.HTTPSPort = port
	}
	var errs []error
	for i, s := range cfg.Sites {
		p := fmt.Sprintf("sites[%d]", i)
		sc := proxy.SiteConfig{Name: strings.ToLower(s.Hosts[0]), Hosts: s.Hosts, HSTS: s.HSTS, RedirectHTTP: s.Redirect(),
			Rate:        proxy.RateLimit{Events: s.RateEvents, Interval: s.RateInterval, Burst: s.RateBurst},
			Maintenance: s.Maintenance,
		}
		if c := s.Compress; c.On() {
			sc.Compress = &proxy.Compression{MinSize: c.MinSizeBytes}
			if len(c.Types) > 0 { // empty: proxy's usual list
				sc.Compress.Types = c.Types
			}
			if len(c.Algorithms) > 0 {
				sc.Compress.Algorithms = c.Algorithms
			}
		}
		var err error
		if sc.RequestHeaders, sc.ResponseHeaders, err = buildHeaders(cfg, p, s.Headers); err != nil {
			errs = append(errs, err)
		}
		for code, file := range s.ErrorPages {
			page, err := buildErrorPage(code, file)
			if err != nil {
				errs = append(errs, cfg.ErrorAt(p+".error_pages["+code+"]", "%v", err))
				continue
			}
			if sc.ErrorPages == nil {
				sc.ErrorPages = map[int][]byte{}
			}
			n, _ := strconv.Atoi(code)
			sc.ErrorPages[n] = page
		}
		for j, r := range s.Routes {
			rc := proxy.RouteConfig{Path: r.Path, Pool: r.Pool, MaxBody: r.MaxBodyBytes}
			if rc.RequestHeaders, rc.ResponseHeaders, err = buildHeaders(cfg, fmt.Sprintf("%s.routes[%d]", p, j), r.Headers); err != nil {
				errs = append(errs, err)
			}
			sc.Routes = append(sc.Routes, rc)
		}
		pc.Sites = append(pc.Sites, sc)
	}
	for _, name := range cfg.PoolNames() {
		p, path := cfg.Pools[name], "pools["+name+"]"
		sel, err := proxy.NewSelector(p.Policy)
		if err != nil {
			errs = append(errs, cfg.ErrorAt(path+".policy", "%v", err))
			continue
		}
		pool := proxy.PoolConfig{
			Name: name, Selector: sel, Retries: p.Retries,
			MaxConns: p.MaxConns, Queue: p.QueueSize(), QueueTimeout: p.QueueTimeout,
			Timeouts: proxy.Timeouts{Connect: p.Timeouts.Connect, ResponseHeader: p.Timeouts.ResponseHeader, Idle: p.Timeouts.Idle},
		}
		if p.Passive.On() {
			pool.Passive = proxy.PassiveCheck{Fails: p.Passive.FailCount(), Window: p.Passive.Window, Cooldown: p.Passive.Cooldown}
		}
		pool.H2C = p.Protocol == "h2c"
		pool.HostHeader = p.HostHeader
		pool.TryTimeout, pool.RetryWindow = p.TryTimeout, p.RetryWindow
		if h := p.Hash; h != nil && p.Policy == "hash" {
			pool.Selector = &proxy.Hash{Header: h.Header, Cookie: h.Cookie, FallbackIP: h.Fallback == "ip_hash"}
		}
		for _, r := range p.RetryOn {
			timeout, status, _ := config.RetryCondition(r)
			pool.RetryOn.Timeout = pool.RetryOn.Timeout || timeout
			if status != 0 {
				pool.RetryOn.Statuses = append(pool.RetryOn.Statuses, status)
			}
		}
		if p.TLS != nil {
			tc, err := buildBackendTLS(*p.TLS)
			if err != nil {
				errs = append(errs, cfg.ErrorAt(path+".tls", "%v", err))
				continue
			}
			pool.TLS = tc
		}
		if h := p.Health; h != nil {
			pool.Health = &proxy.HealthCheck{Path: h.Path, Host: h.Host, Interval: h.Interval, Timeout: h.Timeout, Expect: h.Expect, Fails: h.Fails, Passes: h.Passes}
		}
		bad := false
		weighted := false
		for i, b := range p.Backends {
			u, err := url.Parse(b.URL)
			if err != nil {
				errs = append(errs, cfg.ErrorAt(fmt.Sprintf("%s.backends[%d]", path, i), "%v", err))
				bad = true
				continue
			}
			pool.Backends = append(pool.Backends, u)
			pool.Weights = append(pool.Weights, max(b.Weight, 1))
			weighted = weighted || b.Weight > 1
		}
		if !weighted {
			pool.Weights = nil
		}
		if !bad {
			if err := proxy.Check(proxy.Config{Pools: []proxy.PoolConfig{pool}}); err != nil {
				errs = append(errs, errorsAt(cfg, path, "", err)...)
				bad = true
			}
		}
		if !bad {
			pc.Pools = append(pc.Pools, pool)
		}
	}
	for i, tp := range cfg.TrustedProxies {
		pfx, err := parsePrefix(tp)
		if err != nil {
			errs = append(errs, cfg.ErrorAt(fmt.Sprintf("trusted_proxies[%d]", i), "%v", err))
			continue
		}
		pc.TrustedProxies = append(pc.TrustedProxies, pfx)
	}
	if len(errs) == 0 {
		if err := proxy.Check(pc); err != nil {
			errs = append(errs, errorsAt(cfg, "sites", "", err)...)
		}
	}
	return pc, errors.Join(errs...)
}

// buildHeaders translates the header rules at path (a site or a route),
// each checked as proxy will use it.
func buildHeaders(cfg *config.Config, path string, h config.Headers) (req, resp proxy.HeaderRules, err error) {
	var errs []error
	conv := func(key string, r config.HeaderRules) proxy.HeaderRules {
		pr := proxy.HeaderRules{Set: r.Set, Add: r.Add, Remove: r.Remove}
		if err := pr.Check(); err != nil {
			errs = append(errs, cfg.ErrorAt(path+".headers."+key, "%v", err))
		}
		return pr
	}
	req, resp = conv("request", h.Request), conv("response", h.Response)
	return req, resp, errors.Join(errs...)
}

// maxErrorPage bounds an error page file.
const maxErrorPage = 1 << 20

// buildErrorPage reads the page for code ("502", "503", "504").
func buildErrorPage(code, file string) ([]byte, error) {
	switch code {
	case "502", "503", "504":
	default:
		return nil, fmt.Errorf("error page for %q: edge answers 502, 503 and 504 itself; a backend's own errors pass as they are", code)
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	page, err := io.ReadAll(io.LimitReader(f, maxErrorPage+1))
	if err != nil {
		return nil, err
	}
	if len(page) > maxErrorPage {
		return nil, fmt.Errorf("%s is larger than 1 MiB", file)
	}
	return page, nil
}

// buildBackendTLS makes the client TLS configuration of a pool's https
// backends: the roots of ca_file (alone: an internal CA, not the system
// roots too), the server name, the client certificate.
func buildBackendTLS(t config.PoolTLS) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file %s: no PEM certificates found", t.CAFile)
		}
		tc.RootCAs = roots
	}
	if t.ClientCertFile != "" {
		c, err := tls.LoadX509KeyPair(t.ClientCertFile, t.ClientKeyFile)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{c}
	}
	return tc, nil
}

// buildProxyProtocol translates proxy_protocol into the public listeners'
// options (nil: off).
func buildProxyProtocol(cfg *config.Config) (listener.Options, error) {
	pp := cfg.ProxyProtocol
	if pp == nil {
		return listener.Options{}, nil
	}
	o := listener.Options{ProxyOptional: pp.Optional, HeaderTimeout: pp.Timeout}
	var errs []error
	for i, f := range pp.From {
		pfx, err := parsePrefix(f)
		if err != nil {
			errs = append(errs, cfg.ErrorAt(fmt.Sprintf("proxy_protocol.from[%d]", i), "%v", err))
			continue
		}
		o.ProxyFrom = append(o.ProxyFrom, pfx)
	}
	return o, errors.Join(errs...)
}

// parsePrefix accepts a CIDR or a bare address.
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		return netip.ParsePrefix(s)
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// plan is a configuration translated into the typed options of each
// long-lived owner (the proxy State's handlers, tlsmgr.Manager, storage).
// apply hands each its part and each applies the difference itself, so
// nothing here lists the fields that matter. Process-wide parts (State,
// Metrics, Logger, Storage) are added by apply.
type plan struct {
	cfg     *config.Config
	proxy   proxy.Config
	tls     tlsmgr.Options
	exports export.Plan
}

// buildPlan translates cfg without listening, contacting storage, a backend
// or the CA. It is what edge validate runs and what every edge run apply
// starts with, so validate refuses what run would, each error at its
// FILE:LINE:COL.
func buildPlan(cfg *config.Config) (*plan, error) {
	var errs []error
	if cfg.Storage.Type == "redis" {
		if _, err := redisTLS(cfg.Storage); err != nil {
			errs = append(errs, cfg.ErrorAt("storage.tls_ca_file", "%v", err))
		}
	}
	if _, err := buildPeers(cfg.Cluster, nil); err != nil {
		errs = append(errs, cfg.ErrorAt("cluster", "%v", err))
	}
	if _, err := buildProxyProtocol(cfg); err != nil {
		errs = append(errs, err)
	}
	pc, err := buildProxy(cfg)
	if err != nil {
		errs = append(errs, err)
	}
	topts, err := buildTLS(cfg)
	if err != nil {
		errs = append(errs, err)
	}
	ep, err := buildExports(cfg)
	if err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &plan{cfg: cfg, proxy: pc, tls: topts, exports: ep}, nil
}

// buildExports translates exports and sites[].exports into the
// dispatcher's plan: one Exporter per target (constructed here, so a key
// file or known_hosts that cannot be read is an error at its position),
// and for every managed name the targets its site selects (all when the
// site lists none).
func buildExports(cfg *config.Config) (export.Plan, error) {
	p := export.Plan{Names: map[string][]string{}}
	var errs []error
	for i, e := range cfg.Exports {
		ex, err := buildExporter(e)
		if err != nil {
			errs = append(errs, errorsAt(cfg, fmt.Sprintf("exports[%d]", i), "export "+e.Name+": ", err)...)
			continue
		}
		p.Targets = append(p.Targets, export.Target{Name: e.Name, Exporter: ex, Verify: e.Verify})
	}
	if len(cfg.Exports) == 0 {
		return p, errors.Join(errs...)
	}
	all := make([]string, 0, len(cfg.Exports))
	for _, e := range cfg.Exports {
		all = append(all, e.Name)
	}
	for _, s := range cfg.Sites {
		targets := s.Exports
		if len(targets) == 0 {
			targets = all
		}
		for _, h := range s.Hosts {
			if h != config.CatchAll { // names had on demand are not exported
				p.Names[strings.ToLower(h)] = targets
			}
		}
	}
	return p, errors.Join(errs...)
}

// buildExporter makes the Exporter of one exports entry.
func buildExporter(e config.Export) (export.Exporter, error) {
	legacy := e.Encryption == "legacy"
	switch e.Type {
	case "pem_dir":
		return export.NewPEMDir(export.PEMDirOptions{Path: e.Path})
	case "pfx_dir":
		return export.NewPFXDir(export.PFXDirOptions{Path: e.Path, Password: e.Password, Legacy: legacy})
	case "smb":
		return export.NewSMB(export.SMBOptions{Servers: e.Servers, Share: e.Share, Path: e.Path, User: e.User,
			Password: e.Password, Domain: e.Domain, PFXPassword: e.PFXPassword, Legacy: legacy, Timeout: e.Timeout})
	case "sftp":
		return export.NewSFTP(export.SFTPOptions{Hosts: e.Hosts, User: e.User, KeyFile: e.KeyFile, Password: e.Password,
			KnownHosts: e.KnownHosts, Path: e.Path, Then: e.Then, Timeout: e.Timeout})
	case "exec":
		return export.NewExec(export.ExecOptions{Command: e.Command, Timeout: e.Timeout})
	case "azure_keyvault":
		return export.NewAzureKeyVault(export.AzureKeyVaultOptions{Vault: e.Vault, TenantID: e.TenantID,
			ClientID: e.ClientID, ClientSecret: e.ClientSecret})
	}
	return nil, fmt.Errorf("export type %q is not supported by this build", e.Type)
}

// errorsAt puts each line of err (errors.Join's, a library's list) at the
// position of path, so that every line of edge validate's output has its
// FILE:LINE:COL.
func errorsAt(cfg *config.Config, path, prefix string, err error) []error {
	var out []error
	for line := range strings.SplitSeq(err.Error(), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			out = append(out, cfg.ErrorAt(path, "%s%s", prefix, line))
		}
	}
	return out
}
