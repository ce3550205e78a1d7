package proxy

import (
	"fmt"
	"sync"
	"time"
)

// PassiveCheck ejects a backend that fails requests: after Fails failures to
// connect or timeouts within Window, the backend receives no requests for
// Cooldown, then is tried again.
//
// Fails 0 (the zero value) disables passive checks. With Fails set, Window
// and Cooldown must be positive.
type PassiveCheck struct {
	Fails    int
	Window   time.Duration
	Cooldown time.Duration
}

// resolve checks c: the zero value, or every field positive.
func (c PassiveCheck) resolve() (PassiveCheck, error) {
	if c.Fails <= 0 {
		return PassiveCheck{}, nil
	}
	if c.Window <= 0 || c.Cooldown <= 0 {
		return c, fmt.Errorf("passive check with fails %d needs a positive window and cooldown", c.Fails)
	}
	return c, nil
}

// passiveState holds the times of a backend's last Fails failures in a ring.
// Failures are rare next to requests, so a mutex is fine here; the request
// path only reads Upstream.ejectedUntil.
type passiveState struct {
	mu   sync.Mutex
	ring []time.Time
	next int
}

// fail records a failure at now and reports whether the backend must be
// ejected: the last c.Fails failures all happened within c.Window. The ring
// is cleared on ejection so that the backend gets a fresh start after its
// cooldown.
func (s *passiveState) fail(c *PassiveCheck, now time.Time) bool {
	if c.Fails <= 0 {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.ring) != c.Fails {
		s.ring = make([]time.Time, c.Fails)
		s.next = 0
	}
	s.ring[s.next] = now
	s.next = (s.next + 1) % c.Fails
	oldest := s.ring[s.next] // the slot to be overwritten next holds the oldest
	if oldest.IsZero() || now.Sub(oldest) > c.Window {
		return false
	}
	clear(s.ring)
	return true
}
