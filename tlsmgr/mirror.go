package tlsmgr

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
)

// Mirror wraps a shared storage (Redis) and keeps a local, read-only copy
// of the certificates and keys it sees (files 0600 under Dir). When the
// shared store cannot be reached, reads of certificate keys fall back to the
// copy, so an edge restarted while Redis is down still serves what it had.
// Writes, locks and everything else go to the shared store only.
// Safe for concurrent use.
type Mirror struct {
	certmagic.Storage
	Dir    string
	Logger *zap.Logger
	// MaxLockLease caps the lease RenewLockLease asks the shared store for;
	// 0 passes certmagic's request through unchanged.
	//
	// certmagic (v0.25.6, Config.renewLockLease) asks, at the start of
	// every obtain attempt, for a lease of the next retry interval plus
	// CertObtainTimeout: 2.5 min on the first attempt, up to 6 h later.
	// A store whose own keepalive extends the lease while the holder lives
	// (redisstore) does not need that to keep a live holder's lock, and a
	// holder killed mid-order would block every other edge from the name
	// for the whole of it. Set it to the store's lease: the call still
	// checks that the lock is held.
	MaxLockLease time.Duration

	// degraded is set while reads are served from the local copy, so the
	// outage is logged once (and its end once), not for every key.
	degraded atomic.Bool
}

var _ certmagic.Storage = (*Mirror)(nil)

// mirrored reports whether key is worth copying: certificates, keys and
// their metadata, and the ACME account (so a later renewal can reuse it).
func mirrored(key string) bool {
	return strings.HasPrefix(key, "certificates/") || strings.HasPrefix(key, "acme/") && !strings.Contains(key, "/challenge_tokens/")
}

func (m *Mirror) local(key string) string {
	return filepath.Join(m.Dir, filepath.FromSlash(key))
}

// unreachable reports whether err means the shared store is down rather
// than that the key is missing.
func unreachable(err error) bool {
	return err != nil && !errors.Is(err, fs.ErrNotExist)
}

func (m *Mirror) save(key string, value []byte) {
	if !mirrored(key) {
		return
	}
	p := m.local(key)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err == nil {
		tmp := p + ".tmp"
		if err = os.WriteFile(tmp, value, 0o600); err == nil {
			err = os.Rename(tmp, p)
		}
		if err != nil && m.Logger != nil {
			m.Logger.Warn("updating local certificate copy", zap.String("key", key), zap.Error(err))
		}
	}
}

// Store implements certmagic.Storage.
func (m *Mirror) Store(ctx context.Context, key string, value []byte) error {
	if err := m.Storage.Store(ctx, key, value); err != nil {
		return err
	}
	m.save(key, value)
	return nil
}

// Load implements certmagic.Storage.
func (m *Mirror) Load(ctx context.Context, key string) ([]byte, error) {
	v, err := m.Storage.Load(ctx, key)
	if err == nil {
		if m.degraded.Swap(false) && m.Logger != nil {
			m.Logger.Info("shared storage reachable again")
		}
		m.save(key, v)
		return v, nil
	}
	if unreachable(err) && mirrored(key) {
		if lv, lerr := os.ReadFile(m.local(key)); lerr == nil {
			if !m.degraded.Swap(true) && m.Logger != nil {
				m.Logger.Warn("shared storage unreachable; serving certificates from the local copy until it is back",
					zap.String("dir", m.Dir), zap.String("first_key", key), zap.Error(err))
			}
			return lv, nil
		}
	}
	return nil, err
}

// Delete implements certmagic.Storage.
func (m *Mirror) Delete(ctx context.Context, key string) error {
	if err := m.Storage.Delete(ctx, key); err != nil {
		return err
	}
	if mirrored(key) {
		_ = os.RemoveAll(m.local(key))
	}
	return nil
}

// Exists implements certmagic.Storage.
func (m *Mirror) Exists(ctx context.Context, key string) bool {
	if m.Storage.Exists(ctx, key) {
		return true
	}
	if _, err := m.Storage.Stat(ctx, key); unreachable(err) && mirrored(key) {
		_, lerr := os.Stat(m.local(key))
		return lerr == nil
	}
	return false
}

// Stat implements certmagic.Storage.
func (m *Mirror) Stat(ctx context.Context, key string) (certmagic.KeyInfo, error) {
	ki, err := m.Storage.Stat(ctx, key)
	if unreachable(err) && mirrored(key) {
		if fi, lerr := os.Stat(m.local(key)); lerr == nil {
			return certmagic.KeyInfo{Key: key, Modified: fi.ModTime(), Size: fi.Size(), IsTerminal: !fi.IsDir()}, nil
		}
	}
	return ki, err
}

// List implements certmagic.Storage.
func (m *Mirror) List(ctx context.Context, prefix string, recursive bool) ([]string, error) {
	keys, err := m.Storage.List(ctx, prefix, recursive)
	if !unreachable(err) || !mirrored(prefix+"/") {
		return keys, err
	}
	var out []string
	root := m.local(prefix)
	walkErr := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		rel, _ := filepath.Rel(m.Dir, p)
		out = append(out, filepath.ToSlash(rel))
		if d.IsDir() && !recursive {
			return filepath.SkipDir
		}
		return nil
	})
	if walkErr != nil || len(out) == 0 {
		return nil, err
	}
	return out, nil
}

// Lock, Unlock and the optional locker interfaces pass through: a lock
// can only be had from the shared store.
func (m *Mirror) Lock(ctx context.Context, name string) error   { return m.Storage.Lock(ctx, name) }
func (m *Mirror) Unlock(ctx context.Context, name string) error { return m.Storage.Unlock(ctx, name) }

// String names the wrapped storage in certmagic's logs.
func (m *Mirror) String() string {
	if s, ok := m.Storage.(interface{ String() string }); ok {
		return s.String() + " (local copy " + m.Dir + ")"
	}
	return "storage (local copy " + m.Dir + ")"
}

var (
	_ certmagic.TryLocker        = (*Mirror)(nil)
	_ certmagic.LockLeaseRenewer = (*Mirror)(nil)
)

// TryLock implements certmagic.TryLocker when the shared store does.
func (m *Mirror) TryLock(ctx context.Context, name string) (bool, error) {
	if tl, ok := m.Storage.(certmagic.TryLocker); ok {
		return tl.TryLock(ctx, name)
	}
	return false, errors.New("storage cannot try locks")
}

// RenewLockLease implements certmagic.LockLeaseRenewer when the shared
// store does, asking for at most MaxLockLease.
func (m *Mirror) RenewLockLease(ctx context.Context, name string, d time.Duration) error {
	if m.MaxLockLease > 0 && d > m.MaxLockLease {
		d = m.MaxLockLease
	}
	if lr, ok := m.Storage.(certmagic.LockLeaseRenewer); ok {
		return lr.RenewLockLease(ctx, name, d)
	}
	return nil
}
