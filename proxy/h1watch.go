package proxy

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// A request's context ends (the client left, a try timed out, the handler
// gave up) while h1Transport may be blocked reading its answer from the
// backend. Instead of a context.AfterFunc per request (about eight
// allocations, most of them the request context's children map), every
// exchange in flight is in a table (in watchShards parts) that a sweeper
// walks every watchEvery while it is not empty: an exchange whose context
// has ended gets a deadline in the past, which interrupts its read or
// write, and is marked, so that its connection is closed, never pooled.
// A cancel therefore interrupts a blocked backend read within watchEvery;
// the request's own checks of ctx.Err() see it at once.
//
// The sweeper also enforces the backend's response_header_timeout: an
// exchange whose header is not in by its headerBy is interrupted the same
// way, at most watchEvery late. A deadline set on the connection and
// cleared again for every request was two timer changes in the runtime,
// about 1.5 % of edge's CPU under keep-alive load.
const watchEvery = 20 * time.Millisecond

// headerTimedOut is h1Conn.headerBy once the sweeper found the header late.
const headerTimedOut = -1

// watchShards splits the table, each part with its lock and its sweeper,
// so that exchanges on many cores do not all take one mutex, and a sweep
// of many long exchanges (event streams, long polls) holds a lock over a
// sixteenth of them. A connection keeps its part for its life.
const watchShards = 16

type watchShard struct {
	mu      sync.Mutex
	conns   map[*h1Conn]struct{}
	running bool
	_       [64]byte // a cache line between two shards' locks
}

var (
	watched   [watchShards]watchShard
	nextShard atomic.Uint32
)

func init() {
	for i := range watched {
		watched[i].conns = make(map[*h1Conn]struct{})
	}
}

// watch puts pc, about to carry a request of ctx, in the table.
func (pc *h1Conn) watch(ctx context.Context) {
	if pc.shard == nil {
		pc.shard = &watched[nextShard.Add(1)%watchShards]
	}
	s := pc.shard
	s.mu.Lock()
	pc.ctx, pc.interrupted = ctx, false
	pc.headerBy.Store(0)
	s.conns[pc] = struct{}{}
	if !s.running {
		s.running = true
		go s.sweep()
	}
	s.mu.Unlock()
}

// unwatch takes pc out of the table, and reports whether its request went
// through uninterrupted: false means the sweeper set a deadline in the
// past on it, and pc must be closed.
func (pc *h1Conn) unwatch() bool {
	s := pc.shard
	s.mu.Lock()
	delete(s.conns, pc)
	ok := !pc.interrupted
	pc.ctx, pc.interrupted = nil, false
	s.mu.Unlock()
	return ok
}

// sweep interrupts the exchanges of s whose context has ended or whose
// answer's header is late, every watchEvery, until s is empty. An
// interrupted exchange stays in the table until it ends, and is interrupted
// again at every sweep: a deadline the exchange itself set after the first
// would otherwise undo it.
func (s *watchShard) sweep() {
	var ended []*h1Conn
	for {
		time.Sleep(watchEvery)
		s.mu.Lock()
		if len(s.conns) == 0 {
			s.running = false
			s.mu.Unlock()
			return
		}
		now := time.Now().UnixNano()
		for pc := range s.conns {
			if pc.ctx.Err() != nil || headerLate(pc, now) {
				pc.interrupted = true
				ended = append(ended, pc)
			}
		}
		// Set under the lock: once unwatch returned, pc may be pooled
		// for another request, which no deadline of this one may touch.
		for _, pc := range ended {
			pc.SetDeadline(aLongTimeAgo)
		}
		s.mu.Unlock()
		clear(ended)
		ended = ended[:0]
	}
}

// headerLate reports whether pc's answer header was due before now, and
// then marks it timed out, unless the exchange took the header first.
func headerLate(pc *h1Conn, now int64) bool {
	by := pc.headerBy.Load()
	if by == headerTimedOut {
		return true // already found late; interrupted again
	}
	return by > 0 && now >= by && pc.headerBy.CompareAndSwap(by, headerTimedOut)
}
