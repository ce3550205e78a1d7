package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// rawClient talks to the test server directly, to inspect and tamper with
// lock keys behind the Storage's back.
func rawClient(t *testing.T, srv *redisServer) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: srv.addr, DisableIdentity: true})
	t.Cleanup(func() { c.Close() })
	return c
}

// (a) Five processes each do 20 locked read-sleep-write increments of one
// counter; a lost update would leave it below 100.
func TestLockCounterAcrossProcesses(t *testing.T) {
	srv := startRedis(t)
	const procs, n = 5, 20
	start := time.Now()
	var hs []*helperProc
	for i := range procs {
		hs = append(hs, startHelper(t, "counter", helperConf{
			addr: srv.addr, prefix: "counter", lock: "counter", instance: "counter-" + strconv.Itoa(i),
			lease: 3 * time.Second, poll: 20 * time.Millisecond, n: n,
		}))
	}
	for _, h := range hs {
		if err := h.wait(40 * time.Second); err != nil {
			t.Fatalf("helper %s: %v", h.name, err)
		}
		h.expect("DONE", time.Second)
	}
	s := newTestStorage(t, srv, Options{Prefix: "counter"})
	b, err := s.Load(t.Context(), "counter")
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := strconv.Atoi(string(b)); got != procs*n {
		t.Fatalf("counter = %d, want %d (lost updates)", got, procs*n)
	}
	t.Logf("%d processes x %d locked read-sleep(5ms)-write increments: counter=%s in %s",
		procs, n, b, time.Since(start).Round(time.Millisecond))
}

// (b) A holder killed with SIGKILL is taken over by a blocked Lock in
// another process within lease + 2s.
func TestLockTakeoverAfterKill(t *testing.T) {
	srv := startRedis(t)
	const lease, poll, name = 3 * time.Second, time.Second, "issue_cert_example.com"
	holder := startHelper(t, "hold", helperConf{addr: srv.addr, prefix: "kill", lock: name,
		instance: "holder-b", lease: lease, poll: poll})
	holder.expect("LOCKED", 10*time.Second)

	s := newTestStorage(t, srv, Options{Prefix: "kill", LockLease: lease, LockPoll: poll, Instance: "contender-b"})
	if ok, err := s.TryLock(t.Context(), name); ok || err != nil {
		t.Fatalf("TryLock while held = %v, %v", ok, err)
	}
	locks, err := s.Locks(t.Context())
	if err != nil || len(locks) != 1 || locks[0].Holder != "holder-b" || locks[0].Name != name {
		t.Fatalf("Locks = %+v, %v", locks, err)
	}

	acquired := make(chan time.Time, 1)
	lockErr := make(chan error, 1)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		if err := s.Lock(ctx, name); err != nil {
			lockErr <- err
			return
		}
		acquired <- time.Now()
	})

	time.Sleep(1500 * time.Millisecond) // the contender is polling; the holder has renewed
	pttl, _ := rawClient(t, srv).PTTL(t.Context(), "{kill}:lock:"+name).Result()
	killedAt := time.Now()
	holder.kill()
	select {
	case at := <-acquired:
		takeover := at.Sub(killedAt)
		t.Logf("takeover after %s (lease %s, poll %s ±25%%; measured from SIGKILL of the holder process to Lock() returning in the contender process; lease left at kill %s)",
			takeover.Round(time.Millisecond), lease, poll, pttl)
		if takeover > lease+2*time.Second {
			t.Errorf("takeover after %s, want <= lease+2s = %s", takeover, lease+2*time.Second)
		}
	case err := <-lockErr:
		t.Fatalf("Lock: %v", err)
	case <-time.After(lease + 5*time.Second):
		t.Fatal("no takeover")
	}
	if err := s.Unlock(t.Context(), name); err != nil {
		t.Fatal(err)
	}
}

// (c) A holder whose keepalive keeps renewing keeps others out for three
// leases and more.
func TestLockRenewingHolderExcludes(t *testing.T) {
	srv := startRedis(t)
	const lease, name = time.Second, "renewed"
	holder := startHelper(t, "hold", helperConf{addr: srv.addr, prefix: "renew", lock: name,
		instance: "holder-c", lease: lease, poll: 100 * time.Millisecond})
	holder.expect("LOCKED", 10*time.Second)

	s := newTestStorage(t, srv, Options{Prefix: "renew", LockLease: lease})
	raw := rawClient(t, srv)
	end := time.Now().Add(3*lease + lease/2)
	tries := 0
	minTTL := time.Hour
	for time.Now().Before(end) {
		ok, err := s.TryLock(t.Context(), name)
		if err != nil || ok {
			t.Fatalf("TryLock after %d tries = %v, %v; want false, nil", tries, ok, err)
		}
		tries++
		if ttl, err := raw.PTTL(t.Context(), "{renew}:lock:"+name).Result(); err == nil && ttl < minTTL {
			minTTL = ttl
		}
		time.Sleep(100 * time.Millisecond)
	}
	if holder.has("LOST") {
		t.Fatal("holder reported its lock lost while renewing")
	}
	t.Logf("%d TryLock attempts over %s (3.5 leases) all refused; lowest remaining lease seen %s of %s", tries, 3*lease+lease/2, minTTL, lease)

	holder.send("unlock")
	holder.expect("UNLOCKED", 5*time.Second)
	if ok, err := s.TryLock(t.Context(), name); !ok || err != nil {
		t.Fatalf("TryLock after release = %v, %v", ok, err)
	}
	if err := s.Unlock(t.Context(), name); err != nil {
		t.Fatal(err)
	}
}

// (d) Redis frozen past the lease, then resumed: another holder gets the
// lock and the old holder learns that it lost it; its late Unlock does not
// delete the new holder's lock.
func TestLockLostWhenRedisFrozen(t *testing.T) {
	srv := startRedis(t)
	const lease, name = 2 * time.Second, "frozen"
	holder := startHelper(t, "hold", helperConf{addr: srv.addr, prefix: "freeze", lock: name,
		instance: "holder-d", lease: lease, poll: 100 * time.Millisecond})
	holder.expect("LOCKED", 10*time.Second)
	s := newTestStorage(t, srv, Options{Prefix: "freeze", LockLease: lease, LockPoll: 100 * time.Millisecond, Instance: "contender-d"})

	frozeAt := time.Now()
	srv.freeze()
	time.Sleep(lease + time.Second)
	srv.thaw()
	thawedAt := time.Now()

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := s.Lock(ctx, name); err != nil {
		t.Fatalf("Lock after thaw: %v", err)
	}
	acquiredAt := time.Now()
	lostAt := unixNano(t, holder.expect("LOST "+name, 5*time.Second))
	t.Logf("redis frozen %s (lease %s); old holder reported the loss %s after the freeze; new holder acquired %s after the freeze (%s after thaw)",
		thawedAt.Sub(frozeAt).Round(time.Millisecond), lease, lostAt.Sub(frozeAt).Round(time.Millisecond),
		acquiredAt.Sub(frozeAt).Round(time.Millisecond), acquiredAt.Sub(thawedAt).Round(time.Millisecond))
	if lostAt.After(acquiredAt) {
		t.Errorf("old holder learned of the loss %s after the new holder acquired it", lostAt.Sub(acquiredAt))
	}

	holder.send("unlock")
	if msg := holder.expect("UNLOCK_ERR", 5*time.Second); !strings.Contains(msg, ErrLockNotHeld.Error()) {
		t.Errorf("old holder's Unlock error = %q", msg)
	}
	locks, err := s.Locks(t.Context())
	if err != nil || len(locks) != 1 || locks[0].Holder != "contender-d" {
		t.Fatalf("after the old holder's Unlock, Locks = %+v, %v; want the new holder's lock intact", locks, err)
	}
	if err := s.Unlock(t.Context(), name); err != nil {
		t.Fatal(err)
	}
}

// (e) Redis restarted on the same port with AOF: the lock still excludes
// others, and both the holder's and the contender's clients reconnect
// without being recreated.
func TestLockSurvivesRedisRestart(t *testing.T) {
	srv := startRedis(t)
	const lease, name = 2 * time.Second, "restart"
	holder := startHelper(t, "hold", helperConf{addr: srv.addr, prefix: "restart", lock: name,
		instance: "holder-e", lease: lease, poll: 100 * time.Millisecond})
	holder.expect("LOCKED", 10*time.Second)
	s := newTestStorage(t, srv, Options{Prefix: "restart", LockLease: lease})
	ctx := t.Context()
	if err := s.Store(ctx, "certificates/x/x.crt", []byte("pem")); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.TryLock(ctx, name); ok || err != nil {
		t.Fatalf("TryLock before restart = %v, %v", ok, err)
	}

	began := time.Now()
	srv.restart()
	t.Logf("redis restarted in %s", time.Since(began).Round(time.Millisecond))

	end := time.Now().Add(2*lease + lease/2)
	tries := 0
	for time.Now().Before(end) {
		ok, err := s.TryLock(ctx, name)
		if err != nil || ok {
			t.Fatalf("TryLock %d after restart = %v, %v; want false, nil", tries, ok, err)
		}
		tries++
		time.Sleep(200 * time.Millisecond)
	}
	if holder.has("LOST") {
		t.Fatal("holder lost its lock across the restart")
	}
	if got, err := s.Load(ctx, "certificates/x/x.crt"); err != nil || string(got) != "pem" {
		t.Fatalf("Load after restart = %q, %v", got, err)
	}
	holder.send("unlock")
	holder.expect("UNLOCKED", 5*time.Second)
	if ok, err := s.TryLock(ctx, name); !ok || err != nil {
		t.Fatalf("TryLock after the holder's release = %v, %v", ok, err)
	}
	t.Logf("%d TryLock attempts over %s after the restart all refused; holder renewed and released over its original client", tries, 2*lease+lease/2)
	if err := s.Unlock(ctx, name); err != nil {
		t.Fatal(err)
	}
}

// In-process lock behaviour: local waiters, contexts, compare-and-delete,
// token loss, lease renewal, Locks, metrics and Close.
func TestLockInProcess(t *testing.T) {
	srv := startRedis(t)
	raw := rawClient(t, srv)

	t.Run("local waiter wakes on Unlock", func(t *testing.T) {
		s := newTestStorage(t, srv, Options{Prefix: "local", LockPoll: 10 * time.Second})
		if err := s.Lock(t.Context(), "x"); err != nil {
			t.Fatal(err)
		}
		got := make(chan error, 1)
		var wg sync.WaitGroup
		wg.Go(func() { got <- s.Lock(t.Context(), "x") })
		defer wg.Wait()
		if ok, _ := s.TryLock(t.Context(), "x"); ok {
			t.Fatal("TryLock in the same process succeeded while held")
		}
		time.Sleep(50 * time.Millisecond)
		released := time.Now()
		if err := s.Unlock(t.Context(), "x"); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-got:
			if err != nil {
				t.Fatal(err)
			}
			if d := time.Since(released); d > time.Second {
				t.Errorf("local waiter took %s (poll is 10s)", d)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("local waiter did not wake")
		}
		if err := s.Unlock(t.Context(), "x"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("Lock honours its context", func(t *testing.T) {
		s1 := newTestStorage(t, srv, Options{Prefix: "ctx"})
		s2 := newTestStorage(t, srv, Options{Prefix: "ctx", LockPoll: 50 * time.Millisecond})
		if err := s1.Lock(t.Context(), "x"); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		if err := s2.Lock(ctx, "x"); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Lock = %v, want context.DeadlineExceeded", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("Lock returned %s after its deadline", d)
		}
		if err := s2.Unlock(t.Context(), "x"); !errors.Is(err, ErrLockNotHeld) {
			t.Errorf("Unlock of a lock never held = %v", err)
		}
		if err := s1.Unlock(t.Context(), "x"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("token gone: OnLockLost fires, Unlock spares the next holder", func(t *testing.T) {
		lost := make(chan string, 1)
		s1 := newTestStorage(t, srv, Options{Prefix: "steal", LockLease: 600 * time.Millisecond,
			OnLockLost: func(n string) { lost <- n }})
		s2 := newTestStorage(t, srv, Options{Prefix: "steal", Instance: "second"})
		if err := s1.Lock(t.Context(), "x"); err != nil {
			t.Fatal(err)
		}
		// Simulate the lease expiring and a new holder taking over.
		if err := raw.Del(t.Context(), "{steal}:lock:x").Err(); err != nil {
			t.Fatal(err)
		}
		if ok, err := s2.TryLock(t.Context(), "x"); !ok || err != nil {
			t.Fatalf("TryLock = %v, %v", ok, err)
		}
		select {
		case n := <-lost:
			if n != "x" {
				t.Errorf("OnLockLost(%q)", n)
			}
		case <-time.After(2 * time.Second):
			t.Fatal("OnLockLost did not fire")
		}
		if err := s1.RenewLockLease(t.Context(), "x", time.Minute); !errors.Is(err, ErrLockNotHeld) {
			t.Errorf("RenewLockLease after loss = %v", err)
		}
		if err := s1.Unlock(t.Context(), "x"); !errors.Is(err, ErrLockNotHeld) {
			t.Errorf("Unlock after loss = %v, want ErrLockNotHeld", err)
		}
		if v, _ := raw.Get(t.Context(), "{steal}:lock:x").Result(); !strings.HasSuffix(v, " second") {
			t.Fatalf("next holder's lock = %q after the old holder's Unlock", v)
		}
		if err := s2.Unlock(t.Context(), "x"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("OnLockLost may call Unlock", func(t *testing.T) {
		unlocked := make(chan error, 1)
		var s *Storage
		s = newTestStorage(t, srv, Options{Prefix: "cb", LockLease: 300 * time.Millisecond,
			OnLockLost: func(n string) { unlocked <- s.Unlock(context.Background(), n) }})
		if err := s.Lock(t.Context(), "x"); err != nil {
			t.Fatal(err)
		}
		raw.Set(t.Context(), "{cb}:lock:x", "someone-else 0 other", time.Minute)
		select {
		case err := <-unlocked:
			if !errors.Is(err, ErrLockNotHeld) {
				t.Errorf("Unlock from OnLockLost = %v", err)
			}
		case <-time.After(2 * time.Second):
			t.Fatal("OnLockLost/Unlock did not complete")
		}
		if ok, _ := s.TryLock(t.Context(), "x"); ok {
			t.Error("took a lock someone else holds")
		}
	})

	t.Run("RenewLockLease sets the lease, keepalive never shortens it", func(t *testing.T) {
		s := newTestStorage(t, srv, Options{Prefix: "renewlease", LockLease: 600 * time.Millisecond})
		if err := s.RenewLockLease(t.Context(), "x", time.Minute); !errors.Is(err, ErrLockNotHeld) {
			t.Fatalf("RenewLockLease of a lock not held = %v", err)
		}
		if err := s.Lock(t.Context(), "x"); err != nil {
			t.Fatal(err)
		}
		if err := s.RenewLockLease(t.Context(), "x", 5*time.Second); err != nil {
			t.Fatal(err)
		}
		time.Sleep(700 * time.Millisecond) // two keepalive rounds
		if ttl := raw.PTTL(t.Context(), "{renewlease}:lock:x").Val(); ttl < 3*time.Second {
			t.Fatalf("PTTL after RenewLockLease(5s) and keepalives = %s", ttl)
		}
		if err := s.Unlock(t.Context(), "x"); err != nil {
			t.Fatal(err)
		}
		if n := raw.Exists(t.Context(), "{renewlease}:lock:x").Val(); n != 0 {
			t.Fatal("lock key left after Unlock")
		}
	})

	t.Run("Locks lists holders and ages", func(t *testing.T) {
		s1 := newTestStorage(t, srv, Options{Prefix: "list", Instance: "one"})
		s2 := newTestStorage(t, srv, Options{Prefix: "list", Instance: "two"})
		if err := s1.Lock(t.Context(), "issue_cert_a.example"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
		if ok, _ := s2.TryLock(t.Context(), "ari_b"); !ok {
			t.Fatal("TryLock failed")
		}
		// A stale index entry (its lock expired) is pruned.
		raw.SAdd(t.Context(), "{list}:locks", "expired")
		locks, err := s2.Locks(t.Context())
		if err != nil || len(locks) != 2 {
			t.Fatalf("Locks = %+v, %v", locks, err)
		}
		if locks[0].Name != "ari_b" || locks[0].Holder != "two" || locks[1].Name != "issue_cert_a.example" || locks[1].Holder != "one" {
			t.Errorf("Locks = %+v", locks)
		}
		if locks[1].Age < 100*time.Millisecond || locks[1].Age > 10*time.Second || locks[1].Acquired.IsZero() {
			t.Errorf("age of the older lock = %s", locks[1].Age)
		}
		if raw.SIsMember(t.Context(), "{list}:locks", "expired").Val() {
			t.Error("stale lock index entry not pruned")
		}
		b, _ := json.Marshal(locks[1])
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		if _, ok := m["age_seconds"].(float64); !ok || m["name"] != "issue_cert_a.example" || m["holder"] != "one" || m["acquired"] == nil {
			t.Errorf("JSON = %s", b)
		}
		_ = s1.Unlock(t.Context(), "issue_cert_a.example")
		_ = s2.Unlock(t.Context(), "ari_b")
		if locks, _ := s1.Locks(t.Context()); len(locks) != 0 {
			t.Errorf("Locks after release = %+v", locks)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		m, err := NewMetrics(reg)
		if err != nil {
			t.Fatal(err)
		}
		s := newTestStorage(t, srv, Options{Prefix: "metrics", Metrics: m})
		if err := s.Lock(t.Context(), "x"); err != nil {
			t.Fatal(err)
		}
		if got := gather(t, reg, "edge_storage_lock_held", "name", "x"); got != 1 {
			t.Errorf("lock_held while held = %v", got)
		}
		_, _ = s.Load(t.Context(), "missing")
		if err := s.Unlock(t.Context(), "x"); err != nil {
			t.Fatal(err)
		}
		if got := gather(t, reg, "edge_storage_lock_held", "name", "x"); got != -1 {
			t.Errorf("lock_held after release = %v, want no series", got)
		}
		if got := gather(t, reg, "edge_storage_operations_total", "result", "not_found"); got != 1 {
			t.Errorf("not_found ops = %v", got)
		}
		if got := gather(t, reg, "edge_storage_operations_total", "op", "unlock"); got != 1 {
			t.Errorf("unlock ops = %v", got)
		}
	})

	t.Run("Close releases held locks and waits for keepalives", func(t *testing.T) {
		var lostCalls atomic.Int32
		s1, err := New(Options{Addrs: []string{srv.addr}, Prefix: "close", LockLease: 300 * time.Millisecond,
			OnLockLost: func(string) { lostCalls.Add(1) }})
		if err != nil {
			t.Fatal(err)
		}
		s2 := newTestStorage(t, srv, Options{Prefix: "close"})
		for _, n := range []string{"a", "b"} {
			if err := s1.Lock(t.Context(), n); err != nil {
				t.Fatal(err)
			}
		}
		if err := s1.Close(); err != nil {
			t.Fatal(err)
		}
		for _, n := range []string{"a", "b"} {
			if ok, err := s2.TryLock(t.Context(), n); !ok || err != nil {
				t.Errorf("TryLock(%s) right after the holder closed = %v, %v", n, ok, err)
			}
		}
		time.Sleep(400 * time.Millisecond)
		if lostCalls.Load() != 0 {
			t.Error("OnLockLost fired after Close")
		}
	})
}

// gather returns the value of the first sample of metric whose label has
// value, summed over matching series for counters; -1 when none matches.
func gather(t *testing.T, reg *prometheus.Registry, metric, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum, found := 0.0, false
	for _, mf := range mfs {
		if mf.GetName() != metric {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					found = true
					sum += m.GetGauge().GetValue() + m.GetCounter().GetValue()
				}
			}
		}
	}
	if !found {
		return -1
	}
	return sum
}
