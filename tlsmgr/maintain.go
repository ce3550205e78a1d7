package tlsmgr

import (
	"context"
	"time"

	"go.uber.org/zap"
)

// Bounds of the renewal check interval: certmagic's own maintenance looks
// every 10 minutes, far too seldom for a certificate that lives hours (a
// six-day or scaled-down test certificate). The Manager adds checks at a
// twentieth of the shortest lifetime it holds, within these bounds.
const (
	minRenewCheck = time.Second
	maxRenewCheck = 10 * time.Minute
)

// renewCheckInterval is how often certificates whose shortest lifetime is
// life must be checked for renewal.
func renewCheckInterval(life time.Duration) time.Duration {
	if life <= 0 {
		return maxRenewCheck
	}
	return min(max(life/20, minRenewCheck), maxRenewCheck)
}

// shortestLifetime returns the shortest NotAfter-NotBefore of the
// certificates held for the configured names (exact and wildcard
// matches, as a handshake finds them), or 0 with none. It reads what
// certViews keeps and asks the cache again only about names whose
// certificates changed since: nothing per name per tick.
func (m *Manager) shortestLifetime() time.Duration { return m.views.shortest(m.cache) }

// checkInterval is the renewal check interval in force.
func (m *Manager) checkInterval() time.Duration { return time.Duration(m.interval.Load()) }

// maintain runs certmagic's renewal check as often as the shortest
// certificate held needs, until ctx ends. certmagic renews what is due
// (its ARI window, else the renewal ratio), one job per name. The interval
// is recomputed at least every recheck (every second while no certificate
// is held), so a first short certificate obtained after the start is
// noticed.
func (m *Manager) maintain(ctx context.Context) {
	const recheck = 30 * time.Second
	log := m.logger.Named("maintenance")
	interval, last := maxRenewCheck, time.Now()
	t := time.NewTimer(minRenewCheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		short := m.shortestLifetime()
		if next := renewCheckInterval(short); next != interval {
			log.Debug("renewal check interval", zap.Duration("interval", next))
			interval = next
			// certmagic renews at once when ARI's selected time falls
			// before the next check: tell it when that is.
			m.cacheOpts.RenewCheckInterval = interval
			m.cache.SetOptions(m.cacheOpts)
			m.interval.Store(int64(interval))
		}
		// certmagic's own tick covers the maximum.
		if interval < maxRenewCheck && time.Since(last) >= interval {
			last = time.Now()
			if err := m.cache.RenewManagedCertificates(ctx); err != nil && ctx.Err() == nil {
				log.Warn("renewal check", zap.Error(err))
			}
		}
		if short == 0 {
			t.Reset(minRenewCheck) // none held yet: notice the first one at once
		} else {
			t.Reset(min(interval, recheck))
		}
	}
}
