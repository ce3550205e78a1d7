package tlsmgr

import (
	"context"
	"crypto/x509"
	"math/big"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/mholt/acmez/v3/acme"
)

// TestARIBookRereads: status reads a name's stored ARI and CA from storage
// once, then again only when the entry's time is up, when the served
// certificate is another, or at once when the ARI refresh read storage.
func TestARIBookRereads(t *testing.T) {
	dir := t.TempDir()
	names := writeManyCerts(t, dir, 2, 90*24*time.Hour)
	m, stop := loadManyCerts(t, dir, names, 10*time.Millisecond)
	defer stop()
	cancelLoops(m) // no refresh of its own meanwhile
	name := names[0]
	row := func() CertStatus {
		t.Helper()
		for _, st := range m.Certificates() {
			if st.Name == name {
				return st
			}
		}
		t.Fatalf("no status row for %s", name)
		return CertStatus{}
	}
	leaf := m.views.get(name).leaf
	if leaf == nil {
		t.Fatal("no certificate loaded")
	}
	if st := row(); st.ARIWindow != nil || st.RenewalSource != RenewalFromRatio || st.CA != manyCertsCA {
		t.Fatalf("before any ARI: window %v, source %q, CA %q; want none, %q, %q", st.ARIWindow, st.RenewalSource, st.CA, RenewalFromRatio, manyCertsCA)
	}

	// The 90-day certificate's entry is kept one renewal check interval
	// (10 minutes), less up to a quarter.
	m.ari.mu.Lock()
	kept := time.Until(m.ari.m[name].until)
	m.ari.mu.Unlock()
	if kept <= 7*time.Minute || kept > 10*time.Minute {
		t.Errorf("entry kept %s, want 7m30s..10m", kept)
	}

	// certmagic stores an ARI for the certificate (as its own ARI fetch
	// does): the book shows it once the entry's time is up, not before.
	ari := storedARIFor(t, leaf, time.Now().Add(24*time.Hour))
	st := &certmagic.FileStorage{Path: dir}
	if err := storeARI(context.Background(), st, certmagic.StorageKeys.SiteMeta(newTestCA(t).issuerKey, name), ari); err != nil {
		t.Fatal(err)
	}
	if st := row(); st.ARIWindow != nil {
		t.Fatalf("window %v read again before the entry's time was up", st.ARIWindow)
	}
	m.ari.mu.Lock()
	e := m.ari.m[name]
	e.until = time.Now()
	m.ari.m[name] = e
	m.ari.mu.Unlock()
	got := row()
	if got.ARIWindow == nil || !got.ARIWindow.Start.Equal(ari.SuggestedWindow.Start) || got.RenewalSource != RenewalFromARI {
		t.Fatalf("after the entry's time: window %v, source %q; want start %s, %q", got.ARIWindow, got.RenewalSource, ari.SuggestedWindow.Start, RenewalFromARI)
	}

	// The ARI refresh read another window from storage: shown at once.
	later := storedARIFor(t, leaf, time.Now().Add(48*time.Hour))
	m.ari.noteStored(name, leaf, &later)
	if got := row(); got.ARIWindow == nil || !got.ARIWindow.Start.Equal(later.SuggestedWindow.Start) {
		t.Fatalf("after the refresh read storage: window %v, want start %s", got.ARIWindow, later.SuggestedWindow.Start)
	}
	// ... but not into the entry of another certificate.
	other := *leaf
	other.SerialNumber = new(big.Int).Lsh(leaf.SerialNumber, 1)
	other.Raw = nil
	m.ari.noteStored(name, &other, nil)
	if got := row(); got.ARIWindow == nil {
		t.Fatal("another certificate's refresh changed the entry")
	}

	// Another certificate served for the name: read at once (its serial is
	// not the stored ARI's, so none).
	if a, ca := m.storedInfo(name, &other); a != nil || ca != "" {
		t.Fatalf("for another certificate: ARI %v, CA %q; want none (storage holds the first)", a, ca)
	}
}

// storedARIFor is an ARI for leaf whose window starts at start, one day
// long, with certmagic's selected time in its middle.
func storedARIFor(t *testing.T, leaf *x509.Certificate, start time.Time) acme.RenewalInfo {
	t.Helper()
	id, err := acme.ARIUniqueIdentifier(leaf)
	if err != nil {
		t.Fatal(err)
	}
	var ari acme.RenewalInfo
	ari.SuggestedWindow.Start = start.Truncate(time.Second).UTC()
	ari.SuggestedWindow.End = ari.SuggestedWindow.Start.Add(24 * time.Hour)
	ari.UniqueIdentifier = id
	ari.SelectedTime = ari.SuggestedWindow.Start.Add(12 * time.Hour)
	return ari
}

func TestARIReread(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		life time.Duration
		want time.Duration
	}{
		{90 * 24 * time.Hour, 10 * time.Minute}, // lifetime/20 is longer: the check interval's cap
		{6 * 24 * time.Hour, 10 * time.Minute},
		{time.Hour, 3 * time.Minute},
		{2 * time.Minute, ariRereadMin}, // lifetime/20 is 6 s
	} {
		leaf := &x509.Certificate{NotBefore: now, NotAfter: now.Add(tc.life)}
		if got := ariReread(leaf); got != tc.want {
			t.Errorf("lifetime %s: kept %s, want %s", tc.life, got, tc.want)
		}
	}
}
