package tlsmgr

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"
)

func TestOCSPState(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf := func(ocsp []string) *x509.Certificate {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "a.test"}, DNSNames: []string{"a.test"},
			NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), OCSPServer: ocsp}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	with, without := leaf([]string{"http://ocsp.ca.test"}), leaf(nil)
	for _, tc := range []struct {
		name string
		c    tls.Certificate
		want string
	}{
		{"no OCSP URL", tls.Certificate{Certificate: [][]byte{without.Raw}, Leaf: without}, "none"},
		{"OCSP URL, staple held", tls.Certificate{Certificate: [][]byte{with.Raw}, Leaf: with, OCSPStaple: []byte{0x30}}, "stapled"},
		{"OCSP URL, no staple", tls.Certificate{Certificate: [][]byte{with.Raw}, Leaf: with}, "error: no good OCSP response from http://ocsp.ca.test stapled"},
	} {
		if got := ocspState(tc.c); got != tc.want {
			t.Errorf("%s: ocspState = %q, want %q", tc.name, got, tc.want)
		}
	}
}
