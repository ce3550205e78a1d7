package e2e

import (
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/farmedge/edge/internal/testenv"
)

// auditSite is the one site of TestAudit. h2spec dials the name it sends as
// SNI (it has no separate flag), so the name must resolve without DNS:
// localhost, which edge accepts with a custom CA such as Pebble.
const auditSite = "localhost"

// h2specKnownFailures are the h2spec v2.2.1 cases that Go's HTTP/2 server
// fails, each with the line of Go 1.26.8's net/http/h2_bundle.go that
// causes it. golang.org/x/net/http2 v0.59.0 (server.go, the same code
// under Go 1.26) fails the same three and was tried configured directly
// (http2.ConfigureServer): it passes nothing more, so edge keeps the
// bundled server. cmd/edge/h2_test.go (TestHTTP2Frames) pins each
// behaviour frame by frame without h2spec.
//
// A case listed here that passes fails the test: drop it from the list.
var h2specKnownFailures = map[string]string{
	// Sends one SETTINGS frame with SETTINGS_INITIAL_WINDOW_SIZE twice
	// (100, then 1) and expects the ACK; RFC 9113 section 6.5.3 has
	// values processed in order. Go answers GOAWAY PROTOCOL_ERROR and
	// closes: h2_bundle.go:5754
	//   if f.NumSettings() > 100 || f.HasDuplicates() {
	// (x/net http2/server.go:1618), deliberately ("This isn't actually in
	// the spec, but hang up on suspiciously large settings frames or those
	// with duplicate entries"). It runs in the connection's serve loop
	// before any handler; no option turns it off. Real clients do not
	// repeat a setting.
	"http2/6.5.3/1": "duplicate SETTINGS entries are a connection error",

	// Sends "connection: keep-alive" and expects RST_STREAM PROTOCOL_ERROR
	// (a malformed request, RFC 9113 section 8.2.2). Go answers 400 Bad
	// Request on the stream instead, without calling edge's handler:
	// h2_bundle.go:6088-6089
	//   } else if err := http2checkValidHTTP2RequestHeaders(req.Header); err != nil {
	//           handler = http2new400Handler(err)
	// after the check at h2_bundle.go:7272 (x/net server.go:1976-1977).
	// Section 8.1.1 lets a server answer a malformed request with an HTTP
	// response before closing the stream; what matters for a proxy holds:
	// the request is not forwarded.
	"http2/8.1.2.2/1": "a connection-specific field gets 400, not RST_STREAM",

	// Sends "te: trailers, deflate": the same path as above, the TE test
	// at h2_bundle.go:7277
	//   if len(te) > 0 && (len(te) > 1 || (te[0] != "trailers" && te[0] != "")) {
	// (x/net server.go:3165). 400, not forwarded.
	"http2/8.1.2.2/2": "TE other than trailers gets 400, not RST_STREAM",
}

// h2specCases is how many cases h2spec v2.2.1 runs without -S.
const h2specCases = 145

// TestAudit runs h2spec and testssl.sh against edge's HTTPS listener
// serving a certificate from Pebble.
//
// h2spec: every case passes except h2specKnownFailures. http2/4.2/3 (a
// HEADERS frame over SETTINGS_MAX_FRAME_SIZE) passes only with
// configureHTTP2 (cmd/edge/h2.go) applied to the HTTPS server.
//
// testssl.sh (protocols, cipher categories, forward secrecy, server
// defaults, vulnerabilities): nothing below TLS 1.2, no NULL, anonymous,
// EXPORT, LOW (RC4, DES), 3DES/IDEA or CBC suites, and no finding of
// severity HIGH or CRITICAL or marked VULNERABLE, except the test CA's own
// (testsslCAFindings).
func TestAudit(t *testing.T) {
	testenv.RequireH2Spec(t) // built (or skipped) before anything starts
	testenv.RequireTestSSL(t)

	cts := testenv.StartChallTestSrv(t)
	ports := testenv.FreePorts(t, 3)
	peb := testenv.StartPebble(t, testenv.PebbleOptions{HTTPPort: ports[0], DNSServer: cts.DNSAddr})
	b := testenv.NewBackend(t, 1, 0)
	conf := edgeConf{
		httpPort: ports[0], httpsPort: ports[1], adminPort: ports[2],
		ca: peb.DirectoryURL, caRoot: peb.MinicaRootFile, challenges: []string{"http-01"},
		storage: filepath.Join(t.TempDir(), "storage"),
		sites:   []site{{hosts: []string{auditSite}}}, backends: []string{b.URL},
	}
	e := testenv.StartEdge(t, conf.yaml())
	if err := e.WaitReady(readyTimeout); err != nil {
		t.Fatal(err)
	}
	rootPEM, err := peb.IssuingRootPEM()
	if err != nil {
		t.Fatalf("pebble issuing root: %v", err)
	}
	rootFile := filepath.Join(t.TempDir(), "pebble-root.pem")
	if err := os.WriteFile(rootFile, rootPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	_, port, err := net.SplitHostPort(e.HTTPSAddr)
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort(auditSite, port)

	// The two tools share only edge; together they take as long as
	// testssl.sh alone.
	t.Run("h2spec", func(t *testing.T) {
		t.Parallel()
		checkH2Spec(t, addr)
	})
	t.Run("testssl", func(t *testing.T) {
		t.Parallel()
		checkTestSSL(t, addr, rootFile)
	})
}

func checkH2Spec(t *testing.T, addr string) {
	start := time.Now()
	r, err := testenv.RunH2Spec(t, testenv.H2SpecOptions{Addr: addr, TLS: true, Timeout: 2 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	passed, failed, skipped := r.Counts()
	t.Logf("h2spec: %d cases, %d passed, %d failed, %d skipped in %s",
		len(r.Cases), passed, failed, skipped, time.Since(start).Round(100*time.Millisecond))
	if len(r.Cases) != h2specCases {
		t.Errorf("h2spec ran %d cases, want %d (another h2spec version, or a report not parsed)", len(r.Cases), h2specCases)
	}
	if skipped > 0 {
		t.Errorf("%d cases skipped (the site's / must answer with a body)", skipped)
	}
	seen := map[string]bool{}
	for _, c := range r.Cases {
		seen[c.ID] = true
		_, known := h2specKnownFailures[c.ID]
		switch {
		case !c.Passed && !c.Skipped && !known:
			t.Errorf("h2spec %s failed: %s\n%s", c.ID, c.Desc, c.Message)
		case c.Passed && known:
			t.Errorf("h2spec %s passes now (%s): drop it from h2specKnownFailures and TestHTTP2Frames' pin", c.ID, c.Desc)
		case known:
			t.Logf("h2spec %s fails as known: %s", c.ID, h2specKnownFailures[c.ID])
		}
	}
	for id := range h2specKnownFailures {
		if !seen[id] {
			t.Errorf("h2specKnownFailures names %s, which h2spec did not run", id)
		}
	}
	if t.Failed() {
		t.Logf("h2spec output:\n%s", r.Output)
	}
}

// testsslCAFindings are testssl.sh findings about Pebble, the test CA, not
// about edge; they are left out of the severity check by id.
var testsslCAFindings = map[string]string{
	// HIGH "Neither CRL nor OCSP URI provided": Pebble's certificates
	// carry neither, as Let's Encrypt's carry no OCSP URL since 2025.
	// Revocation information is the CA's to put in the certificate.
	"cert_revocation": "the CA issues certificates without CRL or OCSP URL",
}

func checkTestSSL(t *testing.T, addr, rootFile string) {
	// The issuing root is passed as trusted (--add-ca): without it
	// cert_chain_of_trust is CRITICAL "chain incomplete", about Pebble's
	// root not being in the system store; with it the check verifies the
	// chain edge serves, which must then pass.
	r, err := testenv.RunTestSSL(t, testenv.TestSSLOptions{
		Addr: addr, CAFile: rootFile,
		Checks:  []string{"-p", "-s", "-f", "-S", "-U"},
		Timeout: 2 * time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if t.Failed() {
			t.Logf("testssl.sh output:\n%s", r.Output)
		}
	}()

	want := func(id string, ok func(finding string) bool, what string) {
		t.Helper()
		f, found := r.Get(id)
		switch {
		case !found:
			t.Errorf("testssl.sh reported no %s", id)
		case !ok(f.Finding):
			t.Errorf("%s: %q (%s), want %s", id, f.Finding, f.Severity, what)
		}
	}
	notOffered := func(s string) bool { return strings.HasPrefix(s, "not offered") }
	offered := func(s string) bool { return strings.HasPrefix(s, "offered") }

	// Protocols.
	for _, id := range []string{"SSLv2", "SSLv3", "TLS1", "TLS1_1"} {
		want(id, notOffered, "not offered")
	}
	want("TLS1_2", offered, "offered")
	want("TLS1_3", offered, "offered")
	want("ALPN_HTTP2", func(s string) bool { return s == "h2" }, "h2")

	// Cipher categories: NULL, anonymous, EXPORT, LOW (64-bit, DES,
	// RC2/RC4), 3DES/IDEA, and CBC ("AVERAGE": edge offers AEAD only).
	for _, id := range []string{"cipherlist_NULL", "cipherlist_aNULL", "cipherlist_EXPORT",
		"cipherlist_LOW", "cipherlist_3DES_IDEA", "cipherlist_AVERAGE"} {
		want(id, notOffered, "not offered")
	}
	want("cipherlist_STRONG", offered, "offered")
	if f, _ := r.Get("RC4"); f.Severity != "OK" {
		t.Errorf("RC4: %q (%s), want OK", f.Finding, f.Severity)
	}
	want("cert_chain_of_trust", func(s string) bool { return strings.HasPrefix(s, "passed") }, "passed (with Pebble's root added)")

	// Every vulnerability check ran.
	for _, id := range []string{"heartbleed", "CCS", "ticketbleed", "ROBOT", "secure_renego",
		"secure_client_renego", "CRIME_TLS", "BREACH", "POODLE_SSL", "fallback_SCSV", "SWEET32",
		"FREAK", "DROWN", "LOGJAM", "BEAST", "LUCKY13", "RC4"} {
		if _, ok := r.Get(id); !ok {
			t.Errorf("testssl.sh reported no %s", id)
		}
	}
	// testssl.sh 3.0.8 tests secure renegotiation (RFC 5746) with an
	// openssl s_client that sends no SNI (run_renego), and edge refuses
	// a handshake without SNI (no certificate for it), so the check ends
	// in the WARN "OpenSSL handshake didn't succeed". The extension is
	// then checked from the Server Hello that -S records, with SNI.
	if f, _ := r.Get("secure_renego"); f.Severity != "OK" {
		want("TLS_extensions", func(s string) bool { return strings.Contains(s, "renegotiation info/#65281") },
			"the renegotiation_info extension (RFC 5746)")
	}

	for _, f := range r.Findings {
		if reason, ok := testsslCAFindings[f.ID]; ok {
			t.Logf("testssl.sh %s %s %q: left out, %s (Pebble's, not edge's)", f.ID, f.Severity, f.Finding, reason)
			continue
		}
		if slices.Contains([]string{"HIGH", "CRITICAL"}, f.Severity) || strings.Contains(f.Finding, "VULNERABLE") {
			t.Errorf("testssl.sh %s %s: %s", f.ID, f.Severity, f.Finding)
		}
	}
	for id := range testsslCAFindings {
		if _, ok := r.Get(id); !ok {
			t.Logf("testssl.sh no longer reports %s: testsslCAFindings may drop it", id)
		}
	}
}
