package e2e

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/farmedge/edge/internal/testenv"
)

// TestWebFarm is the problem edge solves: two edges, configured alike and
// sharing one storage directory, behind HAProxy round robin, which is where
// Pebble's validator connects. One edge orders (certmagic's storage lock
// keeps the other from ordering too); Pebble's three validation requests
// are spread over both, and the edge that did not order answers its share
// from the challenge token in shared storage.
func TestWebFarm(t *testing.T) {
	for _, mode := range []string{"tcp", "http"} {
		t.Run(mode, func(t *testing.T) { testWebFarm(t, mode) })
	}
}

func testWebFarm(t *testing.T, mode string) {
	cts := testenv.StartChallTestSrv(t)
	ports := testenv.FreePorts(t, 7)
	lbPort := ports[0]
	peb := testenv.StartPebble(t, testenv.PebbleOptions{HTTPPort: lbPort, DNSServer: cts.DNSAddr})
	b1 := testenv.NewBackend(t, 1, 0)
	b2 := testenv.NewBackend(t, 2, 0)
	storage := filepath.Join(t.TempDir(), "shared-storage")
	confs := []edgeConf{
		{httpPort: ports[1], httpsPort: ports[2], adminPort: ports[3]},
		{httpPort: ports[4], httpsPort: ports[5], adminPort: ports[6]},
	}
	for i := range confs {
		c := &confs[i]
		// The same CA URL spelling on both: certmagic keys stored
		// challenges by the issuer, which it derives from the URL.
		c.ca, c.caRoot = peb.DirectoryURL, peb.MinicaRootFile
		c.challenges = []string{"http-01"}
		c.storage = storage
		c.sites = []site{{hosts: []string{"farm.test"}}}
		c.backends = []string{b1.URL, b2.URL}
	}
	names := confs[0].names()
	testenv.StartHAProxy(t, testenv.HAProxyOptions{
		Port:     lbPort,
		Backends: []string{testenv.Addr(confs[0].httpPort), testenv.Addr(confs[1].httpPort)},
		Mode:     mode,
		Balance:  "roundrobin",
		// The edge that orders may ask Pebble to validate before the
		// other listens (it was launched a moment later): HAProxy then
		// waits for it rather than giving its turn to the first, which
		// then answered all three validations (one e2e run of three).
		WaitForServers: true,
	})

	// Launch both before waiting for either.
	edges := []*testenv.Edge{testenv.LaunchEdge(t, confs[0].yaml()), testenv.LaunchEdge(t, confs[1].yaml())}
	for _, e := range edges {
		if err := e.WaitHealthy(30 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
	for _, e := range edges {
		if err := e.WaitReady(readyTimeout); err != nil {
			t.Fatalf("%v", err)
		}
	}

	var orders, local, fromStorage, unknown [2]float64
	for i, e := range edges {
		m, err := e.Metrics()
		if err != nil {
			t.Fatal(err)
		}
		orders[i] = m.Sum("edge_acme_orders_total", "result", "success")
		local[i] = m.Sum("edge_acme_challenge_requests_total", "source", "local")
		fromStorage[i] = m.Sum("edge_acme_challenge_requests_total", "source", "storage")
		unknown[i] = m.Sum("edge_acme_challenge_requests_total", "source", "unknown")
		t.Logf("edge %c: orders %g, challenge requests answered local %g, storage %g, unknown %g",
			'A'+i, orders[i], local[i], fromStorage[i], unknown[i])
	}
	st := peb.Stats()
	t.Logf("pebble: %d orders, %d issued, %d HTTP-01 requests", st.Orders, st.Issued, st.HTTPAttempts)

	if got := int(orders[0] + orders[1]); got != len(names) {
		t.Errorf("successful orders over both edges = %d, want %d (one per name: the storage lock should stop the second edge ordering)", got, len(names))
	}
	if st.Orders != len(names) || st.Issued != len(names) {
		t.Errorf("pebble saw %d orders and issued %d certificates, want %d", st.Orders, st.Issued, len(names))
	}
	if st.HTTPAttempts != 3*len(names) {
		t.Errorf("pebble made %d HTTP-01 requests, want %d", st.HTTPAttempts, 3*len(names))
	}
	// With one name exactly one edge orders; round robin over three
	// connections gives the other at least one request.
	orderer := 0
	if orders[1] > orders[0] {
		orderer = 1
	}
	other := 1 - orderer
	if fromStorage[other] < 1 {
		t.Errorf("edge %c (did not order) answered %g validation requests from shared storage, want >= 1 (local %g, unknown %g)",
			'A'+other, fromStorage[other], local[other], unknown[other])
	}
	if total := local[0] + local[1] + fromStorage[0] + fromStorage[1]; int(total) != 3*len(names) {
		t.Errorf("validation requests answered over both edges = %g, want %d", total, 3*len(names))
	}
	if unknown[0]+unknown[1] != 0 {
		t.Errorf("edges answered %g validation requests as unknown tokens", unknown[0]+unknown[1])
	}

	// Both edges serve the same certificate, and proxy.
	roots, err := peb.IssuingRoots()
	if err != nil {
		t.Fatal(err)
	}
	var serials []string
	for i, e := range edges {
		for _, name := range names {
			cs, err := testenv.Handshake(e.HTTPSAddr, name, roots)
			if err != nil {
				t.Errorf("edge %c: %v", 'A'+i, err)
				continue
			}
			serials = append(serials, cs.PeerCertificates[0].SerialNumber.String())
		}
		body, code, err := fetch(testenv.HTTPSClient(roots, e.HTTPSAddr), "https://farm.test/")
		if err != nil || code != http.StatusOK || !strings.HasPrefix(body, "hello from backend") {
			t.Errorf("edge %c: GET https://farm.test/: %d %v %q", 'A'+i, code, err, body)
		}
	}
	if len(serials) == 2 && serials[0] != serials[1] {
		t.Errorf("the edges serve different certificates for farm.test (serials %s), want the one in shared storage", strings.Join(serials, ", "))
	}
	for i, e := range edges {
		if err := e.Stop(); err != nil {
			t.Errorf("edge %c on SIGTERM: %v", 'A'+i, err)
		}
	}
}
