package redisstore

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The series Storage collects itself (it is a prometheus.Collector):
//
//	edge_storage_up                                   1 if Redis answered PING within
//	                                                  ScrapePingTimeout at this scrape, else 0
//	edge_storage_lock_lease_end_timestamp_seconds{name}  for each lock this Storage holds:
//	                                                  when the lease its holder asked for
//	                                                  ends (LockLease after acquiring, then
//	                                                  what each RenewLockLease asked). The
//	                                                  keepalive keeps the key alive past it
//	                                                  while the holder lives, so a lock still
//	                                                  held after this time is overrunning.
var (
	descUp = prometheus.NewDesc("edge_storage_up",
		"1 if the shared store (Redis) answered PING at this scrape, else 0.", nil, nil)
	descLeaseEnd = prometheus.NewDesc("edge_storage_lock_lease_end_timestamp_seconds",
		"When the lease asked for the named lock held by this instance ends (acquisition plus the lock lease, or the last lease certmagic asked for); held past it, the holder is overrunning.",
		[]string{"name"}, nil)
)

// ScrapePingTimeout bounds the PING behind edge_storage_up.
const ScrapePingTimeout = time.Second

var _ prometheus.Collector = (*Storage)(nil)

// Describe sends the descriptors of edge_storage_up and the lease ends.
func (s *Storage) Describe(ch chan<- *prometheus.Desc) {
	ch <- descUp
	ch <- descLeaseEnd
}

// Collect pings Redis (edge_storage_up) and reports the lease end of each
// lock this Storage holds and has not lost. Register the Storage with one
// registry only, for as long as it is open.
func (s *Storage) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), ScrapePingTimeout)
	defer cancel()
	up := 0.0
	if s.Ping(ctx) == nil {
		up = 1
	}
	ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, up)

	s.mu.Lock()
	held := make([]*heldLock, 0, len(s.held))
	for _, h := range s.held {
		held = append(held, h)
	}
	s.mu.Unlock()
	for _, h := range held {
		if h.lost.Load() {
			continue
		}
		end := h.askedUntil()
		ch <- prometheus.MustNewConstMetric(descLeaseEnd, prometheus.GaugeValue, float64(end.UnixMilli())/1000, h.name)
	}
}
