// Package config is edge's YAML configuration as plain data: the schema,
// its defaults, Load (file:line:col for every problem, unknown keys
// rejected, ${VAR} expansion, *_file secrets) and Validate.
//
// Only cmd/edge imports this package; it translates a *Config into the
// typed options of proxy, tlsmgr, challenge and admin. Nothing here is
// used on the request path.
package config

import (
	"maps"
	"slices"
	"time"
)

// Config is the whole file. The zero value is not valid; use Load, which
// applies defaults and validates.
type Config struct {
	Listen         Listen          `yaml:"listen"`
	Admin          Admin           `yaml:"admin"`
	ACME           ACME            `yaml:"acme"`
	OnDemand       *OnDemand       `yaml:"on_demand"`
	Storage        Storage         `yaml:"storage"`
	Cluster        Cluster         `yaml:"cluster"`
	TrustedProxies []string        `yaml:"trusted_proxies"`
	ProxyProtocol  *ProxyProtocol  `yaml:"proxy_protocol"`
	Limits         Limits          `yaml:"limits"`
	Sites          []Site          `yaml:"sites"`
	Pools          map[string]Pool `yaml:"pools"`
	Exports        []Export        `yaml:"exports"`
	// ExportCheckInterval is how often every certificate is compared with
	// what each export target has, to catch up what was missed (a target
	// that was down, an edge that died before exporting). Default 5m.
	ExportCheckInterval time.Duration `yaml:"export_check_interval"`
	Log                 Log           `yaml:"log"`

	// File is the path the config was loaded from ("" when parsed from bytes).
	File string `yaml:"-"`

	// vals is the position of each decoded value by path, such as
	// "pools[web].backends[0]" (nil for a config built in code).
	vals map[string]pos
	// poolOrder is the keys of the pools mapping in file order (nil for a
	// config built in code).
	poolOrder []string
}

// PoolNames returns the names of c.Pools in the order of the pools mapping
// in the file; names with no recorded order (a config built in code, or
// pools added after Parse) follow, sorted. It returns a new slice.
func (c *Config) PoolNames() []string {
	names := make([]string, 0, len(c.Pools))
	seen := make(map[string]bool, len(c.Pools))
	for _, n := range c.poolOrder {
		if _, ok := c.Pools[n]; ok && !seen[n] {
			seen[n] = true
			names = append(names, n)
		}
	}
	for _, n := range slices.Sorted(maps.Keys(c.Pools)) {
		if !seen[n] {
			names = append(names, n)
		}
	}
	return names
}

// Listen holds the public listeners. Defaults: http ":80", https ":443".
type Listen struct {
	HTTP  string `yaml:"http"`
	HTTPS string `yaml:"https"`
	// HTTP1 is the HTTP/1.1 server of the HTTPS listener: "edge" (the
	// default: edge's own, package h1) or "net/http" (Go's, as before
	// edge had its own). HTTP/2 is Go's either way.
	HTTP1 string `yaml:"http1"`
}

// The values of listen.http1.
const (
	HTTP1Edge    = "edge"
	HTTP1NetHTTP = "net/http"
)

// Admin is the admin listener (/metrics, /healthz, /readyz, /api/).
// Default listen: "127.0.0.1:9180". A token is required off loopback.
type Admin struct {
	Listen    string `yaml:"listen"`
	Token     string `yaml:"token"` // filled from token_file
	TokenFile string `yaml:"token_file"`
}

// ACME configures the certificate issuer.
type ACME struct {
	Email string `yaml:"email"`
	// CA is letsencrypt | letsencrypt-staging | zerossl | a directory URL.
	// Default letsencrypt. After Load, CADirectory holds the resolved URL.
	CA          string `yaml:"ca"`
	CADirectory string `yaml:"-"`
	// CAs is the list form of acme.ca (a list, or one mapping), tried in
	// order; nil when ca is a single name or URL. CAList gives the
	// effective list either way.
	CAs          []CA     `yaml:"-" list:"ca"`
	CARootFile   string   `yaml:"ca_root_file"`
	EAB          EAB      `yaml:"eab"`
	Challenges   []string `yaml:"challenges"` // http-01, tls-alpn-01; default both
	DNSResolvers []string `yaml:"dns_resolvers"`
	// DNSPropagationTimeout bounds edge's check that the TXT record is
	// visible at every DNSResolvers entry (default 2m); the check runs every
	// DNSPropagationInterval (default 2s) after DNSPropagationDelay (default 0).
	DNSPropagationTimeout  time.Duration          `yaml:"dns_propagation_timeout"`
	DNSPropagationInterval time.Duration          `yaml:"dns_propagation_interval"`
	DNSPropagationDelay    time.Duration          `yaml:"dns_propagation_delay"`
	DNS                    map[string]DNSProvider `yaml:"dns"`
	// RenewalWindowRatio is the fraction of a certificate's lifetime left
	// when renewal starts (certmagic's default 1/3 when 0). RenewAt says
	// the same from the other end; set one of them.
	RenewalWindowRatio float64 `yaml:"renewal_window_ratio"`
	// RenewAt is the share of a certificate's lifetime after which it is
	// renewed when the CA offers no ARI window (RFC 9773), 0 < RenewAt < 1:
	// 0.66 renews a 90-day certificate after about 59 days, a 6-day one
	// after about 4. 0: RenewalWindowRatio decides. certmagic is given
	// 1-RenewAt, the share left (its RenewalWindowRatio).
	RenewAt float64 `yaml:"renew_at"`
	// ARIRefresh, when set, makes edge ask the CA for each managed
	// certificate's ARI (RFC 9773) at least this often, whatever the
	// CA's Retry-After says, and renew at once when the window has
	// started (the CA's "replace now" signal). A deliberate deviation
	// from RFC 9773 section 4.3, for operators who want faster reaction
	// and for tests; at least 1s. 0 (default): follow Retry-After.
	ARIRefresh time.Duration `yaml:"ari_refresh"`
	// Profile is the ACME profile asked for in each order
	// (draft-aaron-acme-profiles): Let's Encrypt's classic, tlsserver or
	// shortlived, or any name the CA's directory lists. "": the CA's
	// default. A site's profile replaces it.
	Profile string `yaml:"profile"`
	// IPProfiles are the profiles whose certificates may name IP
	// addresses: a site with an IP host must ask for one of them. Default
	// [shortlived], the only one Let's Encrypt issues IP certificates under.
	IPProfiles []string `yaml:"ip_profiles"`
}

// EAB is external account binding (ZeroSSL and others).
type EAB struct {
	KeyID       string `yaml:"key_id"`
	HMACKey     string `yaml:"hmac_key"`
	HMACKeyFile string `yaml:"hmac_key_file"`
}

// DNSProvider is one named DNS-01 provider. Provider is cloudflare or rfc2136.
type DNSProvider struct {
	Provider string `yaml:"provider"`
	// cloudflare
	APIToken      string `yaml:"api_token"`
	APITokenFile  string `yaml:"api_token_file"`
	ZoneToken     string `yaml:"zone_token"`
	ZoneTokenFile string `yaml:"zone_token_file"`
	// APIURL replaces https://api.cloudflare.com/client/v4 (an API proxy,
	// or a local server in tests). Empty means Cloudflare's own.
	APIURL string `yaml:"api_url"`
	// rfc2136
	Server  string `yaml:"server"`
	KeyName string `yaml:"key_name"`
	KeyAlg  string `yaml:"key_alg"`
	Key     string `yaml:"key"`
	KeyFile string `yaml:"key_file"`
}

// OnDemand enables on-demand TLS: a certificate is ordered at the first
// handshake for a name no site lists, when the catch-all site (hosts
// ["*"]) or a wildcard site matches it and the decision allows it. The
// decision asks, in order: Allow, Ask, then the rate limit.
type OnDemand struct {
	// Ask is asked GET Ask?domain=NAME; 200 allows, anything else or no
	// answer within AskTimeout refuses.
	Ask string `yaml:"ask"`
	// AskTimeout bounds one ask (default DefaultAskTimeout, 3s).
	AskTimeout time.Duration `yaml:"ask_timeout"`
	// AskCache is how long an answer of Ask, yes or no, is kept (default
	// DefaultAskCache, 1m; a negative value keeps nothing).
	AskCache time.Duration `yaml:"ask_cache"`
	// Rate such as "10/m": at most that many orders an interval; "" no limit.
	Rate string `yaml:"rate"`
	// Burst is how many orders may start at once within Rate (default: the
	// number of Rate, so "10/m" allows 10 at once, then one every 6s).
	Burst int `yaml:"burst"`
	// Allow lists the names (and *.wildcards) allowed without asking. With
	// Ask set, a name that matches none is asked; without, it is refused.
	Allow []string `yaml:"allow"`
	// RateEvents per RateInterval is Rate parsed by Load (both 0: no limit).
	RateEvents   int           `yaml:"-"`
	RateInterval time.Duration `yaml:"-"`
}

// ProxyProtocol accepts the PROXY protocol (v1 and v2) on the public
// listeners from the balancer in front: the client address it carries is
// the one used everywhere (balancing, logs, X-Forwarded-For, limits).
type ProxyProtocol struct {
	// From lists the addresses or CIDRs that may send a PROXY header; a
	// connection from elsewhere that sends one is refused.
	From []string `yaml:"from"`
	// Optional lets a connection from a listed source omit the header
	// (it is then taken as the client itself); by default it is refused.
	Optional bool `yaml:"optional"`
	// Timeout bounds reading the header (default DefaultProxyHeaderTimeout).
	Timeout time.Duration `yaml:"timeout"`
}

// Storage is where certificates, the ACME account and challenge tokens live.
// Type file (default, Path default /var/lib/edge) or redis. Compare two
// Storages with Equal (Sentinel is a pointer).
type Storage struct {
	Type string `yaml:"type"`
	Path string `yaml:"path"`
	// Address is one Redis server (host:port), or a comma-separated Redis
	// Cluster seed list; with Sentinel it stays empty.
	Address string `yaml:"address"`
	// Username is the Redis ACL user (Redis 6+) that Password belongs to;
	// empty: the default user (requirepass, or no AUTH without Password).
	Username     string `yaml:"username"`
	Password     string `yaml:"password"`
	PasswordFile string `yaml:"password_file"`
	// TLS talks TLS to Redis (and to the sentinels), verified against the
	// system roots or TLSCAFile.
	TLS bool `yaml:"tls"`
	// TLSCAFile holds the PEM roots that verify Redis's certificate
	// instead of the system roots (an internal CA); only with TLS.
	TLSCAFile string `yaml:"tls_ca_file"`
	Prefix    string `yaml:"prefix"`
	DB        int    `yaml:"db"`
	// Sentinel, if set, finds the master through Redis Sentinel instead
	// of Address; nil: no Sentinel.
	Sentinel *Sentinel `yaml:"sentinel"`
}

// Sentinel names the master a set of Redis Sentinels monitor. Username and
// Password authenticate to the sentinels themselves (their own ACL or
// requirepass), apart from Storage's, which go to the master.
type Sentinel struct {
	// Master is the name in the sentinels' "sentinel monitor NAME ...".
	Master string `yaml:"master"`
	// Addresses are the sentinels (host:port, usually port 26379).
	Addresses    []string `yaml:"addresses"`
	Username     string   `yaml:"username"`
	Password     string   `yaml:"password"`
	PasswordFile string   `yaml:"password_file"`
}

// Equal reports whether s and o describe the same storage, field by field
// (Sentinel by value).
func (s Storage) Equal(o Storage) bool {
	a, b := s.Sentinel, o.Sentinel
	s.Sentinel, o.Sentinel = nil, nil
	if s != o || (a == nil) != (b == nil) {
		return false
	}
	if a == nil {
		return true
	}
	return a.Master == b.Master && slices.Equal(a.Addresses, b.Addresses) &&
		a.Username == b.Username && a.Password == b.Password && a.PasswordFile == b.PasswordFile
}

// Cluster lists peers asked for HTTP-01 tokens this instance does not know.
type Cluster struct {
	Peers      []string `yaml:"peers"`
	Secret     string   `yaml:"secret"`
	SecretFile string   `yaml:"secret_file"`
}

// Limits are server-side limits on the public listeners. ApplyDefaults
// replaces each zero duration or size by its Default* value.
type Limits struct {
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"` // default 10s
	// ReadTimeout bounds reading the whole request, headers and body
	// (default DefaultReadTimeout, 60s).
	ReadTimeout time.Duration `yaml:"read_timeout"`
	// WriteTimeout is the longest the client may take to accept each write
	// of the response, like nginx's send_timeout, not a bound on the whole
	// response (default DefaultWriteTimeout, 60s).
	WriteTimeout   time.Duration `yaml:"write_timeout"`
	IdleTimeout    time.Duration `yaml:"idle_timeout"`     // default 120s
	MaxHeaderBytes int           `yaml:"max_header_bytes"` // default 65536
	// MaxConnsPerIP caps the open connections from one client address,
	// over both public listeners; beyond it a connection is closed at
	// accept, before TLS (0: unlimited).
	MaxConnsPerIP int `yaml:"max_conns_per_ip"`
	// Rate limits the requests of one client address to one site, such as
	// "100/s"; beyond it the answer is 429 with Retry-After. "" is no limit;
	// a site's rate replaces it.
	Rate string `yaml:"rate"`
	// RateBurst is how many requests may come at once (default: the number
	// of Rate).
	RateBurst int `yaml:"rate_burst"`
	// RateEvents per RateInterval is Rate parsed by Load (both 0: no limit).
	RateEvents   int           `yaml:"-"`
	RateInterval time.Duration `yaml:"-"`
}

// Site is a set of host names served by the same routes.
type Site struct {
	Hosts []string `yaml:"hosts"`
	// RedirectHTTP defaults to true (nil means default).
	RedirectHTTP *bool    `yaml:"redirect_http"`
	HSTS         int      `yaml:"hsts"` // max-age seconds; 0 = no header
	Exports      []string `yaml:"exports"`
	Routes       []Route  `yaml:"routes"`
	DNS          string   `yaml:"dns"`
	Delegate     string   `yaml:"delegate"`
	// Profile replaces acme.profile for this site's names ("": acme's).
	Profile string `yaml:"profile"`
	// Rate replaces limits.rate for this site ("off": no limit).
	Rate string `yaml:"rate"`
	// Headers change requests to the backends and responses to clients.
	Headers Headers `yaml:"headers"`
	// Maintenance answers every request with 503, the 503 page and
	// Retry-After, without contacting a backend; the ACME challenge path
	// still works.
	Maintenance bool `yaml:"maintenance"`
	// ErrorPages maps "502", "503" and "504" to HTML files, the bodies of
	// those answers when edge gives them itself (read at load and reload).
	ErrorPages map[string]string `yaml:"error_pages"`
	// Compress compresses the site's text responses that the backend did
	// not compress: "compress: true", or a mapping (see Compress); nil or
	// false: none.
	Compress *Compress `yaml:"compress"`
	// RateEvents per RateInterval is the effective rate, from Rate or
	// limits.rate, parsed by Load (both 0: no limit); RateBurst likewise.
	RateEvents   int           `yaml:"-"`
	RateInterval time.Duration `yaml:"-"`
	RateBurst    int           `yaml:"-"`
}

// Redirect reports whether plain HTTP is redirected to HTTPS.
func (s Site) Redirect() bool { return s.RedirectHTTP == nil || *s.RedirectHTTP }

// Route maps a path prefix to a pool.
type Route struct {
	Path string `yaml:"path"`
	Pool string `yaml:"pool"`
	// MaxBody is a size such as "10MB"; MaxBodyBytes is the parsed value (0 = unlimited).
	MaxBody      string `yaml:"max_body"`
	MaxBodyBytes int64  `yaml:"-"`
	// Headers apply after the site's.
	Headers Headers `yaml:"headers"`
}

// Headers are header rules for requests and responses.
type Headers struct {
	Request  HeaderRules `yaml:"request"`
	Response HeaderRules `yaml:"response"`
}

// HeaderRules remove, then set (replacing), then add headers. Values may
// hold {client_ip}, {host}, {scheme}, {method} and {path}.
type HeaderRules struct {
	Set    map[string]string `yaml:"set"`
	Add    map[string]string `yaml:"add"`
	Remove []string          `yaml:"remove"`
}

// Pool is a group of backends.
type Pool struct {
	Policy string `yaml:"policy"` // round_robin (default) | least_conn | random | ip_hash | cookie | first | hash
	// Hash is policy hash's key: {header: NAME} or {cookie: NAME}, and
	// how requests without it are balanced (see PoolHash).
	Hash *PoolHash `yaml:"hash"`
	// Backends are URLs, each alone or with a weight:
	// ["http://10.0.0.11:8080", {url: "http://10.0.0.12:8080", weight: 3}].
	Backends []Backend `yaml:"backends"`
	Health   *Health   `yaml:"health"`
	Passive  Passive   `yaml:"passive"`
	Retries  int       `yaml:"retries"`
	// RetryOn lists what an idempotent request is retried on, on another
	// backend, up to Retries: connect (always, as nothing was sent),
	// timeout (no response headers within timeouts.response_header), and
	// status codes 500-599 such as 502, 503, 504. Default [connect].
	RetryOn []string `yaml:"retry_on"`
	// TryTimeout bounds the wait for the response headers of each try
	// that can be retried (retry_on has timeout; an idempotent request;
	// retries and backends left); the last try and other requests wait
	// timeouts.response_header. 0: every try waits response_header.
	TryTimeout time.Duration `yaml:"try_timeout"`
	// RetryWindow: no retry starts later than this after the first try
	// started (0: retries alone bounds them).
	RetryWindow time.Duration `yaml:"retry_window"`
	Timeouts    Timeouts      `yaml:"timeouts"`
	// MaxConns caps the requests in flight to each backend of the pool
	// (0: no cap). A request that finds every backend at its cap waits in
	// the pool's queue.
	MaxConns int `yaml:"max_conns"`
	// Queue is how many requests may wait for a backend under MaxConns
	// (nil: DefaultQueue; 0: none wait, they get 503 at once).
	Queue *int `yaml:"queue"`
	// QueueTimeout is the longest a request waits in the queue before 503
	// (default DefaultQueueTimeout).
	QueueTimeout time.Duration `yaml:"queue_timeout"`
	// HostHeader replaces the Host the backends get (an IIS binding on an
	// internal name); "" passes the client's. X-Forwarded-Host carries the
	// client's.
	HostHeader string `yaml:"host_header"`
	// TLS configures the connections to https:// backends; nil verifies
	// them against the system roots, with the backend's host as SNI.
	TLS *PoolTLS `yaml:"tls"`
	// Protocol is http (default: HTTP/1.1, or HTTP/2 to https backends
	// that offer it by ALPN) or h2c (HTTP/2 without TLS to http://
	// backends, for gRPC).
	Protocol string `yaml:"protocol"`
}

// PoolTLS is how edge talks TLS to a pool's https:// backends.
type PoolTLS struct {
	// CAFile holds the PEM roots that verify the backends (an internal
	// CA); empty: the system roots.
	CAFile string `yaml:"ca_file"`
	// ServerName is the SNI sent and the name verified; empty: the
	// backend URL's host.
	ServerName string `yaml:"server_name"`
	// ClientCertFile and ClientKeyFile are the certificate edge presents
	// to backends that ask for one (both or neither).
	ClientCertFile string `yaml:"client_cert_file"`
	ClientKeyFile  string `yaml:"client_key_file"`
	// InsecureSkipVerify accepts any backend certificate; edge warns at
	// every start and reload.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// Backend is one server of a pool. In YAML a URL alone stands for {url: URL}.
type Backend struct {
	URL string `yaml:"url,shorthand"`
	// Weight is the backend's share of new requests against the others of
	// its pool (round_robin, least_conn, random); 0 means 1.
	Weight int `yaml:"weight"`
}

// URLs returns the URLs of p's backends, in order.
func (p Pool) URLs() []string {
	out := make([]string, len(p.Backends))
	for i, b := range p.Backends {
		out[i] = b.URL
	}
	return out
}

// QueueSize is *Queue, or 0 when Queue is nil (before ApplyDefaults).
func (p Pool) QueueSize() int {
	if p.Queue == nil {
		return 0
	}
	return *p.Queue
}

// Health is the active health check; nil disables it.
type Health struct {
	Path     string        `yaml:"path"`     // default /
	Interval time.Duration `yaml:"interval"` // default 5s
	Timeout  time.Duration `yaml:"timeout"`  // default 2s
	Expect   int           `yaml:"expect"`   // default 200
	Fails    int           `yaml:"fails"`    // default 2
	Passes   int           `yaml:"passes"`   // default 2
	// Host is sent as the probe's Host header (IIS sites bound by host
	// name); "" sends the backend's address.
	Host string `yaml:"host"`
}

// Passive ejects a backend after Fails failures within Window for Cooldown.
// The check is on when Enabled is nil or true and Fails is above 0; use On
// and FailCount rather than the pointers. ApplyDefaults sets a nil Fails to
// 3 (an explicit 0 turns the check off), a zero Window to 10s and a zero
// Cooldown to 30s.
type Passive struct {
	// Enabled nil means true; false turns passive checks off.
	Enabled *bool `yaml:"enabled"`
	// Fails nil means the default, 3; 0 turns passive checks off.
	Fails    *int          `yaml:"fails"`
	Window   time.Duration `yaml:"window"`
	Cooldown time.Duration `yaml:"cooldown"`
}

// On reports whether passive checks run: Enabled is nil or true, and
// FailCount is above 0.
func (p Passive) On() bool { return (p.Enabled == nil || *p.Enabled) && p.FailCount() > 0 }

// FailCount is the number of failures within Window that ejects a backend:
// *Fails, or 0 when Fails is nil (before ApplyDefaults).
func (p Passive) FailCount() int {
	if p.Fails == nil {
		return 0
	}
	return *p.Fails
}

// Timeouts for talking to backends. Defaults: connect 3s, response_header 30s, idle 90s.
type Timeouts struct {
	Connect        time.Duration `yaml:"connect"`
	ResponseHeader time.Duration `yaml:"response_header"`
	Idle           time.Duration `yaml:"idle"`
}

// Export is one destination for new certificates.
type Export struct {
	Name string `yaml:"name"`
	Type string `yaml:"type"` // pem_dir | pfx_dir | smb | sftp | exec | azure_keyvault
	// Path is the directory written: local (pem_dir, pfx_dir), inside the
	// share (smb), on each host (sftp).
	Path string `yaml:"path"`
	// Password protects the PFX (pfx_dir), or logs on (smb, sftp).
	Password     string `yaml:"password"`
	PasswordFile string `yaml:"password_file"`
	// Encryption of PFX files: modern (AES-256) or legacy (3DES and SHA-1,
	// for Windows Server 2016 and older). Default modern.
	Encryption string   `yaml:"encryption"`
	Hosts      []string `yaml:"hosts"` // sftp: host:port (port 22 when missing)
	User       string   `yaml:"user"`
	KeyFile    string   `yaml:"key_file"`
	KnownHosts string   `yaml:"known_hosts"`
	Then       string   `yaml:"then"` // sftp: remote command after the files are in place
	// smb: the servers of the share (host:port, 445 when missing), the
	// share, the NTLM domain and the PFX password (password logs on).
	Servers         []string `yaml:"servers"`
	Share           string   `yaml:"share"`
	Domain          string   `yaml:"domain"`
	PFXPassword     string   `yaml:"pfx_password"`
	PFXPasswordFile string   `yaml:"pfx_password_file"`
	Command         []string `yaml:"command"` // exec: argv, {name} replaced
	// Timeout bounds one delivery to one host. Default 30s for exec, 60s
	// for the others.
	Timeout          time.Duration `yaml:"timeout"`
	Vault            string        `yaml:"vault"`
	TenantID         string        `yaml:"tenant_id"`
	ClientID         string        `yaml:"client_id"`
	ClientSecret     string        `yaml:"client_secret"` // empty: managed identity
	ClientSecretFile string        `yaml:"client_secret_file"`
	// Verify lists host:port addresses that must serve the new certificate
	// after a delivery (the proof of delivery); until they do, it is retried.
	Verify []string `yaml:"verify"`
}

// Log configures logging. Defaults: level info, format json, access true.
type Log struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"` // json | text
	Access *bool  `yaml:"access"`
	// AccessQuery logs the query string in access lines; nil means true
	// (false: it may carry tokens).
	AccessQuery *bool `yaml:"access_query"`
}
