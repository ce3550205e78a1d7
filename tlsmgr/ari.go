package tlsmgr

// ari.go: acme.ari_refresh, ARI (RFC 9773) fetched more often than the
// CA's Retry-After asks, so that a "replace now" window (the CA's
// mass-revocation signal) is acted on within one refresh.
//
// certmagic v0.25.6 keeps each cached certificate's ARI in an unexported
// field and refetches it only once its Retry-After has passed (Pebble and
// Let's Encrypt answer 6 hours); nothing exported resets it, and loading
// the certificate again from storage is a no-op for a certificate already
// cached (same hash). What certmagic does read fresh is the ARI stored in
// the certificate's metadata: its renewal, under the storage lock
// issue_cert_NAME, decides whether a renewal is still needed from the
// stored certificate and the ARI stored with it (renewCert,
// managedCertNeedsRenewal). So edge, every ari_refresh:
//   - fetches the ARI of the certificate it serves from the CA that issued
//     it (certmagic's exported ACMEIssuer.GetRenewalInfo, under
//     certmagic's own lock name ari_ID, so that of the edges sharing a
//     store one asks at a time);
//   - when the window moved, writes it into the stored metadata the way
//     certmagic's updateARI does (keeping the selected time when the window
//     is the same), under issue_cert_NAME and only while storage still holds
//     that very certificate, so a farm-mate's renewal is never overwritten
//     with the old certificate's ARI;
//   - when the stored ARI says renew now, asks certmagic to renew, not
//     forced (RenewCertAsync(name, false)): certmagic takes issue_cert_NAME,
//     sees the stored ARI, and orders with "replaces" naming the old
//     certificate (it does so whenever it renews at the same CA). An edge
//     that gets the lock after a farm-mate renewed finds the new
//     certificate, which needs no renewal, and orders nothing: one order
//     per farm;
//   - when storage holds a newer certificate than the one served (a
//     farm-mate renewed), loads it and drops the old one from the cache.
//
// Certificates obtained on demand are left to certmagic (it renews them at
// a handshake).

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/mholt/acmez/v3/acme"
	"go.uber.org/zap"
)

// ariRefreshTimeout bounds the work on one name in one refresh.
const ariRefreshTimeout = 20 * time.Second

// refreshARILoop runs refreshARI every ari_refresh (Options.ARIRefresh,
// as the last Apply set it) until ctx ends; with 0 it only looks again
// every second whether a reload set it.
func (m *Manager) refreshARILoop(ctx context.Context) {
	t := time.NewTimer(minRenewCheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		every := time.Duration(m.ariRefresh.Load())
		if every <= 0 {
			t.Reset(minRenewCheck)
			continue
		}
		start := time.Now()
		m.refreshARI(ctx)
		t.Reset(max(every-time.Since(start), 0))
	}
}

// refreshARI refreshes the ARI of every configured name once.
func (m *Manager) refreshARI(ctx context.Context) {
	g := m.cur.Load()
	if g == nil {
		return
	}
	defer func() {
		if r := recover(); r != nil {
			m.logger.Error("ARI refresh panicked", zap.Any("panic", r))
		}
	}()
	for _, name := range g.names {
		if ctx.Err() != nil {
			return
		}
		nctx, cancel := context.WithTimeout(ctx, ariRefreshTimeout)
		if err := m.refreshARIOf(nctx, g, name); err != nil && ctx.Err() == nil {
			m.logger.Warn("ARI refresh", zap.String("identifier", name), zap.Error(err))
		}
		cancel()
	}
}

// served returns the certificate the cache serves for name (the one that
// expires last), if any.
func (m *Manager) served(name string) (certmagic.Certificate, bool) {
	var best certmagic.Certificate
	found := false
	for _, c := range m.cache.AllMatchingCertificates(name) {
		if c.Leaf == nil || !slices.Contains(c.Names, name) {
			continue
		}
		if !found || c.Leaf.NotAfter.After(best.Leaf.NotAfter) {
			best, found = c, true
		}
	}
	return best, found
}

// refreshARIOf does one refresh of name (see the file comment).
func (m *Manager) refreshARIOf(ctx context.Context, g *generation, name string) error {
	cfg, ok := g.byName[name]
	if !ok {
		return nil
	}
	if _, busy := m.renewing.Load(name); busy {
		return nil // a renewal of it runs already
	}
	cur, ok := m.served(name)
	if !ok {
		return nil // not obtained yet: certmagic's obtain runs
	}
	st := g.opts.Storage
	log := m.logger.Named("ari").With(zap.String("identifier", name), zap.String("serial", cur.Leaf.SerialNumber.Text(16)))

	// The CA whose storage holds the served certificate issued it.
	var iss *certmagic.ACMEIssuer
	for _, is := range g.issuers[indexOf(g.configs, cfg)] {
		if leaf, err := storedLeaf(ctx, st, is.IssuerKey(), name); err == nil && bytes.Equal(leaf.Raw, cur.Leaf.Raw) {
			iss = is
			break
		}
	}
	if iss == nil {
		// Storage holds another certificate: newer when a farm-mate
		// renewed it; then serve that one.
		stored, err := m.StoredCertificate(ctx, name)
		if err != nil || stored.Leaf == nil || !stored.Leaf.NotBefore.After(cur.Leaf.NotBefore) {
			return nil
		}
		log.Info("storage holds a newer certificate (renewed by another edge); serving it",
			zap.String("new_serial", stored.Leaf.SerialNumber.Text(16)))
		return m.serveStored(ctx, cfg, name, cur.Hash())
	}

	id, err := acme.ARIUniqueIdentifier(cur.Leaf)
	if err != nil {
		return nil // no AKI: no ARI for it
	}
	ari, err := m.fetchARI(ctx, st, iss, cur, id, name, log)
	if err != nil {
		return err
	}
	if ari == nil || ari.SelectedTime.IsZero() {
		return nil
	}
	at, src := plannedRenewal(cur.Leaf, ari, m.renewalRatio(), m.checkInterval())
	if src != RenewalFromARI || at.After(time.Now()) {
		return nil
	}
	if _, busy := m.renewing.LoadOrStore(name, true); busy {
		return nil
	}
	log.Warn("ARI says renew now; renewing", zap.Time("selected_time", ari.SelectedTime),
		zap.Time("window_start", ari.SuggestedWindow.Start), zap.Time("window_end", ari.SuggestedWindow.End),
		zap.String("explanation_url", ari.ExplanationURL))
	old := cur.Hash()
	m.wg.Go(func() {
		defer m.renewing.Delete(name)
		// Not forced: under its issue lock certmagic renews only if the
		// stored certificate still needs it (another edge may have renewed
		// it meanwhile), and names the replaced certificate in the order.
		if err := cfg.RenewCertAsync(g.ctx, name, false); err != nil {
			if g.ctx.Err() == nil {
				log.Error("renewal after ARI failed; the current certificate keeps serving", zap.Error(err))
			}
			return
		}
		if err := m.serveStored(g.ctx, cfg, name, old); err != nil && g.ctx.Err() == nil {
			log.Error("loading the renewed certificate", zap.Error(err))
		}
	})
	return nil
}

// fetchARI asks the CA for the ARI of cur (identifier id) unless another
// holder of the storage does so now, stores it with the certificate when
// the window moved, and returns the ARI stored for cur afterwards (nil:
// none).
func (m *Manager) fetchARI(ctx context.Context, st certmagic.Storage, iss *certmagic.ACMEIssuer, cur certmagic.Certificate, id, name string, log *zap.Logger) (*acme.RenewalInfo, error) {
	metaKey := certmagic.StorageKeys.SiteMeta(iss.IssuerKey(), name)
	stored, err := loadARI(ctx, st, metaKey, cur.Leaf)
	if err != nil {
		return nil, err
	}
	// What status shows follows storage (a farm-mate may have changed it).
	m.ari.noteStored(name, cur.Leaf, stored, iss.CA)
	unlock, ok := tryLock(ctx, st, "ari_"+id) // certmagic's ARI lock (its updateARI)
	if !ok {
		return stored, nil // another edge is fetching it: use what is stored
	}
	fresh, err := iss.GetRenewalInfo(ctx, cur)
	unlock()
	if err != nil {
		if errors.Is(err, acme.ErrUnsupported) {
			return stored, nil
		}
		return stored, fmt.Errorf("fetching ARI from %s: %w", iss.CA, err)
	}
	if stored != nil && fresh.SameWindow(*stored) {
		return stored, nil // unchanged: certmagic's selected time stands
	}
	// The window moved: store it as certmagic's updateARI would, while
	// storage still holds this certificate, under its issue lock (a
	// renewal writes the new certificate and its metadata under it).
	unlock, ok = tryLock(ctx, st, "issue_cert_"+name)
	if !ok {
		return stored, nil // being renewed now
	}
	defer unlock()
	if leaf, err := storedLeaf(ctx, st, iss.IssuerKey(), name); err != nil || !bytes.Equal(leaf.Raw, cur.Leaf.Raw) {
		return nil, nil // replaced meanwhile
	}
	if err := storeARI(ctx, st, metaKey, fresh); err != nil {
		return stored, err
	}
	m.ari.forget(name) // status reads it again
	f := []zap.Field{zap.Time("next_start", fresh.SuggestedWindow.Start), zap.Time("next_end", fresh.SuggestedWindow.End),
		zap.Time("selected_time", fresh.SelectedTime), zap.String("explanation_url", fresh.ExplanationURL)}
	if stored != nil {
		f = append(f, zap.Time("prev_start", stored.SuggestedWindow.Start), zap.Time("prev_end", stored.SuggestedWindow.End))
	}
	log.Warn("ARI window changed", f...)
	return &fresh, nil
}

// serveStored loads name's certificate from storage into the cache and
// drops the one with hash old, unless it is the same.
func (m *Manager) serveStored(ctx context.Context, cfg *certmagic.Config, name, old string) error {
	fresh, err := cfg.CacheManagedCertificate(ctx, name)
	if err != nil {
		return err
	}
	if fresh.Hash() != old {
		m.cache.Remove([]string{old})
	}
	return nil
}

// tryLock takes the storage lock name if it is free: at once with a
// TryLocker, else waiting at most 2 s. ok false: not taken.
func tryLock(ctx context.Context, st certmagic.Storage, name string) (unlock func(), ok bool) {
	if tl, isTry := st.(certmagic.TryLocker); isTry {
		if got, err := tl.TryLock(ctx, name); err != nil || !got {
			return nil, false
		}
	} else {
		lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := st.Lock(lctx, name)
		cancel()
		if err != nil {
			return nil, false
		}
	}
	return func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = st.Unlock(uctx, name)
	}, true
}

// storedLeaf returns the leaf of the certificate stored for name under
// the issuer key.
func storedLeaf(ctx context.Context, st certmagic.Storage, issuerKey, name string) (*x509.Certificate, error) {
	raw, err := st.Load(ctx, certmagic.StorageKeys.SiteCert(issuerKey, name))
	if err != nil {
		return nil, err
	}
	b, _ := pem.Decode(raw)
	if b == nil {
		return nil, fmt.Errorf("stored certificate of %s: no PEM", name)
	}
	return x509.ParseCertificate(b.Bytes)
}

// loadARI returns the ARI stored in the metadata at metaKey when it is
// leaf's (nil when none is).
func loadARI(ctx context.Context, st certmagic.Storage, metaKey string, leaf *x509.Certificate) (*acme.RenewalInfo, error) {
	raw, err := st.Load(ctx, metaKey)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("loading certificate metadata: %w", err)
	}
	return parseStoredARI(raw, leaf.SerialNumber), nil
}

// storeARI sets the ARI in the certificate metadata at metaKey, keeping
// every other field (certmagic's CertificateResource, whose issuer_data
// is acmez's acme.Certificate).
func storeARI(ctx context.Context, st certmagic.Storage, metaKey string, ari acme.RenewalInfo) error {
	raw, err := st.Load(ctx, metaKey)
	if err != nil {
		return fmt.Errorf("loading certificate metadata: %w", err)
	}
	var res map[string]json.RawMessage
	if err := json.Unmarshal(raw, &res); err != nil {
		return fmt.Errorf("certificate metadata: %w", err)
	}
	var data map[string]json.RawMessage
	if len(res["issuer_data"]) > 0 {
		if err := json.Unmarshal(res["issuer_data"], &data); err != nil {
			return fmt.Errorf("certificate metadata issuer_data: %w", err)
		}
	}
	if data == nil {
		data = map[string]json.RawMessage{}
	}
	if data["renewal_info"], err = json.Marshal(ari); err != nil {
		return err
	}
	if res["issuer_data"], err = json.Marshal(data); err != nil {
		return err
	}
	out, err := json.MarshalIndent(res, "", "\t")
	if err != nil {
		return err
	}
	if err := st.Store(ctx, metaKey, out); err != nil {
		return fmt.Errorf("storing ARI with the certificate metadata: %w", err)
	}
	return nil
}
