package tlsmgr

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"time"
)

// Certificate states reported by Certificates.
const (
	StateValid     = "valid"     // a certificate is loaded and not expired
	StatePending   = "pending"   // no certificate yet, no attempt seen
	StateObtaining = "obtaining" // this instance is ordering one
	StateFailed    = "failed"    // the last attempt failed (an older certificate may still serve)
	StateExpired   = "expired"
	// StateRenewalDue: the planned renewal time has passed within the
	// time a renewal takes (two renewal checks and 30 s); the certificate
	// still serves.
	StateRenewalDue = "renewal due"
	// StateRenewalOverdue: the planned renewal time passed longer ago
	// than that, with no renewal: something is wrong.
	StateRenewalOverdue = "renewal overdue"
)

// CertStatus describes one managed name, as /api/certificates shows it.
type CertStatus struct {
	// Name is the configured name; Names are the certificate's SANs, DNS
	// names then IP addresses.
	Name   string   `json:"name"`
	Names  []string `json:"names"`
	Issuer string   `json:"issuer,omitempty"`
	// CA is the directory URL of the CA that issued the certificate
	// serving (of acme.ca's list); "" when storage no longer holds it.
	CA        string    `json:"ca,omitempty"`
	NotBefore time.Time `json:"not_before,omitzero"`
	NotAfter  time.Time `json:"not_after,omitzero"`
	// RenewalAt is when certmagic renews the certificate (see
	// plannedRenewal): at ARI's selected time when the CA offers ARI, at
	// the renewal share of the lifetime, or near expiry, whichever comes
	// first. RenewalSource says which: ari, ratio or expiry.
	RenewalAt     time.Time `json:"renewal_at,omitzero"`
	RenewalSource string    `json:"renewal_source,omitempty"`
	// ARIWindow is the CA's suggested renewal window (RFC 9773), nil when
	// none is known for the certificate serving.
	ARIWindow *Window `json:"ari_window,omitempty"`
	// OCSP says whether an OCSP response is stapled: "stapled", "none"
	// (the certificate names no OCSP responder, as Let's Encrypt's since
	// 2025 and Pebble's) or "error: ..." (it names one, and no good
	// response is held: handshakes go without a staple).
	OCSP string `json:"ocsp,omitempty"`
	// Profile is the ACME profile asked for ("" the CA's default).
	Profile   string `json:"profile,omitempty"`
	State     string `json:"state"`
	LastError string `json:"last_error,omitempty"`
	// LastAttempt is when this instance last started or finished an order.
	LastAttempt time.Time `json:"last_attempt,omitzero"`
	// Failures counts this instance's failed orders for the name in a
	// row; NextRetry is when certmagic tries again after the last one
	// (zero after a success).
	Failures  int       `json:"failures,omitempty"`
	NextRetry time.Time `json:"next_retry,omitzero"`
}

// Window is a span of time.
type Window struct {
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
}

type nameStatus struct {
	state    string
	lastErr  string
	at       time.Time
	failures int // failed orders in a row
}

// statusBook records what certmagic's events said about each name.
type statusBook struct {
	mu    sync.Mutex
	names []string
	m     map[string]nameStatus
}

func newStatusBook() *statusBook { return &statusBook{m: map[string]nameStatus{}} }

func (b *statusBook) setNames(names []string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.names = slices.Clone(names)
}

func (b *statusBook) set(name, state, errMsg string) {
	if name == "" {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	prev := b.m[name]
	failures := prev.failures
	switch {
	case state == StateValid:
		errMsg, failures = "", 0
	case state == StateFailed:
		failures++
	}
	if errMsg == "" && state != StateValid {
		errMsg = prev.lastErr
	}
	b.m[name] = nameStatus{state: state, lastErr: errMsg, at: time.Now(), failures: failures}
}

func (b *statusBook) get(name string) (nameStatus, []string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.m[name], b.names
}

func (b *statusBook) list() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.names)
}

// shared is the configured names without a copy: setNames replaces the
// slice and never writes into one handed out, so the caller may read it
// but must not change it.
func (b *statusBook) shared() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.names
}

// Certificates reports every configured name with the certificate that
// serves it (from the in-memory cache) and the last event seen.
func (m *Manager) Certificates() []CertStatus {
	names := m.status.shared()
	out := make([]CertStatus, 0, len(names))
	now := time.Now()
	// The interval maintain sets (within a second of a change), so that a
	// certificate just obtained is not judged by the interval before it.
	// It also brings certViews up to date for the m.views.get below.
	interval := renewCheckInterval(m.shortestLifetime())
	ratio := m.renewalRatio()
	for _, name := range names {
		ns, _ := m.status.get(name)
		st := CertStatus{Name: name, Names: []string{name}, State: StatePending, LastError: ns.lastErr, LastAttempt: ns.at,
			Profile: m.profileOf(name), Failures: ns.failures}
		if ns.state != "" {
			st.State = ns.state
		}
		if ns.state == StateFailed {
			st.NextRetry = nextRetry(ns.failures, ns.at)
		}
		if v := m.views.get(name); v.leaf != nil {
			leaf := v.leaf
			st.Names = certNames(leaf)
			st.Issuer = issuerName(leaf.Issuer.CommonName, leaf.Issuer.Organization)
			st.NotBefore, st.NotAfter = leaf.NotBefore, leaf.NotAfter
			ari, ca := m.storedInfo(name, leaf)
			st.OCSP = m.ocspOf(name, v)
			st.CA = ca
			if ari != nil && ari.HasWindow() {
				st.ARIWindow = &Window{Start: ari.SuggestedWindow.Start, End: ari.SuggestedWindow.End}
			}
			st.RenewalAt, st.RenewalSource = plannedRenewal(leaf, ari, ratio, interval)
			st.State = certState(now, leaf.NotAfter, st.RenewalAt, interval, ns.state)
		}
		out = append(out, st)
	}
	return out
}

// certState is the state of a name whose certificate, expiring at
// notAfter, is planned to renew at renewAt (renewal checks every
// interval), given the last event's state: never "valid" once renewAt
// has passed.
func certState(now, notAfter, renewAt time.Time, interval time.Duration, event string) string {
	switch {
	case now.After(notAfter):
		return StateExpired
	case event == StateObtaining || event == StateFailed:
		return event // a renewal is under way or failed; the old one serves
	case now.After(renewAt.Add(overdueAfter(interval))):
		return StateRenewalOverdue
	case now.After(renewAt):
		return StateRenewalDue
	}
	return StateValid
}

// certNames lists a certificate's DNS names, then its IP addresses.
func certNames(leaf *x509.Certificate) []string {
	names := slices.Clone(leaf.DNSNames)
	for _, ip := range leaf.IPAddresses {
		names = append(names, ip.String())
	}
	return names
}

// profileOf is the ACME profile name's group asks for.
func (m *Manager) profileOf(name string) string {
	g := m.cur.Load()
	if g == nil {
		return ""
	}
	c, ok := g.byName[name]
	if !ok {
		c = g.onDemand
	}
	for _, grp := range g.groups {
		if grp.cfg == c {
			return grp.key.profile
		}
	}
	return ""
}

// Ready reports whether every configured name has an unexpired certificate,
// and the names that do not.
func (m *Manager) Ready() (bool, []string) {
	now := time.Now()
	m.views.syncAll(m.cache)
	names := m.status.shared()
	lacks := func(name string) bool {
		leaf := m.views.get(name).leaf
		return leaf == nil || now.After(leaf.NotAfter)
	}
	// Counted first, so that the list is made once at its size: while
	// thousands of certificates load, /readyz is polled often.
	n := 0
	for _, name := range names {
		if lacks(name) {
			n++
		}
	}
	var missing []string
	if n > 0 {
		missing = make([]string, 0, n)
		for _, name := range names {
			if lacks(name) {
				missing = append(missing, name)
			}
		}
	}
	return len(missing) == 0 && m.cur.Load() != nil, missing
}

// ocspOf is CertStatus.OCSP of name, whose view is v (with a leaf). A
// certificate that names an OCSP responder is looked up in the cache,
// whose staple certmagic replaces in place; one that names none keeps the
// staple it was loaded with.
func (m *Manager) ocspOf(name string, v nameView) string {
	if len(v.leaf.OCSPServer) == 0 { // ocspState without a responder
		if v.stapled {
			return "stapled"
		}
		return "none"
	}
	state := ""
	for _, c := range m.cache.AllMatchingCertificates(name) {
		if c.Leaf == v.leaf {
			state = ocspState(c.Certificate)
		}
	}
	return state
}

// renewalRatio is the renewal ratio in force (0: certmagic's default).
func (m *Manager) renewalRatio() float64 {
	if g := m.cur.Load(); g != nil && g.opts.RenewalWindowRatio > 0 {
		return g.opts.RenewalWindowRatio
	}
	return 0
}

// leaf returns the newest managed certificate serving name exactly (a
// wildcard name matches its own certificate), asked of the cache, and the
// renewal ratio in force.
func (m *Manager) leaf(name string) (*x509.Certificate, float64) {
	var best *x509.Certificate
	for _, c := range m.cache.AllMatchingCertificates(name) {
		if c.Leaf == nil || !slices.Contains(c.Names, name) {
			continue
		}
		if best == nil || c.Leaf.NotAfter.After(best.NotAfter) {
			best = c.Leaf
		}
	}
	return best, m.renewalRatio()
}

func issuerName(cn string, org []string) string {
	if cn != "" {
		return cn
	}
	if len(org) > 0 {
		return org[0]
	}
	return "unknown"
}

func normalise(name string) string {
	return strings.TrimSuffix(strings.ToLower(name), ".")
}

func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return hostport
}

// ocspState is CertStatus.OCSP for c. certmagic staples a good response
// it fetched (logging any fetch failure at debug level only), and for a
// certificate without an OCSP URL it fetches nothing.
func ocspState(c tls.Certificate) string {
	switch {
	case len(c.OCSPStaple) > 0:
		return "stapled"
	case c.Leaf == nil || len(c.Leaf.OCSPServer) == 0:
		return "none"
	}
	return fmt.Sprintf("error: no good OCSP response from %s stapled", c.Leaf.OCSPServer[0])
}
