package proxy

import (
	"container/list"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Queue rejection reasons, the values of the reason label of
// edge_pool_queue_rejected_total.
const (
	queueFull    = "full"
	queueTimeout = "timeout"
)

// waitQueue holds the requests that wait for a backend of one pool to drop
// below its MaxConns. It lives in the State's entry of the pool, so that
// every Handler of the pool (the old and the new one during a reload) waits
// in, and wakes, the same queue. Safe for concurrent use.
//
// A backend whose in-flight count drops wakes the oldest waiter, which then
// selects again. A request that arrives meanwhile may take the slot first
// (the waiter goes back to the front): first in, first out, mostly.
type waitQueue struct {
	mu      sync.Mutex
	waiters list.List    // of *waiter, oldest first
	n       atomic.Int64 // waiters.Len(), read without the lock
}

// waiter is one waiting request. Its channel receives a wake-up when it is
// taken off the queue by wake.
type waiter struct {
	ch chan struct{}
	e  *list.Element // nil while off the queue; guarded by waitQueue.mu
}

// push queues w, at the front when it was woken before and goes back, else
// at the back if fewer than limit wait.
func (q *waitQueue) push(w *waiter, limit int, front bool) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if front {
		w.e = q.waiters.PushFront(w)
	} else {
		if q.waiters.Len() >= limit {
			return false
		}
		w.e = q.waiters.PushBack(w)
	}
	q.n.Add(1)
	return true
}

// wake takes the oldest waiter off the queue and wakes it. It costs an
// atomic load when none waits.
func (q *waitQueue) wake() {
	if q.n.Load() == 0 {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.wakeFrontLocked()
}

// wakeAll wakes every waiter (a backend's cap went up).
func (q *waitQueue) wakeAll() {
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.waiters.Len() > 0 {
		q.wakeFrontLocked()
	}
}

func (q *waitQueue) wakeFrontLocked() {
	e := q.waiters.Front()
	if e == nil {
		return
	}
	q.waiters.Remove(e)
	q.n.Add(-1)
	w := e.Value.(*waiter)
	w.e = nil
	w.ch <- struct{}{} // buffered: a waiter holds at most one wake-up
}

// leave takes w off the queue for good. A wake-up w got but did not use
// goes on to the next waiter.
func (q *waitQueue) leave(w *waiter) {
	q.mu.Lock()
	if w.e != nil {
		q.waiters.Remove(w.e)
		w.e = nil
		q.n.Add(-1)
		q.mu.Unlock()
		return
	}
	q.mu.Unlock()
	select {
	case <-w.ch:
		q.wake()
	default:
	}
}

// take selects a backend of candidates for r and counts the request in
// flight on it; the caller must end it with Upstream.done (serve does).
// When every available candidate is at its MaxConns, the request waits in
// the pool's queue until one drops below (it selects again then), until
// QueueTimeout passes (ErrQueueTimeout) or until the client goes away (the
// context's error); a full queue answers ErrQueueFull at once. Without any
// available candidate it returns ErrNoUpstream.
func (p *pool) take(rec *recorder, r *http.Request, candidates []*Upstream) (*Upstream, error) {
	u, busy := p.pick(rec, r, candidates)
	if u != nil {
		return u, nil
	}
	if !busy {
		return nil, ErrNoUpstream
	}
	return p.wait(rec, r, candidates)
}

// pick selects a backend and takes a slot on it without waiting. With
// none, busy says whether some candidate is up but at its cap.
func (p *pool) pick(rec *recorder, r *http.Request, candidates []*Upstream) (u *Upstream, busy bool) {
	for {
		u := p.selector.Select(candidates, r, rec)
		if u == nil {
			for _, c := range candidates {
				if c.up() && !c.Drained() {
					return nil, true
				}
			}
			return nil, false
		}
		if u.acquire() {
			if !u.Drained() {
				return u, false
			}
			// Drained since Select looked: once Drain has returned, no
			// request that takes a slot after it is sent there.
			u.done()
		}
		// Another request took its last slot (or the backend was drained)
		// since Select looked: select again, and drop the sticky cookie
		// Select may have set for it.
		if rec != nil {
			delete(rec.Header(), "Set-Cookie")
		}
	}
}

// wait is take's slow path: queue, then select at each wake-up.
func (p *pool) wait(rec *recorder, r *http.Request, candidates []*Upstream) (*Upstream, error) {
	q := p.queue
	w := &waiter{ch: make(chan struct{}, 1)}
	if p.queueSize <= 0 || !q.push(w, p.queueSize, false) {
		if p.qstats != nil {
			p.qstats.full.Inc()
		}
		return nil, ErrQueueFull
	}
	if p.qstats != nil {
		p.qstats.queued.Inc()
		defer p.qstats.queued.Dec()
	}
	var timeout <-chan time.Time
	if p.queueTimeout > 0 {
		t := time.NewTimer(p.queueTimeout)
		defer t.Stop()
		timeout = t.C
	}
	woken := false
	for {
		// Queued first, then selecting: a slot freed in between wakes us.
		u, busy := p.pick(rec, r, candidates)
		if u != nil || !busy {
			q.leave(w)
			if u != nil {
				return u, nil
			}
			if woken {
				q.wake() // the wake-up may serve another request's candidates
			}
			return nil, ErrNoUpstream
		}
		select {
		case <-w.ch:
			woken = true
			q.push(w, 0, true)
		case <-timeout:
			q.leave(w)
			if p.qstats != nil {
				p.qstats.timeout.Inc()
			}
			return nil, ErrQueueTimeout
		case <-r.Context().Done():
			q.leave(w)
			return nil, r.Context().Err()
		}
	}
}
