package tlsmgr

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mholt/acmez/v3/acme"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// wrapObtain wraps err the way acmez v3.1.7 (client.go) and certmagic
// v0.25.6 (acmeissuer.go, config.go) wrap an order's error on its way to
// the cert_failed event.
func wrapObtain(name string, err error) error {
	err = fmt.Errorf("[%v] %w (ca=%s)", []string{name}, err, "https://acme-v02.api.letsencrypt.org/directory")
	return fmt.Errorf("[%s] Obtain: %w", name, err)
}

// challengeErr is a failed authorization as acmez returns it: the
// challenge's problem, its Resource the authorization (authzIsFinalized),
// then "[NAME] ..." (pollAuthorization) and "solving challenge: NAME: ..."
// (ObtainCertificate).
func challengeErr(name, typ string, p acme.Problem) error {
	authz := acme.Authorization{
		Identifier: acme.Identifier{Type: "dns", Value: strings.TrimPrefix(name, "*.")},
		Wildcard:   strings.HasPrefix(name, "*."),
		Status:     acme.StatusInvalid,
		Challenges: []acme.Challenge{
			{Type: acme.ChallengeTypeTLSALPN01, Status: acme.StatusPending},
			{Type: typ, Status: acme.StatusInvalid, Error: &p},
		},
	}
	p.Resource = authz
	err := fmt.Errorf("authorization failed: %w", p)
	err = fmt.Errorf("[%s] %w", name, err)
	err = fmt.Errorf("solving challenge: %s: %w", name, err)
	return wrapObtain(name, err)
}

// requestErr is a problem document the CA answered a request with, as
// acmez's httpReq returns it ("attempt N: URL: problem").
func requestErr(op, endpoint string, p acme.Problem) error {
	return fmt.Errorf("%s: %w", op, fmt.Errorf("attempt %d: %s: %w", 1, endpoint, p))
}

func TestExplainFailure(t *testing.T) {
	// Real network errors: a port nothing listens on, a name that does
	// not resolve, a TLS server whose CA is not trusted.
	closed := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		return addr
	}()
	client := &http.Client{Timeout: 5 * time.Second}
	_, refused := client.Get("https://" + closed + "/dir")
	if refused == nil {
		t.Fatal("GET on a closed port succeeded")
	}
	_, nxdomain := client.Get("https://acme.invalid/dir")
	if nxdomain == nil {
		t.Fatal("GET on acme.invalid succeeded")
	}
	srv := httptest.NewUnstartedServer(http.NotFoundHandler())
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake is the point
	srv.StartTLS()
	t.Cleanup(srv.Close)
	_, untrusted := client.Get(srv.URL + "/dir")
	if untrusted == nil {
		t.Fatal("GET on an untrusted TLS server succeeded")
	}
	// How acmez reports a failed directory fetch (acme/client.go, http.go).
	provisioning := func(err error) error {
		return wrapObtain("a.test", fmt.Errorf("provisioning client: %w", fmt.Errorf("attempt 3: https://ca/dir: %w", fmt.Errorf("performing request: %w", err))))
	}

	tests := []struct {
		name   string
		err    error
		reason string
		want   []string
	}{
		{"CA refuses connections", provisioning(refused), reasonCAUnreachable,
			[]string{"CA unreachable: ", closed, "connection refused", "check that this host reaches the CA's directory (acme.ca)"}},
		{"CA name does not resolve", provisioning(nxdomain), reasonCAUnreachable,
			[]string{"CA unreachable: ", "acme.invalid", "outbound 443, DNS"}},
		{"CA certificate untrusted", provisioning(untrusted), reasonCAUnreachable,
			[]string{"CA unreachable: ", "certificate", "acme.ca_root_file"}},
		{"rate limited", wrapObtain("a.test", requestErr("creating new order", "https://ca/new-order", acme.Problem{
			Type: acme.ProblemTypeRateLimited, Status: 429,
			Detail: "too many certificates (5) already issued for this exact set of identifiers in the last 168h0m0s, retry after 2026-12-02 10:00:00 UTC",
		})), reasonRateLimited, []string{"rate limited by the CA: too many certificates (5)", "retry after 2026-12-02", "letsencrypt-staging"}},
		{"rate limited, undecoded", wrapObtain("a.test", errors.New("attempt 1: https://ca/new-order: HTTP 429: slow down")), reasonRateLimited,
			[]string{"rate limited by the CA: ", "slow down"}},
		{"http-01 connection refused (Let's Encrypt)", challengeErr("www.example.com", acme.ChallengeTypeHTTP01, acme.Problem{
			Type: acme.ProblemTypeConnection, Status: 400,
			Detail: "203.0.113.7: Fetching http://www.example.com/.well-known/acme-challenge/abc: Connection refused",
		}), reasonChallenge, []string{
			"challenge failed: http-01 for www.example.com: the CA says \"203.0.113.7: Fetching http://www.example.com/.well-known/acme-challenge/abc: Connection refused\"",
			"the CA could not reach http://www.example.com/.well-known/acme-challenge/: is port 80 forwarded to edge (listen.http)",
		}},
		{"http-01 connection refused (Pebble)", challengeErr("a.test", acme.ChallengeTypeHTTP01, acme.Problem{
			Type: acme.ProblemTypeConnection, Status: 400,
			Detail: `Get "http://a.test:5002/.well-known/acme-challenge/abc": dial tcp 127.0.0.1:5002: connect: connection refused`,
		}), reasonChallenge, []string{"http-01 for a.test", "is port 80 forwarded to edge"}},
		{"http-01 timeout", challengeErr("a.test", acme.ChallengeTypeHTTP01, acme.Problem{
			Type: acme.ProblemTypeConnection, Status: 400, Detail: "203.0.113.7: Fetching http://a.test/.well-known/acme-challenge/x: Timeout during connect (likely firewall problem)",
		}), reasonChallenge, []string{"is port 80 forwarded"}},
		{"http-01 answered by another server", challengeErr("a.test", acme.ChallengeTypeHTTP01, acme.Problem{
			Type: acme.ProblemTypeUnauthorized, Status: 403,
			Detail: "203.0.113.7: Invalid response from http://a.test/.well-known/acme-challenge/x: 404",
		}), reasonChallenge, []string{"something other than this edge answered http://a.test/.well-known/acme-challenge/", "cluster.peers", "edge preflight"}},
		{"http-01 name does not resolve", challengeErr("a.test", acme.ChallengeTypeHTTP01, acme.Problem{
			Type: acme.ProblemTypeDNS, Status: 400, Detail: "DNS problem: NXDOMAIN looking up A for a.test",
		}), reasonChallenge, []string{"NXDOMAIN", "the CA could not resolve a.test: its A/AAAA records must point at edge"}},
		{"tls-alpn-01 refused", challengeErr("a.test", acme.ChallengeTypeTLSALPN01, acme.Problem{
			Type: acme.ProblemTypeConnection, Status: 400, Detail: "203.0.113.7: Connection refused",
		}), reasonChallenge, []string{"tls-alpn-01 for a.test", "is port 443 forwarded to edge (listen.https)"}},
		{"tls-alpn-01 answered by a balancer", challengeErr("a.test", acme.ChallengeTypeTLSALPN01, acme.Problem{
			Type: acme.ProblemTypeUnauthorized, Status: 403, Detail: "Cannot negotiate ALPN protocol \"acme-tls/1\" for tls-alpn-01 challenge",
		}), reasonChallenge, []string{"terminating TLS"}},
		{"dns-01 record missing", challengeErr("*.app.test", acme.ChallengeTypeDNS01, acme.Problem{
			Type: acme.ProblemTypeUnauthorized, Status: 403, Detail: "No TXT records found for DNS challenge",
		}), reasonChallenge, []string{"dns-01 for *.app.test", "_acme-challenge.app.test", "edge validate -check-dns"}},
		{"CAA at the challenge", challengeErr("a.test", acme.ChallengeTypeHTTP01, acme.Problem{
			Type: acme.ProblemTypeCAA, Status: 403, Detail: "CAA record for a.test prevents issuance",
		}), reasonCAA, []string{"CAA forbids this CA to issue for a.test: CAA record for a.test prevents issuance", `0 issue "letsencrypt.org"`}},
		{"CAA at finalize", wrapObtain("a.test", requestErr("finalizing order https://ca/order/1", "https://ca/finalize/1", acme.Problem{
			Type: acme.ProblemTypeCAA, Status: 403, Detail: "Error finalizing order :: Rechecking CAA for \"a.test\"",
		})), reasonCAA, []string{"CAA forbids", "Rechecking CAA"}},
		{"EAB required", wrapObtain("a.test", fmt.Errorf("registering account [mailto:ops@example.com] with server: %w", acme.Problem{
			Type: acme.ProblemTypeExternalAccountRequired, Status: 400, Detail: "External Account Binding is required",
		})), reasonAccount, []string{"external account binding", "acme.eab.key_id"}},
		{"EAB key wrong", wrapObtain("a.test", fmt.Errorf("registering account [mailto:ops@example.com] with server: %w", acme.Problem{
			Type: acme.ProblemTypeUnauthorized, Status: 401, Detail: "EAB HMAC is invalid",
		})), reasonAccount, []string{"account refused: EAB HMAC is invalid", "hmac_key"}},
		{"contact refused", wrapObtain("a.test", fmt.Errorf("registering account [mailto:ops@example.com] with server: %w", acme.Problem{
			Type: acme.ProblemTypeInvalidContact, Status: 400, Detail: "contact email has forbidden domain \"example.com\"",
		})), reasonAccount, []string{"forbidden domain", "acme.email"}},
		{"name rejected", wrapObtain("a.local", requestErr("creating new order", "https://ca/new-order", acme.Problem{
			Type: acme.ProblemTypeRejectedIdentifier, Status: 400, Detail: "Cannot issue for \"a.local\": Domain name does not end with a valid public suffix (TLD)",
			Subproblems: []acme.Subproblem{{Problem: acme.Problem{Detail: "not a public suffix"}, Identifier: acme.Identifier{Type: "dns", Value: "a.local"}}},
		})), reasonRejected, []string{"the CA will not issue for a.local", "valid public suffix", "not a public suffix (a.local)"}},
		{"CA internal error", wrapObtain("a.test", requestErr("finalizing order", "https://ca/finalize/1", acme.Problem{
			Type: acme.ProblemTypeServerInternal, Status: 500, Detail: "Error finalizing order",
		})), reasonCAError, []string{"the CA failed (Error finalizing order): usually temporary"}},
		{"no solvers", wrapObtain("*.a.test", errors.New("[*.a.test] solving challenges: *.a.test: no solvers available for remaining challenges (configured=[http-01 tls-alpn-01] offered=[dns-01] remaining=[dns-01])")), reasonNoChallenge,
			[]string{"no challenge type can be used for *.a.test", "a wildcard needs dns-01"}},
		{"dns provider refused", wrapObtain("a.cf.test", fmt.Errorf("[a.cf.test] solving challenges: presenting for challenge: %w", errors.New(`dns provider "cf" (cloudflare): Invalid access token`))), reasonDNSProvider,
			[]string{"DNS-01 for a.cf.test: the DNS provider did not take the TXT record", "Invalid access token", "token or TSIG key"}},
		{"dns propagation", wrapObtain("a.test", errors.New("[a.test] solving challenges: waiting for solver certmagic.solverWrapper to be ready: timed out waiting for record to fully propagate; verify DNS provider configuration is correct")), reasonDNSProvider,
			[]string{"did not show at acme.dns_resolvers within acme.dns_propagation_timeout"}},
		{"storage", wrapObtain("a.test", errors.New("failed storage check: dial tcp 10.0.0.9:6379: connect: connection refused - storage is probably misconfigured")), reasonStorage,
			[]string{"storage failed: ", "10.0.0.9:6379", "reachable and writable"}},
		{"anything else", wrapObtain("a.test", errors.New("something odd")), reasonOther, []string{"order failed: something odd"}},
		{"nil", nil, reasonOther, []string{"unknown reason"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := explainFailure(strings.TrimPrefix(strings.SplitN(fmt.Sprint(tc.err), "]", 2)[0], "["), tc.err)
			if got.reason != tc.reason {
				t.Errorf("reason = %q, want %q (text %q)", got.reason, tc.reason, got.text)
			}
			for _, w := range tc.want {
				if !strings.Contains(got.text, w) {
					t.Errorf("text = %q\nwant it to contain %q", got.text, w)
				}
			}
			if strings.Contains(got.text, "Obtain:") {
				t.Errorf("text keeps certmagic's prefixes: %q", got.text)
			}
		})
	}
}

// TestFailureLogLine: a cert_failed event writes one warn line in edge's
// words, with the reason, the next attempt (certmagic's first retry comes
// after 1 min, then 2) and the key names, beside the status and metrics
// it already updated.
func TestFailureLogLine(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	m := New(zap.New(core), nil)
	t.Cleanup(m.Stop)
	m.status.setNames([]string{"a.test"})
	on := m.onEvent(Options{})
	fail := challengeErr("a.test", acme.ChallengeTypeHTTP01, acme.Problem{
		Type: acme.ProblemTypeConnection, Status: 400,
		Detail: `Get "http://a.test:5002/.well-known/acme-challenge/abc": dial tcp 127.0.0.1:5002: connect: connection refused`,
	})
	for i, want := range []string{"next attempt in 1m", "next attempt in 2m"} {
		before := time.Now()
		if err := on(context.Background(), "cert_failed", map[string]any{"identifier": "a.test", "error": fail}); err != nil {
			t.Fatal(err)
		}
		lines := explained(logs)
		if len(lines) != 1 {
			t.Fatalf("failure %d: %d %q lines, want 1: %v", i+1, len(lines), msgOrderFailedExplain, lines)
		}
		l := lines[0]
		f := l.ContextMap()
		if l.Level != zap.WarnLevel || f["identifier"] != "a.test" || f[logKeyReason] != reasonChallenge {
			t.Errorf("failure %d: line %v %v", i+1, l.Level, f)
		}
		text, _ := f[logKeyExplanation].(string)
		if !strings.HasPrefix(text, "challenge failed: http-01 for a.test") || !strings.HasSuffix(text, "; "+want) {
			t.Errorf("failure %d: explanation %q, want it to end %q", i+1, text, want)
		}
		next, _ := f[logKeyNextAttempt].(time.Time)
		if d := next.Sub(before); d < time.Minute || d > time.Duration(i+1)*time.Minute+5*time.Second {
			t.Errorf("failure %d: next_attempt %s after the failure", i+1, d)
		}
	}
	// A name no site lists (on demand) is tried again at its next handshake.
	if err := on(context.Background(), "cert_failed", map[string]any{"identifier": "b.test", "error": errors.New("x")}); err != nil {
		t.Fatal(err)
	}
	lines := explained(logs)
	if len(lines) != 1 || !strings.HasSuffix(lines[0].ContextMap()[logKeyExplanation].(string), "next attempt at the next handshake for the name") {
		t.Errorf("on-demand failure: %v", lines)
	}
	// A cancelled order (reload, shutdown) is not a failure.
	if err := on(context.Background(), "cert_failed", map[string]any{"identifier": "a.test", "error": fmt.Errorf("x: %w", context.Canceled)}); err != nil {
		t.Fatal(err)
	}
	if n := len(explained(logs)); n != 0 {
		t.Errorf("a cancelled order logged %d explanations", n)
	}
}

// explained takes every line logged so far and returns the explanations.
func explained(logs *observer.ObservedLogs) []observer.LoggedEntry {
	var out []observer.LoggedEntry
	for _, l := range logs.TakeAll() {
		if l.Message == msgOrderFailedExplain {
			out = append(out, l)
		}
	}
	return out
}

func TestRoundRetry(t *testing.T) {
	for d, want := range map[time.Duration]string{
		-time.Second: "0s", 45 * time.Second: "45s", time.Minute - time.Millisecond: "1m", 2 * time.Minute: "2m",
		time.Hour: "1h", 90 * time.Minute: "1h30m", 6 * time.Hour: "6h",
	} {
		if got := roundRetry(d); got != want {
			t.Errorf("roundRetry(%s) = %q, want %q", d, got, want)
		}
	}
}
