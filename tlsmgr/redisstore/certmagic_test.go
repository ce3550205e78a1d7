package redisstore

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap/zaptest"
)

// testIssuer signs every CSR with a throwaway CA, counting issuances.
type testIssuer struct {
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	issued atomic.Int32
}

func newTestIssuer(t *testing.T) *testIssuer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "redisstore test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	return &testIssuer{ca: ca, caKey: key}
}

func (*testIssuer) IssuerKey() string { return "redisstore-test" }

func (i *testIssuer) Issue(_ context.Context, csr *x509.CertificateRequest) (*certmagic.IssuedCertificate, error) {
	i.issued.Add(1)
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, DNSNames: csr.DNSNames,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(20 * time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, i.ca, csr.PublicKey, i.caKey)
	if err != nil {
		return nil, err
	}
	return &certmagic.IssuedCertificate{Certificate: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

// newMagic builds a certmagic cache and config over s, stopped in Cleanup.
func newMagic(t *testing.T, s certmagic.Storage, iss certmagic.Issuer) *certmagic.Config {
	t.Helper()
	logger := zaptest.NewLogger(t)
	var cfg *certmagic.Config
	cache := certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert: func(certmagic.Certificate) (*certmagic.Config, error) { return cfg, nil },
		Logger:           logger,
	})
	t.Cleanup(cache.Stop)
	cfg = certmagic.New(cache, certmagic.Config{
		Storage: s, Issuers: []certmagic.Issuer{iss}, Logger: logger,
		// The test certificates live 21h; don't treat them as due for renewal.
		RenewalWindowRatio: 0.01,
	})
	return cfg
}

// certmagic itself, driving this storage: ManageSync takes the issue lock,
// stores the certificate resources; a second config with its own cache and
// its own Storage value loads them instead of issuing again.
func TestCertmagicUsesStorage(t *testing.T) {
	srv := startRedis(t)
	iss := newTestIssuer(t)
	names := []string{"a.example", "b.example"}

	s1 := newTestStorage(t, srv, Options{Prefix: "magic", Instance: "one"})
	if err := newMagic(t, s1, iss).ManageSync(t.Context(), names); err != nil {
		t.Fatalf("ManageSync: %v", err)
	}
	if n := iss.issued.Load(); n != 2 {
		t.Fatalf("issued %d certificates, want 2", n)
	}
	for _, name := range names {
		for _, key := range []string{
			certmagic.StorageKeys.SiteCert(iss.IssuerKey(), name),
			certmagic.StorageKeys.SitePrivateKey(iss.IssuerKey(), name),
			certmagic.StorageKeys.SiteMeta(iss.IssuerKey(), name),
		} {
			if !s1.Exists(t.Context(), key) {
				t.Errorf("certmagic did not store %s", key)
			}
		}
	}
	sites, err := s1.List(t.Context(), certmagic.StorageKeys.CertsPrefix(iss.IssuerKey()), false)
	if err != nil || len(sites) != 2 {
		t.Errorf("List(certs prefix) = %q, %v", sites, err)
	}
	if locks, err := s1.Locks(t.Context()); err != nil || len(locks) != 0 {
		t.Errorf("locks left after ManageSync: %+v, %v", locks, err)
	}

	s2 := newTestStorage(t, srv, Options{Prefix: "magic", Instance: "two"})
	cfg2 := newMagic(t, s2, iss)
	if err := cfg2.ManageSync(t.Context(), names); err != nil {
		t.Fatalf("second ManageSync: %v", err)
	}
	if n := iss.issued.Load(); n != 2 {
		t.Errorf("second instance issued again: %d issuances", n)
	}
	cert, err := cfg2.CacheManagedCertificate(t.Context(), "a.example")
	if err != nil || len(cert.Names) != 1 || cert.Names[0] != "a.example" {
		t.Fatalf("CacheManagedCertificate = %v, %v", cert.Names, err)
	}
}
