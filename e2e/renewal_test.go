package e2e

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/farmedge/edge/internal/testenv"
)

// TestScheduledRenewal: certificates that live 30 seconds are renewed by
// edge's own maintenance before they expire, cycle after cycle, and every
// handshake meanwhile gets a certificate valid at that moment.
func TestScheduledRenewal(t *testing.T) {
	ports := testenv.FreePorts(t, 3)
	cts := testenv.StartChallTestSrv(t)
	peb := testenv.StartPebble(t, testenv.PebbleOptions{HTTPPort: ports[0], DNSServer: cts.DNSAddr, ValidityPeriod: 30 * time.Second})
	b := testenv.NewBackend(t, 1, 0)
	conf := pConf{
		httpPort: ports[0], httpsPort: ports[1], adminPort: ports[2],
		peb: peb, storage: filepath.Join(t.TempDir(), "storage"),
		sites: []pSite{{hosts: []string{"short.test"}}},
		pools: []pPool{{name: "web", backends: []string{b.URL}}},
	}
	e, roots := startServing(t, peb, conf.yaml())
	var timeline []string
	serials := map[string]bool{}
	handshakes := 0
	deadline := time.Now().Add(75 * time.Second)
	for len(serials) < 3 && time.Now().Before(deadline) {
		st, err := testenv.Handshake(e.HTTPSAddr, "short.test", roots) // verifies validity now
		if err != nil {
			t.Fatalf("handshake %d, %v after the start: %v\n%v", handshakes, time.Since(deadline.Add(-75*time.Second)).Round(time.Second), err, timeline)
		}
		handshakes++
		leaf := st.PeerCertificates[0]
		if s := fmt.Sprintf("%x", leaf.SerialNumber); !serials[s] {
			serials[s] = true
			timeline = append(timeline, fmt.Sprintf("%s serial %.8s valid %s..%s", time.Now().Format("15:04:05"), s,
				leaf.NotBefore.Format("15:04:05"), leaf.NotAfter.Format("15:04:05")))
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Logf("%d handshakes, all valid; certificates served:\n  %s", handshakes, joinLines(timeline))
	if len(serials) < 3 {
		t.Fatalf("%d certificates in 75 s of 30-second certificates: renewal did not keep up", len(serials))
	}
}

func joinLines(l []string) string {
	s := ""
	for i, x := range l {
		if i > 0 {
			s += "\n  "
		}
		s += x
	}
	return s
}
