package tlsmgr

import (
	"context"
	"crypto/x509"
	"math/big"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/mholt/acmez/v3/acme"
)

// pauseStorage is a FileStorage where, while armed, the next load of
// certificate metadata reads it and then waits until the test lets it
// return what it read.
type pauseStorage struct {
	certmagic.Storage
	armed   atomic.Bool
	entered chan struct{} // a metadata load has read and waits
	release chan struct{} // let it return
}

func (p *pauseStorage) Load(ctx context.Context, key string) ([]byte, error) {
	b, err := p.Storage.Load(ctx, key)
	if strings.HasSuffix(key, ".json") && p.armed.CompareAndSwap(true, false) {
		p.entered <- struct{}{}
		<-p.release
	}
	return b, err
}

// ariBookSetup is a Manager with two certificates loaded from dir through
// a pauseStorage, its own ARI refresh and maintenance stopped, and the
// options it was applied with.
func ariBookSetup(t *testing.T) (*Manager, *pauseStorage, Options, []string) {
	t.Helper()
	dir := t.TempDir()
	names := writeManyCerts(t, dir, 2, 90*24*time.Hour)
	st := &pauseStorage{Storage: &certmagic.FileStorage{Path: dir}, entered: make(chan struct{}), release: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	m := New(nil, nil)
	t.Cleanup(func() { cancel(); m.Stop() })
	o := Options{CA: manyCertsCA, Email: "bench@example.com", HTTP01: true, Storage: st, Groups: []Group{{Names: names}}}
	if err := m.Apply(ctx, o); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if ok, _ := m.Ready(); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("certificates not loaded after 30 s")
		}
	}
	cancelLoops(m)
	return m, st, o, names
}

// statusOf is name's row of m.Certificates().
func statusOf(t *testing.T, m *Manager, name string) CertStatus {
	t.Helper()
	for _, st := range m.Certificates() {
		if st.Name == name {
			return st
		}
	}
	t.Fatalf("no status row for %s", name)
	return CertStatus{}
}

// dueNow makes name's entry due to be read again.
func dueNow(m *Manager, name string) {
	m.ari.mu.Lock()
	defer m.ari.mu.Unlock()
	e := m.ari.m[name]
	e.until = time.Now()
	m.ari.m[name] = e
}

// TestARIBookRereads: status reads a name's stored ARI and CA from storage
// once, then again only when the entry's time is up, when the served
// certificate is another, or at once when the ARI refresh read storage.
func TestARIBookRereads(t *testing.T) {
	m, st, _, names := ariBookSetup(t)
	name := names[0]
	leaf := m.views.get(name).leaf
	if leaf == nil {
		t.Fatal("no certificate loaded")
	}
	if got := statusOf(t, m, name); got.ARIWindow != nil || got.RenewalSource != RenewalFromRatio || got.CA != manyCertsCA {
		t.Fatalf("before any ARI: window %v, source %q, CA %q; want none, %q, %q", got.ARIWindow, got.RenewalSource, got.CA, RenewalFromRatio, manyCertsCA)
	}

	// The 90-day certificate's entry is kept one renewal check interval
	// (10 minutes), less up to a quarter.
	m.ari.mu.Lock()
	kept := time.Until(m.ari.m[name].until)
	m.ari.mu.Unlock()
	if kept < 7*time.Minute+29*time.Second || kept > 10*time.Minute {
		t.Errorf("entry kept %s, want 7m30s..10m", kept)
	}

	// certmagic stores an ARI for the certificate (as its own ARI fetch
	// does): the book shows it once the entry's time is up, not before.
	ari := storedARIFor(t, leaf, time.Now().Add(24*time.Hour))
	if err := storeARI(context.Background(), st, certmagic.StorageKeys.SiteMeta(newTestCA(t).issuerKey, name), ari); err != nil {
		t.Fatal(err)
	}
	if got := statusOf(t, m, name); got.ARIWindow != nil {
		t.Fatalf("window %v read again before the entry's time was up", got.ARIWindow)
	}
	dueNow(m, name)
	got := statusOf(t, m, name)
	if got.ARIWindow == nil || !got.ARIWindow.Start.Equal(ari.SuggestedWindow.Start) || got.RenewalSource != RenewalFromARI {
		t.Fatalf("after the entry's time: window %v, source %q; want start %s, %q", got.ARIWindow, got.RenewalSource, ari.SuggestedWindow.Start, RenewalFromARI)
	}

	// The ARI refresh read another window from storage: shown at once,
	// with the CA it read it under.
	later := storedARIFor(t, leaf, time.Now().Add(48*time.Hour))
	m.ari.noteStored(name, leaf, &later, "https://refresh.test/directory")
	if got := statusOf(t, m, name); got.ARIWindow == nil || !got.ARIWindow.Start.Equal(later.SuggestedWindow.Start) || got.CA != "https://refresh.test/directory" {
		t.Fatalf("after the refresh read storage: window %v, CA %q; want start %s, the refresh's CA", got.ARIWindow, got.CA, later.SuggestedWindow.Start)
	}
	// ... but not into the entry of another certificate.
	other := *leaf
	other.SerialNumber = new(big.Int).Lsh(leaf.SerialNumber, 1)
	other.Raw = nil
	m.ari.noteStored(name, &other, nil, "")
	if got := statusOf(t, m, name); got.ARIWindow == nil {
		t.Fatal("another certificate's refresh changed the entry")
	}

	// Another certificate served for the name: read at once (its serial is
	// not the stored ARI's, so none).
	if a, ca := m.storedInfo(name, &other); a != nil || ca != "" {
		t.Fatalf("for another certificate: ARI %v, CA %q; want none (storage holds the first)", a, ca)
	}
}

// TestARIBookReload: a reload that changes the configuration (here the
// CA) reads every entry again: the CA shown is not the one before; the
// entry of a name no longer configured goes.
func TestARIBookReload(t *testing.T) {
	m, _, o, names := ariBookSetup(t)
	if got := statusOf(t, m, names[0]); got.CA != manyCertsCA {
		t.Fatalf("CA %q, want %q", got.CA, manyCertsCA)
	}
	o.CA = "https://127.0.0.2:9/directory" // nothing stored under it, nothing listens
	o.Groups = []Group{{Names: names[:1]}}
	if err := m.Apply(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	cancelLoops(m)
	if got := statusOf(t, m, names[0]); got.CA != "" {
		t.Fatalf("after a reload to another CA: CA %q, want none (storage holds nothing under the new one)", got.CA)
	}
	m.ari.mu.Lock()
	_, kept := m.ari.m[names[1]]
	m.ari.mu.Unlock()
	if kept {
		t.Errorf("the entry of %s, no longer configured, is kept", names[1])
	}
}

// TestARIBookForgetDuringRead: what a status read found in storage before
// fetchARI stored a new ARI and forgot the entry is not written back over
// that: the next read shows the new ARI.
func TestARIBookForgetDuringRead(t *testing.T) {
	m, st, _, names := ariBookSetup(t)
	name := names[0]
	leaf := m.views.get(name).leaf
	statusOf(t, m, name)
	dueNow(m, name)
	st.armed.Store(true)
	done := make(chan CertStatus)
	go func() {
		for _, row := range m.Certificates() {
			if row.Name == name {
				done <- row
			}
		}
	}()
	<-st.entered // the read has read storage, before the new ARI is stored
	ari := storedARIFor(t, leaf, time.Now().Add(24*time.Hour))
	if err := storeARI(context.Background(), st.Storage, certmagic.StorageKeys.SiteMeta(newTestCA(t).issuerKey, name), ari); err != nil {
		t.Fatal(err)
	}
	m.ari.forget(name)
	close(st.release)
	<-done
	if got := statusOf(t, m, name); got.ARIWindow == nil || !got.ARIWindow.Start.Equal(ari.SuggestedWindow.Start) {
		t.Fatalf("after a read that raced the store: window %v, want start %s", got.ARIWindow, ari.SuggestedWindow.Start)
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
		{200 * time.Minute, 10 * time.Minute},
		{time.Hour, 3 * time.Minute},
		{5 * time.Minute, ariRereadMin},
		{2 * time.Minute, ariRereadMin}, // lifetime/20 is 6 s
	} {
		leaf := &x509.Certificate{NotBefore: now, NotAfter: now.Add(tc.life)}
		if got := ariReread(leaf); got != tc.want {
			t.Errorf("lifetime %s: kept %s, want %s", tc.life, got, tc.want)
		}
	}
}
