package redisstore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics holds the storage's Prometheus collectors. A nil *Metrics records
// nothing. One Metrics may be shared by several Storage values; it is safe
// for concurrent use.
type Metrics struct {
	lockHeld *prometheus.GaugeVec
	ops      *prometheus.CounterVec
}

// NewMetrics creates the collectors and registers them with reg (if reg is
// not nil):
//
//	edge_storage_lock_held{name}              1 while this instance holds the lock;
//	                                          the series is removed on release
//	edge_storage_operations_total{op,result}  op: store, load, delete, exists, stat,
//	                                          list, lock, trylock, unlock, renew,
//	                                          keepalive, locks; result: ok,
//	                                          not_found, busy, lost, canceled,
//	                                          error
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		lockHeld: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "edge_storage_lock_held",
			Help: "1 while this instance holds the named storage lock.",
		}, []string{"name"}),
		ops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_storage_operations_total",
			Help: "Storage operations by operation and result.",
		}, []string{"op", "result"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.lockHeld, m.ops} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("registering storage metrics: %w", err)
			}
		}
	}
	return m, nil
}

// op counts one operation, classifying err, and returns err unchanged.
func (m *Metrics) op(op string, err error) error {
	if m == nil {
		return err
	}
	result := "ok"
	switch {
	case err == nil:
	case errors.Is(err, fs.ErrNotExist):
		result = "not_found"
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		result = "canceled"
	default:
		result = "error"
	}
	m.ops.WithLabelValues(op, result).Inc()
	return err
}

// result counts one operation with an explicit result label.
func (m *Metrics) result(op, result string) {
	if m != nil {
		m.ops.WithLabelValues(op, result).Inc()
	}
}

func (m *Metrics) acquired(name string) {
	if m != nil {
		m.lockHeld.WithLabelValues(name).Set(1)
	}
}

func (m *Metrics) released(name string) {
	if m != nil {
		m.lockHeld.DeleteLabelValues(name)
	}
}
