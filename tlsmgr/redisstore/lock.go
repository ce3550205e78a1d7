package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// heldLock is a Redis lock this Storage holds, kept alive by one goroutine.
type heldLock struct {
	name, key, token string
	lost             atomic.Bool
	cancel           context.CancelFunc // stops the keepalive
	done             chan struct{}      // closed when the keepalive has exited

	mu      sync.Mutex
	sentAt  time.Time // when the request behind validTo was sent
	validTo time.Time // local conservative end of the lease
	asked   time.Time // end of the lease last asked for (acquire, RenewLockLease), not the keepalive's
}

// setAsked records the end of a lease the holder asked for.
func (h *heldLock) setAsked(end time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.asked = end
}

func (h *heldLock) askedUntil() time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.asked
}

// setValid records that a request sent at sent left ttl on the lease. The
// local deadline is measured from the send time, so it never ends after the
// server's expiry. Older replies never overwrite newer ones.
func (h *heldLock) setValid(sent time.Time, ttl time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if sent.Before(h.sentAt) {
		return
	}
	h.sentAt, h.validTo = sent, sent.Add(ttl)
}

func (h *heldLock) until() time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.validTo
}

func newToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}

// claim takes the in-process claim on name, so at most one caller in this
// process holds or is acquiring a given lock and Unlock(name) is never
// ambiguous. With block false it reports false when the name is claimed.
func (s *Storage) claim(ctx context.Context, name string, block bool) (bool, error) {
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return false, ErrClosed
		}
		if !s.claimed[name] {
			s.claimed[name] = true
			s.mu.Unlock()
			return true, nil
		}
		wake := s.wake
		s.mu.Unlock()
		if !block {
			return false, nil
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
}

// unclaim releases the in-process claim and wakes local waiters.
func (s *Storage) unclaim(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.claimed, name)
	close(s.wake)
	s.wake = make(chan struct{})
}

// Lock acquires the named lock, blocking until it is acquired, ctx ends
// (returning ctx.Err()) or the Storage is closed (ErrClosed). A blocked Lock
// retries every LockPoll (±25% jitter); callers in the same process wait for
// each other locally and wake as soon as the lock is released. Redis errors
// are retried for up to one lease (to ride out a restart or failover), then
// returned. While held, the lock's lease is renewed every LockLease/3.
func (s *Storage) Lock(ctx context.Context, name string) error {
	if _, err := s.claim(ctx, name, true); err != nil {
		return s.metrics.op("lock", err)
	}
	token := newToken()
	var errSince time.Time
	timer := time.NewTimer(0)
	<-timer.C
	defer timer.Stop()
	for {
		ok, err := s.acquire(ctx, name, token)
		if ok {
			return s.metrics.op("lock", nil)
		}
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, ErrClosed) {
				s.abandon(name, token)
				return s.metrics.op("lock", firstErr(ctx.Err(), err))
			}
			if errSince.IsZero() {
				errSince = time.Now()
			} else if time.Since(errSince) > s.lease {
				s.abandon(name, token)
				return s.metrics.op("lock", fmt.Errorf("acquiring lock %q: %w", name, err))
			}
			s.log.Warn("acquiring lock failed; retrying", zap.String("lock", name), zap.Error(err))
		} else {
			errSince = time.Time{}
		}
		timer.Reset(s.jitteredPoll())
		select {
		case <-timer.C:
		case <-ctx.Done():
			if err != nil { // the last attempt's outcome is unknown
				s.abandon(name, token)
			} else {
				s.unclaim(name)
			}
			return s.metrics.op("lock", ctx.Err())
		case <-s.ctx.Done():
			s.unclaim(name)
			return s.metrics.op("lock", ErrClosed)
		}
	}
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// abandon gives up an acquisition: it drops the local claim and, in case an
// attempt whose reply was lost did take the lock, deletes it if it holds our
// token (best effort, bounded to one second; after Close the client refuses
// and the lease simply runs out).
func (s *Storage) abandon(name, token string) {
	defer s.unclaim(name)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = unlockScript.Run(ctx, s.client, []string{s.lockKey(name), s.lockIndexKey()}, token, name).Err()
}

func (s *Storage) jitteredPoll() time.Duration {
	return time.Duration(float64(s.poll) * (0.75 + 0.5*mrand.Float64()))
}

// TryLock makes one attempt to acquire the named lock. It returns (false,
// nil) when another holder, in this process or another, has it.
func (s *Storage) TryLock(ctx context.Context, name string) (bool, error) {
	ok, err := s.claim(ctx, name, false)
	if err != nil {
		return false, s.metrics.op("trylock", err)
	}
	if !ok {
		s.metrics.result("trylock", "busy")
		return false, nil
	}
	token := newToken()
	ok, err = s.acquire(ctx, name, token)
	switch {
	case err != nil:
		s.abandon(name, token)
		return false, s.metrics.op("trylock", fmt.Errorf("trying lock %q: %w", name, err))
	case !ok:
		s.unclaim(name)
		s.metrics.result("trylock", "busy")
		return false, nil
	}
	return true, s.metrics.op("trylock", nil)
}

// acquire makes one SET NX PX attempt with token; on success it registers the
// lock and starts its keepalive. The caller holds the local claim.
func (s *Storage) acquire(ctx context.Context, name, token string) (bool, error) {
	key := s.lockKey(name)
	sent := time.Now()
	_, err := acquireScript.Run(ctx, s.client, []string{key, s.lockIndexKey()},
		token, s.lease.Milliseconds(), s.instance, name).Text()
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	if err != nil {
		return false, s.mapErr(err)
	}
	h := &heldLock{name: name, key: key, token: token, done: make(chan struct{})}
	h.setValid(sent, s.lease)
	h.setAsked(sent.Add(s.lease))

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return false, ErrClosed // the caller's abandon releases it
	}
	kctx, cancel := context.WithCancel(s.ctx)
	h.cancel = cancel
	s.held[name] = h
	s.wg.Add(1)
	s.mu.Unlock()

	go s.keepalive(kctx, h)
	s.metrics.acquired(name)
	s.log.Debug("lock acquired", zap.String("lock", name))
	return true, nil
}

// Unlock releases the named lock with compare-and-delete: it deletes the
// lock only if it still holds this holder's token, so a holder whose lease
// expired never deletes the next holder's lock. It returns an error wrapping
// ErrLockNotHeld when this Storage did not hold the lock or its lease was
// lost; either way the keepalive is stopped and the local claim released.
func (s *Storage) Unlock(ctx context.Context, name string) error {
	s.mu.Lock()
	h := s.held[name]
	delete(s.held, name)
	closed := s.closed
	s.mu.Unlock()
	if h == nil {
		if closed {
			return s.metrics.op("unlock", ErrClosed)
		}
		return s.metrics.op("unlock", fmt.Errorf("unlocking %q: %w", name, ErrLockNotHeld))
	}
	h.cancel()
	<-h.done
	s.metrics.released(name)
	defer s.unclaim(name)

	n, err := unlockScript.Run(ctx, s.client, []string{h.key, s.lockIndexKey()}, h.token, name).Int()
	if err != nil {
		return s.metrics.op("unlock", fmt.Errorf("unlocking %q (it stays held until its lease runs out): %w", name, s.mapErr(err)))
	}
	if n == 0 {
		return s.metrics.op("unlock", fmt.Errorf("unlocking %q: lease was lost: %w", name, ErrLockNotHeld))
	}
	s.log.Debug("lock released", zap.String("lock", name))
	return s.metrics.op("unlock", nil)
}

// RenewLockLease sets the named lock's lease to lease from now, if this
// Storage still holds it (certmagic calls it before each obtain attempt).
// The keepalive never shortens a lease, so a long lease set here stands even
// if this process stops; afterwards the keepalive keeps at least LockLease.
func (s *Storage) RenewLockLease(ctx context.Context, name string, lease time.Duration) error {
	if lease < time.Millisecond {
		return s.metrics.op("renew", fmt.Errorf("renewing lock %q: lease %s is too short", name, lease))
	}
	s.mu.Lock()
	h := s.held[name]
	closed := s.closed
	s.mu.Unlock()
	switch {
	case closed:
		return s.metrics.op("renew", ErrClosed)
	case h == nil:
		return s.metrics.op("renew", fmt.Errorf("renewing lock %q: %w", name, ErrLockNotHeld))
	case h.lost.Load():
		return s.metrics.op("renew", fmt.Errorf("renewing lock %q: lease was lost: %w", name, ErrLockNotHeld))
	}
	sent := time.Now()
	ttl, err := extendScript.Run(ctx, s.client, []string{h.key}, h.token, lease.Milliseconds(), "0").Int64()
	if err != nil {
		return s.metrics.op("renew", fmt.Errorf("renewing lock %q: %w", name, s.mapErr(err)))
	}
	if ttl < 0 {
		s.lockLost(h, "token gone at renewal")
		return s.metrics.op("renew", fmt.Errorf("renewing lock %q: lease was lost: %w", name, ErrLockNotHeld))
	}
	h.setValid(sent, time.Duration(ttl)*time.Millisecond)
	h.setAsked(sent.Add(lease))
	return s.metrics.op("renew", nil)
}

// keepalive extends h's lease every LockLease/3 while the token matches. It
// stops when ctx ends (Unlock, Close) or the lease is lost: the token no
// longer matches, or the lease's local deadline passed with no renewal
// confirmed (Redis frozen or unreachable), in which case another holder
// may already have the lock.
func (s *Storage) keepalive(ctx context.Context, h *heldLock) {
	defer s.wg.Done()
	defer close(h.done)
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("lock keepalive panicked", zap.String("lock", h.name), zap.Any("panic", r), zap.Stack("stack"))
		}
	}()
	interval := s.lease / 3
	timer := time.NewTimer(interval)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		if h.lost.Load() {
			return
		}
		until := h.until()
		if !time.Now().Before(until) {
			s.lockLost(h, "lease ran out before a renewal was confirmed")
			return
		}
		sent := time.Now()
		deadline := sent.Add(interval)
		if until.Before(deadline) {
			deadline = until
		}
		cctx, cancel := context.WithDeadline(ctx, deadline)
		ttl, err := extendScript.Run(cctx, s.client, []string{h.key}, h.token, s.lease.Milliseconds(), "1").Int64()
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			s.metrics.result("keepalive", "error")
			s.log.Warn("renewing lock lease failed", zap.String("lock", h.name),
				zap.Duration("lease_left", time.Until(until)), zap.Error(err))
		case ttl < 0:
			s.lockLost(h, "token no longer matches")
			return
		default:
			h.setValid(sent, time.Duration(ttl)*time.Millisecond)
			s.metrics.result("keepalive", "ok")
		}
		next := interval
		if left := time.Until(h.until()); left < next {
			next = max(left, 0)
		}
		timer.Reset(next)
	}
}

// lockLost records, once, that h's lease was lost, and runs OnLockLost on a
// goroutine of its own (tracked, so Close waits for it), so that the callback
// may call Unlock. After Close the callback is not run.
func (s *Storage) lockLost(h *heldLock, reason string) {
	if !h.lost.CompareAndSwap(false, true) {
		return
	}
	s.log.Warn("lock lost", zap.String("lock", h.name), zap.String("reason", reason))
	s.metrics.released(h.name)
	s.metrics.result("keepalive", "lost")
	if s.onLost == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer func() {
			if r := recover(); r != nil {
				s.log.Error("OnLockLost panicked", zap.String("lock", h.name), zap.Any("panic", r), zap.Stack("stack"))
			}
		}()
		s.onLost(h.name)
	}()
}
