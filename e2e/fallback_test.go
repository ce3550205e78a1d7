package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/farmedge/edge/internal/testenv"
)

// caCert is the part of /api/certificates these tests read.
type caCert struct {
	Name      string    `json:"name"`
	Issuer    string    `json:"issuer"`
	CA        string    `json:"ca"`
	OCSP      string    `json:"ocsp"`
	NotBefore time.Time `json:"not_before"`
	State     string    `json:"state"`
}

func caCerts(t *testing.T, e *testenv.Edge) map[string]caCert {
	t.Helper()
	resp, err := http.Get(e.AdminURL + "/api/certificates")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var l []caCert
	if err := json.Unmarshal(body, &l); err != nil {
		t.Fatalf("/api/certificates: %v: %s", err, body)
	}
	out := map[string]caCert{}
	for _, c := range l {
		out[c.Name] = c
	}
	return out
}

// TestCAFallback: acme.ca lists two Pebbles. The first is down: the
// certificate comes from the second, and edge_acme_orders_total shows the
// failure at the first and the success at the second. Then the first
// comes up (a fresh Pebble at the same directory URL): the next renewal of
// the short-lived certificate goes to it again.
func TestCAFallback(t *testing.T) {
	ports := testenv.FreePorts(t, 5)
	cts := testenv.StartChallTestSrv(t)
	const life = 40 * time.Second
	first := testenv.PebbleOptions{HTTPPort: ports[0], DNSServer: cts.DNSAddr, ValidityPeriod: life, ListenPort: ports[3], ManagementPort: ports[4]}
	firstDir := fmt.Sprintf("https://%s/dir", testenv.Addr(ports[3]))
	second := testenv.StartPebble(t, testenv.PebbleOptions{HTTPPort: ports[0], DNSServer: cts.DNSAddr, ValidityPeriod: life})
	b := testenv.NewBackend(t, 1, 0)
	conf := pConf{
		httpPort: ports[0], httpsPort: ports[1], adminPort: ports[2],
		peb: second, storage: filepath.Join(t.TempDir(), "storage"),
		sites: []pSite{{hosts: []string{"fallback.test"}}},
		pools: []pPool{{name: "web", backends: []string{b.URL}}},
	}
	y := strings.Replace(conf.yaml(), fmt.Sprintf("  ca: %q\n", second.DirectoryURL),
		fmt.Sprintf("  ca: [%q, %q]\n", firstDir, second.DirectoryURL), 1)
	if !strings.Contains(y, firstDir) {
		t.Fatalf("acme.ca not replaced in:\n%s", y)
	}
	e, secondRoots := startServing(t, second, y)

	if _, err := testenv.Handshake(e.HTTPSAddr, "fallback.test", secondRoots); err != nil {
		t.Fatalf("handshake with the second CA's roots: %v", err)
	}
	c := caCerts(t, e)["fallback.test"]
	if c.OCSP != "none" {
		t.Errorf("/api/certificates ocsp = %q, want none (Pebble's certificates name no OCSP responder)", c.OCSP)
	}
	if c.CA != second.DirectoryURL {
		t.Fatalf("/api/certificates ca = %q, want the second CA %s", c.CA, second.DirectoryURL)
	}
	m, err := e.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	failFirst := m.Sum("edge_acme_orders_total", "issuer", firstDir, "result", "failure")
	okSecond := m.Sum("edge_acme_orders_total", "issuer", second.DirectoryURL, "result", "success")
	if failFirst < 1 || okSecond < 1 {
		t.Fatalf("edge_acme_orders_total: failure at the first %v, success at the second %v, want both >= 1\n%s",
			failFirst, okSecond, m.Dump("edge_acme_orders_total"))
	}
	t.Logf("first CA down: issued by %s (%s); orders: failure at the first %v, success at the second %v", c.CA, c.Issuer, failFirst, okSecond)

	peb := testenv.StartPebble(t, first)
	firstRoots, err := peb.IssuingRoots()
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * life)
	for {
		c = caCerts(t, e)["fallback.test"]
		if c.CA == firstDir {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no certificate from the first CA %v after it came back: %+v\n%s", 2*life, c, e.Tail(40))
		}
		time.Sleep(250 * time.Millisecond)
	}
	st, err := testenv.Handshake(e.HTTPSAddr, "fallback.test", firstRoots)
	if err != nil {
		t.Fatalf("handshake with the first CA's roots after its renewal: %v", err)
	}
	if s := peb.Stats(); s.Issued < 1 {
		t.Fatalf("the first Pebble issued nothing: %+v", s)
	}
	m, err = e.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	if n := m.Sum("edge_acme_orders_total", "result", "failure") - m.Sum("edge_acme_orders_total", "issuer", firstDir, "result", "failure") -
		m.Sum("edge_acme_orders_total", "issuer", second.DirectoryURL, "result", "failure"); n != 0 {
		t.Fatalf("%v failures counted for neither CA:\n%s", n, m.Dump("edge_acme_orders_total"))
	}
	if n := m.Sum("edge_acme_orders_total", "issuer", firstDir, "result", "success"); n < 1 {
		t.Fatalf("no success at the first CA counted:\n%s", m.Dump("edge_acme_orders_total"))
	}
	t.Logf("first CA back: renewed by %s (%s), serial %x\n%s", c.CA, c.Issuer, st.PeerCertificates[0].SerialNumber, m.Dump("edge_acme_orders_total"))
}
