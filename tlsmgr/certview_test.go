package tlsmgr

import (
	"context"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// refShortest is shortestLifetime as it was: every configured name asked
// of the cache.
func refShortest(m *Manager) time.Duration {
	g := m.cur.Load()
	if g == nil {
		return 0
	}
	var short time.Duration
	for _, name := range g.names {
		for _, c := range m.cache.AllMatchingCertificates(name) {
			if c.Leaf == nil {
				continue
			}
			if life := c.Leaf.NotAfter.Sub(c.Leaf.NotBefore); short == 0 || life < short {
				short = life
			}
		}
	}
	return short
}

// refOCSP is CertStatus.OCSP as it was computed.
func refOCSP(m *Manager, name string) string {
	leaf, _ := m.leaf(name)
	state := ""
	for _, c := range m.cache.AllMatchingCertificates(name) {
		if leaf != nil && c.Leaf == leaf {
			state = ocspState(c.Certificate)
		}
	}
	return state
}

// TestCertViewsFollowCache: what certViews keeps (shortest lifetime,
// leaf, OCSP state, readiness) is what asking the cache per name gives,
// through loads, a wildcard certificate, a second certificate for a name,
// removals and a reload that drops a name. It also holds certmagic's
// cache log messages (msgCacheAdded, msgCacheRemoved) to the version in
// go.mod: were they to change, the views would go stale and this fails.
func TestCertViewsFollowCache(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t)
	day := 24 * time.Hour
	for i, n := range []string{"a.w.test", "b.w.test", "c.test"} {
		if err := ca.store(dir, n, int64(10+i), 90*day); err != nil {
			t.Fatal(err)
		}
	}
	if err := ca.store(dir, "*.w.test", 20, 5*time.Hour); err != nil {
		t.Fatal(err)
	}
	names := []string{"a.w.test", "b.w.test", "c.test"}
	m, stop := loadManyCerts(t, dir, names, 10*time.Millisecond)
	defer stop()
	ctx := context.Background()
	cfg := m.cur.Load().byName["a.w.test"]

	check := func(step string, wantShort time.Duration) {
		t.Helper()
		got, want := m.shortestLifetime(), refShortest(m)
		if got != want || (wantShort != 0 && (got < wantShort-2*time.Hour || got > wantShort)) {
			t.Errorf("%s: shortestLifetime = %s, asking the cache per name %s (want about %s)", step, got, want, wantShort)
		}
		ok, missing := m.Ready()
		m.views.syncAll(m.cache)
		for _, n := range m.status.list() {
			leaf, _ := m.leaf(n)
			v := m.views.get(n)
			if v.leaf != leaf {
				t.Errorf("%s: %s: view's leaf %v, the cache's %v", step, n, v.leaf != nil, leaf != nil)
			}
			if leaf != nil {
				if got, want := m.ocspOf(n, v), refOCSP(m, n); got != want {
					t.Errorf("%s: %s: OCSP %q, want %q", step, n, got, want)
				}
			}
			if leaf == nil != slices.Contains(missing, n) {
				t.Errorf("%s: %s: missing %v, but leaf %v", step, n, missing, leaf != nil)
			}
		}
		if !ok && len(missing) == 0 {
			t.Errorf("%s: not ready with nothing missing", step)
		}
	}
	check("loaded", 90*day)

	wild, err := cfg.CacheManagedCertificate(ctx, "*.w.test")
	if err != nil {
		t.Fatal(err)
	}
	check("wildcard cached", 5*time.Hour)
	m.cache.Remove([]string{wild.Hash()})
	check("wildcard removed", 90*day)

	// A second, shorter certificate for a.w.test: the 90-day one still
	// serves (latest NotAfter), the shortest lifetime is the new one's.
	old := m.cache.AllMatchingCertificates("a.w.test")
	if err := ca.store(dir, "a.w.test", 30, 3*time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := cfg.CacheManagedCertificate(ctx, "a.w.test"); err != nil {
		t.Fatal(err)
	}
	check("second certificate", 3*time.Hour)
	if v := m.views.get("a.w.test"); v.leaf == nil || v.leaf.NotAfter.Sub(v.leaf.NotBefore) < day {
		t.Errorf("a.w.test: the 90-day certificate should serve")
	}
	for _, c := range old {
		m.cache.Remove([]string{c.Hash()})
	}
	check("old one removed", 3*time.Hour)
	if v := m.views.get("a.w.test"); v.leaf == nil || v.leaf.NotAfter.Sub(v.leaf.NotBefore) > day {
		t.Errorf("a.w.test: the 3-hour certificate should serve")
	}

	m.cache.Remove([]string{m.cache.AllMatchingCertificates("a.w.test")[0].Hash()})
	check("a.w.test removed", 90*day)
	if ok, missing := m.Ready(); ok || !slices.Equal(missing, []string{"a.w.test"}) {
		t.Errorf("Ready = %v %v, want a.w.test missing", ok, missing)
	}

	// A reload without c.test: RemoveManaged drops its certificate, and
	// a name no longer configured counts no more. The new group loads
	// a.w.test again from storage (in the background).
	err = m.Apply(ctx, Options{CA: manyCertsCA, Email: "bench@example.com", HTTP01: true,
		Storage: &certmagic.FileStorage{Path: dir}, Groups: []Group{{Names: []string{"a.w.test", "b.w.test"}}}})
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if ok, _ := m.Ready(); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a.w.test not loaded again after the reload")
		}
	}
	check("reloaded without c.test", 3*time.Hour)
	if got := m.cache.AllMatchingCertificates("c.test"); len(got) != 0 {
		t.Errorf("c.test still cached")
	}

	// Nothing changed: the tick and /readyz ask the cache nothing and
	// allocate nothing per name.
	cancelLoops(m)
	if n := testing.AllocsPerRun(20, func() { m.shortestLifetime() }); n > 0 {
		t.Errorf("shortestLifetime: %.1f allocations with nothing changed, want 0", n)
	}
}

// TestCacheWatchCore: the hook sees the cache's debug entries whatever
// the logger's level, hands on what that level allows, and falls back to
// every name when it cannot read the SANs.
func TestCacheWatchCore(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	var got [][]string
	var all int
	log := zap.New(cacheWatchCore{core, func(s []string, a bool) {
		if a {
			all++
		}
		got = append(got, s)
	}})
	log.Debug(msgCacheAdded, zap.Strings("subjects", []string{"a.test", "*.b.test"}))
	log.Named("x").With(zap.String("k", "v")).Debug(msgCacheRemoved, zap.Strings("subjects", []string{"c.test"}))
	log.Debug(msgCacheAdded, zap.String("subjects", "d.test"))
	log.Debug("something else", zap.Strings("subjects", []string{"e.test"}))
	log.Info("info")
	if want := [][]string{{"a.test", "*.b.test"}, {"c.test"}, nil}; !slices.EqualFunc(got, want, slices.Equal) || all != 1 {
		t.Errorf("changed got %q (all %d times), want %q (all once)", got, all, want)
	}
	if logs.Len() != 1 || logs.All()[0].Message != "info" {
		t.Errorf("passed on %v, want only the info entry", logs.All())
	}
}

// TestMarkSAN: the names a changed SAN makes certViews look up again are
// those whose AllMatchingCertificates could find it.
func TestMarkSAN(t *testing.T) {
	// certmagic's candidates: name, then its first 1, 2, ... labels "*".
	candidates := func(name string) []string {
		out := []string{name}
		labels := strings.Split(name, ".")
		for i := range labels {
			labels[i] = "*"
			out = append(out, strings.Join(labels, "."))
		}
		return out
	}
	names := []string{"a.w.test", "b.w.test", "x.y.w.test", "w.test", "*.w.test", "host", "a.other"}
	sans := []string{"a.w.test", "*.w.test", "*.*.test", "*.y.w.test", "*.*.w.test", "*.*.*", "*", "*.test", "host", "nope.test", "*.*"}
	for _, san := range sans {
		var v certViews
		v.setNames(names)
		clear(v.dirty)
		v.markSAN(san)
		for _, n := range names {
			_, marked := v.dirty[n]
			if want := slices.Contains(candidates(n), san); marked != want {
				t.Errorf("SAN %q: %q marked %v, want %v", san, n, marked, want)
			}
		}
	}
}

// TestManagePaced: a group larger than manageWindow is handed to
// certmagic a window at a time, and every name gets there: those stored
// are loaded, and those not stored (here, after them) are ordered
// (cert_obtaining, from a CA where nothing listens) without waiting for
// more than manageIdle per window.
func TestManagePaced(t *testing.T) {
	dir := t.TempDir()
	stored := writeManyCerts(t, dir, manageWindow*2+10, 90*24*time.Hour)
	var missing []string
	for i := range 20 {
		missing = append(missing, "missing"+strconv.Itoa(i)+".bench.test")
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := New(nil, nil)
	defer m.Stop()
	defer cancel()
	if err := m.Apply(ctx, Options{CA: manyCertsCA, Email: "bench@example.com", HTTP01: true,
		Storage: &certmagic.FileStorage{Path: dir}, Groups: []Group{{Names: append(slices.Clone(stored), missing...)}}}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, lacking := m.Ready()
		handed := 0
		for _, n := range missing {
			if ns, _ := m.status.get(n); ns.state != "" {
				handed++
			}
		}
		if slices.Equal(lacking, missing) && handed == len(missing) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 60 s: %d names without a certificate (want the %d missing ones), %d of the missing handed to certmagic",
				len(lacking), len(missing), handed)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestLowerGC(t *testing.T) {
	gogc := gcPercent
	orig := debug.SetGCPercent(100)
	t.Cleanup(func() { // also after a failure between a lowerGC and its restore
		loadGC.Lock()
		loadGC.loads = 0
		loadGC.Unlock()
		debug.SetGCPercent(orig)
	})
	first := lowerGC()
	if got := gogc(); got != loadGCPercent {
		t.Fatalf("during a load: GOGC %d, want %d", got, loadGCPercent)
	}
	second := lowerGC()
	first()
	if got := gogc(); got != loadGCPercent {
		t.Fatalf("one load ended, another runs: GOGC %d, want %d", got, loadGCPercent)
	}
	second()
	if got := gogc(); got != 100 {
		t.Fatalf("after the loads: GOGC %d, want 100 back", got)
	}
	for _, set := range []int{loadGCPercent, 5, -1} { // as low, lower already; off (a memory limit only)
		debug.SetGCPercent(set)
		restore := lowerGC()
		if got := gogc(); got != set {
			t.Errorf("GOGC %d during a load: changed to %d", set, got)
		}
		restore()
		if got := gogc(); got != set {
			t.Errorf("GOGC %d after a load: changed to %d", set, got)
		}
	}
}

// TestManagePacedReload: a start loads a large group from storage (its log
// line: every name without a certificate before, the memory returned); a
// reload that changes the group hands the same names over again, which
// the cache holds: no load (one name without a certificate, no memory
// returned, so no lowered GC target either: both follow one condition).
func TestManagePacedReload(t *testing.T) {
	dir := t.TempDir()
	names := writeManyCerts(t, dir, manageWindow*2+10, 90*24*time.Hour)
	core, logs := observer.New(zapcore.DebugLevel)
	ctx, cancel := context.WithCancel(context.Background())
	m := New(zap.New(core), nil)
	defer m.Stop()
	defer cancel()
	apply := func(names []string) {
		t.Helper()
		if err := m.Apply(ctx, Options{CA: manyCertsCA, Email: "bench@example.com", HTTP01: true,
			Storage: &certmagic.FileStorage{Path: dir}, Groups: []Group{{Names: names}}}); err != nil {
			t.Fatal(err)
		}
	}
	loaded := func(n int) map[string]any {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			if es := logs.FilterMessage("certificates loaded").All(); len(es) >= n {
				return es[n-1].ContextMap()
			}
			if time.Now().After(deadline) {
				t.Fatalf("after 60 s: %d paced loads ended, want %d", len(logs.FilterMessage("certificates loaded").All()), n)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	apply(names)
	if got := loaded(1); got["without_certificate_before"] != int64(len(names)) || got["memory_returned"] != true {
		t.Errorf("start: %v; want all %d names without a certificate before, memory returned", got, len(names))
	}
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if ok, _ := m.Ready(); ok {
			break // every name loaded, even one manageIdle counted out
		}
		if time.Now().After(deadline) {
			t.Fatal("not ready 60 s after the start")
		}
	}
	apply(append(slices.Clone(names), "new.bench.test")) // the group changed: handed over again
	if got := loaded(2); got["without_certificate_before"] != int64(1) || got["memory_returned"] != false {
		t.Errorf("reload: %v; want 1 name without a certificate before, memory not returned", got)
	}
}
