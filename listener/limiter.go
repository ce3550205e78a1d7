package listener

import (
	"net/netip"
	"sync"
	"sync/atomic"
)

// ConnLimiter counts the open connections of each client address and caps
// them. Create one with NewConnLimiter and share it between the listeners
// whose connections it caps together; keep it across reloads and apply a
// new cap with SetMax. The zero value is ready to use: it counts, with no
// cap. A ConnLimiter is safe for concurrent use.
type ConnLimiter struct {
	max  atomic.Int64
	mu   sync.Mutex
	open map[netip.Addr]int // no zero counts
}

// NewConnLimiter returns a limiter that lets each address hold at most max
// open connections (0 or less: no cap, connections are only counted).
func NewConnLimiter(max int) *ConnLimiter {
	l := &ConnLimiter{}
	l.SetMax(max)
	return l
}

// SetMax changes the cap (0 or less: none). Connections already open stay
// open; an address over the new cap gets no new one until it is under.
func (l *ConnLimiter) SetMax(max int) { l.max.Store(int64(max)) }

// Max returns the cap, 0 when there is none.
func (l *ConnLimiter) Max() int { return int(max(l.max.Load(), 0)) }

// Open returns the number of open connections counted for a.
func (l *ConnLimiter) Open(a netip.Addr) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open[a.Unmap()]
}

// acquire counts one more connection for a, or reports false when a is
// at the cap.
func (l *ConnLimiter) acquire(a netip.Addr) bool {
	a = a.Unmap()
	m := l.max.Load()
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.open[a]
	if m > 0 && int64(n) >= m {
		return false
	}
	if l.open == nil {
		l.open = make(map[netip.Addr]int)
	}
	l.open[a] = n + 1
	return true
}

// release counts one connection of a fewer.
func (l *ConnLimiter) release(a netip.Addr) {
	a = a.Unmap()
	l.mu.Lock()
	defer l.mu.Unlock()
	switch n := l.open[a]; {
	case n > 1:
		l.open[a] = n - 1
	case n == 1:
		delete(l.open, a)
	}
}
