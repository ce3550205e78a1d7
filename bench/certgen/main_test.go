package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
)

// TestCertmagicLoadsThem checks the layout against certmagic itself: a
// config whose ACME issuer has the same directory URL loads each stored
// certificate as a managed one (what edge does at start), and it chains to
// the CA written to -roots and serves its name.
func TestCertmagicLoadsThem(t *testing.T) {
	const ca = "https://127.0.0.1:1/directory" // never contacted
	dir := t.TempDir()
	roots := dir + "/ca.pem"
	if _, err := generate(ca, dir, "bench.test", 3, 90, roots); err != nil {
		t.Fatal(err)
	}
	pemBytes, err := os.ReadFile(roots)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		t.Fatal("no CA certificate in", roots)
	}

	var cfg *certmagic.Config
	cache := certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert: func(certmagic.Certificate) (*certmagic.Config, error) { return cfg, nil },
	})
	defer cache.Stop()
	cfg = certmagic.New(cache, certmagic.Config{Storage: &certmagic.FileStorage{Path: dir}})
	cfg.Issuers = []certmagic.Issuer{certmagic.NewACMEIssuer(cfg, certmagic.ACMEIssuer{CA: ca, Agreed: true})}

	for i := 1; i <= 3; i++ {
		name := Name(i, "bench.test")
		c, err := cfg.CacheManagedCertificate(context.Background(), name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(c.Names) != 1 || c.Names[0] != name {
			t.Errorf("%s: names %v", name, c.Names)
		}
		if c.NeedsRenewal(cfg) {
			t.Errorf("%s: due for renewal already (not after %s)", name, c.Leaf.NotAfter)
		}
		if got := time.Until(c.Leaf.NotAfter); got < 89*24*time.Hour {
			t.Errorf("%s: valid for %s more, want about 90 days", name, got)
		}
		if _, err := c.Leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: pool}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		served, err := cfg.GetCertificate(&tls.ClientHelloInfo{ServerName: name})
		if err != nil {
			t.Fatalf("%s: handshake: %v", name, err)
		}
		if served.Leaf == nil || served.Leaf.Subject.CommonName != name {
			t.Errorf("%s: served the certificate of %v", name, served.Leaf)
		}
	}
}
