package export

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
)

// recordingTarget is an Exporter that remembers what it was given and fails
// while broken is set.
type recordingTarget struct {
	mu       sync.Mutex
	got      []string // serials
	broken   atomic.Bool
	delay    time.Duration
	attempts atomic.Int64
}

func (r *recordingTarget) Deliver(ctx context.Context, c *Cert) []Result {
	r.attempts.Add(1)
	time.Sleep(r.delay)
	if r.broken.Load() {
		return []Result{{Host: "rec", Err: errors.New("rec: target down")}}
	}
	r.mu.Lock()
	r.got = append(r.got, c.Serial())
	r.mu.Unlock()
	return []Result{{Host: "rec"}}
}

func (r *recordingTarget) Test(context.Context) []Result { return []Result{{Host: "rec"}} }

func (r *recordingTarget) serials() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.got...)
}

// source serves one certificate per name, replaceable.
type source struct {
	mu    sync.Mutex
	certs map[string]*Cert
}

func (s *source) Certificate(_ context.Context, name string) (*Cert, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.certs[name]; ok {
		return c, nil
	}
	return nil, fs.ErrNotExist
}

func (s *source) set(c *Cert) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.certs[c.Name] = c
}

func startDispatcher(t *testing.T, store Store, src Source, node string, tgt Exporter) *Dispatcher {
	t.Helper()
	d, err := NewDispatcher(Options{Source: src, Store: store, Node: node, Interval: 200 * time.Millisecond, Backoff: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	d.Apply(Plan{Targets: []Target{{Name: "rec", Exporter: tgt}}, Names: map[string][]string{"a.test": {"rec"}}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return d
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestDispatcherDeliversOncePerSerial: a certificate is delivered once; a
// renewal (new serial) is delivered again; rounds in between deliver
// nothing.
func TestDispatcherDeliversOncePerSerial(t *testing.T) {
	store := &certmagic.FileStorage{Path: t.TempDir()}
	src := &source{certs: map[string]*Cert{}}
	src.set(testCert(t, "a.test", 1))
	tgt := &recordingTarget{}
	d := startDispatcher(t, store, src, "e1", tgt)
	waitFor(t, "the first delivery", func() bool { return len(tgt.serials()) == 1 })
	time.Sleep(600 * time.Millisecond) // three full rounds
	if got := tgt.serials(); len(got) != 1 {
		t.Fatalf("deliveries %v, want one", got)
	}
	src.set(testCert(t, "a.test", 2))
	d.Notify("a.test")
	waitFor(t, "the renewal's delivery", func() bool { return len(tgt.serials()) == 2 })
	if got := tgt.serials(); got[1] != "2" {
		t.Errorf("second delivery %v, want serial 2", got)
	}
	waitFor(t, "the renewal's record", func() bool {
		st := d.Statuses("a.test")
		return len(st) == 1 && st[0].Serial == "2"
	})
	if st := d.Statuses("a.test"); st[0].Pending || st[0].LastError != "" {
		t.Errorf("status %+v", st)
	}
}

// TestDispatcherRetriesUntilTheTargetIsBack: failures are retried with
// backoff and the target catches up once it works; the failure is in the
// status meanwhile.
func TestDispatcherRetriesUntilTheTargetIsBack(t *testing.T) {
	store := &certmagic.FileStorage{Path: t.TempDir()}
	src := &source{certs: map[string]*Cert{}}
	src.set(testCert(t, "a.test", 7))
	tgt := &recordingTarget{}
	tgt.broken.Store(true)
	d := startDispatcher(t, store, src, "e1", tgt)
	waitFor(t, "two failed attempts", func() bool { return tgt.attempts.Load() >= 2 })
	// The second attempt began after the first one's failure was recorded.
	st := d.Statuses("a.test")
	if len(st) != 1 || !st[0].Pending || st[0].LastError == "" || st[0].NextAttempt.IsZero() {
		t.Errorf("status while down: %+v", st)
	}
	tgt.broken.Store(false)
	waitFor(t, "delivery after the target came back", func() bool { return len(tgt.serials()) == 1 })
	// The target has the certificate before the dispatcher records it: wait
	// for the record, then check it says so without an error.
	waitFor(t, "the delivery's record", func() bool {
		st := d.Statuses("a.test")
		return len(st) == 1 && !st[0].Pending
	})
	if st := d.Statuses("a.test"); st[0].LastError != "" || st[0].Serial != "7" {
		t.Errorf("status after: %+v", st)
	}
}

// TestDispatcherFarmDeliversOnce: three dispatchers sharing one store (as
// three edges on one Redis) deliver each certificate once between them, and
// an edge that still holds the old certificate never delivers it over the
// new one.
func TestDispatcherFarmDeliversOnce(t *testing.T) {
	store := &certmagic.FileStorage{Path: t.TempDir()}
	tgt := &recordingTarget{delay: 50 * time.Millisecond} // one target, as a shared directory
	c1 := testCert(t, "a.test", 10)
	var srcs []*source
	for _, node := range []string{"e1", "e2", "e3"} {
		src := &source{certs: map[string]*Cert{}}
		src.set(c1)
		srcs = append(srcs, src)
		startDispatcher(t, store, src, node, tgt)
	}
	waitFor(t, "the delivery", func() bool { return len(tgt.serials()) >= 1 })
	time.Sleep(time.Second)
	if got := tgt.serials(); len(got) != 1 {
		t.Fatalf("deliveries across the farm %v, want exactly one", got)
	}
	// Renewed: edge 1 holds the new certificate, the others the old one.
	c2 := testCert(t, "a.test", 11)
	c2.Chain[0].NotAfter = c1.Leaf().NotAfter.Add(time.Hour)
	srcs[0].set(c2)
	waitFor(t, "the renewal's delivery", func() bool { return len(tgt.serials()) >= 2 })
	time.Sleep(time.Second)
	if got := tgt.serials(); len(got) != 2 || got[1] != "b" {
		t.Errorf("deliveries %v, want [a b]: the renewal once, and never the old one again", got)
	}
}

type failingSource struct{ calls atomic.Int64 }

func (f *failingSource) Certificate(context.Context, string) (*Cert, error) {
	f.calls.Add(1)
	return nil, errors.New("storage unreachable")
}

// TestDispatcherBacksOffWithoutARecord: failures that never reach the
// delivery record (the storage is down) still back off, rather than
// retrying every Backoff forever.
func TestDispatcherBacksOffWithoutARecord(t *testing.T) {
	src := &failingSource{}
	d, err := NewDispatcher(Options{Source: src, Store: &certmagic.FileStorage{Path: t.TempDir()}, Node: "e1",
		Interval: time.Hour, Backoff: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	d.Apply(Plan{Targets: []Target{{Name: "rec", Exporter: &recordingTarget{}}}, Names: map[string][]string{"a.test": {"rec"}}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	// Attempts at 0 s, then after 1 s, 2 s, 4 s: three or four in 6.5 s;
	// without the doubling there would be seven.
	time.Sleep(6500 * time.Millisecond)
	cancel()
	<-done
	if n := src.calls.Load(); n < 3 || n > 4 {
		t.Errorf("%d attempts in 6.5 s with a 1 s backoff doubling, want 3 or 4", n)
	}
}

// TestDispatcherOnResult: each attempt is reported, the failures with
// their error, then the delivery.
func TestDispatcherOnResult(t *testing.T) {
	var mu sync.Mutex
	var got []string
	src := &source{certs: map[string]*Cert{}}
	src.set(testCert(t, "a.test", 3))
	tgt := &recordingTarget{}
	tgt.broken.Store(true)
	d, err := NewDispatcher(Options{Source: src, Store: &certmagic.FileStorage{Path: t.TempDir()}, Node: "e1",
		Interval: 200 * time.Millisecond, Backoff: 50 * time.Millisecond,
		OnResult: func(name, target string, err error) {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, name+" "+target+" "+fmt.Sprint(err))
		}})
	if err != nil {
		t.Fatal(err)
	}
	d.Apply(Plan{Targets: []Target{{Name: "rec", Exporter: tgt}}, Names: map[string][]string{"a.test": {"rec"}}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	results := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), got...)
	}
	waitFor(t, "a failure reported", func() bool { return len(results()) >= 1 })
	tgt.broken.Store(false)
	waitFor(t, "the delivery reported", func() bool {
		r := results()
		return len(r) > 0 && r[len(r)-1] == "a.test rec <nil>"
	})
	if r := results(); r[0] != "a.test rec rec: target down" {
		t.Fatalf("first result %q, want the target's error", r[0])
	}
}
