package tlsmgr

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/mholt/acmez/v3/acme"
)

// Where a planned renewal time comes from (CertStatus.RenewalSource).
const (
	RenewalFromARI    = "ari"    // the time certmagic selected in the CA's ARI window (RFC 9773)
	RenewalFromRatio  = "ratio"  // the renewal share of the lifetime (acme.renew_at)
	RenewalFromExpiry = "expiry" // certmagic's last-resort margin before expiry
)

// plannedRenewal returns when certmagic renews leaf and why, by the rules
// of its certNeedsRenewal (certmagic v0.25.6, certificates.go), which it
// checks every interval (the cache's RenewCheckInterval):
//   - with an ARI selected time: renew from one interval before it;
//   - with one, also once 1/20 of the lifetime is left ("emergency");
//   - in any case once the renewal window (ratio of the lifetime left,
//     0: certmagic's 1/3) is reached;
//   - and once 1/50 of the lifetime, or 5 intervals, are left.
//
// The earliest of these is the plan. ari may be nil (the CA offers none,
// or it is not known yet).
func plannedRenewal(leaf *x509.Certificate, ari *acme.RenewalInfo, ratio float64, interval time.Duration) (time.Time, string) {
	exp := leaf.NotAfter.Truncate(time.Second).Add(time.Second) // certmagic's expiresAt
	life := exp.Sub(leaf.NotBefore)
	share := func(r float64) time.Time { return exp.Add(-time.Duration(float64(life) * r)) }
	if ratio <= 0 {
		ratio = certmagic.DefaultRenewalWindowRatio
	}
	at, src := share(ratio), RenewalFromRatio
	earlier := func(t time.Time, s string) {
		if t.Before(at) {
			at, src = t, s
		}
	}
	if ari != nil && !ari.SelectedTime.IsZero() {
		earlier(ari.SelectedTime.Add(-interval), RenewalFromARI)
		earlier(share(1.0/20), RenewalFromExpiry)
	}
	earlier(share(1.0/50), RenewalFromExpiry)
	earlier(exp.Add(-5*interval), RenewalFromExpiry)
	return at, src
}

// overdueAfter is how long past its planned time a renewal may take before
// the certificate is reported overdue: two renewal checks and 30 s for the
// order itself.
func overdueAfter(interval time.Duration) time.Duration { return 2*interval + 30*time.Second }

// retrySchedule is certmagic's retryIntervals (async.go, v0.25.6): after
// the n-th failure in a row of a name's order, the next try comes
// retrySchedule[min(n, len)-1] later (both for a first obtain, in
// doWithRetry, and for maintenance renewals, in renewalBackoff). certmagic
// does not export it: check it again when certmagic is upgraded.
var retrySchedule = []time.Duration{
	1 * time.Minute, 2 * time.Minute, 2 * time.Minute, 5 * time.Minute,
	10 * time.Minute, 10 * time.Minute, 10 * time.Minute,
	20 * time.Minute, 20 * time.Minute, 20 * time.Minute, 20 * time.Minute,
	30 * time.Minute, 30 * time.Minute, 30 * time.Minute, 30 * time.Minute, 30 * time.Minute, 30 * time.Minute,
	1 * time.Hour, 1 * time.Hour, 1 * time.Hour, 2 * time.Hour, 2 * time.Hour,
	3 * time.Hour, 3 * time.Hour, 6 * time.Hour,
}

// nextRetry is when certmagic tries again after failures failures in a
// row, the last at last; zero with none.
func nextRetry(failures int, last time.Time) time.Time {
	if failures <= 0 || last.IsZero() {
		return time.Time{}
	}
	return last.Add(retrySchedule[min(failures, len(retrySchedule))-1])
}

// ariBook caches, per name and certificate, what status and metrics read
// from storage for it: the ARI certmagic stored in the certificate's
// metadata and the CA whose storage holds the certificate. Reading them
// is what a scrape of many certificates costs (two loads per name, and
// certmagic's key building: with 10,000 certificates, half a CPU-second
// and 160 MB of garbage per scrape), so an entry is read again only
//   - when the certificate served for the name changes (another serial),
//     or the configuration (a reload that changed anything: the issuers
//     may be others);
//   - when this edge stored another ARI for it (fetchARI forgets the
//     entry) or read the stored one in its ARI refresh (fetchARI updates
//     the entry: a farm-mate's change shows at this edge's next refresh);
//   - else after ariReread of the certificate's lifetime, less up to a
//     quarter of it at random, so that names read in one scrape are not
//     all read again in one later scrape.
//
// So what is stored without this edge's ARI refresh seeing it shows up to
// one renewal check interval of the certificate's lifetime late: 10
// minutes for certificates of 200 minutes or more (90-day and 6-day ones
// alike), lifetime/20 below that, 15 s at least. certmagic itself stores
// ARI for a new certificate at its next renewal check, so without
// acme.ari_refresh a plan shows ARI's time up to two intervals after the
// certificate is issued.
type ariBook struct {
	mu sync.Mutex
	m  map[string]ariEntry
}

type ariEntry struct {
	gen    *generation // the configuration it was read under
	serial string
	ari    *acme.RenewalInfo
	ca     string    // the directory URL of the CA whose storage holds it
	until  time.Time // read it again from then on
	// ver changes with every write, so that a read of storage that began
	// before one (a forget, a noteStored) is not written back over it.
	ver uint64
}

// ariRereadMin is the shortest time an entry is kept.
const ariRereadMin = 15 * time.Second

// ariReread is how long the book keeps what it read for leaf: the renewal
// check interval its lifetime gives (lifetime/20, at most 10 minutes), or
// ariRereadMin when that is longer.
func ariReread(leaf *x509.Certificate) time.Duration {
	return max(renewCheckInterval(leaf.NotAfter.Sub(leaf.NotBefore)), ariRereadMin)
}

// forget makes the next status read name's entry from storage again.
func (b *ariBook) forget(name string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.m == nil {
		b.m = map[string]ariEntry{}
	}
	b.m[name] = ariEntry{ver: b.m[name].ver + 1} // a read begun before it is not written back
}

// drop removes the entries of names no longer configured.
func (b *ariBook) drop(gone []certmagic.SubjectIssuer) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, si := range gone {
		delete(b.m, si.Subject)
	}
}

// noteStored sets name's entry to ari, read from storage just now for
// leaf under the CA ca, when the entry is that certificate's.
func (b *ariBook) noteStored(name string, leaf *x509.Certificate, ari *acme.RenewalInfo, ca string) {
	serial := leaf.SerialNumber.Text(16)
	b.mu.Lock()
	defer b.mu.Unlock()
	if e, ok := b.m[name]; ok && e.serial == serial {
		e.ari, e.ca = ari, ca
		e.ver++
		b.m[name] = e
	}
}

// storedInfo returns the ARI stored with the certificate leaf of name (nil
// when there is none for this very certificate: its ARI identifier names
// another serial, storage holds a newer one) and the directory URL of the
// CA it is stored under (the CA that issued it; "" when storage no longer
// holds it), as the book has them.
func (m *Manager) storedInfo(name string, leaf *x509.Certificate) (*acme.RenewalInfo, string) {
	g := m.cur.Load()
	if g == nil {
		return nil, ""
	}
	cfg, ok := g.byName[name]
	if !ok {
		if g.onDemand == nil {
			return nil, ""
		}
		cfg = g.onDemand
	}
	i := indexOf(g.configs, cfg)
	if i < 0 {
		return nil, ""
	}
	serial := leaf.SerialNumber.Text(16)
	b := &m.ari
	b.mu.Lock()
	seen := b.m[name]
	b.mu.Unlock()
	now := time.Now()
	if seen.gen == g && seen.serial == serial && now.Before(seen.until) {
		return seen.ari, seen.ca
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	keep := ariReread(leaf)
	e := ariEntry{gen: g, serial: serial, until: now.Add(keep - rand.N(keep/4)), ver: seen.ver + 1}
	for _, iss := range g.issuers[i] {
		if raw, err := g.opts.Storage.Load(ctx, certmagic.StorageKeys.SiteCert(iss.IssuerKey(), name)); err == nil {
			if b, _ := pem.Decode(raw); b != nil && bytes.Equal(b.Bytes, leaf.Raw) {
				e.ca = iss.CA
			}
		}
		if raw, err := g.opts.Storage.Load(ctx, certmagic.StorageKeys.SiteMeta(iss.IssuerKey(), name)); err == nil && e.ari == nil {
			e.ari = parseStoredARI(raw, leaf.SerialNumber)
		}
	}
	b.mu.Lock()
	if b.m == nil {
		b.m = map[string]ariEntry{}
	}
	if b.m[name].ver == seen.ver && m.cur.Load() == g { // else written meanwhile, or reloaded: that stands
		b.m[name] = e
	}
	b.mu.Unlock()
	return e.ari, e.ca
}

// parseStoredARI takes the ARI out of certmagic's certificate metadata
// (CertificateResource JSON, issuer_data being acmez's acme.Certificate)
// when its identifier names serial (RFC 9773 section 4.1: base64url AKI,
// ".", base64url serial DER bytes).
func parseStoredARI(raw []byte, serial *big.Int) *acme.RenewalInfo {
	var meta struct {
		IssuerData struct {
			RenewalInfo *acme.RenewalInfo `json:"renewal_info"`
		} `json:"issuer_data"`
	}
	if json.Unmarshal(raw, &meta) != nil || meta.IssuerData.RenewalInfo == nil {
		return nil
	}
	ari := meta.IssuerData.RenewalInfo
	_, ser, ok := strings.Cut(ari.UniqueIdentifier, ".")
	if !ok {
		return nil
	}
	b, err := base64.RawURLEncoding.DecodeString(ser)
	if err != nil || !bytes.Equal(bytes.TrimLeft(b, "\x00"), serial.Bytes()) {
		return nil
	}
	return ari
}

func indexOf(cs []*certmagic.Config, c *certmagic.Config) int {
	for i, x := range cs {
		if x == c {
			return i
		}
	}
	return -1
}
