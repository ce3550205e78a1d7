package proxy

import (
	"sync/atomic"
	"time"
)

// recentBucket and recentBuckets make the window of recentCounts: six
// buckets of ten seconds, the last minute.
const (
	recentBucket  = 10 * time.Second
	recentBuckets = 6
)

// recentCounts counts a backend's proxied attempts and failures over about
// the last minute, for BackendStatus.ErrorRate. Two atomic adds per
// attempt and no lock: a bucket whose period ended is reset by the first
// writer of the new period, so a count racing that reset may be lost. Good
// enough for a status page, not for billing. The zero value is empty and
// ready; safe for concurrent use.
type recentCounts struct {
	b [recentBuckets]struct {
		period             atomic.Int64 // unix time / recentBucket, +1 (0: never used)
		attempts, failures atomic.Int64
	}
}

func (c *recentCounts) bucket(now time.Time) int {
	p := now.UnixNano()/int64(recentBucket) + 1
	i := int(p % recentBuckets)
	b := &c.b[i]
	if old := b.period.Load(); old != p && b.period.CompareAndSwap(old, p) {
		b.attempts.Store(0)
		b.failures.Store(0)
	}
	return i
}

// attempt counts one attempt that ended at now.
func (c *recentCounts) attempt(now time.Time) { c.b[c.bucket(now)].attempts.Add(1) }

// failure counts one failed attempt (also counted by attempt).
func (c *recentCounts) failure(now time.Time) { c.b[c.bucket(now)].failures.Add(1) }

// rate returns the attempts and failures of the buckets that are within
// the last minute at now.
func (c *recentCounts) rate(now time.Time) (attempts, failures int64) {
	cur := now.UnixNano()/int64(recentBucket) + 1
	for i := range c.b {
		b := &c.b[i]
		if p := b.period.Load(); p != 0 && cur-p < recentBuckets {
			attempts += b.attempts.Load()
			failures += b.failures.Load()
		}
	}
	return attempts, failures
}

// markChanged records now as when the backend last went up or down.
func (s *backendState) markChanged(now time.Time) { s.changedAt.Store(now.UnixNano()) }
