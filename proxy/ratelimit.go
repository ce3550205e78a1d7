package proxy

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// RateLimit limits the requests each client address (see
// Config.TrustedProxies) may send to one site: a token bucket that holds
// Burst requests and refills at Events per Interval. A request beyond it
// gets 429 Too Many Requests with Retry-After, and no backend sees it.
//
// The zero value (Events 0) limits nothing. Burst 0 means Events. With
// Events set, Interval must be positive; no field may be negative.
type RateLimit struct {
	Events   int
	Interval time.Duration
	Burst    int
}

// resolve checks c and fills in the default Burst.
func (c RateLimit) resolve() (RateLimit, error) {
	switch {
	case c.Events < 0 || c.Burst < 0 || c.Interval < 0:
		return c, fmt.Errorf("rate limit %d per %v, burst %d: negative", c.Events, c.Interval, c.Burst)
	case c.Events == 0:
		return RateLimit{}, nil
	case c.Interval == 0:
		return c, fmt.Errorf("rate limit of %d events needs a positive interval", c.Events)
	}
	if c.Burst == 0 {
		c.Burst = c.Events
	}
	return c, nil
}

// retryAfter is the Retry-After value for a wait of d: whole seconds,
// rounded up, at least 1 (RFC 9110, section 10.2.3).
func retryAfter(d time.Duration) int64 {
	return max(int64((d+time.Second-1)/time.Second), 1)
}

const (
	// rateShards spreads a site's clients over this many locks.
	rateShards = 16
	// maxRateClients bounds the clients a site's table tracks at once
	// (about 200 bytes each). At the cap, the client seen least recently
	// is forgotten to make room; if it comes back it starts with a full
	// bucket. New clients are never let through unlimited.
	maxRateClients = 1 << 16
)

// rateTable holds the token buckets of one site's clients, keyed by
// address. It stays bounded in memory: a bucket idle for a full refill (it
// is full again, as a new one would be) is swept when its shard is next
// used, and each shard keeps at most its share of maxRateClients, evicting
// the least recently used entry. Safe for concurrent use.
type rateTable struct {
	limit  rate.Limit
	burst  int
	idle   time.Duration // a full refill: Burst / limit
	shards [rateShards]rateShard
}

// rateShard is one lock's part of a rateTable: a map and a list of its
// entries, most recently used first.
type rateShard struct {
	mu         sync.Mutex
	m          map[netip.Addr]*rateEntry
	head, tail *rateEntry
	max        int
}

// rateEntry is the bucket of one client address.
type rateEntry struct {
	addr       netip.Addr
	lim        *rate.Limiter
	last       time.Time // the last request
	prev, next *rateEntry
}

// newRateTable returns the table of a resolved, non-zero c that tracks at
// most maxClients addresses.
func newRateTable(c RateLimit, maxClients int) *rateTable {
	t := &rateTable{
		limit: rate.Limit(float64(c.Events) / c.Interval.Seconds()),
		burst: c.Burst,
		idle:  time.Duration(float64(c.Interval) * float64(c.Burst) / float64(c.Events)),
	}
	perShard := max(maxClients/rateShards, 1)
	for i := range t.shards {
		t.shards[i].m = make(map[netip.Addr]*rateEntry)
		t.shards[i].max = perShard
	}
	return t
}

// delay takes a token for a request of client (an address as
// Handler.clientAddr gives it) at now. It returns 0 when the request may
// go, else how long until it could: the token is then given back, so that
// refused requests do not push the client's wait further out. Strings that
// are not an address share one bucket.
func (t *rateTable) delay(client string, now time.Time) time.Duration {
	a, err := netip.ParseAddr(client)
	if err == nil {
		a = a.Unmap().WithZone("")
	}
	sh := &t.shards[shardOf(a)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.sweep(now, t.idle)
	e := sh.m[a]
	if e == nil {
		if len(sh.m) >= sh.max {
			sh.remove(sh.tail)
		}
		e = &rateEntry{addr: a, lim: rate.NewLimiter(t.limit, t.burst)}
		sh.m[a] = e
	} else {
		sh.unlink(e)
	}
	sh.pushFront(e)
	e.last = now
	res := e.lim.ReserveN(now, 1)
	if !res.OK() { // not reached: burst is at least 1
		return t.idle
	}
	d := res.DelayFrom(now)
	if d > 0 {
		res.CancelAt(now)
	}
	return d
}

// len returns how many clients the table tracks (for tests).
func (t *rateTable) len() int {
	n := 0
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}

// shardOf spreads addresses over the shards.
func shardOf(a netip.Addr) int {
	b := a.As16()
	x := binary.LittleEndian.Uint64(b[:8]) ^ binary.LittleEndian.Uint64(b[8:])
	return int(mix(x) % rateShards)
}

// sweep drops the entries, least recently used first, that have been idle
// for longer than idle: their buckets are full.
func (sh *rateShard) sweep(now time.Time, idle time.Duration) {
	for sh.tail != nil && now.Sub(sh.tail.last) > idle {
		sh.remove(sh.tail)
	}
}

func (sh *rateShard) remove(e *rateEntry) {
	sh.unlink(e)
	delete(sh.m, e.addr)
}

func (sh *rateShard) unlink(e *rateEntry) {
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		sh.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		sh.tail = e.prev
	}
	e.prev, e.next = nil, nil
}

func (sh *rateShard) pushFront(e *rateEntry) {
	e.next = sh.head
	if sh.head != nil {
		sh.head.prev = e
	}
	sh.head = e
	if sh.tail == nil {
		sh.tail = e
	}
}
