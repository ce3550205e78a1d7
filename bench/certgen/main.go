// Command certgen writes certificates for many names straight into edge's
// file storage, in certmagic's layout, so that an edge started on that
// storage loads them as managed certificates and orders nothing: a local CA
// (ECDSA P-256) signs one leaf (ECDSA P-256) per name, valid from an hour
// ago for -days (90 by default, far from renewal).
//
//	certgen -ca https://127.0.0.1:18420/directory -storage DIR -n 10000
//
// Names are n00001.DOMAIN, n00002.DOMAIN, ... (-domain bench.test). For
// each name it writes, under DIR,
//
//	certificates/<issuer key>/<name>/<name>.crt   leaf + CA certificate (PEM)
//	certificates/<issuer key>/<name>/<name>.key   the leaf's key (PEM, EC)
//	certificates/<issuer key>/<name>/<name>.json  {"sans": [name], "issuer_data": {...}}
//
// where the issuer key is the one certmagic derives from the ACME directory
// URL edge is configured with (-ca): certmagic reads certificates only from
// the path of the configured issuer. The metadata carries no ARI window, so
// certmagic asks the CA nothing when it loads them. It prints the issuer
// key and the count; -roots FILE also writes the CA certificate.
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
)

func main() {
	ca := flag.String("ca", "", "the ACME directory URL edge is configured with (names the storage path)")
	storage := flag.String("storage", "", "edge's file storage directory (storage.path)")
	n := flag.Int("n", 10000, "number of names")
	domain := flag.String("domain", "bench.test", "names are nNNNNN.DOMAIN")
	days := flag.Int("days", 90, "validity of each certificate in days")
	roots := flag.String("roots", "", "also write the CA certificate (PEM) to this file")
	flag.Parse()
	if *ca == "" || *storage == "" || *n < 1 || *n > 99999 || *days < 1 {
		fmt.Fprintln(os.Stderr, "certgen: -ca and -storage are required; -n is 1..99999, -days at least 1")
		os.Exit(2)
	}
	dir, err := generate(*ca, *storage, *domain, *n, *days, *roots)
	if err != nil {
		fmt.Fprintln(os.Stderr, "certgen:", err)
		os.Exit(1)
	}
	fmt.Printf("certgen: %d certificates under %s\n", *n, dir)
}

// Name returns the i-th name (1-based).
func Name(i int, domain string) string { return fmt.Sprintf("n%05d.%s", i, domain) }

// generate writes the certificates and returns the directory that holds them.
func generate(caURL, storage, domain string, n, days int, rootsFile string) (string, error) {
	iss := certmagic.ACMEIssuer{CA: caURL}
	issuerKey := iss.IssuerKey()
	fs := &certmagic.FileStorage{Path: storage}

	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "edge bench CA", Organization: []string{"edge bench"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(0, 0, days+30),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return "", err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return "", err
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	if rootsFile != "" {
		if err := os.WriteFile(rootsFile, caPEM, 0o644); err != nil {
			return "", err
		}
	}

	// Workers over the names; the first error stops the rest.
	jobs := make(chan int)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for i := range jobs {
				if err := leaf(fs, issuerKey, caURL, Name(i, domain), i, now, days, caCert, caKey, caPEM); err != nil {
					mu.Lock()
					firstErr = errors.Join(firstErr, err)
					mu.Unlock()
				}
			}
		})
	}
	for i := 1; i <= n; i++ {
		mu.Lock()
		failed := firstErr != nil
		mu.Unlock()
		if failed {
			break
		}
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	return filepath.Dir(filepath.Dir(fs.Filename(certmagic.StorageKeys.SiteCert(issuerKey, Name(1, domain))))), firstErr
}

// leaf makes and stores the certificate of name.
func leaf(fs *certmagic.FileStorage, issuerKey, caURL, name string, serial int, now time.Time, days int,
	caCert *x509.Certificate, caKey *ecdsa.PrivateKey, caPEM []byte) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(int64(serial) + 1000),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(0, 0, days),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	chain := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), caPEM...)
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	// What certmagic's ACME issuer stores beside a certificate it obtained,
	// less the ARI window (none: nothing to refresh from the CA).
	meta, err := json.Marshal(map[string]any{
		"sans": []string{name},
		"issuer_data": map[string]any{
			"url": caURL + "/cert/" + fmt.Sprint(serial),
			"ca":  caURL,
		},
	})
	if err != nil {
		return err
	}
	for _, f := range []struct {
		key  string
		data []byte
	}{
		{certmagic.StorageKeys.SiteCert(issuerKey, name), chain},
		{certmagic.StorageKeys.SitePrivateKey(issuerKey, name), keyPEM},
		{certmagic.StorageKeys.SiteMeta(issuerKey, name), meta},
	} {
		p := fs.Filename(f.key)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return err
		}
		if err := os.WriteFile(p, f.data, 0o600); err != nil {
			return err
		}
	}
	return nil
}
