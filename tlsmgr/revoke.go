package tlsmgr

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/mholt/acmez/v3/acme"
	"go.uber.org/zap"
)

// RevocationReasons are the reasons Revoke takes, by their RFC 5280
// section 5.3.1 names, as Let's Encrypt accepts them from a subscriber.
var RevocationReasons = map[string]int{
	"unspecified":          acme.ReasonUnspecified,
	"keyCompromise":        acme.ReasonKeyCompromise,
	"affiliationChanged":   acme.ReasonAffiliationChanged,
	"superseded":           acme.ReasonSuperseded,
	"cessationOfOperation": acme.ReasonCessationOfOperation,
}

// RevocationReason returns the RFC 5280 code of a reason name ("" is
// unspecified), or an error listing the names.
func RevocationReason(name string) (int, error) {
	if name == "" {
		return acme.ReasonUnspecified, nil
	}
	if code, ok := RevocationReasons[name]; ok {
		return code, nil
	}
	names := make([]string, 0, len(RevocationReasons))
	for n := range RevocationReasons {
		names = append(names, n)
	}
	slices.Sort(names)
	return 0, fmt.Errorf("unknown revocation reason %q: expected one of %s", name, strings.Join(names, ", "))
}

// ErrNoCertificate is returned by Revoke for a name with no certificate.
var ErrNoCertificate = errors.New("no certificate to revoke")

// Revoke revokes the certificate serving name at the CA that issued it
// (certmagic's RevokeCert, which also deletes it from storage) with the
// RFC 5280 reason code, then obtains a replacement (a new key: certmagic
// does not reuse keys) in the background and serves it once issued; the
// revoked one serves until then. It returns the revoked serial (hex) once
// the CA has revoked it. Safe for concurrent use; a name being renewed or
// revoked already returns ErrRenewing.
func (m *Manager) Revoke(ctx context.Context, name string, reason int) (string, error) {
	g := m.cur.Load()
	if g == nil {
		return "", errors.New("no configuration")
	}
	name = normalise(name)
	cfg, ok := g.byName[name]
	if !ok {
		return "", fmt.Errorf("%s: %w", name, ErrNotManaged)
	}
	if m.stopped.Load() {
		return "", errors.New("stopping")
	}
	if _, busy := m.renewing.LoadOrStore(name, true); busy {
		return "", fmt.Errorf("%s: %w", name, ErrRenewing)
	}
	release := true
	defer func() {
		if release {
			m.renewing.Delete(name)
		}
	}()
	leaf, _ := m.leaf(name)
	if leaf == nil {
		return "", fmt.Errorf("%s: %w", name, ErrNoCertificate)
	}
	stored, err := m.StoredCertificate(ctx, name)
	if err != nil {
		return "", err
	}
	// Storage may hold a newer certificate than the one serving (another
	// edge renewed it): revoke what storage holds, which is what the
	// replacement supersedes, and say which it was.
	serial := leaf.SerialNumber.Text(16)
	if stored.Leaf != nil {
		serial = stored.Leaf.SerialNumber.Text(16)
	}
	var old []string
	for _, c := range m.cache.AllMatchingCertificates(name) {
		if slices.Contains(c.Names, name) {
			old = append(old, c.Hash())
		}
	}
	log := m.logger.With(zap.String("identifier", name), zap.String("serial", serial), zap.Int("reason", reason))
	if err := cfg.RevokeCert(ctx, name, reason, false); err != nil {
		return "", fmt.Errorf("revoking %s (serial %s): %w", name, serial, err)
	}
	log.Warn("certificate revoked; obtaining a replacement")
	release = false
	m.wg.Go(func() {
		defer m.renewing.Delete(name)
		if err := cfg.ObtainCertSync(g.ctx, name); err != nil {
			if g.ctx.Err() == nil {
				log.Error("replacement after revocation failed; certmagic's maintenance will retry", zap.Error(err))
			}
			return
		}
		fresh, err := cfg.CacheManagedCertificate(g.ctx, name)
		if err != nil {
			log.Error("loading the replacement", zap.Error(err))
			return
		}
		m.cache.Remove(slices.DeleteFunc(old, func(h string) bool { return h == fresh.Hash() }))
		log.Info("replacement after revocation obtained; serving it", zap.String("new_serial", fresh.Leaf.SerialNumber.Text(16)))
	})
	return serial, nil
}
