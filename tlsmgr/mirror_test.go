package tlsmgr

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
)

// flaky is a file storage that can be switched off, as a Redis that went away.
type flaky struct {
	certmagic.FileStorage
	down atomic.Bool
}

var errDown = errors.New("dial tcp 127.0.0.1:6379: connection refused")

func (f *flaky) Load(ctx context.Context, k string) ([]byte, error) {
	if f.down.Load() {
		return nil, errDown
	}
	return f.FileStorage.Load(ctx, k)
}

func (f *flaky) Stat(ctx context.Context, k string) (certmagic.KeyInfo, error) {
	if f.down.Load() {
		return certmagic.KeyInfo{}, errDown
	}
	return f.FileStorage.Stat(ctx, k)
}

func (f *flaky) Exists(ctx context.Context, k string) bool {
	return !f.down.Load() && f.FileStorage.Exists(ctx, k)
}

func (f *flaky) List(ctx context.Context, p string, r bool) ([]string, error) {
	if f.down.Load() {
		return nil, errDown
	}
	return f.FileStorage.List(ctx, p, r)
}

func TestMirrorServesLocalCopyWhenSharedStoreIsDown(t *testing.T) {
	ctx := t.Context()
	shared := &flaky{FileStorage: certmagic.FileStorage{Path: t.TempDir()}}
	dir := t.TempDir()
	m := &Mirror{Storage: shared, Dir: dir}

	certKey := "certificates/acme/a.test/a.test.crt"
	if err := m.Store(ctx, certKey, []byte("CERT")); err != nil {
		t.Fatal(err)
	}
	if err := m.Store(ctx, "acme/ca/challenge_tokens/a.test.json", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, certKey))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("local copy: %v %v, want mode 0600", fi, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "acme/ca/challenge_tokens/a.test.json")); err == nil {
		t.Fatal("challenge tokens must not be mirrored")
	}

	shared.down.Store(true)
	v, err := m.Load(ctx, certKey)
	if err != nil || string(v) != "CERT" {
		t.Fatalf("Load while down = %q, %v", v, err)
	}
	if !m.Exists(ctx, certKey) {
		t.Fatal("Exists while down = false")
	}
	if ki, err := m.Stat(ctx, certKey); err != nil || !ki.IsTerminal {
		t.Fatalf("Stat while down = %+v, %v", ki, err)
	}
	keys, err := m.List(ctx, "certificates", true)
	if err != nil || !slices.Contains(keys, certKey) {
		t.Fatalf("List while down = %v, %v", keys, err)
	}
	if _, err := m.Load(ctx, "certificates/acme/b.test/b.test.crt"); !errors.Is(err, errDown) {
		t.Fatalf("Load of a key never seen while down: %v, want the store's error", err)
	}
	if err := m.Store(ctx, certKey, []byte("NEW")); err == nil {
		// FileStorage.Store is not switched off here, so it succeeds; the
		// point is that writes go to the shared store, not only to the copy.
		got, _ := shared.FileStorage.Load(ctx, certKey)
		if string(got) != "NEW" {
			t.Fatalf("write did not reach the shared store: %q", got)
		}
	}

	shared.down.Store(false)
	if err := m.Delete(ctx, certKey); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, certKey)); !os.IsNotExist(err) {
		t.Fatalf("local copy not removed with the key: %v", err)
	}
}

// leaseRecorder is a storage that records the leases asked for.
type leaseRecorder struct {
	certmagic.FileStorage
	leases []time.Duration
}

func (l *leaseRecorder) RenewLockLease(_ context.Context, _ string, d time.Duration) error {
	l.leases = append(l.leases, d)
	return nil
}

func TestMirrorCapsLockLease(t *testing.T) {
	for _, tc := range []struct {
		name      string
		max, asks time.Duration
		want      time.Duration
	}{
		// certmagic's first attempt: 1 min retry interval + 90 s obtain timeout.
		{"certmagic first attempt capped", 10 * time.Second, 150 * time.Second, 10 * time.Second},
		{"shorter request kept", 10 * time.Second, 5 * time.Second, 5 * time.Second},
		{"no cap passes through", 0, 150 * time.Second, 150 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &leaseRecorder{FileStorage: certmagic.FileStorage{Path: t.TempDir()}}
			m := &Mirror{Storage: rec, Dir: t.TempDir(), MaxLockLease: tc.max}
			if err := m.RenewLockLease(t.Context(), "issue_cert_a.test", tc.asks); err != nil {
				t.Fatal(err)
			}
			if len(rec.leases) != 1 || rec.leases[0] != tc.want {
				t.Fatalf("store asked for %v, want [%s]", rec.leases, tc.want)
			}
		})
	}
}
