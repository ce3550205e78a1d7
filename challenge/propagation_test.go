package challenge

import (
	"context"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libdns/libdns"

	"github.com/farmedge/edge/internal/testenv"
)

// silentProvider claims success but writes nothing, as a provider whose API
// accepted a record for the wrong zone would.
type silentProvider struct{ deleted atomic.Int32 }

func (s *silentProvider) AppendRecords(_ context.Context, _ string, recs []libdns.Record) ([]libdns.Record, error) {
	return recs, nil
}

func (s *silentProvider) DeleteRecords(_ context.Context, _ string, recs []libdns.Record) ([]libdns.Record, error) {
	s.deleted.Add(int32(len(recs)))
	return recs, nil
}

func TestPropagationCheck(t *testing.T) {
	bind := testenv.StartBIND(t, testenv.BINDOptions{Zones: []string{"app.test"}})
	ctx := t.Context()

	t.Run("visible", func(t *testing.T) {
		p, err := NewRFC2136("lan", RFC2136Options{Server: bind.Addr, KeyName: bind.KeyName, KeyAlg: bind.KeyAlg, Key: bind.KeySecret})
		if err != nil {
			t.Fatal(err)
		}
		wp := WithPropagationCheck(p, Propagation{Resolvers: []string{bind.Addr}, Timeout: 10 * time.Second, Interval: 100 * time.Millisecond})
		recs := []libdns.Record{libdns.TXT{Name: "_acme-challenge", Text: "seen"}}
		if _, err := wp.AppendRecords(ctx, "app.test.", recs); err != nil {
			t.Fatalf("append with propagation check: %v", err)
		}
		if _, err := wp.DeleteRecords(ctx, "app.test.", recs); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("never visible says what each resolver saw", func(t *testing.T) {
		sp := &silentProvider{}
		dead := testenv.FreePort(t)
		wp := WithPropagationCheck(sp, Propagation{
			Resolvers: []string{bind.Addr, "127.0.0.1:" + strconv.Itoa(dead)},
			Timeout:   1500 * time.Millisecond, Interval: 200 * time.Millisecond,
		})
		_, err := wp.AppendRecords(ctx, "app.test.", []libdns.Record{libdns.TXT{Name: "_acme-challenge", Text: "want-this"}})
		if err == nil {
			t.Fatal("no error for a record that never appeared")
		}
		msg := err.Error()
		for _, want := range []string{"_acme-challenge.app.test.", `want "want-this"`, bind.Addr + " saw []", "127.0.0.1:" + strconv.Itoa(dead) + ":"} {
			if !strings.Contains(msg, want) {
				t.Errorf("error %q lacks %q", msg, want)
			}
		}
		if sp.deleted.Load() != 1 {
			t.Errorf("appended record not deleted after the failed check (deleted %d)", sp.deleted.Load())
		}
	})
}
