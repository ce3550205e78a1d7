package tlsmgr

import (
	"crypto/x509"
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
)

// CertStatus describes one managed name, as /api/certificates shows it.
type CertStatus struct {
	// Name is the configured name; Names are the certificate's SANs.
	Name      string    `json:"name"`
	Names     []string  `json:"names"`
	Issuer    string    `json:"issuer,omitempty"`
	NotBefore time.Time `json:"not_before,omitzero"`
	NotAfter  time.Time `json:"not_after,omitzero"`
	RenewalAt time.Time `json:"renewal_at,omitzero"`
	State     string    `json:"state"`
	LastError string    `json:"last_error,omitempty"`
	// LastAttempt is when this instance last started or finished an order.
	LastAttempt time.Time `json:"last_attempt,omitzero"`
}

type nameStatus struct {
	state   string
	lastErr string
	at      time.Time
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
	if state == StateValid {
		errMsg = ""
	} else if errMsg == "" {
		errMsg = prev.lastErr
	}
	b.m[name] = nameStatus{state: state, lastErr: errMsg, at: time.Now()}
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

// Certificates reports every configured name with the certificate that
// serves it (from the in-memory cache) and the last event seen.
func (m *Manager) Certificates() []CertStatus {
	names := m.status.list()
	out := make([]CertStatus, 0, len(names))
	now := time.Now()
	for _, name := range names {
		ns, _ := m.status.get(name)
		st := CertStatus{Name: name, Names: []string{name}, State: StatePending, LastError: ns.lastErr, LastAttempt: ns.at}
		if ns.state != "" {
			st.State = ns.state
		}
		if leaf, ratio := m.leaf(name); leaf != nil {
			st.Names = leaf.DNSNames
			st.Issuer = issuerName(leaf.Issuer.CommonName, leaf.Issuer.Organization)
			st.NotBefore, st.NotAfter = leaf.NotBefore, leaf.NotAfter
			st.RenewalAt = renewalAt(leaf.NotBefore, leaf.NotAfter, ratio)
			switch {
			case now.After(leaf.NotAfter):
				st.State = StateExpired
			case ns.state == StateObtaining || ns.state == StateFailed:
				// keep: a renewal is under way or failed; the old one serves
			default:
				st.State = StateValid
			}
		}
		out = append(out, st)
	}
	return out
}

// Ready reports whether every configured name has an unexpired certificate,
// and the names that do not.
func (m *Manager) Ready() (bool, []string) {
	var missing []string
	now := time.Now()
	for _, name := range m.status.list() {
		leaf, _ := m.leaf(name)
		if leaf == nil || now.After(leaf.NotAfter) {
			missing = append(missing, name)
		}
	}
	return len(missing) == 0 && m.cur.Load() != nil, missing
}

// leaf returns the newest managed certificate serving name exactly (a
// wildcard name matches its own certificate) and the renewal ratio in force.
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
	ratio := 1.0 / 3
	if g := m.cur.Load(); g != nil && g.opts.RenewalWindowRatio > 0 {
		ratio = g.opts.RenewalWindowRatio
	}
	return best, ratio
}

func renewalAt(nb, na time.Time, ratio float64) time.Time {
	life := na.Sub(nb)
	return na.Add(-time.Duration(float64(life) * ratio))
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
