package challenge

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/libdns/libdns"
	"github.com/libdns/rfc2136"

	"github.com/farmedge/edge/internal/cffake"
	"github.com/farmedge/edge/internal/testenv"
)

const testKey = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA=="

func TestNewRFC2136Options(t *testing.T) {
	tests := []struct {
		name    string
		o       RFC2136Options
		server  string // want, on success
		alg     string
		wantErr []string
	}{
		{"port defaults to 53", RFC2136Options{Server: "10.0.0.53", KeyName: "edge", KeyAlg: "hmac-sha256", Key: testKey}, "10.0.0.53:53", "hmac-sha256", nil},
		{"port kept", RFC2136Options{Server: "ns1.example.com:5353", KeyName: "edge", KeyAlg: "hmac-sha512", Key: testKey}, "ns1.example.com:5353", "hmac-sha512", nil},
		{"ipv6 without port", RFC2136Options{Server: "::1", KeyName: "edge", KeyAlg: "hmac-sha256", Key: testKey}, "[::1]:53", "hmac-sha256", nil},
		{"ipv6 brackets", RFC2136Options{Server: "[2001:db8::1]", KeyName: "edge", KeyAlg: "HMAC-SHA256.", Key: testKey}, "[2001:db8::1]:53", "hmac-sha256", nil},
		{"everything missing", RFC2136Options{}, "", "", []string{
			`dns provider "lan" (rfc2136): server: is required`, "key_name is required", "key is required"}},
		{"bad algorithm", RFC2136Options{Server: "ns", KeyName: "edge", KeyAlg: "hmac-md5", Key: testKey}, "", "", []string{
			`key_alg "hmac-md5" is not supported`}},
		{"bad key", RFC2136Options{Server: "ns", KeyName: "edge", KeyAlg: "hmac-sha256", Key: "not base64!"}, "", "", []string{"key is not valid base64"}},
		{"empty port", RFC2136Options{Server: "ns:", KeyName: "edge", KeyAlg: "hmac-sha256", Key: testKey}, "", "", []string{`server: "ns:" has an empty port`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := NewRFC2136("lan", tc.o)
			if tc.wantErr != nil {
				if err == nil {
					t.Fatalf("no error, want %q", tc.wantErr)
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not contain %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			rp := p.(*namedProvider).p.(*rfc2136.Provider)
			if rp.Server != tc.server || rp.KeyAlg != tc.alg {
				t.Errorf("server %q algorithm %q, want %q %q", rp.Server, rp.KeyAlg, tc.server, tc.alg)
			}
		})
	}
}

func TestNewCloudflareOptions(t *testing.T) {
	tests := []struct {
		name    string
		o       CloudflareOptions
		wantErr string
	}{
		{"token", CloudflareOptions{APIToken: "abc"}, ""},
		{"token and zone token", CloudflareOptions{APIToken: "abc", ZoneToken: "def"}, ""},
		{"missing token", CloudflareOptions{ZoneToken: "def"}, `dns provider "cf" (cloudflare): api_token is required`},
		{"newline in token", CloudflareOptions{APIToken: "abc\n"}, "api_token contains white space"},
		{"space in zone token", CloudflareOptions{APIToken: "abc", ZoneToken: "d ef"}, "zone_token contains white space"},
		{"https base", CloudflareOptions{APIToken: "abc", BaseURL: "https://cf-proxy.internal/client/v4/"}, ""},
		{"loopback http base", CloudflareOptions{APIToken: "abc", BaseURL: "http://127.0.0.1:8080/client/v4"}, ""},
		{"remote http base", CloudflareOptions{APIToken: "abc", BaseURL: "http://cf-proxy.internal/client/v4"}, "api_url: \"http://cf-proxy.internal/client/v4\": must be https"},
		{"base without host", CloudflareOptions{APIToken: "abc", BaseURL: "/client/v4"}, "has no host"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewCloudflare("cf", tc.o)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatal(err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("error %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// TestCloudflareBaseURL: with BaseURL the calls libdns/cloudflare addresses
// to api.cloudflare.com reach the given server, path and query intact, and
// the zone is looked up without certmagic's trailing dot.
func TestCloudflareBaseURL(t *testing.T) {
	var got atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Store(r.Method + " " + r.URL.RequestURI() + " " + r.Header.Get("Authorization"))
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"success":true,"errors":[],"messages":[],"result":[]}`))
	}))
	t.Cleanup(srv.Close)
	p, err := NewCloudflare("cf", CloudflareOptions{APIToken: "tok", BaseURL: srv.URL + "/proxy/client/v4"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.AppendRecords(t.Context(), "app.test.", []libdns.Record{libdns.TXT{Name: "_acme-challenge", Text: "x"}})
	want := `dns provider "cf" (cloudflare): zone "app.test": appending TXT record "_acme-challenge": expected 1 zone, got 0 for app.test`
	if err == nil || err.Error() != want {
		t.Errorf("error %v\nwant %s", err, want)
	}
	if s, _ := got.Load().(string); s != "GET /proxy/client/v4/zones?name=app.test Bearer tok" {
		t.Errorf("server saw %q", s)
	}
}

// TestCloudflareThroughFake: the provider edge builds, against the fake
// Cloudflare API that writes into BIND: append, check DNS, delete; then a
// wrong token gives an error naming the provider and the zone.
func TestCloudflareThroughFake(t *testing.T) {
	bind := testenv.StartBIND(t, testenv.BINDOptions{Zones: []string{"cf.test"}})
	fake := cffake.New(cffake.Options{
		Token: "good", Zones: map[string]string{"cf.test": "0123abcd"},
		DNSServer: bind.Addr, TSIGName: bind.KeyName, TSIGSecret: bind.KeySecret,
	})
	t.Cleanup(fake.Close)

	ctx := t.Context()
	rec := []libdns.Record{libdns.TXT{Name: "_acme-challenge.www", Text: "token-1"}}
	t.Run("api_url", func(t *testing.T) {
		p, err := NewCloudflare("cf", CloudflareOptions{APIToken: "good", BaseURL: fake.APIURL()})
		if err != nil {
			t.Fatal(err)
		}
		roundTrip(t, p, bind, "cf.test.", rec, "_acme-challenge.www.cf.test")
	})
	t.Run("http client", func(t *testing.T) {
		p, err := NewCloudflare("cf", CloudflareOptions{APIToken: "good", HTTPClient: fake.Client()})
		if err != nil {
			t.Fatal(err)
		}
		roundTrip(t, p, bind, "cf.test.", rec, "_acme-challenge.www.cf.test")
	})
	t.Run("wrong token", func(t *testing.T) {
		p, err := NewCloudflare("cfbad", CloudflareOptions{APIToken: "wrong", BaseURL: fake.APIURL()})
		if err != nil {
			t.Fatal(err)
		}
		_, err = p.AppendRecords(ctx, "cf.test.", rec)
		var pe *ProviderError
		if !errors.As(err, &pe) || pe.Provider != "cfbad" || pe.Zone != "cf.test" {
			t.Fatalf("error %v, want a ProviderError for cfbad in cf.test", err)
		}
		for _, w := range []string{`dns provider "cfbad" (cloudflare): zone "cf.test": appending TXT record "_acme-challenge.www"`, "HTTP 403", "Invalid access token", "check api_token"} {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error %q does not contain %q", err, w)
			}
		}
		t.Logf("error: %v", err)
	})
}

// TestRFC2136AgainstBIND: TSIG-signed updates into a real BIND, a name and
// its wildcard's records side by side, a wrong key refused with a clear
// error, and CheckDelegation on a CNAME into another zone.
func TestRFC2136AgainstBIND(t *testing.T) {
	bind := testenv.StartBIND(t, testenv.BINDOptions{
		Zones: []string{"app.test", "other.test", "deleg.test"},
		Records: map[string][]string{
			"deleg.test": {"_acme-challenge CNAME _acme-challenge.d.other.test.", "_acme-challenge.wrong CNAME elsewhere.other.test."},
		},
	})
	p, err := NewRFC2136("lan", RFC2136Options{Server: bind.Addr, KeyName: bind.KeyName, KeyAlg: bind.KeyAlg, Key: bind.KeySecret})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()

	t.Run("append and delete", func(t *testing.T) {
		recs := []libdns.Record{
			libdns.TXT{Name: "_acme-challenge", Text: "apex"},
			libdns.TXT{Name: "_acme-challenge", Text: "wildcard"},
		}
		if _, err := p.AppendRecords(ctx, "app.test.", recs[:1]); err != nil {
			t.Fatal(err)
		}
		roundTrip(t, p, bind, "app.test.", recs[1:], "_acme-challenge.app.test", "apex")
		if _, err := p.DeleteRecords(ctx, "app.test.", recs[:1]); err != nil {
			t.Fatal(err)
		}
		if left, err := bind.ChallengeTXT("app.test"); err != nil || len(left) != 0 {
			t.Errorf("left over %q (%v)", left, err)
		}
	})

	t.Run("delegated record", func(t *testing.T) {
		rec := []libdns.Record{libdns.TXT{Name: "_acme-challenge.d", Text: "delegated"}}
		if _, err := p.AppendRecords(ctx, "other.test.", rec); err != nil {
			t.Fatal(err)
		}
		// BIND follows the CNAME from deleg.test into other.test.
		if txt, err := bind.TXT("_acme-challenge.deleg.test"); err != nil || !slices.Equal(txt, []string{"delegated"}) {
			t.Errorf("TXT _acme-challenge.deleg.test = %q (%v), want the delegated value", txt, err)
		}
		if _, err := p.DeleteRecords(ctx, "other.test.", rec); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("wrong key", func(t *testing.T) {
		bad, err := NewRFC2136("lan", RFC2136Options{Server: bind.Addr, KeyName: bind.KeyName, KeyAlg: "hmac-sha256", Key: testKey})
		if err != nil {
			t.Fatal(err)
		}
		_, err = bad.AppendRecords(ctx, "app.test.", []libdns.Record{libdns.TXT{Name: "_acme-challenge", Text: "x"}})
		want := `dns provider "lan" (rfc2136): zone "app.test": appending TXT record "_acme-challenge": `
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Fatalf("error %v, want prefix %q", err, want)
		}
		t.Logf("error: %v", err)
	})

	t.Run("zone not served", func(t *testing.T) {
		_, err := p.AppendRecords(ctx, "nope.test.", []libdns.Record{libdns.TXT{Name: "_acme-challenge", Text: "x"}})
		if err == nil || !strings.Contains(err.Error(), `zone "nope.test"`) {
			t.Fatalf("error %v", err)
		}
		t.Logf("error: %v", err)
	})

	t.Run("check delegation", func(t *testing.T) {
		tests := []struct {
			name, target string
			want         error
			msg          string
		}{
			{"deleg.test", "_acme-challenge.d.other.test", nil, ""},
			{"*.deleg.test", "_acme-challenge.d.other.test.", nil, ""},
			{"DELEG.test", "_ACME-challenge.d.other.test", nil, ""},
			{"wrong.deleg.test", "_acme-challenge.d.other.test", ErrDelegationMismatch,
				"_acme-challenge.wrong.deleg.test is a CNAME to elsewhere.other.test, want _acme-challenge.d.other.test"},
			{"app.test", "_acme-challenge.d.other.test", ErrDelegationMissing,
				"has no CNAME at _acme-challenge.app.test (NXDOMAIN), want one to _acme-challenge.d.other.test"},
		}
		for _, tc := range tests {
			err := CheckDelegation(ctx, bind.Addr, tc.name, tc.target)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Errorf("CheckDelegation(%s, %s) = %v, want %v", tc.name, tc.target, err, tc.want)
				continue
			}
			if err != nil && !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("CheckDelegation(%s) = %q, want it to say %q", tc.name, err, tc.msg)
			}
		}
		if err := CheckDelegation(ctx, "127.0.0.1:1", "deleg.test", "x"); err == nil || errors.Is(err, ErrDelegationMissing) {
			t.Errorf("CheckDelegation against a closed port = %v", err)
		}
	})
}

// roundTrip appends recs in zone, checks that BIND answers their values (and
// also) at fqdn, deletes them and checks they are gone.
func roundTrip(t *testing.T, p DNSProvider, bind *testenv.BIND, zone string, recs []libdns.Record, fqdn string, also ...string) {
	t.Helper()
	ctx := t.Context()
	got, err := p.AppendRecords(ctx, zone, recs)
	if err != nil {
		t.Fatalf("AppendRecords: %v", err)
	}
	if len(got) != len(recs) || got[0].RR().Name != recs[0].RR().Name {
		t.Errorf("AppendRecords returned %+v, want records named like %+v", got, recs)
	}
	want := slices.Clone(also)
	for _, r := range recs {
		want = append(want, r.RR().Data)
	}
	slices.Sort(want)
	txt, err := bind.TXT(fqdn)
	slices.Sort(txt)
	if err != nil || !slices.Equal(txt, want) {
		t.Errorf("TXT %s = %q (%v), want %q", fqdn, txt, err, want)
	}
	if _, err := p.DeleteRecords(ctx, zone, recs); err != nil {
		t.Fatalf("DeleteRecords: %v", err)
	}
	txt, _ = bind.TXT(fqdn)
	slices.Sort(txt)
	if !slices.Equal(txt, also) {
		t.Errorf("after delete TXT %s = %q, want %q", fqdn, txt, also)
	}
}
