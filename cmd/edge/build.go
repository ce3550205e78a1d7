package main

// build.go is the only translator from config (YAML as data) to the typed
// options of proxy, tlsmgr, challenge and admin.

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/caddyserver/certmagic"
	"github.com/mholt/acmez/v3/acme"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/farmedge/edge/challenge"
	"github.com/farmedge/edge/config"
	"github.com/farmedge/edge/proxy"
	"github.com/farmedge/edge/tlsmgr"
	"github.com/farmedge/edge/tlsmgr/redisstore"
)

// buildLogger makes the root logger from log: {level, format}.
func buildLogger(lc config.Log) (*zap.Logger, error) {
	level, err := zapcore.ParseLevel(orDefault(lc.Level, "info"))
	if err != nil {
		return nil, fmt.Errorf("log.level: %w", err)
	}
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.TimeKey = "ts"
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
	var enc zapcore.Encoder
	switch orDefault(lc.Format, "json") {
	case "json":
		enc = zapcore.NewJSONEncoder(encCfg)
	case "text", "console":
		encCfg.EncodeLevel = zapcore.CapitalLevelEncoder
		enc = zapcore.NewConsoleEncoder(encCfg)
	default:
		return nil, fmt.Errorf("log.format: unknown format %q (json, text)", lc.Format)
	}
	core := zapcore.NewCore(enc, zapcore.Lock(os.Stderr), level)
	return zap.New(core), nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
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
	dir := orDefault(sc.Path, "/var/lib/edge")
	switch sc.Type {
	case "", "file":
		return &certmagic.FileStorage{Path: dir}, nil
	case "redis":
		opts := redisstore.Options{
			Addrs:    splitTrim(sc.Address),
			Password: sc.Password,
			DB:       sc.DB,
			Prefix:   sc.Prefix,
			Instance: deps.node,
			Metrics:  deps.metrics,
			Logger:   deps.logger,
		}
		if sc.TLS {
			opts.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
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

// managedNames lists every site host, in config order.
func managedNames(cfg *config.Config) []string {
	var names []string
	for _, s := range cfg.Sites {
		for _, h := range s.Hosts {
			names = append(names, strings.ToLower(h))
		}
	}
	return names
}

// buildTLS translates acme, listen and sites into tlsmgr.Options.
func buildTLS(cfg *config.Config, storage certmagic.Storage) (tlsmgr.Options, error) {
	opts := tlsmgr.Options{
		CA:                 orDefault(cfg.ACME.CADirectory, cfg.ACME.CA),
		Email:              cfg.ACME.Email,
		Storage:            storage,
		RenewalWindowRatio: cfg.ACME.RenewalWindowRatio,
	}
	for _, c := range cfg.ACME.Challenges {
		switch c {
		case "http-01":
			opts.HTTP01 = true
		case "tls-alpn-01":
			opts.TLSALPN01 = true
		}
	}
	if cfg.ACME.CARootFile != "" {
		pem, err := os.ReadFile(cfg.ACME.CARootFile)
		if err != nil {
			return opts, fmt.Errorf("acme.ca_root_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return opts, fmt.Errorf("acme.ca_root_file %s: no PEM certificates found", cfg.ACME.CARootFile)
		}
		opts.TrustedRoots = pool
	}
	if cfg.ACME.EAB.KeyID != "" {
		opts.EAB = &acme.EAB{KeyID: cfg.ACME.EAB.KeyID, MACKey: cfg.ACME.EAB.HMACKey}
	}
	var err error
	if opts.ListenHost, opts.HTTPPort, err = splitListen(cfg.Listen.HTTP); err != nil {
		return opts, fmt.Errorf("listen.http: %w", err)
	}
	if _, opts.TLSPort, err = splitListen(cfg.Listen.HTTPS); err != nil {
		return opts, fmt.Errorf("listen.https: %w", err)
	}
	var plain []string
	for _, s := range cfg.Sites {
		if s.DNS == "" {
			for _, h := range s.Hosts {
				plain = append(plain, strings.ToLower(h))
			}
			continue
		}
		dns, err := buildDNS(cfg, s)
		if err != nil {
			return opts, err
		}
		names := make([]string, 0, len(s.Hosts))
		for _, h := range s.Hosts {
			names = append(names, strings.ToLower(h))
		}
		opts.Groups = append(opts.Groups, tlsmgr.Group{Names: names, DNS: dns})
	}
	if len(plain) > 0 {
		opts.Groups = append([]tlsmgr.Group{{Names: plain}}, opts.Groups...)
	}
	return opts, nil
}

// buildDNS makes the DNS-01 options of a site that sets dns:.
func buildDNS(cfg *config.Config, s config.Site) (*tlsmgr.DNSOptions, error) {
	pc, ok := cfg.ACME.DNS[s.DNS]
	if !ok {
		return nil, fmt.Errorf("site %v: dns provider %q is not defined under acme.dns", s.Hosts, s.DNS)
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
		err = fmt.Errorf("dns provider %q: unknown provider type %q", s.DNS, pc.Provider)
	}
	if err != nil {
		return nil, err
	}
	// edge checks propagation itself (its errors say which resolver saw
	// what, and it removes the record when the check fails), so certmagic's
	// own check is turned off (-1). A negative timeout turns both off.
	if a := cfg.ACME; a.DNSPropagationTimeout >= 0 {
		p = challenge.WithPropagationCheck(p, challenge.Propagation{
			Resolvers: a.DNSResolvers,
			Timeout:   a.DNSPropagationTimeout,
			Interval:  a.DNSPropagationInterval,
			Delay:     a.DNSPropagationDelay,
		})
	}
	return &tlsmgr.DNSOptions{
		ProviderName: s.DNS,
		Provider:     p,
		// certmagic appends its own "." to OverrideDomain.
		OverrideDomain: strings.TrimSuffix(strings.ToLower(s.Delegate), "."),
		// certmagic still uses them to find each record's zone (SOA).
		Resolvers:          cfg.ACME.DNSResolvers,
		PropagationTimeout: -1,
	}, nil
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

// unsupported lists configured features this build does not implement yet,
// so that edge refuses to start rather than silently ignoring them.
func unsupported(cfg *config.Config) error {
	var errs []error
	if cfg.OnDemand != nil {
		errs = append(errs, errors.New("on_demand: on-demand TLS is not implemented in this build; remove the key"))
	}
	if len(cfg.Exports) > 0 {
		errs = append(errs, errors.New("exports: certificate exports are not implemented in this build; remove the key"))
	}
	if cfg.Limits.MaxConnsPerIP > 0 {
		errs = append(errs, errors.New("limits.max_conns_per_ip: not implemented in this build; set it to 0"))
	}
	return errors.Join(errs...)
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

// buildProxy translates sites, pools and trusted_proxies into proxy.Config.
func buildProxy(cfg *config.Config) (proxy.Config, error) {
	var pc proxy.Config
	var errs []error
	for _, s := range cfg.Sites {
		sc := proxy.SiteConfig{Name: strings.ToLower(s.Hosts[0]), Hosts: s.Hosts, HSTS: s.HSTS, RedirectHTTP: s.Redirect()}
		for _, r := range s.Routes {
			sc.Routes = append(sc.Routes, proxy.RouteConfig{Path: r.Path, Pool: r.Pool, MaxBody: r.MaxBodyBytes})
		}
		pc.Sites = append(pc.Sites, sc)
	}
	for name, p := range cfg.Pools {
		sel, err := proxy.NewSelector(p.Policy)
		if err != nil {
			errs = append(errs, fmt.Errorf("pool %s: %w", name, err))
			continue
		}
		pool := proxy.PoolConfig{
			Name: name, Selector: sel, Retries: p.Retries,
			Passive:  proxy.PassiveCheck{Fails: p.Passive.Fails, Window: p.Passive.Window, Cooldown: p.Passive.Cooldown},
			Timeouts: proxy.Timeouts{Connect: p.Timeouts.Connect, ResponseHeader: p.Timeouts.ResponseHeader, Idle: p.Timeouts.Idle},
		}
		if h := p.Health; h != nil {
			pool.Health = &proxy.HealthCheck{Path: h.Path, Host: h.Host, Interval: h.Interval, Timeout: h.Timeout, Expect: h.Expect, Fails: h.Fails, Passes: h.Passes}
		}
		for _, b := range p.Backends {
			u, err := url.Parse(b)
			if err != nil {
				errs = append(errs, fmt.Errorf("pool %s: backend %q: %w", name, b, err))
				continue
			}
			pool.Backends = append(pool.Backends, u)
		}
		pc.Pools = append(pc.Pools, pool)
	}
	for _, tp := range cfg.TrustedProxies {
		pfx, err := parsePrefix(tp)
		if err != nil {
			errs = append(errs, fmt.Errorf("trusted_proxies: %w", err))
			continue
		}
		pc.TrustedProxies = append(pc.TrustedProxies, pfx)
	}
	return pc, errors.Join(errs...)
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
