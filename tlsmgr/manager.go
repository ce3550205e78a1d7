// Package tlsmgr manages edge's certificates with certmagic: one cache for
// the life of the process, one certmagic.Config per group of names that
// share an issuer setup (a DNS provider, say), events turned into status and
// metrics, and the TLS configuration of the public HTTPS listener.
//
// It never uses certmagic's package-level defaults (certmagic.Default,
// certmagic.HTTPS): everything is built from Options.
package tlsmgr

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/libdns/libdns"
	"github.com/mholt/acmez/v3/acme"
	"go.uber.org/zap"
)

// Options configure a Manager. The zero value is not usable: CA, Storage and
// at least one Group are required.
type Options struct {
	// CA is the ACME directory URL, used verbatim: certmagic keys storage
	// (accounts, certificates, challenge tokens) by it, so every edge sharing
	// a store must spell it the same way.
	CA    string
	Email string
	// TrustedRoots verify the CA's own HTTPS API; nil means the system roots.
	TrustedRoots *x509.CertPool
	// EAB is external account binding; nil for none.
	EAB *acme.EAB
	// HTTP01 and TLSALPN01 enable those challenges for groups without DNS.
	HTTP01, TLSALPN01 bool
	// HTTPPort and TLSPort are the ports of edge's own :80 and :443
	// listeners. certmagic is told about them so it never binds a listener
	// of its own: edge's listeners answer the challenges.
	HTTPPort, TLSPort int
	// ListenHost is the host part of those listeners ("" for all addresses).
	ListenHost string
	// Storage holds accounts, certificates, locks and challenge tokens.
	Storage certmagic.Storage
	// RenewalWindowRatio is certmagic's; 0 uses its default (1/3).
	RenewalWindowRatio float64
	// Groups are the managed names, by issuer setup.
	Groups []Group
	// OnObtained is called (in its own goroutine) after this instance has
	// obtained or renewed a certificate for name. Nil: nothing.
	OnObtained func(name string)
	// Logger is used for certmagic and edge's own messages; nil discards.
	Logger *zap.Logger
	// Metrics receives counters; nil: none.
	Metrics *Metrics
}

// Group is a set of names obtained the same way.
type Group struct {
	Names []string
	// DNS, when set, makes the names use DNS-01 only.
	DNS *DNSOptions
}

// DNSOptions configure DNS-01 for a group.
type DNSOptions struct {
	// ProviderName labels errors and logs ("cf", "lan").
	ProviderName string
	Provider     DNSProvider
	// OverrideDomain writes the TXT record at a delegated name
	// (a CNAME target of _acme-challenge.NAME).
	OverrideDomain     string
	Resolvers          []string
	PropagationTimeout time.Duration
	PropagationDelay   time.Duration
}

// DNSProvider is what certmagic needs from a libdns provider.
type DNSProvider interface {
	libdns.RecordAppender
	libdns.RecordDeleter
}

// Manager owns the certmagic cache and the configs built on it. Apply may be
// called again on reload; the cache and certificates already loaded survive.
// Safe for concurrent use.
type Manager struct {
	logger  *zap.Logger
	metrics *Metrics
	cache   *certmagic.Cache
	// challenges counts edge_acme_challenges_total from the ACME client's log.
	challenges *challengeCounter

	cur    atomic.Pointer[generation]
	status *statusBook

	mu       sync.Mutex // serialises Apply
	wg       sync.WaitGroup
	renewing sync.Map // name -> true while a forced renewal runs
	stopped  atomic.Bool
}

// generation is the state built by one Apply.
type generation struct {
	opts    Options
	configs []*certmagic.Config
	issuers []*certmagic.ACMEIssuer
	byName  map[string]*certmagic.Config
	names   []string
	ctx     context.Context
	cancel  context.CancelFunc
}

// New makes a Manager with its certificate cache. Call Apply to manage names
// and Stop to end maintenance.
func New(logger *zap.Logger, metrics *Metrics) *Manager {
	if logger == nil {
		logger = zap.NewNop()
	}
	m := &Manager{logger: logger, metrics: metrics, status: newStatusBook(), challenges: newChallengeCounter(metrics)}
	m.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert: m.configForCert,
		Logger:           logger.Named("cache"),
	})
	return m
}

func (m *Manager) configForCert(cert certmagic.Certificate) (*certmagic.Config, error) {
	g := m.cur.Load()
	if g == nil {
		return nil, errors.New("no configuration applied")
	}
	for _, n := range cert.Names {
		if c, ok := g.byName[n]; ok {
			return c, nil
		}
	}
	return g.configs[0], nil
}

// Apply builds certmagic configs for opts, swaps them in and starts managing
// every name asynchronously (certmagic retries failed orders with back-off).
// Names no longer configured stop being maintained. ctx bounds the
// background work of this generation.
func (m *Manager) Apply(ctx context.Context, opts Options) error {
	if opts.CA == "" {
		return errors.New("no ACME directory URL")
	}
	if opts.Storage == nil {
		return errors.New("no storage")
	}
	if len(opts.Groups) == 0 {
		return errors.New("no names to manage")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.metrics.initOrders(opts.CA)

	gctx, cancel := context.WithCancel(ctx)
	g := &generation{opts: opts, byName: map[string]*certmagic.Config{}, ctx: gctx, cancel: cancel}
	for _, grp := range opts.Groups {
		cfg, iss := m.buildConfig(opts, grp)
		g.configs = append(g.configs, cfg)
		g.issuers = append(g.issuers, iss)
		for _, n := range grp.Names {
			g.byName[n] = cfg
			g.names = append(g.names, n)
		}
	}
	old := m.cur.Swap(g)
	m.status.setNames(g.names)

	if old != nil {
		var gone []certmagic.SubjectIssuer
		for _, n := range old.names {
			if _, ok := g.byName[n]; !ok {
				gone = append(gone, certmagic.SubjectIssuer{Subject: n})
			}
		}
		if len(gone) > 0 {
			m.cache.RemoveManaged(gone)
		}
		old.cancel()
	}
	for i, grp := range opts.Groups {
		if err := g.configs[i].ManageAsync(gctx, grp.Names); err != nil {
			return fmt.Errorf("managing %v: %w", grp.Names, err)
		}
	}
	return nil
}

func (m *Manager) buildConfig(opts Options, grp Group) (*certmagic.Config, *certmagic.ACMEIssuer) {
	log := m.logger
	tmpl := certmagic.Config{
		RenewalWindowRatio: opts.RenewalWindowRatio,
		Storage:            opts.Storage,
		Logger:             log,
		OnEvent:            m.onEvent(opts),
	}
	cfg := certmagic.New(m.cache, tmpl)
	iss := certmagic.NewACMEIssuer(cfg, certmagic.ACMEIssuer{
		CA:                      opts.CA,
		Email:                   opts.Email,
		Agreed:                  true,
		ExternalAccount:         opts.EAB,
		TrustedRoots:            opts.TrustedRoots,
		DisableHTTPChallenge:    !opts.HTTP01 || grp.DNS != nil,
		DisableTLSALPNChallenge: !opts.TLSALPN01 || grp.DNS != nil,
		ListenHost:              opts.ListenHost,
		AltHTTPPort:             opts.HTTPPort,
		AltTLSALPNPort:          opts.TLSPort,
		Logger:                  log.Named("acme").WithOptions(zap.WrapCore(m.challenges.wrap)),
	})
	if grp.DNS != nil {
		iss.DNS01Solver = &certmagic.DNS01Solver{
			DNSManager: certmagic.DNSManager{
				DNSProvider:        grp.DNS.Provider,
				Resolvers:          grp.DNS.Resolvers,
				PropagationTimeout: grp.DNS.PropagationTimeout,
				PropagationDelay:   grp.DNS.PropagationDelay,
				OverrideDomain:     grp.DNS.OverrideDomain,
				Logger:             log.Named("dns01").With(zap.String("provider", grp.DNS.ProviderName)),
			},
		}
	}
	cfg.Issuers = []certmagic.Issuer{iss}
	return cfg, iss
}

// onEvent turns certmagic's events into status and metrics.
func (m *Manager) onEvent(opts Options) func(ctx context.Context, event string, data map[string]any) error {
	return func(ctx context.Context, event string, data map[string]any) error {
		name, _ := data["identifier"].(string)
		switch event {
		case "cert_obtaining":
			m.status.set(name, StateObtaining, "")
		case "cert_obtained":
			m.status.set(name, StateValid, "")
			m.metrics.order(opts.CA, "success")
			if opts.OnObtained != nil {
				m.wg.Add(1)
				go func() {
					defer m.wg.Done()
					opts.OnObtained(name)
				}()
			}
		case "cert_failed":
			msg := "unknown error"
			if err, ok := data["error"].(error); ok && err != nil {
				if errors.Is(err, context.Canceled) {
					// Stopped by a reload or shutdown, not refused by the CA.
					m.challenges.failPending(name, true)
					m.status.set(name, StatePending, "")
					return nil
				}
				msg = err.Error()
			}
			m.challenges.failPending(name, false)
			m.status.set(name, StateFailed, msg)
			m.metrics.order(opts.CA, "failure")
		}
		return nil
	}
}

// TLSConfig returns the server TLS configuration: certificates from the
// cache (a name that is not managed fails the handshake at once and never
// starts an order), TLS 1.2 minimum with AEAD suites only, ALPN h2,
// http/1.1 and acme-tls/1 (TLS-ALPN-01 on the same listener).
func (m *Manager) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Go's default TLS 1.2 list still has CBC suites (LUCKY13 findings).
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
			tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
		NextProtos:     []string{"h2", "http/1.1", acmeTLS1},
		GetCertificate: m.getCertificate,
		// Called once the handshake has completed (also on resumption), so
		// "ok" counts finished handshakes, not certificates handed out.
		VerifyConnection: func(cs tls.ConnectionState) error {
			if cs.NegotiatedProtocol != acmeTLS1 {
				m.metrics.handshake("ok")
			}
			return nil
		},
	}
}

const acmeTLS1 = "acme-tls/1"

func (m *Manager) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	g := m.cur.Load()
	if g == nil {
		m.metrics.handshake("no_config")
		return nil, errors.New("no configuration")
	}
	cfg := g.configs[0]
	if c, ok := g.byName[normalise(hello.ServerName)]; ok {
		cfg = c
	}
	cert, err := cfg.GetCertificate(hello)
	if err != nil {
		m.metrics.handshake("no_certificate")
		return nil, err
	}
	return cert, nil
}

// HandleHTTPChallenge answers an HTTP-01 request if this instance or another
// sharing the storage started the challenge. It reports whether it answered
// and from where: "local" (this process presented it) or "storage" (another
// instance did).
func (m *Manager) HandleHTTPChallenge(w http.ResponseWriter, r *http.Request) (bool, string) {
	g := m.cur.Load()
	if g == nil {
		return false, ""
	}
	host := normalise(hostOnly(r.Host))
	source := "storage"
	if _, ok := certmagic.GetACMEChallenge(host); ok {
		source = "local"
	}
	iss := g.issuers[0]
	if c, ok := g.byName[host]; ok {
		for i, cfg := range g.configs {
			if cfg == c {
				iss = g.issuers[i]
			}
		}
	}
	if iss.HandleHTTPChallenge(w, r) {
		return true, source
	}
	// A name of another group (a DNS group disables HTTP-01) may still be
	// answered by any issuer with HTTP-01 on, since storage is shared.
	for _, other := range g.issuers {
		if other != iss && other.HandleHTTPChallenge(w, r) {
			return true, source
		}
	}
	return false, ""
}

// Renew forces a renewal of name in the background and returns at once
// (certmagic's RenewCertAsync runs, with its retries, in the caller). When
// it succeeds the new certificate is loaded into the cache and the old one
// dropped, so it serves at once. The generation's context bounds it.
func (m *Manager) Renew(_ context.Context, name string) error {
	g := m.cur.Load()
	if g == nil {
		return errors.New("no configuration")
	}
	name = normalise(name)
	cfg, ok := g.byName[name]
	if !ok {
		return fmt.Errorf("%s: %w", name, ErrNotManaged)
	}
	if m.stopped.Load() {
		return errors.New("stopping")
	}
	if _, busy := m.renewing.LoadOrStore(name, true); busy {
		return fmt.Errorf("%s: %w", name, ErrRenewing)
	}
	var old []string
	for _, c := range m.cache.AllMatchingCertificates(name) {
		if slices.Contains(c.Names, name) {
			old = append(old, c.Hash())
		}
	}
	m.wg.Go(func() {
		defer m.renewing.Delete(name)
		log := m.logger.With(zap.String("identifier", name))
		if err := cfg.RenewCertAsync(g.ctx, name, true); err != nil {
			log.Error("forced renewal failed; the current certificate keeps serving", zap.Error(err))
			return
		}
		fresh, err := cfg.CacheManagedCertificate(g.ctx, name)
		if err != nil {
			log.Error("loading the renewed certificate", zap.Error(err))
			return
		}
		m.cache.Remove(slices.DeleteFunc(old, func(h string) bool { return h == fresh.Hash() }))
		log.Info("forced renewal done; serving the new certificate")
	})
	return nil
}

// Errors of Renew.
var (
	ErrNotManaged = errors.New("name not managed")
	ErrRenewing   = errors.New("a forced renewal is already running")
)

// Stop ends certificate maintenance, releases this instance's locks and
// waits for export callbacks.
func (m *Manager) Stop() {
	if m.stopped.Swap(true) {
		return
	}
	if g := m.cur.Load(); g != nil {
		g.cancel()
		certmagic.CleanUpOwnLocks(context.Background(), m.logger)
	}
	m.cache.Stop()
	m.wg.Wait()
}
