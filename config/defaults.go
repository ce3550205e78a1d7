package config

import (
	"slices"
	"strings"
	"time"
)

// Well-known ACME directory URLs for the names acme.ca accepts.
const (
	LetsEncryptDirectory        = "https://acme-v02.api.letsencrypt.org/directory"
	LetsEncryptStagingDirectory = "https://acme-staging-v02.api.letsencrypt.org/directory"
	ZeroSSLDirectory            = "https://acme.zerossl.com/v2/DV90"
)

// CADirectories maps the CA names acme.ca accepts to directory URLs.
func CADirectories() map[string]string {
	return map[string]string{
		"letsencrypt":         LetsEncryptDirectory,
		"letsencrypt-staging": LetsEncryptStagingDirectory,
		"zerossl":             ZeroSSLDirectory,
	}
}

// Default values applied by ApplyDefaults.
const (
	DefaultHTTPListen        = ":80"
	DefaultHTTPSListen       = ":443"
	DefaultAdminListen       = "127.0.0.1:9180"
	DefaultCA                = "letsencrypt"
	DefaultStoragePath       = "/var/lib/edge"
	DefaultRedisPrefix       = "edge"
	DefaultReadHeaderTimeout = 10 * time.Second
	// DefaultReadTimeout bounds reading a whole request, headers and body.
	DefaultReadTimeout = 60 * time.Second
	// DefaultWriteTimeout bounds each write of a response to the client
	// (like nginx's send_timeout), not the whole response.
	DefaultWriteTimeout        = 60 * time.Second
	DefaultIdleTimeout         = 120 * time.Second
	DefaultMaxHeaderBytes      = 65536
	DefaultPolicy              = "round_robin"
	DefaultPassiveFails        = 3
	DefaultPassiveWindow       = 10 * time.Second
	DefaultPassiveCooldown     = 30 * time.Second
	DefaultTSIGAlgorithm       = "hmac-sha256"
	DefaultPFXEncryption       = "modern"
	DefaultExecTimeout         = 30 * time.Second
	DefaultExportTimeout       = 60 * time.Second
	DefaultExportCheckInterval = 5 * time.Minute
	// DefaultAskTimeout bounds one on_demand.ask request.
	DefaultAskTimeout = 3 * time.Second
	// DefaultAskCache is how long an ask answer is kept.
	DefaultAskCache = time.Minute
	// DefaultProxyHeaderTimeout bounds reading a PROXY protocol header.
	DefaultProxyHeaderTimeout = 5 * time.Second
	// DefaultProtocol is what edge speaks to backends.
	DefaultProtocol = "http"
	// DefaultQueue is how many requests may wait for a backend at max_conns.
	DefaultQueue = 100
	// DefaultQueueTimeout is the longest a request waits in that queue.
	DefaultQueueTimeout = 10 * time.Second
)

// ApplyDefaults fills every unset field with its default and resolves the
// derived fields: ACME.CADirectory from ACME.CA (a URL is kept verbatim:
// certmagic keys storage by it), Route.MaxBodyBytes from Route.MaxBody,
// OnDemand.RateEvents/RateInterval from OnDemand.Rate. Host names are
// lowercased. Values that do not parse are left for Validate to report.
// ApplyDefaults is idempotent; Load and Parse call it.
func (c *Config) ApplyDefaults() {
	setStr(&c.Listen.HTTP, DefaultHTTPListen)
	setStr(&c.Listen.HTTPS, DefaultHTTPSListen)
	setStr(&c.Listen.HTTP1, HTTP1Edge)
	setStr(&c.Admin.Listen, DefaultAdminListen)

	a := &c.ACME
	a.applyCADefaults()
	if len(a.Challenges) == 0 {
		a.Challenges = []string{"http-01", "tls-alpn-01"}
	}
	if a.IPProfiles == nil {
		a.IPProfiles = slices.Clone(DefaultIPProfiles)
	}
	if len(a.DNSResolvers) == 0 {
		a.DNSResolvers = []string{"1.1.1.1:53", "8.8.8.8:53"}
	}
	setDur(&a.DNSPropagationInterval, 2*time.Second)
	setDur(&a.DNSPropagationTimeout, 2*time.Minute)
	for name, p := range a.DNS {
		if p.Provider == "rfc2136" {
			setStr(&p.KeyAlg, DefaultTSIGAlgorithm)
			a.DNS[name] = p
		}
	}

	if o := c.OnDemand; o != nil {
		lower(o.Allow)
		if n, every, err := parseRate(o.Rate); err == nil {
			o.RateEvents, o.RateInterval = n, every
		}
		setInt(&o.Burst, o.RateEvents)
		setDur(&o.AskTimeout, DefaultAskTimeout)
		setDur(&o.AskCache, DefaultAskCache)
	}
	if pp := c.ProxyProtocol; pp != nil {
		setDur(&pp.Timeout, DefaultProxyHeaderTimeout)
	}

	setStr(&c.Storage.Type, "file")
	switch c.Storage.Type {
	case "file":
		setStr(&c.Storage.Path, DefaultStoragePath)
	case "redis":
		setStr(&c.Storage.Prefix, DefaultRedisPrefix)
	}

	setDur(&c.Limits.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	setDur(&c.Limits.ReadTimeout, DefaultReadTimeout)
	setDur(&c.Limits.WriteTimeout, DefaultWriteTimeout)
	setDur(&c.Limits.IdleTimeout, DefaultIdleTimeout)
	setInt(&c.Limits.MaxHeaderBytes, DefaultMaxHeaderBytes)
	l := &c.Limits
	if n, every, err := parseRate(l.Rate); err == nil {
		l.RateEvents, l.RateInterval = n, every
	}
	setInt(&l.RateBurst, l.RateEvents)

	for i := range c.Sites {
		s := &c.Sites[i]
		lower(s.Hosts)
		switch s.Rate {
		case "":
			s.RateEvents, s.RateInterval, s.RateBurst = l.RateEvents, l.RateInterval, l.RateBurst
		case "off":
			s.RateEvents, s.RateInterval, s.RateBurst = 0, 0, 0
		default:
			if n, every, err := parseRate(s.Rate); err == nil {
				s.RateEvents, s.RateInterval, s.RateBurst = n, every, n
			}
		}
		for j := range s.Routes {
			r := &s.Routes[j]
			if n, err := parseSize(r.MaxBody); err == nil {
				r.MaxBodyBytes = n
			}
		}
		if s.Compress != nil {
			s.Compress.applyDefaults()
		}
	}

	for name, p := range c.Pools {
		p.applyDefaults()
		c.Pools[name] = p
	}

	setDur(&c.ExportCheckInterval, DefaultExportCheckInterval)
	for i := range c.Exports {
		e := &c.Exports[i]
		switch e.Type {
		case "pfx_dir", "smb":
			setStr(&e.Encryption, DefaultPFXEncryption)
		}
		if e.Type == "exec" {
			setDur(&e.Timeout, DefaultExecTimeout)
		} else {
			setDur(&e.Timeout, DefaultExportTimeout)
		}
	}

	setStr(&c.Log.Level, "info")
	setStr(&c.Log.Format, "json")
	if c.Log.Access == nil {
		c.Log.Access = ptr(true)
	}
}

func (p *Pool) applyDefaults() {
	setStr(&p.Policy, DefaultPolicy)
	if p.Hash != nil {
		setStr(&p.Hash.Fallback, "round_robin")
	}
	if h := p.Health; h != nil {
		setStr(&h.Path, "/")
		setDur(&h.Interval, 5*time.Second)
		setDur(&h.Timeout, 2*time.Second)
		setInt(&h.Expect, 200)
		setInt(&h.Fails, 2)
		setInt(&h.Passes, 2)
	}
	if p.Passive.Enabled == nil {
		p.Passive.Enabled = ptr(true)
	}
	if p.Passive.Fails == nil {
		p.Passive.Fails = ptr(DefaultPassiveFails)
	}
	setDur(&p.Passive.Window, DefaultPassiveWindow)
	setDur(&p.Passive.Cooldown, DefaultPassiveCooldown)
	setDur(&p.Timeouts.Connect, 3*time.Second)
	setDur(&p.Timeouts.ResponseHeader, 30*time.Second)
	setDur(&p.Timeouts.Idle, 90*time.Second)
	if p.Queue == nil {
		p.Queue = ptr(DefaultQueue)
	}
	setDur(&p.QueueTimeout, DefaultQueueTimeout)
	setStr(&p.Protocol, DefaultProtocol)
	if len(p.RetryOn) == 0 {
		p.RetryOn = []string{"connect"}
	}
	// Retries stays as written: 0 means no retry.
}

func ptr[T any](v T) *T { return &v }

func setStr(p *string, v string) {
	if *p == "" {
		*p = v
	}
}

func setDur(p *time.Duration, v time.Duration) {
	if *p == 0 {
		*p = v
	}
}

func setInt(p *int, v int) {
	if *p == 0 {
		*p = v
	}
}

func lower(s []string) {
	for i := range s {
		s[i] = strings.ToLower(s[i])
	}
}
