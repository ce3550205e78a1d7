package e2e

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/farmedge/edge/internal/testenv"
)

// TestRevoke: edge revoke NAME -reason keyCompromise, through the admin
// API: Pebble records the served certificate as revoked with reason 1, and
// edge obtains and serves a new certificate (new serial, new key) that
// Pebble holds as valid.
func TestRevoke(t *testing.T) {
	ports := testenv.FreePorts(t, 3)
	cts := testenv.StartChallTestSrv(t)
	peb := testenv.StartPebble(t, testenv.PebbleOptions{HTTPPort: ports[0], DNSServer: cts.DNSAddr})
	b := testenv.NewBackend(t, 1, 0)
	cfg := profConf(peb, testenv.Addr(ports[0]), testenv.Addr(ports[1]), testenv.Addr(ports[2]),
		filepath.Join(t.TempDir(), "storage"), "", b.URL, profSite{hosts: []string{"rev.test"}})
	e, roots := startServing(t, peb, cfg)
	st, err := testenv.Handshake(e.HTTPSAddr, "rev.test", roots)
	if err != nil {
		t.Fatal(err)
	}
	old := st.PeerCertificates[0]
	oldSerial := old.SerialNumber.Text(16)
	if s, err := peb.CertStatus(oldSerial); err != nil || s.Status != "Valid" {
		t.Fatalf("before: Pebble says %+v, %v; want Valid", s, err)
	}

	bin := testenv.BuildEdge(t)
	out, err := exec.Command(bin, "revoke", "-admin", e.AdminURL, "-reason", "keyCompromise", "rev.test").CombinedOutput()
	t.Logf("edge revoke: %s", strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("edge revoke: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), oldSerial) {
		t.Errorf("edge revoke output does not name serial %s", oldSerial)
	}
	s, err := peb.CertStatus(oldSerial)
	if err != nil || s.Status != "Revoked" || s.Reason == nil || *s.Reason != 1 {
		t.Fatalf("after: Pebble says %+v (reason %v), %v; want Revoked, reason 1 (keyCompromise)", s, s.Reason, err)
	}

	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := testenv.Handshake(e.HTTPSAddr, "rev.test", roots)
		if err != nil {
			t.Fatal(err)
		}
		leaf := st.PeerCertificates[0]
		if leaf.SerialNumber.Cmp(old.SerialNumber) != 0 {
			ns, err := peb.CertStatus(leaf.SerialNumber.Text(16))
			if err != nil || ns.Status != "Valid" {
				t.Fatalf("replacement %x: Pebble says %+v, %v", leaf.SerialNumber, ns, err)
			}
			if fmt.Sprint(leaf.PublicKey) == fmt.Sprint(old.PublicKey) {
				t.Errorf("the replacement reuses the revoked key")
			}
			t.Logf("old serial %s revoked at %s (reason %d); now serving %x, valid at Pebble", oldSerial, s.RevokedAt, *s.Reason, leaf.SerialNumber)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still serving the revoked certificate %s after 30 s\n%s", oldSerial, e.Tail(30))
		}
		time.Sleep(200 * time.Millisecond)
	}
	// A second revoke with a bad reason is a usage error, before any request.
	out, err = exec.Command(bin, "revoke", "-admin", e.AdminURL, "-reason", "bored", "rev.test").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "unknown revocation reason") {
		t.Errorf("edge revoke -reason bored: %v\n%s", err, out)
	}
}
