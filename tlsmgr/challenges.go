package tlsmgr

import (
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
	cp := *cc.counter
	cp.fields = append(append([]zapcore.Field(nil), cc.counter.fields...), fields...)
	return &countingCore{Core: cc.Core.With(fields), counter: &cp}
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
func (c *challengeCounter) Enabled(zapcore.Level) bool { return true }
func (c *challengeCounter) With(f []zapcore.Field) zapcore.Core {
	cp := *c
	cp.fields = append(append([]zapcore.Field(nil), c.fields...), f...)
	return &cp
}
func (c *challengeCounter) Check(_ zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	return ce
}
func (c *challengeCounter) Sync() error { return nil }

func (c *challengeCounter) Write(ent zapcore.Entry, fields []zapcore.Field) error {
	var ident, typ, status string
	for _, f := range append(c.fields, fields...) {
		switch f.Key {
		case "identifier":
			ident = f.String
		case "challenge_type":
			typ = f.String
		case "authz_status":
			status = f.String
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
