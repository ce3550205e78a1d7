package tlsmgr

import (
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"math/big"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/mholt/acmez/v3/acme"
)

func TestPlannedRenewal(t *testing.T) {
	nb := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	leaf := func(life time.Duration) *x509.Certificate {
		return &x509.Certificate{NotBefore: nb, NotAfter: nb.Add(life - time.Second)} // as CAs issue: inclusive NotAfter
	}
	ari := func(sel time.Time) *acme.RenewalInfo { return &acme.RenewalInfo{SelectedTime: sel} }
	tests := []struct {
		name     string
		leaf     *x509.Certificate
		ari      *acme.RenewalInfo
		ratio    float64
		interval time.Duration
		want     time.Time
		source   string
	}{
		{"90 days, renew_at 0.66", leaf(90 * day), nil, 0.34, 10 * time.Minute, nb.Add(90*day - time.Duration(0.34*float64(90*day))), RenewalFromRatio},
		{"90 days, certmagic's default 1/3", leaf(90 * day), nil, 0, 10 * time.Minute, nb.Add(60 * day), RenewalFromRatio},
		{"ARI selects day 40: one check before it", leaf(90 * day), ari(nb.Add(40 * day)), 0.34, 10 * time.Minute, nb.Add(40*day - 10*time.Minute), RenewalFromARI},
		{"ARI after the ratio point: the ratio wins", leaf(90 * day), ari(nb.Add(80 * day)), 0.34, 10 * time.Minute, nb.Add(90*day - time.Duration(0.34*float64(90*day))), RenewalFromRatio},
		{"ARI in the past (mass revocation): now", leaf(90 * day), ari(nb.Add(-time.Hour)), 0.34, 10 * time.Minute, nb.Add(-time.Hour - 10*time.Minute), RenewalFromARI},
		{"ARI without a selected time is not a plan", leaf(90 * day), &acme.RenewalInfo{}, 0.34, 10 * time.Minute, nb.Add(90*day - time.Duration(0.34*float64(90*day))), RenewalFromRatio},
		{"ARI late, ratio tiny: 1/20 before expiry", leaf(100 * day), ari(nb.Add(99 * day)), 0.01, 10 * time.Minute, nb.Add(95 * day), RenewalFromExpiry},
		{"6 days (shortlived), renew_at 0.66", leaf(160 * time.Hour), nil, 0.34, 10 * time.Minute, nb.Add(160*time.Hour - time.Duration(0.34*float64(160*time.Hour))), RenewalFromRatio},
		{"90 s, checks every 4.5 s", leaf(90 * time.Second), nil, 0, 4500 * time.Millisecond, nb.Add(60 * time.Second), RenewalFromRatio},
		{"90 s, checks every 10 min: five checks before expiry", leaf(90 * time.Second), nil, 0, 10 * time.Minute, nb.Add(90*time.Second - 50*time.Minute), RenewalFromExpiry},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, src := plannedRenewal(tc.leaf, tc.ari, tc.ratio, tc.interval)
			if d := got.Sub(tc.want); d < -time.Second || d > time.Second || src != tc.source {
				t.Errorf("plannedRenewal = %s (%s), want %s (%s)", got, src, tc.want, tc.source)
			}
		})
	}
}

func TestCertState(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	iv := 10 * time.Second // overdue after 2*10s + 30s = 50s
	tests := []struct {
		name     string
		notAfter time.Time
		renewAt  time.Time
		event    string
		want     string
	}{
		{"before the plan", now.Add(time.Hour), now.Add(time.Minute), StateValid, StateValid},
		{"no event yet", now.Add(time.Hour), now.Add(time.Minute), "", StateValid},
		{"just past the plan", now.Add(time.Hour), now.Add(-10 * time.Second), StateValid, StateRenewalDue},
		{"long past the plan", now.Add(time.Hour), now.Add(-time.Minute), StateValid, StateRenewalOverdue},
		{"ordering", now.Add(time.Hour), now.Add(-time.Minute), StateObtaining, StateObtaining},
		{"failed", now.Add(time.Hour), now.Add(-time.Minute), StateFailed, StateFailed},
		{"expired", now.Add(-time.Second), now.Add(-time.Hour), StateFailed, StateExpired},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := certState(now, tc.notAfter, tc.renewAt, iv, tc.event); got != tc.want {
				t.Errorf("certState = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestParseStoredARI(t *testing.T) {
	aki := base64.RawURLEncoding.EncodeToString([]byte{1, 2, 3})
	high, _ := new(big.Int).SetString("8f00aa", 16) // DER adds a 0x00 byte before a high bit
	meta := func(serialDER []byte) []byte {
		return fmt.Appendf(nil, `{"sans":["a.test"],"issuer_data":{"url":"https://ca/cert/1","renewal_info":{
			"suggestedWindow":{"start":"2026-03-20T00:00:00Z","end":"2026-03-22T00:00:00Z"},
			"_uniqueIdentifier":"%s.%s","_selectedTime":"2026-03-21T06:00:00Z"}}}`, aki, base64.RawURLEncoding.EncodeToString(serialDER))
	}
	tests := []struct {
		name   string
		raw    []byte
		serial *big.Int
		want   bool
	}{
		{"same serial", meta([]byte{0x12, 0x34}), big.NewInt(0x1234), true},
		{"serial with a DER zero byte", meta([]byte{0x00, 0x8f, 0x00, 0xaa}), high, true},
		{"another certificate's", meta([]byte{0x12, 0x35}), big.NewInt(0x1234), false},
		{"no renewal_info", []byte(`{"sans":["a.test"],"issuer_data":{"url":"x"}}`), big.NewInt(1), false},
		{"not JSON", []byte(`{`), big.NewInt(1), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ari := parseStoredARI(tc.raw, tc.serial)
			if (ari != nil) != tc.want {
				t.Fatalf("parseStoredARI = %+v, want found %v", ari, tc.want)
			}
			if ari != nil && !ari.SelectedTime.Equal(time.Date(2026, 3, 21, 6, 0, 0, 0, time.UTC)) {
				t.Errorf("selected time %s", ari.SelectedTime)
			}
		})
	}
}

func TestNextRetry(t *testing.T) {
	last := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		failures int
		want     time.Duration
	}{{0, -1}, {1, time.Minute}, {2, 2 * time.Minute}, {4, 5 * time.Minute}, {25, 6 * time.Hour}, {1000, 6 * time.Hour}} {
		got := nextRetry(tc.failures, last)
		if tc.want < 0 {
			if !got.IsZero() {
				t.Errorf("nextRetry(%d) = %s, want none", tc.failures, got)
			}
			continue
		}
		if got.Sub(last) != tc.want {
			t.Errorf("nextRetry(%d) = +%s, want +%s", tc.failures, got.Sub(last), tc.want)
		}
	}
}

func TestCertNamesIncludeIPs(t *testing.T) {
	leaf := &x509.Certificate{DNSNames: []string{"a.test"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")}}
	if got, want := certNames(leaf), []string{"a.test", "127.0.0.1", "::1"}; !slices.Equal(got, want) {
		t.Errorf("certNames = %q, want %q", got, want)
	}
}
