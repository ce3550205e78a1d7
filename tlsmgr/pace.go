package tlsmgr

// pace.go: a group's names are handed to certmagic's ManageAsync a window
// at a time. ManageAsync starts one goroutine per name at once, each
// loading its certificate from storage (read, parse, OCSP staple); with
// 10,000 names that is 10,000 goroutines alive together, whose stacks
// (about 22 KiB each by the time they parse and log) peaked at 222 MiB
// and the heap at 137 MiB in BenchmarkManyCertsLoad, most of edge's RSS
// peak after a start. Handing certmagic at most manageWindow names that
// have not loaded yet keeps both near what the loaded certificates need
// (6 MiB of stacks, 77 MiB of heap) and loads as fast on 2 cores.
//
// Every name still goes through ManageAsync (certmagic's manageOne:
// load, revocation check, ARI, renewal or obtain), in order; only when
// changes. A name counts as loaded once certViews sees a certificate for
// it; names that load nothing (none stored: certmagic queues an order; a
// storage error) stop counting once the cache has had no addition for
// manageIdle, so they never hold the rest back for long. A group of at
// most manageWindow names is handed over at once, inside Apply, as before.

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"time"

	"go.uber.org/zap"
)

const (
	// manageWindow is how many names may be loading at once.
	manageWindow = 256
	// manageIdle: with no certificate added for this long, the names
	// handed over and still without one stop counting against the window.
	manageIdle = 250 * time.Millisecond
)

// loadGCPercent is the GC target (GOGC) while a large group loads.
// Collections after each 10 % of growth instead of 100 % leave little of
// the load's garbage between the certificates that stay, in spans Go can
// neither compact nor return: with 10,000 certificates (bench/certgen) the
// heap's spans in use 2 s after ready went from 71-79 to 53-56 MiB for a
// live heap of about 50 MiB, and RSS from 94-100 to 75-76 MiB, while the
// load took 2.1 s instead of 0.9 and twice the CPU (4 s instead of 2).
const loadGCPercent = 10

// loadGC counts the large loads running; the first lowers the GC target to
// loadGCPercent and the last puts back what was set before (GOGC).
var loadGC struct {
	sync.Mutex
	loads   int
	prev    int
	lowered bool // by the first load (else it was that low already, or off)
}

// lowerGC lowers the GC target for a large load until the returned func
// is called. A target already as low, or GOGC=off (a memory limit only),
// is left as it is.
func lowerGC() (restore func()) {
	loadGC.Lock()
	defer loadGC.Unlock()
	if loadGC.loads == 0 {
		loadGC.prev = gcPercent()
		loadGC.lowered = loadGC.prev > loadGCPercent // not off (negative) or lower
		if loadGC.lowered {
			debug.SetGCPercent(loadGCPercent)
		}
	}
	loadGC.loads++
	return func() {
		loadGC.Lock()
		defer loadGC.Unlock()
		if loadGC.loads--; loadGC.loads == 0 && loadGC.lowered {
			debug.SetGCPercent(loadGC.prev)
		}
	}
}

// gcPercent is the GC target in force (GOGC; negative when off), read
// without setting it.
func gcPercent() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int(int64(s[0].Value.Uint64())) // off reads as uint64(-1)
}

// manage hands rt's names to certmagic: at once when they fit in one
// window, else from a goroutine of the Manager's, a window at a time.
func (m *Manager) manage(rt *group) {
	if len(rt.names) <= manageWindow {
		m.manageNow(rt, rt.names)
		return
	}
	m.wg.Go(func() { m.managePaced(rt.ctx, rt) })
}

func (m *Manager) manageNow(rt *group, names []string) {
	// In async mode certmagic logs each name's failure and returns nil.
	if err := rt.cfg.ManageAsync(rt.ctx, names); err != nil && rt.ctx.Err() == nil {
		m.logger.Error("managing certificates", zap.Int("names", len(names)), zap.Error(err))
	}
}

// managePaced hands rt's names over in order, keeping at most
// manageWindow of them handed over and not yet loaded, until all are
// handed over and loaded (or counted out by manageIdle), or ctx ends (the
// group was replaced or the Manager stopped). When more than manageWindow
// of the names had no certificate in the cache before (a start, or new
// names; not a reload of names loaded already), it then gives the load's
// garbage back to the operating system at once (debug.FreeOSMemory): a
// load of 10,000 certificates allocates some 500 MB for a live heap of
// about 35 MiB, and Go's scavenger would otherwise keep about twice the
// heap goal of the load's last collection resident for minutes: with
// 10,000 certificates (bench/certgen), RSS 3 s after ready went from 120
// to 100 MiB (an edge with one certificate: about 25). What stays is the
// live heap and spans the load left partly used, which Go cannot compact;
// the GC target is lowered meanwhile (lowerGC) so that these are few. It
// costs one collection, once per large load.
func (m *Manager) managePaced(ctx context.Context, rt *group) {
	notify := m.views.subscribe()
	defer m.views.unsubscribe(notify)
	// A load from storage, or a group of names the cache holds already (a
	// reload that changed a large group): only the first makes garbage
	// worth the lower GC target and the collection at the end.
	m.views.syncAll(m.cache)
	fresh := 0
	for _, n := range rt.names {
		if m.views.get(n).leaf == nil {
			fresh++
		}
	}
	load := fresh > manageWindow
	if load {
		defer lowerGC()()
	}
	idle := time.NewTimer(manageIdle)
	defer idle.Stop()
	var loading []string // handed over, no certificate seen yet
	next := 0
	for next < len(rt.names) || len(loading) > 0 {
		if free := manageWindow - len(loading); free > 0 && next < len(rt.names) {
			end := min(next+free, len(rt.names))
			batch := rt.names[next:end]
			next = end
			m.manageNow(rt, batch)
			loading = append(loading, batch...)
			idle.Reset(manageIdle)
		}
		select {
		case <-ctx.Done():
			return
		case <-notify:
			m.views.syncAll(m.cache)
			kept := loading[:0]
			for _, n := range loading {
				if m.views.get(n).leaf == nil {
					kept = append(kept, n)
				}
			}
			if len(kept) < len(loading) {
				idle.Reset(manageIdle)
			}
			clear(loading[len(kept):])
			loading = kept
		case <-idle.C:
			loading = loading[:0] // nothing loading any more
		}
	}
	if load {
		debug.FreeOSMemory()
	}
	m.logger.Debug("certificates loaded", zap.Int("names", len(rt.names)), zap.Int("without_certificate_before", fresh),
		zap.Bool("memory_returned", load))
}
