package tlsmgr

import (
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/exp/zapslog"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestChallengeCounter feeds the records acmez v3.1.7 writes, through the
// same slog-over-zap path certmagic builds, with the log level at warn.
func TestChallengeCounter(t *testing.T) {
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	inner, logs := observer.New(zapcore.WarnLevel)
	counter := newChallengeCounter(m)
	zl := zap.New(inner).WithOptions(zap.WrapCore(counter.wrap))
	acme := slog.New(zapslog.NewHandler(zl.Core()))

	acme.Info("trying to solve challenge", "identifier", "a.test", "challenge_type", "http-01")
	acme.Info("authorization finalized", "identifier", "a.test", "authz_status", "valid")
	acme.Info("trying to solve challenge", "identifier", "b.test", "challenge_type", "dns-01")
	acme.Error("challenge failed", "identifier", "b.test", "challenge_type", "dns-01", "problem", "NXDOMAIN")
	acme.Info("authorization finalized", "identifier", "c.test", "authz_status", "valid") // never started here: not counted
	// An order that fails before the CA judges the challenge (a DNS-01
	// propagation timeout inside Present) counts through cert_failed.
	acme.Info("trying to solve challenge", "identifier", "d.test", "challenge_type", "dns-01")
	counter.failPending("d.test", false)
	// One stopped by a reload does not count.
	acme.Info("trying to solve challenge", "identifier", "e.test", "challenge_type", "dns-01")
	counter.failPending("e.test", true)

	for _, tc := range []struct {
		typ, result string
		want        float64
	}{
		{"http-01", "success", 1}, {"dns-01", "failure", 2}, {"dns-01", "success", 0}, {"http-01", "failure", 0},
	} {
		if got := testutil.ToFloat64(m.challenges.WithLabelValues(tc.typ, tc.result)); got != tc.want {
			t.Errorf("edge_acme_challenges_total{type=%q,result=%q} = %g, want %g", tc.typ, tc.result, got, tc.want)
		}
	}
	// The inner core still filters by its own level: only the Error record passes.
	if logs.Len() != 1 || logs.All()[0].Message != "challenge failed" {
		t.Errorf("inner core got %d records: %v", logs.Len(), logs.All())
	}
}
