package tlsmgr

// Benchmarks of what edge itself does per managed name with many
// certificates loaded: the renewal check's tick (shortestLifetime), /readyz
// (Ready), /api/certificates and /metrics (Certificates, with what it
// reads from storage kept or due), and the whole load from storage with
// /readyz polled as bench/run does.
//
//	go test ./tlsmgr -run '^$' -bench ManyCerts -benchmem
//	EDGE_BENCH_CERTS=10000 go test ./tlsmgr -run '^$' -bench ManyCerts -benchmem -benchtime 1x
//
// The certificates are made as bench/certgen makes them (a local ECDSA CA,
// one 90-day leaf per name nNNNNN.bench.test, certmagic's layout under the
// issuer key of a loopback ACME URL where nothing listens), in a temporary
// certmagic.FileStorage: edge loads them and orders nothing.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
)

const manyCertsCA = "https://127.0.0.1:9/directory" // nothing listens

// manyCertsN is EDGE_BENCH_CERTS, 2,000 by default.
func manyCertsN(tb testing.TB) int {
	n := 2000
	if s := os.Getenv("EDGE_BENCH_CERTS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 || v > 99999 {
			tb.Fatalf("EDGE_BENCH_CERTS=%q: want 1..99999", s)
		}
		n = v
	}
	return n
}

// testCA is a local CA that stores certificates in certmagic's layout
// under the issuer key of manyCertsCA, as bench/certgen does.
type testCA struct {
	key       *ecdsa.PrivateKey
	cert      *x509.Certificate
	pem       []byte
	issuerKey string
}

func newTestCA(tb testing.TB) *testCA {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "edge bench CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(1, 0, 0),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true, MaxPathLenZero: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	return &testCA{key: key, cert: cert, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		issuerKey: (&certmagic.ACMEIssuer{CA: manyCertsCA}).IssuerKey()}
}

// store writes a certificate for name (its only SAN), valid from an hour
// ago for life, into the file storage at dir, replacing any stored one.
func (ca *testCA) store(dir, name string, serial int64, life time.Duration) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
		DNSNames: []string{name}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(life - time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	meta, err := json.Marshal(map[string]any{"sans": []string{name},
		"issuer_data": map[string]any{"url": manyCertsCA + "/cert/" + strconv.FormatInt(serial, 10), "ca": manyCertsCA}})
	if err != nil {
		return err
	}
	fs := &certmagic.FileStorage{Path: dir}
	for key, data := range map[string][]byte{
		certmagic.StorageKeys.SiteCert(ca.issuerKey, name):       append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), ca.pem...),
		certmagic.StorageKeys.SitePrivateKey(ca.issuerKey, name): pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
		certmagic.StorageKeys.SiteMeta(ca.issuerKey, name):       meta,
	} {
		p := fs.Filename(key)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return err
		}
		if err := os.WriteFile(p, data, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// writeManyCerts stores n certificates for n00001.bench.test... in dir,
// valid for life, and returns the names.
func writeManyCerts(tb testing.TB, dir string, n int, life time.Duration) []string {
	tb.Helper()
	ca := newTestCA(tb)
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("n%05d.bench.test", i+1)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		next  int
	)
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for {
				mu.Lock()
				i := next
				next++
				stop := first != nil
				mu.Unlock()
				if i >= n || stop {
					return
				}
				if err := ca.store(dir, names[i], int64(i)+1000, life); err != nil {
					mu.Lock()
					first = err
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if first != nil {
		tb.Fatal(first)
	}
	return names
}

// loadManyCerts starts a Manager on dir for names and returns once every
// name has its certificate loaded (Ready polled every poll), with the
// Manager's own maintenance loops still running until cancel.
func loadManyCerts(tb testing.TB, dir string, names []string, poll time.Duration) (*Manager, func()) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	m := New(nil, nil)
	err := m.Apply(ctx, Options{CA: manyCertsCA, Email: "bench@example.com", HTTP01: true,
		Storage: &certmagic.FileStorage{Path: dir}, Groups: []Group{{Names: names}}})
	if err != nil {
		cancel()
		tb.Fatal(err)
	}
	wait := 30*time.Second + time.Duration(len(names))*20*time.Millisecond
	deadline := time.Now().Add(wait)
	for {
		ok, missing := m.Ready()
		if ok {
			break
		}
		if time.Now().After(deadline) {
			cancel()
			m.Stop()
			tb.Fatalf("%d of %d names without a certificate after %s", len(missing), len(names), wait)
		}
		time.Sleep(poll)
	}
	return m, func() { cancel(); m.Stop() }
}

// manyCertsManager is a Manager with EDGE_BENCH_CERTS certificates loaded
// and its maintenance loops stopped, so that only the benchmarked calls
// allocate.
func manyCertsManager(b *testing.B) (*Manager, int) {
	b.Helper()
	n := manyCertsN(b)
	dir := b.TempDir()
	names := writeManyCerts(b, dir, n, 90*24*time.Hour)
	m, stop := loadManyCerts(b, dir, names, 100*time.Millisecond)
	b.Cleanup(stop)
	cancelLoops(m)
	return m, n
}

// cancelLoops ends the Manager's maintain and ARI loops (the base context)
// without stopping the cache.
func cancelLoops(m *Manager) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.baseCancel != nil {
		m.baseCancel()
	}
}

// BenchmarkManyCertsTick is the renewal check's tick: the shortest lifetime
// held, from which the check interval follows.
func BenchmarkManyCertsTick(b *testing.B) {
	m, n := manyCertsManager(b)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if renewCheckInterval(m.shortestLifetime()) != maxRenewCheck {
			b.Fatal("90-day certificates: want the maximum interval")
		}
	}
	b.ReportMetric(float64(n), "certs")
}

// BenchmarkManyCertsReady is /readyz.
func BenchmarkManyCertsReady(b *testing.B) {
	m, n := manyCertsManager(b)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if ok, _ := m.Ready(); !ok {
			b.Fatal("not ready")
		}
	}
	b.ReportMetric(float64(n), "certs")
}

// BenchmarkManyCertsStatus is /api/certificates (and /metrics): one row
// per name.
func BenchmarkManyCertsStatus(b *testing.B) {
	m, n := manyCertsManager(b)
	if got := len(m.Certificates()); got != n { // also reads each name's stored ARI once
		b.Fatalf("%d rows, want %d", got, n)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		m.Certificates()
	}
	b.ReportMetric(float64(n), "certs")
}

// BenchmarkManyCertsStatusStale is /api/certificates (and /metrics) when
// every name's stored ARI and CA are due to be read again from storage:
// what each scrape cost while the book kept them 15 s, and what a scrape
// costs now for the names whose entries are due (see ariBook).
func BenchmarkManyCertsStatusStale(b *testing.B) {
	m, n := manyCertsManager(b)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		m.ari.mu.Lock()
		for name, e := range m.ari.m {
			e.until = time.Time{}
			m.ari.m[name] = e
		}
		m.ari.mu.Unlock()
		m.Certificates()
	}
	b.ReportMetric(float64(n), "certs")
}

// BenchmarkManyCertsLoad is a whole start: a new Manager loads every
// certificate from storage while /readyz is polled every 100 ms (as
// bench/run does) and the maintenance loops run. Most of what it
// allocates is certmagic's own loading; edge's share is the difference
// between before and after a change to it.
func BenchmarkManyCertsLoad(b *testing.B) {
	n := manyCertsN(b)
	dir := b.TempDir()
	names := writeManyCerts(b, dir, n, 90*24*time.Hour)
	b.ReportAllocs()
	b.ResetTimer()
	var peak, stacks uint64
	for b.Loop() {
		done := make(chan [2]uint64)
		quit := make(chan struct{})
		go func() { done <- peakMem(quit) }()
		_, stop := loadManyCerts(b, dir, names, 100*time.Millisecond)
		close(quit)
		p := <-done
		peak, stacks = max(peak, p[0]), max(stacks, p[1])
		b.StopTimer()
		stop()
		runtime.GC()
		b.StartTimer()
	}
	b.ReportMetric(float64(n), "certs")
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
	b.ReportMetric(float64(stacks)/(1<<20), "peak-stacks-MiB")
}

// peakMem samples the heap's objects (live and not yet swept) and the
// goroutine stacks every 5 ms until quit and returns the most seen of each.
func peakMem(quit <-chan struct{}) [2]uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/heap/stacks:bytes"}}
	var peak [2]uint64
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		metrics.Read(s)
		peak[0], peak[1] = max(peak[0], s[0].Value.Uint64()), max(peak[1], s[1].Value.Uint64())
		select {
		case <-quit:
			return peak
		case <-t.C:
		}
	}
}
