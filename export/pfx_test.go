package export

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	pkcs12 "software.sslmate.com/src/go-pkcs12"
)

// needOpenSSL returns the openssl binary's path; without one the test is
// skipped, or fails on CI.
func needOpenSSL(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("openssl")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("openssl is needed on CI: %v", err)
		}
		t.Skipf("openssl not found: %v", err)
	}
	return path
}

// openssl runs the openssl binary and returns its stdout; it fails the
// test on an error.
func openssl(t *testing.T, bin string, stdin []byte, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), bin, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("openssl %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

func TestPFXDirDeliverOpenSSL(t *testing.T) {
	bin := needOpenSSL(t)
	const password = "s3cret pass"
	tests := []struct {
		name     string
		cert     string
		legacy   bool
		file     string
		mac, enc string // as openssl pkcs12 -info prints them
	}{
		{"modern", "www.example.com", false, "www.example.com.pfx", "MAC: sha256", "PBES2, PBKDF2, AES-256-CBC"},
		{"modern wildcard", "*.example.com", false, "_.example.com.pfx", "MAC: sha256", "PBES2, PBKDF2, AES-256-CBC"},
		{"legacy", "www.example.com", true, "www.example.com.pfx", "MAC: sha1", "pbeWithSHA1And3-KeyTripleDES-CBC"},
		{"legacy wildcard", "*.example.com", true, "_.example.com.pfx", "MAC: sha1", "pbeWithSHA1And3-KeyTripleDES-CBC"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			d, err := NewPFXDir(PFXDirOptions{Path: dir, Password: password, Legacy: tc.legacy})
			if err != nil {
				t.Fatal(err)
			}
			// An odd number of hex digits: openssl pads it ("0ABCDE").
			c := testCert(t, tc.cert, 0xabcde)
			rs := d.Deliver(t.Context(), c)
			if len(rs) != 1 || rs[0].Err != nil || rs[0].Host != dir {
				t.Fatalf("Deliver = %+v", rs)
			}
			file := filepath.Join(dir, tc.file)
			wantLocalMode(t, file, 0o600)
			if _, _, pfx := d.Paths(c); pfx != file {
				t.Errorf("Paths pfx = %q, want %q", pfx, file)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 1 {
				t.Errorf("%s holds %d entries, want the PFX alone", dir, len(entries))
			}

			// OpenSSL 3 opens both encodings without -legacy: 3DES is in
			// its default provider (RC2 would not be).
			pass := "pass:" + password
			out := openssl(t, bin, nil, "pkcs12", "-in", file, "-passin", pass, "-nodes")
			wantPFXContents(t, out, c)

			// -info writes what it finds to stderr.
			infoOut, err := exec.CommandContext(t.Context(), bin, "pkcs12", "-in", file, "-passin", pass, "-info", "-noout").CombinedOutput()
			info := string(infoOut)
			if err != nil {
				t.Fatalf("openssl pkcs12 -info: %v: %s", err, info)
			}
			if !strings.Contains(info, tc.mac) || !strings.Contains(info, tc.enc) {
				t.Errorf("openssl -info says\n%s\nwant %q and %q", info, tc.mac, tc.enc)
			}

			leaf := openssl(t, bin, nil, "pkcs12", "-in", file, "-passin", pass, "-nokeys", "-clcerts")
			serial := openssl(t, bin, []byte(leaf), "x509", "-noout", "-serial")
			got := strings.TrimLeft(strings.ToLower(strings.TrimPrefix(strings.TrimSpace(serial), "serial=")), "0")
			if got != c.Serial() {
				t.Errorf("openssl serial %q, want %q", serial, c.Serial())
			}

			cmd := exec.CommandContext(t.Context(), bin, "pkcs12", "-in", file, "-passin", "pass:wrong", "-nodes")
			if err := cmd.Run(); err == nil {
				t.Error("openssl opened the PFX with a wrong password")
			}
		})
	}
}

// keyEqualer is what every crypto/* private key implements.
type keyEqualer interface{ Equal(crypto.PrivateKey) bool }

// wantPFXContents checks that openssl's PEM output holds c's leaf, its
// intermediate and its key.
func wantPFXContents(t *testing.T, out string, c *Cert) {
	t.Helper()
	var certs [][]byte
	var key any
	rest := []byte(out)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		switch b.Type {
		case "CERTIFICATE":
			certs = append(certs, b.Bytes)
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
			if err != nil {
				t.Fatalf("the key openssl printed: %v", err)
			}
			key = k
		}
	}
	for i, want := range c.Chain {
		found := false
		for _, der := range certs {
			found = found || bytes.Equal(der, want.Raw)
		}
		if !found {
			t.Errorf("certificate %d of the chain (%s) is not in the PFX", i, want.Subject)
		}
	}
	if len(certs) != len(c.Chain) {
		t.Errorf("the PFX holds %d certificates, want %d", len(certs), len(c.Chain))
	}
	if k, ok := key.(keyEqualer); !ok || !k.Equal(c.Key) {
		t.Errorf("the PFX's key (%T) is not the certificate's", key)
	}
}

func TestEncodePFX(t *testing.T) {
	c := testCert(t, "www.example.com", 7)
	for _, legacy := range []bool{false, true} {
		for _, password := range []string{"", "pw"} {
			data, err := EncodePFX(c, password, legacy)
			if err != nil {
				t.Fatalf("legacy %v: %v", legacy, err)
			}
			key, leaf, cas, err := pkcs12.DecodeChain(data, password)
			if err != nil {
				t.Fatalf("legacy %v, password %q: decoding: %v", legacy, password, err)
			}
			if !leaf.Equal(c.Leaf()) || len(cas) != 1 || !cas[0].Equal(c.Chain[1]) {
				t.Errorf("legacy %v: the chain did not come back", legacy)
			}
			if k, ok := key.(keyEqualer); !ok || !k.Equal(c.Key) {
				t.Errorf("legacy %v: the key did not come back", legacy)
			}
		}
	}
	if _, err := EncodePFX(&Cert{Name: "x"}, "pw", false); err == nil {
		t.Error("EncodePFX without a chain: no error")
	}
}

// TestPFXEmptyPasswordOpenSSL: an empty password is allowed, and openssl
// opens the file with an empty pass.
func TestPFXEmptyPasswordOpenSSL(t *testing.T) {
	bin := needOpenSSL(t)
	c := testCert(t, "www.example.com", 9)
	for _, legacy := range []bool{false, true} {
		data, err := EncodePFX(c, "", legacy)
		if err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(t.TempDir(), "e.pfx")
		os.WriteFile(file, data, 0o600)
		wantPFXContents(t, openssl(t, bin, nil, "pkcs12", "-in", file, "-passin", "pass:", "-nodes"), c)
	}
}

func TestPFXDirTest(t *testing.T) {
	dir := t.TempDir()
	d, _ := NewPFXDir(PFXDirOptions{Path: dir, Password: "pw"})
	rs := d.Test(t.Context())
	if len(rs) != 1 || rs[0].Err != nil || rs[0].Host != dir {
		t.Fatalf("Test = %+v", rs)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("the probe was left: %v", entries)
	}

	// A missing directory (an unmounted share) is an error, not created.
	missing := filepath.Join(dir, "share")
	d, _ = NewPFXDir(PFXDirOptions{Path: missing, Password: "hunter2"})
	for what, rs := range map[string][]Result{
		"Test":    d.Test(t.Context()),
		"Deliver": d.Deliver(t.Context(), testCert(t, "www.example.com", 1)),
	} {
		err := rs[0].Err
		if err == nil || !strings.Contains(err.Error(), missing) || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s on a missing directory = %v, want an error naming it, without the password", what, err)
		}
	}
	if _, err := os.Stat(missing); err == nil {
		t.Errorf("%s was created", missing)
	}
	if _, err := NewPFXDir(PFXDirOptions{Password: "pw"}); err == nil {
		t.Error("NewPFXDir with no path: no error")
	}
}
