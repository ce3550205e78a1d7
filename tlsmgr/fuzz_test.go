package tlsmgr

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
)

// refCovers is the reference for whether a certificate name covers host
// (RFC 6125 section 6.4): equal ignoring ASCII case, or a wildcard "*."
// as the whole leftmost label standing for exactly one non-empty label of
// host. Nothing but ASCII is folded: hosts on the wire are A-labels.
func refCovers(name, host string) bool {
	name, host = refLower(name), refLower(host)
	if name == host {
		return true
	}
	rest, ok := strings.CutPrefix(name, "*.")
	if !ok || strings.Contains(rest, "*") {
		return false
	}
	label, parent, ok := strings.Cut(host, ".")
	return ok && label != "" && parent == rest
}

func refLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c | 0x20
		}
	}
	return string(b)
}

// issuable reports whether a CA could put name in a certificate edge
// serves: letters, digits, "-" and "_" in non-empty labels, "*" only as
// the whole leftmost label. (certmagic matches any label against "*", so
// names like "a.*.example.com" or "*.*.example.com", which config and
// every CA refuse, are only checked not to panic.)
func issuable(name string) bool {
	name = strings.TrimPrefix(name, "*.")
	if name == "" || len(name) > 253 {
		return false
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" || strings.Trim(label, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") != "" {
			return false
		}
	}
	return true
}

// FuzzCovers puts up to three certificates, with the names of certs
// ("|" between certificates, "," between names), in a Manager's cache
// and checks Covers(serverName, host) against the certificate the cache
// serves for serverName: never true unless that certificate names host by
// refCovers (for a host without port, as Covers takes it, and issuable
// certificate names), and, when both names are also plain lower-case
// ASCII, exactly refCovers of that certificate.
func FuzzCovers(f *testing.F) {
	for _, s := range [][3]string{
		{"a.example.com,b.example.com", "a.example.com", "b.example.com"},
		{"*.example.com", "a.example.com", "b.example.com"},
		{"*.example.com", "a.example.com", "a.b.example.com"},
		{"*.example.com", "a.example.com", "example.com"},
		{"*.example.com", "a.example.com", ".example.com"},
		{"example.com,*.example.com", "example.com", "www.example.com"},
		{"*.example.com|a.example.com,b.example.com", "a.example.com", "b.example.com"},
		{"a.*.example.com", "a.b.example.com", "a.c.example.com"},
		{"*.*.example.com", "a.b.example.com", "c.d.example.com"},
		{"*", "localhost", "other"},
		{"xn--bcher-kva.example,*.xn--bcher-kva.example", "xn--bcher-kva.example", "www.xn--bcher-kva.example"},
		{"a.example.com", "A.EXAMPLE.COM", "a.example.com"},
		{"a.example.com", "", "a.example.com"},
		// Found by this target's seeds: the exact certificate is served,
		// so the wildcard one does not cover c; no Unicode case folding.
		{"a.example.com|*.example.com", "a.example.com", "c.example.com"},
		{"k.example.com,a.example.com", "a.example.com", "\u212a.example.com"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	m := New(nil, nil)
	f.Cleanup(m.Stop)
	cfg := certmagic.New(m.cache, certmagic.Config{
		Storage: &certmagic.FileStorage{Path: f.TempDir()},
		Logger:  zap.NewNop(),
		OCSP:    certmagic.OCSPConfig{DisableStapling: true},
	})
	conn, peer := net.Pipe() // certmagic logs the client's address
	f.Cleanup(func() { conn.Close(); peer.Close() })
	serial := int64(0)
	f.Fuzz(func(t *testing.T, certs, serverName, host string) {
		var hashes []string
		defer func() { m.cache.Remove(hashes) }()
		wellFormed := true
		certNames := strings.Split(certs, "|")
		if len(certNames) > 3 {
			return
		}
		for _, list := range certNames {
			names := strings.Split(list, ",")
			if len(names) > 4 {
				return
			}
			for _, n := range names {
				if len(n) > 253 || !isASCII(n) {
					return
				}
				wellFormed = wellFormed && issuable(n)
			}
			serial++
			tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), DNSNames: names,
				NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
			der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
			if err != nil {
				return
			}
			h, err := cfg.CacheUnmanagedTLSCertificate(context.Background(), tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil)
			if err != nil {
				return
			}
			hashes = append(hashes, h)
		}

		got := m.Covers(serverName, host)
		served, err := cfg.GetCertificate(&tls.ClientHelloInfo{ServerName: serverName, Conn: conn})
		var names []string
		if err == nil && served != nil && served.Leaf != nil {
			names = served.Leaf.DNSNames
		}
		want := false
		for _, n := range names {
			want = want || refCovers(n, host)
		}
		// Covers takes host without a port (certmagic strips one, and
		// brackets, itself; proxy strips them before asking).
		bare := !strings.ContainsAny(host, ":[]")
		if got && !want && wellFormed && bare {
			t.Fatalf("Covers(%q, %q) = true, but the certificate served for %q names %q (certificates %q)",
				serverName, host, serverName, names, certs)
		}
		plain := isASCII(serverName) && isASCII(host) && serverName == refLower(serverName) && host == refLower(host) &&
			strings.TrimSpace(serverName) == serverName
		if wellFormed && bare && plain && got != want {
			t.Fatalf("Covers(%q, %q) = %v, want %v: the certificate served for %q names %q (certificates %q)",
				serverName, host, got, want, serverName, names, certs)
		}
	})
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
