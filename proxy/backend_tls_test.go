package proxy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// tlsBackend is an https backend with httptest's certificate (which names
// example.com and 127.0.0.1); it answers the SNI it saw and the protocol.
func tlsBackend(t *testing.T, clientCAs *x509.CertPool) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		peer := ""
		if len(r.TLS.PeerCertificates) > 0 {
			peer = r.TLS.PeerCertificates[0].Subject.CommonName + r.TLS.PeerCertificates[0].DNSNames[0]
		}
		io.WriteString(w, r.TLS.ServerName+" "+r.Proto+" "+peer)
	}))
	srv.EnableHTTP2 = true
	if clientCAs != nil {
		srv.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: clientCAs}
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// TestHTTPSBackends: a backend certificate from a private CA verifies with
// that CA and is refused (502) without it; ServerName sets the SNI; HTTP/2
// by ALPN; a client certificate is presented when configured.
func TestHTTPSBackends(t *testing.T) {
	b := tlsBackend(t, nil)
	roots := x509.NewCertPool()
	roots.AddCert(b.Certificate())

	for _, tc := range []struct {
		name string
		tls  *tls.Config
		code int
		body string
	}{
		{"system roots refuse a private CA", nil, http.StatusBadGateway, ""},
		{"the private CA", &tls.Config{RootCAs: roots}, 200, " HTTP/2.0 "},
		{"server_name", &tls.Config{RootCAs: roots, ServerName: "example.com"}, 200, "example.com HTTP/2.0 "},
		{"a server_name the certificate lacks", &tls.Config{RootCAs: roots, ServerName: "other.test"}, http.StatusBadGateway, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := simpleConfig(mustURL(t, b.URL))
			cfg.Pools[0].TLS = tc.tls
			h := newHandler(t, cfg)
			w := serve(h, "GET", "https://example.com/")
			if w.Code != tc.code || !strings.HasPrefix(w.Body.String(), tc.body) {
				t.Errorf("%d %q, want %d starting %q", w.Code, w.Body.String(), tc.code, tc.body)
			}
		})
	}

	t.Run("client certificate", func(t *testing.T) {
		// The backend requires a client certificate from its own CA.
		clientCert, clientCAs := clientCertificate(t)
		mb := tlsBackend(t, clientCAs)
		cfg := simpleConfig(mustURL(t, mb.URL))
		cfg.Pools[0].TLS = &tls.Config{RootCAs: roots}
		if w := serve(newHandler(t, cfg), "GET", "https://example.com/"); w.Code != http.StatusBadGateway {
			t.Errorf("without a client certificate: %d %q, want 502", w.Code, w.Body.String())
		}
		cfg.Pools[0].TLS = &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{clientCert}}
		w := serve(newHandler(t, cfg), "GET", "https://example.com/")
		if w.Code != 200 || !strings.Contains(w.Body.String(), "edge-client") {
			t.Errorf("with the client certificate: %d %q", w.Code, w.Body.String())
		}
	})
}

// clientCertificate makes a self-signed client certificate (CN and DNS
// name edge-client) and the pool that verifies it.
func clientCertificate(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "edge-client"}, DNSNames: []string{"edge-client"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// TestH2CBackend: with H2C the backend gets HTTP/2 without TLS, and its
// trailers (gRPC's grpc-status) come through.
func TestH2CBackend(t *testing.T) {
	b := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "Grpc-Status")
		w.Header().Set("Content-Type", "application/grpc")
		io.WriteString(w, r.Proto)
		w.Header().Set("Grpc-Status", "0")
	}))
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	b.Config.Protocols = &protos
	b.Start()
	t.Cleanup(b.Close)
	cfg := simpleConfig(mustURL(t, b.URL))
	cfg.Pools[0].H2C = true
	h := newHandler(t, cfg)
	w := serve(h, "POST", "https://example.com/pkg.Service/Method")
	if w.Code != 200 || w.Body.String() != "HTTP/2.0" {
		t.Fatalf("%d %q, want 200 HTTP/2.0", w.Code, w.Body.String())
	}
	if got := w.Result().Trailer.Get("Grpc-Status"); got != "0" {
		t.Errorf("trailer Grpc-Status %q, want 0 (trailers %v)", got, w.Result().Trailer)
	}

	cfg = simpleConfig(mustURL(t, "https://127.0.0.1:1"))
	cfg.Pools[0].H2C = true
	if err := Check(cfg); err == nil || !strings.Contains(err.Error(), "h2c") {
		t.Errorf("h2c to an https backend: %v", err)
	}
}
