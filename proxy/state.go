package proxy

import (
	"sync"
	"sync/atomic"
)

// State is the part of the proxy that describes the world rather than a
// configuration: each backend's health verdict, passive ejection, in-flight
// count and failure count, each pool's balancing position, and each site's
// rate-limit buckets. The process
// keeps one State for its whole life and gives it to every Handler it builds
// (Config.State); a reload that keeps a pool keeps its backends as they were,
// so a backend that is down stays out of rotation.
//
// State is keyed by pool name and backend URL. A backend lives in it as long
// as at least one open Handler lists it: when the last Handler that lists it
// is closed, its entry and its metric series (edge_backend_requests_total,
// edge_backend_failures_total) are removed. A site's rate-limit buckets are
// keyed by site name and RateLimit: a reload that keeps both keeps every
// client's bucket; one that changes the site's RateLimit starts it afresh.
// Build a State with NewState; it is safe for concurrent use.
type State struct {
	mu       sync.Mutex
	pools    map[string]*poolState
	limiters map[limiterKey]*limiterState
}

// limiterKey names the rate-limit table of a site.
type limiterKey struct {
	site string
	rate RateLimit // resolved
}

// limiterState is a site's rate-limit table and the open Handlers that use
// it.
type limiterState struct {
	refs  int
	table *rateTable
}

// poolState is what a State keeps of one pool.
type poolState struct {
	refs     int // open Handlers that have this pool
	selector Selector
	backends map[string]*backendState
	queue    waitQueue  // requests waiting for a backend below MaxConns
	stats    *poolStats // nil without metrics
	metrics  *Metrics   // where stats were made, to delete them
}

// backendState is the live state of one backend, shared by every Handler
// that lists it. Policies read it through Upstream's methods.
type backendState struct {
	down         atomic.Bool  // set by the active health check
	ejectedUntil atomic.Int64 // unix nanoseconds; 0 when not ejected (passive check)
	inFlight     atomic.Int64
	fails        atomic.Uint64 // backend failures since the backend was first configured
	// drained takes the backend out of new traffic (Handler.Drain) while
	// its requests in flight finish; it outlives reloads with the state.
	drained atomic.Bool
	// changedAt is when the backend last went up or down (unix
	// nanoseconds, 0 never); recent counts its last minute's attempts and
	// failures (recent.go). Both outlive reloads with the state.
	changedAt atomic.Int64
	recent    recentCounts
	// maxConns is the cap on inFlight, 0 for none: the smallest MaxConns
	// of the open Handlers that list the backend (caps counts them by
	// MaxConns, 0 for none; guarded by State.mu). So no generation's cap is
	// exceeded while two overlap during a reload.
	maxConns atomic.Int64
	caps     map[int]int
	queue    *waitQueue // the pool's, woken when inFlight drops; nil in tests

	passive passiveState
	health  activeState

	refs     int           // guarded by State.mu
	stats    *backendStats // nil without metrics
	metrics  *Metrics      // where stats were made, to delete them
	poolName string
	key      string // the backend's name in its pool
}

// NewState returns an empty State.
func NewState() *State {
	return &State{pools: make(map[string]*poolState), limiters: make(map[limiterKey]*limiterState)}
}

// acquireLimiter returns the rate-limit table of k, creating it, and counts
// one more Handler that uses it.
func (s *State) acquireLimiter(k limiterKey) *rateTable {
	s.mu.Lock()
	defer s.mu.Unlock()
	ls := s.limiters[k]
	if ls == nil {
		ls = &limiterState{table: newRateTable(k.rate, maxRateClients)}
		s.limiters[k] = ls
	}
	ls.refs++
	return ls.table
}

// releaseLimiter undoes acquireLimiter; the table of k goes when no open
// Handler uses it.
func (s *State) releaseLimiter(k limiterKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ls := s.limiters[k]; ls != nil {
		if ls.refs--; ls.refs <= 0 {
			delete(s.limiters, k)
		}
	}
}

// acquire returns the pool's state, creating it, and counts one more Handler
// that uses it. sel is the Selector the new configuration asks for: the
// pool's previous Selector is kept when it is of the same policy, so that a
// round robin goes on from where it was. m makes the metric series of a new
// pool.
func (s *State) acquire(pool string, sel Selector, m *Metrics) (*poolState, Selector) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ps := s.pools[pool]
	if ps == nil {
		ps = &poolState{backends: make(map[string]*backendState), metrics: m}
		if m != nil {
			ps.stats = m.poolStats(pool)
		}
		s.pools[pool] = ps
	}
	ps.refs++
	if ps.selector == nil || policyName(ps.selector) != policyName(sel) {
		ps.selector = sel
	}
	return ps, ps.selector
}

// backend returns the backend's state, creating it (fresh) when no open
// Handler lists it, and counts one more Handler that uses it, with its
// MaxConns (0 for none). m makes the metric series of a new backend.
func (s *State) backend(ps *poolState, pool, name string, m *Metrics, maxConns int) (st *backendState, fresh bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st = ps.backends[name]
	if st == nil {
		st = &backendState{poolName: pool, key: name, metrics: m, queue: &ps.queue, caps: make(map[int]int)}
		if m != nil {
			st.stats = m.backendStats(pool, name)
		}
		ps.backends[name] = st
		fresh = true
	}
	st.refs++
	st.caps[maxConns]++
	st.setMaxConns()
	return st, fresh
}

// setMaxConns makes maxConns the smallest cap in caps. A cap that goes up
// wakes the pool's waiters. The caller holds State.mu.
func (st *backendState) setMaxConns() {
	least := 0
	for c := range st.caps {
		if c > 0 && (least == 0 || c < least) {
			least = c
		}
	}
	old := st.maxConns.Swap(int64(least))
	if st.queue != nil && old != 0 && (least == 0 || int64(least) > old) {
		st.queue.wakeAll()
	}
}

// release undoes acquire and backend for one Handler: pool is the pool's
// name, backends the states it took with its MaxConns. Entries no open
// Handler uses any more are dropped with their metric series.
func (s *State) release(pool string, backends []*backendState, maxConns int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ps := s.pools[pool]
	if ps == nil {
		return
	}
	for _, st := range backends {
		st.refs--
		if st.caps[maxConns]--; st.caps[maxConns] <= 0 {
			delete(st.caps, maxConns)
		}
		if st.refs > 0 {
			st.setMaxConns()
			continue
		}
		delete(ps.backends, st.key)
		if st.metrics != nil {
			st.metrics.deleteBackend(st.poolName, st.key)
		}
	}
	ps.refs--
	if ps.refs <= 0 {
		delete(s.pools, pool)
		if ps.metrics != nil {
			ps.metrics.deletePool(pool)
		}
	}
}

// len returns how many backends the State holds (for tests).
func (s *State) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, ps := range s.pools {
		n += len(ps.backends)
	}
	return n
}
