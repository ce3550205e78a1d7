package tlsmgr

import (
	"slices"
	"sync"

	"go.uber.org/zap/zapcore"
)

// certmagic has no challenge-level events, so edge_acme_challenges_total
// is counted from the ACME client's own log records, which carry the
// challenge type. acmez v3.1.7 (client.go) logs, per authorization:
//
//	"trying to solve challenge"  identifier, challenge_type
//	"challenge failed"           identifier, challenge_type, problem
//	"authorization finalized"    identifier, authz_status
//
// challengeCounter sees those records whatever the log level and keeps the
// type between the first and the last.
type challengeCounter struct {
	metrics *Metrics
	fields  []zapcore.Field

	mu      *sync.Mutex
	pending map[string]string // identifier -> challenge type being solved
}

func newChallengeCounter(m *Metrics) *challengeCounter {
	return &challengeCounter{metrics: m, mu: &sync.Mutex{}, pending: map[string]string{}}
}

// wrap returns a core that writes to inner as before and also lets the
// counter see the records it needs.
func (c *challengeCounter) wrap(inner zapcore.Core) zapcore.Core {
	return &countingCore{Core: inner, counter: c}
}

type countingCore struct {
	zapcore.Core
	counter *challengeCounter
}

// Enabled is true at every level: the records counted are Info and Error,
// and the log level may hide them from the inner core.
func (cc *countingCore) Enabled(zapcore.Level) bool { return true }

func (cc *countingCore) With(fields []zapcore.Field) zapcore.Core {
	return &countingCore{Core: cc.Core.With(fields), counter: cc.counter.with(fields)}
}

func (cc *countingCore) Check(ent zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	ce = cc.Core.Check(ent, ce)
	switch ent.Message {
	case "trying to solve challenge", "challenge failed", "authorization finalized":
		ce = ce.AddCore(ent, cc.counter)
	}
	return ce
}

// The counter is a write-only core.
func (c *challengeCounter) Enabled(zapcore.Level) bool          { return true }
func (c *challengeCounter) With(f []zapcore.Field) zapcore.Core { return c.with(f) }

// with copies c with more fields; copies share the mutex and the map. The
// slice is clipped so that no two copies ever append into shared spare room.
func (c *challengeCounter) with(f []zapcore.Field) *challengeCounter {
	cp := *c
	cp.fields = slices.Clip(slices.Concat(c.fields, f))
	return &cp
}

// failPending counts a failure for the challenge still being solved for
// ident when its order fails without the CA judging the challenge (a
// DNS-01 propagation timeout, say); canceled drops it uncounted.
func (c *challengeCounter) failPending(ident string, canceled bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t, ok := c.pending[ident]; ok {
		delete(c.pending, ident)
		if !canceled {
			c.metrics.challenge(t, "failure")
		}
	}
}
func (c *challengeCounter) Check(_ zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	return ce
}
func (c *challengeCounter) Sync() error { return nil }

func (c *challengeCounter) Write(ent zapcore.Entry, fields []zapcore.Field) error {
	var ident, typ, status string
	for _, fs := range [][]zapcore.Field{c.fields, fields} {
		for _, f := range fs {
			switch f.Key {
			case "identifier":
				ident = f.String
			case "challenge_type":
				typ = f.String
			case "authz_status":
				status = f.String
			}
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch ent.Message {
	case "trying to solve challenge":
		c.pending[ident] = typ
	case "challenge failed":
		delete(c.pending, ident)
		c.metrics.challenge(typ, "failure")
	case "authorization finalized":
		if t, ok := c.pending[ident]; ok {
			delete(c.pending, ident)
			result := "success"
			if status != "valid" {
				result = "failure"
			}
			c.metrics.challenge(t, result)
		}
	}
	return nil
}
