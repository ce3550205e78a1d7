package redisstore

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// gatherStorage registers s alone and returns its families by name.
func gatherStorage(t *testing.T, s *Storage) map[string]*dto.MetricFamily {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(s); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

// TestCollectorUpAndLeaseEnd: edge_storage_up follows a real Redis (1 while
// it answers, 0 while it is frozen), and each held lock reports the end of
// the lease asked for: LockLease after Lock, what RenewLockLease asked after
// it, and no series once unlocked.
func TestCollectorUpAndLeaseEnd(t *testing.T) {
	srv := startRedis(t)
	lease := 3 * time.Second
	s, err := New(Options{Addrs: []string{srv.addr}, Prefix: "collect", LockLease: lease, Instance: "c-1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx := context.Background()

	mfs := gatherStorage(t, s)
	if v := mfs["edge_storage_up"].GetMetric()[0].GetGauge().GetValue(); v != 1 {
		t.Errorf("edge_storage_up = %g with Redis running, want 1", v)
	}
	if mf, ok := mfs["edge_storage_lock_lease_end_timestamp_seconds"]; ok {
		t.Errorf("lease end series with no lock held: %v", mf)
	}

	before := time.Now()
	if err := s.Lock(ctx, "issue_cert_a.test"); err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	leaseEnd := func() (time.Time, bool) {
		mf, ok := gatherStorage(t, s)["edge_storage_lock_lease_end_timestamp_seconds"]
		if !ok {
			return time.Time{}, false
		}
		m := mf.GetMetric()
		if len(m) != 1 || m[0].GetLabel()[0].GetValue() != "issue_cert_a.test" {
			t.Fatalf("lease end series: %v", m)
		}
		return time.UnixMilli(int64(m[0].GetGauge().GetValue() * 1000)), true
	}
	end, ok := leaseEnd()
	if !ok || end.Before(before.Add(lease).Add(-time.Millisecond)) || end.After(after.Add(lease).Add(time.Millisecond)) {
		t.Errorf("lease end after Lock = %v (%v), want between %v and %v", end, ok, before.Add(lease), after.Add(lease))
	}

	before = time.Now()
	if err := s.RenewLockLease(ctx, "issue_cert_a.test", 90*time.Second); err != nil {
		t.Fatal(err)
	}
	after = time.Now()
	end, ok = leaseEnd()
	if !ok || end.Before(before.Add(90*time.Second).Add(-time.Millisecond)) || end.After(after.Add(90*time.Second).Add(time.Millisecond)) {
		t.Errorf("lease end after RenewLockLease(90s) = %v (%v), want about %v", end, ok, after.Add(90*time.Second))
	}

	if err := s.Unlock(ctx, "issue_cert_a.test"); err != nil {
		t.Fatal(err)
	}
	if end, ok := leaseEnd(); ok {
		t.Errorf("lease end series after Unlock: %v", end)
	}

	srv.freeze()
	defer srv.thaw()
	start := time.Now()
	mfs = gatherStorage(t, s)
	if v := mfs["edge_storage_up"].GetMetric()[0].GetGauge().GetValue(); v != 0 {
		t.Errorf("edge_storage_up = %g with Redis frozen, want 0", v)
	}
	if took := time.Since(start); took > ScrapePingTimeout+time.Second {
		t.Errorf("a scrape with Redis frozen took %v, want about ScrapePingTimeout (%v)", took, ScrapePingTimeout)
	}
	srv.thaw()
	deadline := time.Now().Add(10 * time.Second)
	for gatherStorage(t, s)["edge_storage_up"].GetMetric()[0].GetGauge().GetValue() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("edge_storage_up stayed 0 after Redis was thawed")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
