package e2e

// ari_test.go: acme.ari_refresh. Pebble answers ARI (RFC 9773) with
// Retry-After: 6h, so certmagic alone would see a "replace now" window
// (the CA's mass-revocation signal, set through Pebble's management API
// /set-renewal-info/) hours late. With ari_refresh: 2s edge renews within
// a few refreshes, the new order names the old certificate (replaces), and
// a farm of three edges on one Redis places one order.
//
// Certificates live Pebble's default 90 days: its own ARI window for them
// is then days 59 to 61, so neither ARI nor the renew_at ratio renews
// anything during the test but the window the test sets.

import (
	"crypto/x509"
	"encoding/pem"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/farmedge/edge/internal/testenv"
)

const ariRefresh = 2 * time.Second

// withACME adds lines (indented, newline-terminated) under acme: in an edge
// config.
func withACME(cfg, lines string) string {
	return strings.Replace(cfg, "acme:\n", "acme:\n"+lines, 1)
}

// replaceNow moves the ARI window of leaf into the past at Pebble.
func replaceNow(t *testing.T, peb *testenv.Pebble, leaf *x509.Certificate) time.Time {
	t.Helper()
	now := time.Now()
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw})
	if err := peb.SetRenewalInfo(certPEM, now.Add(-2*time.Hour), now.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	return now
}

// checkReplacement: Pebble accepted exactly one order as a replacement,
// of the order that issued old, and issued newSerial for it.
func checkReplacement(t *testing.T, peb *testenv.Pebble, old *x509.Certificate, newSerial string) {
	t.Helper()
	oldOrder := peb.IssuedOrder(old.SerialNumber.Text(16))
	newOrder := peb.IssuedOrder(newSerial)
	reps := peb.Replacements()
	t.Logf("pebble: old serial %x from order %s; new serial %s from order %s; replacements %v",
		old.SerialNumber, oldOrder, newSerial, newOrder, reps)
	if oldOrder == "" || newOrder == "" {
		t.Fatalf("pebble's log does not name the orders of serials %x and %s\n%s", old.SerialNumber, newSerial, peb.Tail(30))
	}
	if len(reps) != 1 || reps[newOrder] != oldOrder {
		t.Errorf("pebble replacements = %v, want exactly {%s: %s}: the new order's replaces must name the old certificate", reps, newOrder, oldOrder)
	}
}

// TestARIReplaceNow: one edge, ari_refresh 2s. The CA moves the served
// certificate's window into the past: a new certificate is served within
// a few refreshes, Pebble records its order as the replacement of the
// old one's, and nothing more is ordered afterwards.
func TestARIReplaceNow(t *testing.T) {
	ports := testenv.FreePorts(t, 3)
	cts := testenv.StartChallTestSrv(t)
	peb := testenv.StartPebble(t, testenv.PebbleOptions{HTTPPort: ports[0], DNSServer: cts.DNSAddr})
	b := testenv.NewBackend(t, 1, 0)
	cfg := profConf(peb, testenv.Addr(ports[0]), testenv.Addr(ports[1]), testenv.Addr(ports[2]),
		filepath.Join(t.TempDir(), "storage"), "  ari_refresh: 2s\n", b.URL, profSite{hosts: []string{"ari.test"}})
	e, roots := startServing(t, peb, cfg)
	st, err := testenv.Handshake(e.HTTPSAddr, "ari.test", roots)
	if err != nil {
		t.Fatal(err)
	}
	old := st.PeerCertificates[0]
	before := peb.Stats()

	set := replaceNow(t, peb, old)
	var newSerial string
	deadline := set.Add(30 * time.Second)
	for newSerial == "" {
		st, err := testenv.Handshake(e.HTTPSAddr, "ari.test", roots)
		if err != nil {
			t.Fatalf("handshake during the ARI renewal: %v", err)
		}
		if leaf := st.PeerCertificates[0]; leaf.SerialNumber.Cmp(old.SerialNumber) != 0 {
			newSerial = leaf.SerialNumber.Text(16)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still serving %x 30 s after its ARI window was moved into the past\n%s", old.SerialNumber, e.Tail(40))
		}
		time.Sleep(100 * time.Millisecond)
	}
	took := time.Since(set)
	t.Logf("FIGURE replace-now to new certificate served: %s (ari_refresh %s)", took.Round(10*time.Millisecond), ariRefresh)
	// Within a few refreshes: one to see the window, one order (about a
	// second at Pebble), slack for a busy machine.
	if took > 5*ariRefresh+5*time.Second {
		t.Errorf("new certificate served %s after the window moved, want within a few refreshes of %s", took, ariRefresh)
	}
	if !strings.Contains(e.Log(), "ARI window changed") || !strings.Contains(e.Log(), "ARI says renew now") {
		t.Errorf("edge's log does not report the moved window and the renewal\n%s", e.Tail(30))
	}

	// An absence: for three more refreshes nothing else is ordered (the new
	// certificate's own window is months away).
	quiet := time.Now().Add(3 * ariRefresh)
	for time.Now().Before(quiet) {
		time.Sleep(200 * time.Millisecond)
	}
	after := peb.Stats()
	if d := after.Orders - before.Orders; d != 1 {
		t.Errorf("pebble saw %d new orders, want 1", d)
	}
	checkReplacement(t, peb, old, newSerial)
}

// TestARIFarmOneOrder: three edges on one Redis, ari_refresh 2s each. The
// CA moves the window of the certificate they share into the past: one
// order (Pebble's count, and one replacement naming the old certificate),
// and all three serve the one new certificate.
func TestARIFarmOneOrder(t *testing.T) {
	rds := testenv.StartRedis(t, testenv.RedisOptions{})
	cts := testenv.StartChallTestSrv(t)
	lbPort := testenv.FreePort(t)
	peb := testenv.StartPebble(t, testenv.PebbleOptions{HTTPPort: lbPort, DNSServer: cts.DNSAddr})
	b := testenv.NewBackend(t, 1, 0)
	gate, ca := caGate(t, peb)
	const name = "ari.farm.test"
	f := &farm{gate: gate, confs: newFarmConfs(t, 3, ca, peb, []string{b.URL}, []site{{hosts: []string{name}}}, rds.Addr)}
	testenv.StartHAProxy(t, testenv.HAProxyOptions{Port: lbPort, Backends: f.httpAddrs(), Mode: "tcp", Balance: "roundrobin"})
	for _, c := range f.confs {
		f.edges = append(f.edges, testenv.LaunchEdge(t, withACME(c.yaml(), "  ari_refresh: 2s\n")))
	}
	for _, e := range f.edges {
		if err := e.WaitHealthy(30 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
	gate.forward(gate.pebble, true)
	f.waitReady(t)
	roots, err := peb.IssuingRoots()
	if err != nil {
		t.Fatal(err)
	}
	var old *x509.Certificate
	for i, e := range f.edges {
		st, err := testenv.Handshake(e.HTTPSAddr, name, roots)
		if err != nil {
			t.Fatal(err)
		}
		if leaf := st.PeerCertificates[0]; old == nil {
			old = leaf
		} else if leaf.SerialNumber.Cmp(old.SerialNumber) != 0 {
			t.Fatalf("edge %c serves %x, edge A %x: want the one certificate in Redis", 'A'+i, leaf.SerialNumber, old.SerialNumber)
		}
	}
	before := peb.Stats()

	set := replaceNow(t, peb, old)
	served := make([]string, len(f.edges)) // new serial per edge
	deadline := set.Add(40 * time.Second)
	for {
		done := true
		for i, e := range f.edges {
			if served[i] != "" {
				continue
			}
			st, err := testenv.Handshake(e.HTTPSAddr, name, roots)
			if err != nil {
				t.Fatalf("edge %c: handshake during the ARI renewal: %v", 'A'+i, err)
			}
			if leaf := st.PeerCertificates[0]; leaf.SerialNumber.Cmp(old.SerialNumber) != 0 {
				served[i] = leaf.SerialNumber.Text(16)
				t.Logf("edge %c serves %s %s after the window moved", 'A'+i, served[i], time.Since(set).Round(10*time.Millisecond))
			} else {
				done = false
			}
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			for i, e := range f.edges {
				t.Logf("edge %c (new serial %q):\n%s", 'A'+i, served[i], problemLines(e.Log()))
			}
			t.Fatalf("not every edge serves a new certificate 40 s after the window moved: %q", served)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("FIGURE farm of 3: replace-now to new certificate on every edge: %s", time.Since(set).Round(10*time.Millisecond))
	for i, s := range served {
		if s != served[0] {
			t.Errorf("edge %c serves %s, edge A %s: want one new certificate", 'A'+i, s, served[0])
		}
	}

	// An absence: for three more refreshes no edge orders again.
	quiet := time.Now().Add(3 * ariRefresh)
	for time.Now().Before(quiet) {
		time.Sleep(200 * time.Millisecond)
	}
	after := peb.Stats()
	t.Logf("FIGURE farm of 3 on Redis, one replace-now: pebble orders +%d, issued +%d", after.Orders-before.Orders, after.Issued-before.Issued)
	if d := after.Orders - before.Orders; d != 1 {
		t.Errorf("pebble saw %d new orders from the farm, want 1", d)
	}
	if d := after.Issued - before.Issued; d != 1 {
		t.Errorf("pebble issued %d new certificates, want 1", d)
	}
	checkReplacement(t, peb, old, served[0])
	_, sum := countChallenges(t, f.edges)
	if sum.orders != 2 { // the first certificate and its replacement
		t.Errorf("edge_acme_orders_total{result=success} over the farm = %g, want 2 (the first order and the replacement)", sum.orders)
	}
}
