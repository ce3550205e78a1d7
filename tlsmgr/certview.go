package tlsmgr

// certview.go: what certmagic's cache holds for each configured name,
// kept up to date from the cache's own change log instead of asked per
// name. The renewal check's tick (shortestLifetime), /readyz (Ready) and
// /api/certificates and /metrics (Certificates) used to call
// Cache.AllMatchingCertificates once or twice per configured name each
// time, and each call allocates (strings.Split and a Join per label, a
// []Certificate of ~400 bytes a certificate): with 10,000 names, 4 MB a
// tick and a /readyz, 16 MB a status. Now only a name whose certificates
// changed is looked up again, once; the rest read what is kept here.
//
// certmagic v0.25.6 has no exported way to list its cache or to be told
// of a change, but every change of which certificates the cache holds
// goes through two unexported functions that log, inside the cache's
// lock and after the change, at debug level on the cache's logger (which
// edge makes): unsyncedCacheCertificate "added certificate to cache" and
// removeCertificate "removed certificate from cache", each with the
// certificate's SANs as "subjects" (loads, renewals, reloads after a
// farm-mate renewed, replacements, Remove, RemoveManaged, eviction).
// cacheWatchCore reads those two messages whatever the log level, and a
// name is looked up again when one of the SANs is the name or one of the
// wildcard names AllMatchingCertificates tries for it. A test
// (TestCertViewsFollowCache) holds the messages to certmagic.
//
// What the cache changes in place without a log, a certificate's OCSP
// staple (OCSP maintenance and a handshake that finds a stale staple) and
// its ARI, is not kept: Certificates still asks the cache for the staple
// of a certificate that names an OCSP responder. One that names none
// keeps the staple state it was loaded with (certmagic staples only what a
// responder answered).

import (
	"crypto/x509"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap/zapcore"
)

// What certmagic v0.25.6 logs (cache.go) after it added a certificate to
// its cache or removed one, with the certificate's SANs as "subjects".
const (
	msgCacheAdded   = "added certificate to cache"
	msgCacheRemoved = "removed certificate from cache"
)

// nameView is what the cache holds for one configured name.
type nameView struct {
	// leaf is the newest (latest NotAfter) certificate naming the name
	// exactly; nil: none.
	leaf *x509.Certificate
	// stapled: leaf's certificate had an OCSP staple when looked up.
	stapled bool
	// life is the shortest NotAfter-NotBefore of the certificates that
	// could serve the name (exact and wildcard), 0 with none. A lifetime
	// of exactly 0 is skipped (the per-name fold this replaced let one
	// stand or not depending on the order of the cache's map).
	life time.Duration
}

// certViews keeps a nameView per configured name.
type certViews struct {
	// pend holds the SANs the cache logged as changed since the last
	// sync; all: a change whose SANs could not be read. pendMu is taken
	// inside certmagic's cache lock (by the log hook): nothing may call
	// the cache while holding it.
	pendMu sync.Mutex
	pend   map[string]struct{}
	all    bool
	// subs are told (without blocking) of each change; see subscribe.
	subs map[chan struct{}]struct{}

	// mu guards the rest and is held while the cache is read.
	mu    sync.Mutex
	views map[string]nameView // every configured name
	dirty map[string]struct{} // configured names to look up again
	// byParent lists the configured names by all but their first label,
	// for wildcard SANs; built when one is first seen, nil after setNames.
	byParent map[string][]string
	short    time.Duration // min of views' life, when shortOK
	shortOK  bool
}

// changed records SANs the cache logged (the log hook; in the cache's lock).
func (v *certViews) changed(subjects []string, all bool) {
	v.pendMu.Lock()
	defer v.pendMu.Unlock()
	for c := range v.subs {
		select {
		case c <- struct{}{}:
		default: // one pending wake-up is enough
		}
	}
	if all {
		v.all = true
		return
	}
	if v.pend == nil {
		v.pend = make(map[string]struct{}, len(subjects))
	}
	for _, s := range subjects {
		v.pend[s] = struct{}{}
	}
}

// subscribe returns a channel that receives (at most one pending value)
// after each change of the cache; unsubscribe ends it.
func (v *certViews) subscribe() chan struct{} {
	c := make(chan struct{}, 1)
	v.pendMu.Lock()
	defer v.pendMu.Unlock()
	if v.subs == nil {
		v.subs = map[chan struct{}]struct{}{}
	}
	v.subs[c] = struct{}{}
	return c
}

func (v *certViews) unsubscribe(c chan struct{}) {
	v.pendMu.Lock()
	defer v.pendMu.Unlock()
	delete(v.subs, c)
}

// setNames makes names the configured names: a new one is looked up at
// the next sync, the views of those that stay are kept.
func (v *certViews) setNames(names []string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	views := make(map[string]nameView, len(names))
	for _, n := range names {
		if old, ok := v.views[n]; ok {
			views[n] = old
			continue
		}
		views[n] = nameView{}
		if v.dirty == nil {
			v.dirty = map[string]struct{}{}
		}
		v.dirty[n] = struct{}{}
	}
	for n := range v.dirty {
		if _, ok := views[n]; !ok {
			delete(v.dirty, n)
		}
	}
	v.views, v.byParent, v.shortOK = views, nil, false
}

// sync looks up again, in cache, the names whose certificates changed.
// Call with v.mu held.
func (v *certViews) sync(cache *certmagic.Cache) {
	v.pendMu.Lock()
	pend, all := v.pend, v.all
	v.pend, v.all = nil, false
	v.pendMu.Unlock()
	if all {
		if v.dirty == nil {
			v.dirty = make(map[string]struct{}, len(v.views))
		}
		for n := range v.views {
			v.dirty[n] = struct{}{}
		}
	} else {
		for s := range pend {
			v.markSAN(s)
		}
	}
	if len(v.dirty) == 0 {
		return
	}
	for n := range v.dirty {
		v.views[n] = lookUp(cache, n)
	}
	clear(v.dirty)
	v.shortOK = false
}

// markSAN marks the configured names that AllMatchingCertificates would
// find a certificate with SAN san for: san itself, and, for a wildcard
// SAN, the names of one of whose candidates it is.
func (v *certViews) markSAN(san string) {
	mark := func(n string) {
		if v.dirty == nil {
			v.dirty = map[string]struct{}{}
		}
		v.dirty[n] = struct{}{}
	}
	if _, ok := v.views[san]; ok {
		mark(san)
	}
	if san != "*" && !strings.HasPrefix(san, "*.") {
		return
	}
	if tail, ok := strings.CutPrefix(san, "*."); ok && tail != "*" && !strings.HasPrefix(tail, "*.") {
		// One leading wildcard label: the names under the same parent.
		if v.byParent == nil {
			v.byParent = map[string][]string{}
			for n := range v.views {
				if _, p, ok := strings.Cut(n, "."); ok {
					v.byParent[p] = append(v.byParent[p], n)
				}
			}
		}
		for _, n := range v.byParent[tail] {
			mark(n)
		}
		return
	}
	for n := range v.views { // "*", "*.*.x": rare
		if wildcardCandidate(san, n) {
			mark(n)
		}
	}
}

// wildcardCandidate reports whether san is one of the names certmagic's
// AllMatchingCertificates(name) looks up besides name: name with its
// first 1, 2, ... labels replaced by "*".
func wildcardCandidate(san, name string) bool {
	sl, nl := strings.Split(san, "."), strings.Split(name, ".")
	if len(sl) != len(nl) {
		return false
	}
	for j := 1; j <= len(sl); j++ {
		if sl[j-1] != "*" {
			return false
		}
		if slices.Equal(sl[j:], nl[j:]) {
			return true
		}
	}
	return false
}

// lookUp is the view of name from the cache.
func lookUp(cache *certmagic.Cache, name string) nameView {
	var v nameView
	all := cache.AllMatchingCertificates(name)
	for _, c := range all {
		if c.Leaf == nil {
			continue
		}
		if life := c.Leaf.NotAfter.Sub(c.Leaf.NotBefore); life != 0 && (v.life == 0 || life < v.life) {
			v.life = life
		}
		if slices.Contains(c.Names, name) && (v.leaf == nil || c.Leaf.NotAfter.After(v.leaf.NotAfter)) {
			v.leaf = c.Leaf
		}
	}
	for _, c := range all {
		if v.leaf != nil && c.Leaf == v.leaf {
			v.stapled = len(c.OCSPStaple) > 0
		}
	}
	return v
}

// shortest is the shortest lifetime of the certificates held for the
// configured names, 0 with none.
func (v *certViews) shortest(cache *certmagic.Cache) time.Duration {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.sync(cache)
	if !v.shortOK {
		v.short = 0
		for _, nv := range v.views {
			if nv.life != 0 && (v.short == 0 || nv.life < v.short) {
				v.short = nv.life
			}
		}
		v.shortOK = true
	}
	return v.short
}

// syncAll brings every view up to date; get then reads them.
func (v *certViews) syncAll(cache *certmagic.Cache) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.sync(cache)
}

// get is the view of a configured name as of the last sync.
func (v *certViews) get(name string) nameView {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.views[name]
}

// cacheWatchCore is the core of certmagic's cache logger: it hands the
// SANs of each "added"/"removed" entry to changed, at any log level, and
// passes everything on to the core it wraps.
type cacheWatchCore struct {
	zapcore.Core
	changed func(subjects []string, all bool)
}

// Enabled is true at every level: zap asks it before Check, and the
// entries watched are debug ones.
func (c cacheWatchCore) Enabled(zapcore.Level) bool { return true }

func (c cacheWatchCore) With(f []zapcore.Field) zapcore.Core {
	return cacheWatchCore{c.Core.With(f), c.changed}
}

func (c cacheWatchCore) Check(ent zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if ent.Message == msgCacheAdded || ent.Message == msgCacheRemoved {
		ce = ce.AddCore(ent, cacheChangeCore(c))
	}
	return c.Core.Check(ent, ce) // its own level decides
}

// cacheChangeCore is the core that only reads cacheWatchCore's entries.
type cacheChangeCore cacheWatchCore

func (cacheChangeCore) Enabled(zapcore.Level) bool          { return true }
func (c cacheChangeCore) With([]zapcore.Field) zapcore.Core { return c }
func (cacheChangeCore) Check(_ zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	return ce
}
func (cacheChangeCore) Sync() error { return nil }

func (c cacheChangeCore) Write(_ zapcore.Entry, fields []zapcore.Field) error {
	for _, f := range fields {
		if f.Key != "subjects" {
			continue
		}
		// zap.Strings: an array marshaler whose value is a []string type.
		if rv := reflect.ValueOf(f.Interface); f.Type == zapcore.ArrayMarshalerType && rv.Kind() == reflect.Slice &&
			rv.Type().Elem().Kind() == reflect.String {
			if s, ok := rv.Convert(reflect.TypeFor[[]string]()).Interface().([]string); ok {
				c.changed(s, false)
				return nil
			}
		}
	}
	c.changed(nil, true) // not readable: look every name up again
	return nil
}
