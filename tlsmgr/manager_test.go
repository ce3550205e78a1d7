package tlsmgr

import (
	"context"
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/libdns/libdns"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// comparedOptions are the fields of Options that sameIssuerSetup compares;
// processWideOptions are those that belong to the process, not to a
// configuration. A field added to Options must go in one of the lists (and
// in sameIssuerSetup), so that no new input is silently ignored by a reload.
var (
	comparedOptions = []string{"CA", "Email", "TrustedRoots", "EAB", "CAs", "HTTP01", "TLSALPN01",
		"HTTPPort", "TLSPort", "ListenHost", "Storage", "RenewalWindowRatio", "Groups", "OnDemand"}
	// ARIRefresh is configuration, but every Apply takes it as it is,
	// without rebuilding a group.
	processWideOptions = []string{"OnObtained", "OnOrder", "Logger", "Metrics", "ARIRefresh"}
)

func TestOptionsFieldsAccountedFor(t *testing.T) {
	for f := range reflect.TypeFor[Options]().Fields() {
		if !slices.Contains(comparedOptions, f.Name) && !slices.Contains(processWideOptions, f.Name) {
			t.Errorf("Options.%s is neither compared by Apply nor listed as process-wide", f.Name)
		}
	}
	for f := range reflect.TypeFor[DNSOptions]().Fields() {
		switch f.Name {
		case "Provider": // identified by Fingerprint
		case "ProviderName", "Fingerprint", "OverrideDomain", "Resolvers", "PropagationTimeout", "PropagationDelay":
		default:
			t.Errorf("DNSOptions.%s is not part of keyOf", f.Name)
		}
	}
}

type nopDNS struct{}

func (nopDNS) AppendRecords(context.Context, string, []libdns.Record) ([]libdns.Record, error) {
	return nil, nil
}
func (nopDNS) DeleteRecords(context.Context, string, []libdns.Record) ([]libdns.Record, error) {
	return nil, nil
}

// TestApplyDiff: Apply keeps the groups a reload leaves alone (their orders
// in flight go on), replaces the changed ones and cancels them, and does
// nothing for equal options.
func TestApplyDiff(t *testing.T) {
	dir, err := os.MkdirTemp("", "tlsmgr-apply-")
	if err != nil {
		t.Fatal(err)
	}
	store := &certmagic.FileStorage{Path: dir}
	m := New(nil, nil)
	t.Cleanup(func() {
		m.Stop()
		// certmagic's order goroutines notice the cancellation on their
		// own time and may still write a lock file meanwhile.
		for range 100 {
			if os.RemoveAll(dir) == nil {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Errorf("could not remove %s", dir)
	})
	opts := func(email, fp string) Options {
		return Options{
			CA: "https://127.0.0.1:1/dir", Email: email, Storage: store, HTTP01: true, HTTPPort: 1, TLSPort: 2,
			Groups: []Group{
				{Names: []string{"a.test", "www.a.test"}},
				{Names: []string{"*.b.test"}, DNS: &DNSOptions{ProviderName: "lan", Provider: nopDNS{}, Fingerprint: fp}},
			},
		}
	}
	ctx := t.Context()
	if err := m.Apply(ctx, opts("ops@a.test", "one")); err != nil {
		t.Fatal(err)
	}
	g1 := m.cur.Load()

	if err := m.Apply(ctx, opts("ops@a.test", "one")); err != nil {
		t.Fatal(err)
	}
	if m.cur.Load() != g1 {
		t.Error("equal options built a new generation")
	}

	if err := m.Apply(ctx, opts("ops@a.test", "two")); err != nil {
		t.Fatal(err)
	}
	g2 := m.cur.Load()
	if g2.groups[0] != g1.groups[0] {
		t.Error("the unchanged plain group was rebuilt")
	}
	if g2.groups[1] == g1.groups[1] {
		t.Error("the DNS group whose provider changed was kept")
	}
	if g1.groups[1].ctx.Err() == nil {
		t.Error("the replaced group's orders were not canceled")
	}
	if g1.groups[0].ctx.Err() != nil {
		t.Error("the kept group's orders were canceled")
	}

	if err := m.Apply(ctx, opts("other@a.test", "two")); err != nil {
		t.Fatal(err)
	}
	g3 := m.cur.Load()
	for i := range g3.groups {
		if g3.groups[i] == g2.groups[i] {
			t.Errorf("group %d kept after the account email changed", i)
		}
	}
}

// TestStoppingCore: once Stop has begun, certmagic's complaints about the
// work Stop canceled go to debug; other errors keep their level.
func TestStoppingCore(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	var stopped atomic.Bool
	log := zap.New(stoppingCore{core, &stopped})
	log.Error("job failed", zap.Error(fmt.Errorf("obtaining: %v", context.Canceled)))
	stopped.Store(true)
	log.Error("job failed", zap.Error(fmt.Errorf("obtaining: %v", context.Canceled)))
	log.Error("unable to unlock", zap.String("lock", "issue_cert_a.test"))
	log.Error("storage is broken", zap.Error(errors.New("disk full")))
	var got []string
	for _, e := range logs.All() {
		got = append(got, e.Level.String()+" "+e.Message)
	}
	want := []string{"error job failed", "debug job failed", "debug unable to unlock", "error storage is broken"}
	if !slices.Equal(got, want) {
		t.Errorf("levels = %q, want %q", got, want)
	}
}
