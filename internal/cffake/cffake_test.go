package cffake_test

import (
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libdns/cloudflare"
	"github.com/libdns/libdns"

	"github.com/farmedge/edge/internal/cffake"
	"github.com/farmedge/edge/internal/testenv"
)

// TestLibdnsCloudflareAgainstBIND runs libdns/cloudflare v0.2.2 against the
// fake, which writes into a real BIND: the TXT records appear in DNS and go
// away again, concurrently for two values at one name (a name and its
// wildcard), and a wrong token is refused as Cloudflare refuses it.
func TestLibdnsCloudflareAgainstBIND(t *testing.T) {
	start := time.Now()
	bind := testenv.StartBIND(t, testenv.BINDOptions{Zones: []string{"cf.test"}})
	t.Logf("BIND up in %s", time.Since(start).Round(time.Millisecond))
	fake := cffake.New(cffake.Options{
		Token: "good-token", Zones: map[string]string{"cf.test": "zone0001"},
		DNSServer: bind.Addr, TSIGName: bind.KeyName, TSIGSecret: bind.KeySecret,
	})
	t.Cleanup(fake.Close)

	p := &cloudflare.Provider{APIToken: "good-token", HTTPClient: fake.Client()}
	ctx := t.Context()
	recs := []libdns.Record{
		libdns.TXT{Name: "_acme-challenge", Text: "value-one"},
		libdns.TXT{Name: "_acme-challenge", Text: "value-two"},
	}
	// certmagic passes zones with a trailing dot; the fake takes both.
	got, err := p.AppendRecords(ctx, "cf.test.", recs)
	if err != nil {
		t.Fatalf("AppendRecords: %v", err)
	}
	if len(got) != 2 || got[0].RR().Name != "_acme-challenge" || got[0].RR().Data != "value-one" {
		t.Errorf("AppendRecords returned %+v", got)
	}
	if n := len(fake.Records("cf.test")); n != 2 {
		t.Errorf("fake holds %d records, want 2", n)
	}
	txt, err := bind.TXT("_acme-challenge.cf.test")
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(txt)
	if !slices.Equal(txt, []string{"value-one", "value-two"}) {
		t.Errorf("BIND answers TXT %q, want value-one and value-two", txt)
	}

	// Delete one by value, as certmagic does after validation.
	if _, err := p.DeleteRecords(ctx, "cf.test.", recs[:1]); err != nil {
		t.Fatalf("DeleteRecords: %v", err)
	}
	if txt, _ := bind.TXT("_acme-challenge.cf.test"); !slices.Equal(txt, []string{"value-two"}) {
		t.Errorf("after deleting value-one BIND answers %q", txt)
	}
	all, err := p.GetRecords(ctx, "cf.test")
	if err != nil {
		t.Fatalf("GetRecords: %v", err)
	}
	if len(all) != 1 {
		t.Errorf("GetRecords = %+v, want one record", all)
	}
	if _, err := p.DeleteRecords(ctx, "cf.test.", recs[1:]); err != nil {
		t.Fatalf("DeleteRecords: %v", err)
	}
	left, err := bind.ChallengeTXT("cf.test")
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 0 || len(fake.Records("cf.test")) != 0 {
		t.Errorf("left over: BIND %q, fake %+v", left, fake.Records("cf.test"))
	}

	t.Run("wrong token", func(t *testing.T) {
		bad := &cloudflare.Provider{APIToken: "wrong-token", HTTPClient: fake.Client()}
		_, err := bad.AppendRecords(ctx, "cf.test.", recs[:1])
		if err == nil || !strings.Contains(err.Error(), "HTTP 403") || !strings.Contains(err.Error(), "9109") {
			t.Fatalf("AppendRecords with a wrong token: %v; want HTTP 403 with code 9109", err)
		}
		t.Logf("libdns/cloudflare says: %v", err)
	})

	t.Run("unknown zone", func(t *testing.T) {
		_, err := p.AppendRecords(ctx, "nope.test.", recs[:1])
		if err == nil || !strings.Contains(err.Error(), "expected 1 zone, got 0") {
			t.Fatalf("AppendRecords in an unknown zone: %v", err)
		}
	})
}

// TestAuthErrors checks the fake's answers to bad credentials byte for byte
// against Cloudflare's.
func TestAuthErrors(t *testing.T) {
	fake := cffake.New(cffake.Options{Token: "good", ZoneToken: "zone-read", Zones: map[string]string{"a.test": "z1"}})
	t.Cleanup(fake.Close)
	tests := []struct {
		name, path, auth string
		code             int
		body             string
	}{
		{"wrong token", "/zones?name=a.test", "Bearer nope", 403,
			`{"result":null,"success":false,"errors":[{"code":9109,"message":"Invalid access token"}],"messages":[]}`},
		{"no header", "/zones?name=a.test", "", 400,
			`{"result":null,"success":false,"errors":[{"code":9106,"message":"Missing X-Auth-Key, X-Auth-Email or Authorization headers"}],"messages":[]}`},
		{"zone token on records", "/zones/z1/dns_records", "Bearer zone-read", 403,
			`{"result":null,"success":false,"errors":[{"code":10000,"message":"Authentication error"}],"messages":[]}`},
		{"zone token on zones", "/zones?name=a.test", "Bearer zone-read", 200, ""},
		{"good token", "/zones/z1/dns_records", "Bearer good", 200, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, fake.APIURL()+tc.path, nil)
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			resp, err := http.DefaultTransport.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.code {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.code, b)
			}
			if tc.body != "" {
				if !jsonEqual(t, b, []byte(tc.body)) {
					t.Errorf("body %s\nwant %s", b, tc.body)
				}
			}
		})
	}
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatalf("%s: %v", a, err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	xs, _ := json.Marshal(x)
	ys, _ := json.Marshal(y)
	return string(xs) == string(ys)
}
