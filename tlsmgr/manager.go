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
	"io/fs"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/libdns/libdns"
	"github.com/mholt/acmez/v3/acme"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
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
	// CAs, when set, replace CA, TrustedRoots and EAB: the CAs to order
	// from, in order (certmagic tries the next when one fails to issue).
	// Each gets its own ACMEIssuer; storage is keyed by each CA's URL.
	CAs []CA
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
	// ARIRefresh, when positive, makes the Manager fetch each managed
	// certificate's ARI (RFC 9773) from its CA at least this often,
	// whatever the CA's Retry-After, and renew at once (through
	// certmagic, so that the order names the certificate it replaces)
	// when the window says so; see ari.go. 0: certmagic follows the
	// CA's Retry-After. Every Apply takes it, without rebuilding groups.
	ARIRefresh time.Duration
	// Groups are the managed names, by issuer setup.
	Groups []Group
	// OnDemand, when set, lets a handshake for a name no Group lists obtain
	// a certificate, by HTTP-01 or TLS-ALPN-01, when its decision allows.
	// Nil: such a handshake fails and never starts an order.
	OnDemand *OnDemand
	// OnObtained is called (in its own goroutine) after this instance has
	// obtained or renewed a certificate for name. Nil: nothing.
	OnObtained func(name string)
	// OnOrder is called (in certmagic's goroutine; it must not block) when
	// an order for name ends on this instance: err nil when it obtained
	// (renewal false) or renewed a certificate, else the CA's or the
	// solver's error. An order stopped by a reload or shutdown is not
	// reported. Nil: nothing.
	OnOrder func(name string, renewal bool, err error)
	// Logger is used for certmagic and edge's own messages; nil discards.
	Logger *zap.Logger
	// Metrics receives counters; nil: none.
	Metrics *Metrics
}

// CA is one ACME CA of Options.CAs.
type CA struct {
	// URL is the ACME directory URL, used verbatim (see Options.CA).
	URL string
	// TrustedRoots verify the CA's own HTTPS API; nil: the system roots.
	TrustedRoots *x509.CertPool
	// EAB is external account binding; nil for none.
	EAB *acme.EAB
	// Profile is asked for at this CA by groups without OwnProfile ("":
	// the group's Profile).
	Profile string
}

func (c CA) equal(o CA) bool {
	return c.URL == o.URL && rootsEqual(c.TrustedRoots, o.TrustedRoots) && eabEqual(c.EAB, o.EAB) && c.Profile == o.Profile
}

// caList is Options.CAs, or the one CA of CA, TrustedRoots and EAB.
func (o Options) caList() []CA {
	if len(o.CAs) > 0 {
		return o.CAs
	}
	if o.CA == "" {
		return nil
	}
	return []CA{{URL: o.CA, TrustedRoots: o.TrustedRoots, EAB: o.EAB}}
}

// Group is a set of names obtained the same way.
type Group struct {
	Names []string
	// DNS, when set, makes the names use DNS-01 only.
	DNS *DNSOptions
	// Profile is the ACME profile asked for in the names' orders
	// (draft-aaron-acme-profiles); "" asks for the CA's default.
	Profile string
	// OwnProfile: Profile is the site's own, asked for at every CA; else a
	// CA's Profile, where set, replaces it at that CA.
	OwnProfile bool
}

// DNSOptions configure DNS-01 for a group.
type DNSOptions struct {
	// ProviderName labels errors and logs ("cf", "lan").
	ProviderName string
	Provider     DNSProvider
	// Fingerprint identifies the configuration Provider was built from
	// (a hash of its settings, secrets included): Apply keeps a group whose
	// DNSOptions, Fingerprint included, are unchanged. "" matches only "".
	Fingerprint string
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
	// cacheOpts are the cache's options; maintain changes the renewal
	// check interval in them.
	cacheOpts certmagic.CacheOptions
	// interval is cacheOpts.RenewCheckInterval, for status readers.
	interval atomic.Int64
	// ari caches the ARI stored with each certificate, for status.
	ari ariBook
	// ariRefresh is Options.ARIRefresh of the last Apply.
	ariRefresh atomic.Int64
	// challenges counts edge_acme_challenges_total from the ACME client's log.
	challenges *challengeCounter

	cur    atomic.Pointer[generation]
	status *statusBook
	// views keeps what the cache holds for each configured name.
	views certViews

	mu         sync.Mutex // serialises Apply
	base       context.Context
	baseCancel context.CancelFunc
	wg         sync.WaitGroup
	renewing   sync.Map // name -> true while a forced renewal runs
	stopped    atomic.Bool
	// decider is the on-demand decision of the current options; nil with
	// on-demand TLS off.
	decider atomic.Pointer[decider]
}

// generation is the state built by one Apply.
type generation struct {
	opts    Options
	groups  []*group
	configs []*certmagic.Config
	issuers [][]*certmagic.ACMEIssuer // of each config, in CA order
	byName  map[string]*certmagic.Config
	names   []string
	ctx     context.Context // for forced renewals: lives as long as the Manager
	// onDemand is the config of names no group lists; nil when off.
	onDemand *certmagic.Config
}

// group is the certmagic config of one Group. A reload that leaves the
// issuer setup and the group as they were keeps it, with its orders in
// flight; one that changes them cancels it.
type group struct {
	key    groupKey
	names  []string
	cfg    *certmagic.Config
	iss    []*certmagic.ACMEIssuer
	ctx    context.Context
	cancel context.CancelFunc
}

// groupKey is what makes two Groups the same to certmagic.
type groupKey struct {
	names    string // NUL-joined, in order
	dns      string // "" without DNS-01
	profile  string
	own      bool
	onDemand bool // the group of on-demand names (no names listed)
}

func keyOf(g Group) groupKey {
	k := groupKey{names: strings.Join(g.Names, "\x00"), profile: g.Profile, own: g.OwnProfile}
	if d := g.DNS; d != nil {
		k.dns = fmt.Sprintf("%s\x00%s\x00%s\x00%q\x00%d\x00%d", d.ProviderName, d.Fingerprint, d.OverrideDomain,
			d.Resolvers, d.PropagationTimeout, d.PropagationDelay)
	}
	return k
}

// sameIssuerSetup reports whether a and b configure certmagic's issuers the
// same way for every group. The fields of Options that are not compared
// here are process-wide (see processWideOptions, held by a test) or are the
// Groups, compared one by one.
func sameIssuerSetup(a, b Options) bool {
	return slices.EqualFunc(a.caList(), b.caList(), CA.equal) && a.Email == b.Email &&
		a.HTTP01 == b.HTTP01 && a.TLSALPN01 == b.TLSALPN01 &&
		a.HTTPPort == b.HTTPPort && a.TLSPort == b.TLSPort && a.ListenHost == b.ListenHost &&
		a.Storage == b.Storage && a.RenewalWindowRatio == b.RenewalWindowRatio
}

func rootsEqual(a, b *x509.CertPool) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equal(b)
}

func eabEqual(a, b *acme.EAB) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// New makes a Manager with its certificate cache. Call Apply to manage names
// and Stop to end maintenance.
func New(logger *zap.Logger, metrics *Metrics) *Manager {
	if logger == nil {
		logger = zap.NewNop()
	}
	m := &Manager{logger: logger, metrics: metrics, status: newStatusBook(), challenges: newChallengeCounter(metrics)}
	m.cacheOpts = certmagic.CacheOptions{
		GetConfigForCert: m.configForCert,
		// Its core tells views of every certificate added or removed.
		Logger: logger.Named("cache").WithOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core {
			return cacheWatchCore{c, m.views.changed}
		})),
		RenewCheckInterval: maxRenewCheck,
	}
	m.cache = certmagic.NewCache(m.cacheOpts)
	m.interval.Store(int64(maxRenewCheck))
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
	if g.onDemand != nil {
		return g.onDemand, nil // a certificate obtained on demand
	}
	return g.configs[0], nil
}

// Apply takes a new set of options and applies the difference: groups whose
// names and issuer setup are unchanged keep their certmagic config and any
// order in flight; changed or new groups get a new config and start being
// managed asynchronously (certmagic retries failed orders with back-off);
// names no longer configured stop being maintained. Options equal to the
// running ones change nothing. ctx bounds the background work of the groups
// started here (beyond a reload: cancel it, or call Stop, to end them).
func (m *Manager) Apply(ctx context.Context, opts Options) error {
	if len(opts.caList()) == 0 {
		return errors.New("no ACME directory URL")
	}
	if opts.Storage == nil {
		return errors.New("no storage")
	}
	if len(opts.Groups) == 0 && opts.OnDemand == nil {
		return errors.New("no names to manage")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stopped.Load() {
		return errors.New("stopping")
	}
	m.ariRefresh.Store(int64(opts.ARIRefresh))
	old := m.cur.Load()
	reusable := map[groupKey]*group{}
	if old != nil && sameIssuerSetup(old.opts, opts) {
		for _, og := range old.groups {
			reusable[og.key] = og
		}
	}
	for _, ca := range opts.caList() {
		m.metrics.initOrders(ca.URL)
	}
	if old == nil || !old.opts.OnDemand.equal(opts.OnDemand) {
		if opts.OnDemand != nil {
			m.decider.Store(newDecider(*opts.OnDemand, m.metrics))
		} else {
			m.decider.Store(nil)
		}
	}

	g := &generation{opts: opts, byName: map[string]*certmagic.Config{}, ctx: m.baseCtx(ctx)}
	var started []*group
	kept := map[*group]bool{}
	groups := opts.Groups
	if opts.OnDemand != nil {
		groups = append(slices.Clip(groups), Group{Profile: opts.OnDemand.Profile}) // the on-demand group lists no names
	}
	for _, grp := range groups {
		k := keyOf(grp)
		k.onDemand = len(grp.Names) == 0
		rt := reusable[k]
		if rt != nil && !kept[rt] {
			kept[rt] = true
		} else {
			cfg, iss := m.buildConfig(opts, grp, k.onDemand)
			gctx, cancel := context.WithCancel(ctx)
			rt = &group{key: k, names: slices.Clone(grp.Names), cfg: cfg, iss: iss, ctx: gctx, cancel: cancel}
			if !k.onDemand {
				started = append(started, rt)
			}
		}
		if k.onDemand {
			g.onDemand = rt.cfg
		}
		g.groups = append(g.groups, rt)
		g.configs = append(g.configs, rt.cfg)
		g.issuers = append(g.issuers, rt.iss)
		for _, n := range grp.Names {
			g.byName[n] = rt.cfg
			g.names = append(g.names, n)
		}
	}
	if old != nil && len(started) == 0 && len(old.groups) == len(g.groups) && (old.onDemand == nil) == (g.onDemand == nil) {
		// Nothing changed: keep the running generation as it is.
		return nil
	}
	m.cur.Store(g)
	m.status.setNames(g.names)
	m.views.setNames(g.names)

	if old != nil {
		var gone []certmagic.SubjectIssuer
		for _, n := range old.names {
			if _, ok := g.byName[n]; !ok {
				gone = append(gone, certmagic.SubjectIssuer{Subject: n})
			}
		}
		if len(gone) > 0 {
			m.cache.RemoveManaged(gone)
			m.ari.drop(gone)
		}
		for _, og := range old.groups {
			if !kept[og] {
				og.cancel()
			}
		}
	}
	for _, rt := range started {
		m.manage(rt) // pace.go
	}
	return nil
}

// baseCtx returns the context of forced renewals: the Manager's, made on
// first use from the first Apply's context and cancelled by Stop.
func (m *Manager) baseCtx(ctx context.Context) context.Context {
	if m.base == nil {
		m.base, m.baseCancel = context.WithCancel(ctx)
		m.wg.Go(func() { m.maintain(m.base) })
		m.wg.Go(func() { m.refreshARILoop(m.base) })
	}
	return m.base
}

func (m *Manager) buildConfig(opts Options, grp Group, onDemand bool) (*certmagic.Config, []*certmagic.ACMEIssuer) {
	// ca maps an issuer key (certmagic's, derived from the CA URL) to the
	// CA URL, the issuer label of edge_acme_orders_total.
	cas := opts.caList()
	ca := make(map[string]string, len(cas))
	log := m.logger.WithOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core {
		return issuerFailCore{stoppingCore{c, &m.stopped}, func(key string) { m.metrics.order(ca[key], "failure") }}
	}))
	tmpl := certmagic.Config{
		RenewalWindowRatio: opts.RenewalWindowRatio,
		Storage:            opts.Storage,
		Logger:             log,
		OnEvent:            m.onEventCA(opts, ca),
	}
	if onDemand {
		tmpl.OnDemand = &certmagic.OnDemandConfig{DecisionFunc: m.decide}
	}
	cfg := certmagic.New(m.cache, tmpl)
	var issuers []*certmagic.ACMEIssuer
	cfg.Issuers = nil // certmagic.New put its default (Let's Encrypt) there
	for _, c := range cas {
		iss := m.buildIssuer(cfg, log, opts, grp, c)
		ca[iss.IssuerKey()] = c.URL
		issuers = append(issuers, iss)
		cfg.Issuers = append(cfg.Issuers, iss)
	}
	return cfg, issuers
}

// buildIssuer makes the ACMEIssuer of CA c for the names of grp.
func (m *Manager) buildIssuer(cfg *certmagic.Config, log *zap.Logger, opts Options, grp Group, c CA) *certmagic.ACMEIssuer {
	profile := grp.Profile
	if c.Profile != "" && !grp.OwnProfile {
		profile = c.Profile
	}
	iss := certmagic.NewACMEIssuer(cfg, certmagic.ACMEIssuer{
		CA:                      c.URL,
		Email:                   opts.Email,
		Agreed:                  true,
		ExternalAccount:         c.EAB,
		TrustedRoots:            c.TrustedRoots,
		DisableHTTPChallenge:    !opts.HTTP01 || grp.DNS != nil,
		DisableTLSALPNChallenge: !opts.TLSALPN01 || grp.DNS != nil,
		ListenHost:              opts.ListenHost,
		AltHTTPPort:             opts.HTTPPort,
		AltTLSALPNPort:          opts.TLSPort,
		Profile:                 profile,
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
	return iss
}

// onEvent is onEventCA without issuer keys (successes are counted for "").
func (m *Manager) onEvent(opts Options) func(ctx context.Context, event string, data map[string]any) error {
	return m.onEventCA(opts, nil)
}

// onEventCA turns certmagic's events into status and metrics: a success is
// counted for the CA that issued (ca maps issuer keys to CA URLs); the
// failures, one per CA tried, are counted from certmagic's log by
// issuerFailCore, since its cert_failed event comes once, after every CA.
func (m *Manager) onEventCA(opts Options, ca map[string]string) func(ctx context.Context, event string, data map[string]any) error {
	return func(ctx context.Context, event string, data map[string]any) error {
		name, _ := data["identifier"].(string)
		renewal, _ := data["renewal"].(bool)
		switch event {
		case "cert_obtaining":
			m.status.set(name, StateObtaining, "")
		case "cert_obtained":
			m.status.set(name, StateValid, "")
			key, _ := data["issuer"].(string)
			m.metrics.order(ca[key], "success")
			if opts.OnOrder != nil {
				opts.OnOrder(name, renewal, nil)
			}
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
			failure, _ := data["error"].(error)
			m.logFailure(name, failure) // edge's own words, beside certmagic's (explain.go)
			if opts.OnOrder != nil {
				opts.OnOrder(name, renewal, errors.New(msg))
			}
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
	} else if g.onDemand != nil {
		cfg = g.onDemand // may obtain one, if the decision allows
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
	// The issuers of the name's group first (one per CA: the challenge
	// may be any CA's), then every other: a name of another group (a DNS
	// group disables HTTP-01) may still be answered by any issuer with
	// HTTP-01 on, since storage is shared.
	first := 0
	if c, ok := g.byName[host]; ok {
		first = max(indexOf(g.configs, c), 0)
	}
	order := append([][]*certmagic.ACMEIssuer{g.issuers[first]}, g.issuers...)
	for i, issuers := range order {
		if i > 0 && i-1 == first {
			continue
		}
		for _, iss := range issuers {
			if iss.HandleHTTPChallenge(w, r) {
				return true, source
			}
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
			if g.ctx.Err() != nil {
				log.Info("forced renewal stopped by shutdown", zap.Error(err))
				return
			}
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
// waits for export callbacks and forced renewals.
func (m *Manager) Stop() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stopped.Swap(true) {
		return
	}
	if g := m.cur.Load(); g != nil {
		for _, grp := range g.groups {
			grp.cancel()
		}
	}
	if m.baseCancel != nil {
		m.baseCancel()
	}
	m.cache.Stop()
	m.wg.Wait()
	// After the orders have given up: their own unlocks ran, and what is
	// left is what a canceled unlock could not remove.
	certmagic.CleanUpOwnLocks(context.Background(), m.logger)
}

// stoppingCore is the core of the loggers handed to certmagic. Once Stop
// has begun, the warnings and errors that certmagic and acmez log for work
// Stop canceled are written at debug level: certmagic logs a canceled job
// as failed ("could not get certificate from issuer", "job failed", acmez's
// "deactivating authorization"), and a job's own unlock may find its lock
// already released by CleanUpOwnLocks ("unable to unlock"): certmagic has
// no way to wait for its jobs. Neither is a failure of a clean stop.
type stoppingCore struct {
	zapcore.Core
	stopped *atomic.Bool
}

func (c stoppingCore) With(f []zapcore.Field) zapcore.Core {
	return stoppingCore{c.Core.With(f), c.stopped}
}

func (c stoppingCore) Check(ent zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if ent.Level >= zapcore.WarnLevel && c.stopped.Load() {
		return ce.AddCore(ent, c) // Write sees the fields and decides
	}
	return c.Core.Check(ent, ce)
}

func (c stoppingCore) Write(ent zapcore.Entry, fields []zapcore.Field) error {
	if ent.Level >= zapcore.WarnLevel && c.stopped.Load() && stoppedWork(ent, fields) {
		ent.Level = zapcore.DebugLevel
	}
	if !c.Core.Enabled(ent.Level) {
		return nil
	}
	return c.Core.Write(ent, fields)
}

// stoppedWork reports whether an entry logged after Stop began is about
// work Stop canceled. certmagic and acmez flatten errors with %v, so the
// text is checked as well as the chain.
func stoppedWork(ent zapcore.Entry, fields []zapcore.Field) bool {
	if ent.Message == "unable to unlock" {
		return true
	}
	for _, f := range fields {
		if err, ok := f.Interface.(error); ok && f.Type == zapcore.ErrorType {
			if errors.Is(err, context.Canceled) || strings.Contains(err.Error(), context.Canceled.Error()) {
				return true
			}
		}
	}
	return false
}

// Covers reports whether the certificate served for serverName (the TLS
// SNI) also names host, so that a request for host may be answered on that
// connection (HTTP/2 connection coalescing). Both are lower-case names
// without port. Safe for concurrent use.
//
// Only the certificates the handshake would choose from count: those that
// name serverName exactly, or, when there is none, those whose wildcard
// covers it (certmagic's order). Names are compared byte for byte (ASCII
// only: no Unicode case folding).
func (m *Manager) Covers(serverName, host string) bool {
	all := m.cache.AllMatchingCertificates(serverName)
	exact := slices.ContainsFunc(all, func(c certmagic.Certificate) bool { return slices.Contains(c.Names, serverName) })
	for _, c := range all {
		if exact && !slices.Contains(c.Names, serverName) {
			continue // the handshake serves an exact match first
		}
		for _, n := range c.Names {
			if n == host || wildcardCovers(n, host) {
				return true
			}
		}
	}
	return false
}

// wildcardCovers reports whether pattern, "*.example.com", covers host with
// exactly one label more (RFC 6125 section 6.4.3, leftmost label only).
func wildcardCovers(pattern, host string) bool {
	base, ok := strings.CutPrefix(pattern, "*.")
	if !ok {
		return false
	}
	label, rest, found := strings.Cut(host, ".")
	return found && label != "" && rest == base
}

// StoredCertificate returns the certificate of name as it is in storage
// (the newest any edge sharing the storage obtained), without touching the
// cache that serves: for exports. It returns an error wrapping
// fs.ErrNotExist when none was stored yet. Safe for concurrent use.
func (m *Manager) StoredCertificate(ctx context.Context, name string) (tls.Certificate, error) {
	g := m.cur.Load()
	if g == nil {
		return tls.Certificate{}, fmt.Errorf("%s: %w", name, fs.ErrNotExist)
	}
	name = normalise(name)
	cfg, ok := g.byName[name]
	if !ok {
		return tls.Certificate{}, fmt.Errorf("%s: %w", name, ErrNotManaged)
	}
	// With several CAs, each keeps its own copy: the newest is the one
	// certmagic serves (its loadCertResourceAnyIssuer).
	var best tls.Certificate
	err := fmt.Errorf("loading the certificate of %s: %w", name, fs.ErrNotExist)
	for _, iss := range g.issuers[slices.Index(g.configs, cfg)] {
		c, e := loadStored(ctx, g.opts.Storage, iss.IssuerKey(), name)
		if e != nil {
			if best.Leaf == nil && (!errors.Is(e, fs.ErrNotExist) || errors.Is(err, fs.ErrNotExist)) {
				err = e
			}
			continue
		}
		if best.Leaf == nil || c.Leaf.NotBefore.After(best.Leaf.NotBefore) {
			best, err = c, nil
		}
	}
	return best, err
}

func loadStored(ctx context.Context, st certmagic.Storage, key, name string) (tls.Certificate, error) {
	certPEM, err := st.Load(ctx, certmagic.StorageKeys.SiteCert(key, name))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("loading the certificate of %s: %w", name, err)
	}
	keyPEM, err := st.Load(ctx, certmagic.StorageKeys.SitePrivateKey(key, name))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("loading the key of %s: %w", name, err)
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("the stored certificate of %s: %w", name, err)
	}
	return c, nil
}
