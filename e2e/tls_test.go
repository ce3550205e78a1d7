package e2e

import (
	"crypto/tls"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/farmedge/edge/internal/testenv"
)

// TestTLSPolicy: TLS 1.2 is the minimum, TLS 1.2 offers AEAD suites only
// (no CBC, so no LUCKY13 findings), ALPN offers h2 and http/1.1, and TLS 1.3
// works.
func TestTLSPolicy(t *testing.T) {
	cts := testenv.StartChallTestSrv(t)
	ports := testenv.FreePorts(t, 3)
	peb := testenv.StartPebble(t, testenv.PebbleOptions{HTTPPort: ports[0], DNSServer: cts.DNSAddr})
	b := testenv.NewBackend(t, 1, 0)
	conf := edgeConf{
		httpPort: ports[0], httpsPort: ports[1], adminPort: ports[2],
		ca: peb.DirectoryURL, caRoot: peb.MinicaRootFile, challenges: []string{"http-01"},
		storage: filepath.Join(t.TempDir(), "storage"),
		sites:   []site{{hosts: []string{"tls.test"}}}, backends: []string{b.URL},
	}
	e := testenv.StartEdge(t, conf.yaml())
	if err := e.WaitReady(readyTimeout); err != nil {
		t.Fatal(err)
	}
	dial := func(cfg *tls.Config) (tls.ConnectionState, error) {
		cfg.ServerName = "tls.test"
		cfg.InsecureSkipVerify = true // the chain is checked in TestHTTP01TwoSites
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", e.HTTPSAddr, cfg)
		if err != nil {
			return tls.ConnectionState{}, err
		}
		defer conn.Close()
		return conn.ConnectionState(), nil
	}
	cbc := []uint16{
		tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA,
		tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
		tls.TLS_RSA_WITH_AES_128_CBC_SHA, tls.TLS_RSA_WITH_AES_256_CBC_SHA,
	}
	tests := []struct {
		name    string
		cfg     *tls.Config
		ok      bool
		version uint16
		alpn    string
	}{
		{"TLS 1.3", &tls.Config{MinVersion: tls.VersionTLS13, NextProtos: []string{"h2", "http/1.1"}}, true, tls.VersionTLS13, "h2"},
		{"TLS 1.2 AEAD", &tls.Config{MaxVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}, true, tls.VersionTLS12, "http/1.1"},
		{"TLS 1.1 refused", &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}, false, 0, ""},
		{"TLS 1.2 CBC only refused", &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: cbc}, false, 0, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, err := dial(tc.cfg)
			if !tc.ok {
				if err == nil {
					t.Fatalf("handshake succeeded: version %x suite %s", st.Version, tls.CipherSuiteName(st.CipherSuite))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if st.Version != tc.version || st.NegotiatedProtocol != tc.alpn {
				t.Errorf("version %x ALPN %q, want %x %q", st.Version, st.NegotiatedProtocol, tc.version, tc.alpn)
			}
			for _, id := range cbc {
				if st.CipherSuite == id {
					t.Errorf("negotiated CBC suite %s", tls.CipherSuiteName(id))
				}
			}
		})
	}
	m, err := e.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	// Two completed handshakes above, plus those of WaitReady's checks: at
	// least two; refused ones never complete and are not counted as ok.
	if ok, _ := m.Get("edge_tls_handshakes_total", "result", "ok"); ok < 2 {
		t.Errorf("edge_tls_handshakes_total{result=ok} = %g, want >= 2", ok)
	}
}
