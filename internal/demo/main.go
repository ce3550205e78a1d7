// Command demo runs edge's main job on this machine, on loopback ports:
// Pebble (a test ACME CA) with pebble-challtestsrv as its DNS, two demo
// backends, and edge in front of them. It waits for the certificates, sends
// HTTPS requests through edge, prints what came back, the certificates'
// issuer and expiry and the metrics URL, then serves until Ctrl-C.
//
// `make demo` runs it; DEMO_ONESHOT=1 exits 0 after the checks,
// DEMO_VERBOSE=1 shows every step. EDGE_BIN names a prebuilt edge binary
// (otherwise ./cmd/edge is built).
package main

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"software.sslmate.com/src/go-pkcs12"

	"github.com/farmedge/edge/internal/testenv"
)

func main() {
	d := testenv.NewProgram("demo", os.Getenv("DEMO_VERBOSE") == "1")
	code := d.Run(func() { run(d) })
	testenv.RemoveBuild()
	os.Exit(code)
}

var names = []string{"demo.test", "www.demo.test"}

func run(d *testenv.Program) {
	oneshot := os.Getenv("DEMO_ONESHOT") == "1"
	// Caught from the start, so a Ctrl-C during setup still stops the
	// children (in their own process groups) and removes the files.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	fmt.Println("edge demo (everything on 127.0.0.1; files in " + d.Root + ")")

	cts := testenv.StartChallTestSrv(d)
	ports := testenv.FreePorts(d, 3)
	httpPort, httpsPort, adminPort := ports[0], ports[1], ports[2]
	peb := testenv.StartPebble(d, testenv.PebbleOptions{HTTPPort: httpPort, DNSServer: cts.DNSAddr})
	b1 := testenv.NewBackend(d, 1, 0)
	b2 := testenv.NewBackend(d, 2, 0)
	fmt.Printf("  pebble     %s (DNS: challtestsrv on %s)\n", peb.DirectoryURL, cts.DNSAddr)
	fmt.Printf("  backends   %s  %s\n", b1.URL, b2.URL)

	// Where the certificates are delivered: an IIS Centralized Certificate
	// Store folder (PFX, CCS names) and PEM files, as a farm's servers
	// would read them.
	ccsDir, pemDir := filepath.Join(d.Root, "ccs"), filepath.Join(d.Root, "pem")
	if err := os.MkdirAll(ccsDir, 0o700); err != nil {
		d.Fatalf("%v", err)
	}
	cfg := fmt.Sprintf(`listen: {http: %q, https: %q}
admin: {listen: %q}
acme: {email: demo@example.com, ca: %q, ca_root_file: %q, challenges: [http-01]}
storage: {type: file, path: %q}
log: {level: info, format: json}
sites:
  - hosts: [%s]
    routes: [{path: /, pool: web}]
pools:
  web:
    policy: round_robin
    backends: [%q, %q]
    health: {path: /healthz, interval: 1s, timeout: 500ms, fails: 1, passes: 1}
    retries: 2
exports:
  - {name: ccs, type: pfx_dir, path: %q, password: demo, encryption: modern}
  - {name: pem, type: pem_dir, path: %q}
`, testenv.Addr(httpPort), testenv.Addr(httpsPort), testenv.Addr(adminPort),
		peb.DirectoryURL, peb.MinicaRootFile, filepath.Join(d.Root, "storage"),
		strings.Join(names, ", "), b1.URL, b2.URL, ccsDir, pemDir)
	e := testenv.StartEdge(d, cfg)
	fmt.Printf("  edge       http %s  https %s  admin %s\n", e.HTTPAddr, e.HTTPSAddr, e.AdminURL)
	fmt.Printf("             config %s\n", e.ConfigPath)

	fmt.Print("waiting for certificates (HTTP-01 through edge's :80)... ")
	start := time.Now()
	if err := e.WaitReady(60 * time.Second); err != nil {
		fmt.Println()
		d.Fatalf("%v", err)
	}
	fmt.Printf("ready in %s\n", time.Since(start).Round(100*time.Millisecond))

	roots, err := peb.IssuingRoots()
	if err != nil {
		d.Fatalf("%v", err)
	}
	rootPEM, _ := peb.IssuingRootPEM()
	rootFile := filepath.Join(d.Root, "pebble-issuing-root.pem")
	if err := os.WriteFile(rootFile, rootPEM, 0o644); err != nil {
		d.Fatalf("%v", err)
	}

	fmt.Println("certificates:")
	for _, name := range names {
		st, err := testenv.Handshake(e.HTTPSAddr, name, roots)
		if err != nil {
			d.Fatalf("%v", err)
		}
		leaf := st.PeerCertificates[0]
		fmt.Printf("  %-14s issuer %q, expires %s (chain verifies to Pebble's root)\n",
			name, leaf.Issuer.CommonName, leaf.NotAfter.UTC().Format("2006-01-02 15:04 MST"))
	}

	fmt.Println("delivered (exports):")
	for _, name := range names {
		served, err := testenv.PeerCertificate(e.HTTPSAddr, name)
		if err != nil {
			d.Fatalf("%v", err)
		}
		want := fmt.Sprintf("%x", served.SerialNumber)
		files := []string{filepath.Join(ccsDir, name+".pfx"), filepath.Join(pemDir, name, "fullchain.pem")}
		deadline := time.Now().Add(20 * time.Second)
		for {
			pfx, perr := pfxSerial(files[0], "demo")
			pem, merr := pemFileSerial(files[1])
			if perr == nil && merr == nil && pfx == want && pem == want {
				for _, f := range files {
					fmt.Printf("  %-58s serial %s (edge serves %s)\n", f, want, want)
				}
				break
			}
			if time.Now().After(deadline) {
				d.Fatalf("%s not delivered: pfx %q (%v), pem %q (%v), served %s", name, pfx, perr, pem, merr, want)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	fmt.Println("HTTPS requests through edge:")
	client := testenv.HTTPSClient(roots, e.HTTPSAddr)
	seen := map[string]int{}
	// Two requests per name in a row, so round robin shows within a name.
	for i := range 6 {
		url := "https://" + names[(i/2)%len(names)] + "/"
		resp, err := client.Get(url)
		if err != nil {
			d.Fatalf("GET %s: %v", url, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		text := strings.TrimSpace(string(body))
		fmt.Printf("  GET %-24s %d %s  %s\n", url, resp.StatusCode, resp.Proto, text)
		if resp.StatusCode == http.StatusOK {
			seen[text]++
		}
	}
	if len(seen) < 2 {
		d.Fatalf("expected answers from both backends, got %v", keys(seen))
	}

	resp, err := testenv.HTTPClient(e.HTTPAddr).Get("http://demo.test/hello")
	if err != nil {
		d.Fatalf("%v", err)
	}
	resp.Body.Close()
	fmt.Printf("  GET %-24s %d -> %s\n", "http://demo.test/hello", resp.StatusCode, resp.Header.Get("Location"))

	fmt.Printf("metrics:  %s/metrics   certificates: %s/api/certificates\n", e.AdminURL, e.AdminURL)
	if m, err := e.Metrics(); err == nil {
		for _, name := range names {
			if v, ok := m.Get("edge_certificate_not_after_timestamp_seconds", "name", name); ok {
				fmt.Printf("  edge_certificate_not_after_timestamp_seconds{name=%q} %.0f\n", name, v)
			}
		}
	}
	if oneshot {
		if err := e.Stop(); err != nil {
			d.Fatalf("%v", err)
		}
		fmt.Println("demo OK (DEMO_ONESHOT=1: stopped)")
		return
	}
	fmt.Printf("try:      curl --cacert %s --resolve demo.test:%d:127.0.0.1 https://demo.test:%d/\n", rootFile, httpsPort, httpsPort)
	fmt.Println("serving until Ctrl-C")
	select {
	case <-sig:
	case <-e.Done():
		d.Fatalf("edge exited unexpectedly\n%s", e.Tail(20))
	}
	fmt.Println("\nstopping")
	if err := e.Stop(); err != nil {
		d.Fatalf("%v", err)
	}
}

// pfxSerial returns the leaf serial of a PFX file.
func pfxSerial(path, password string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	_, leaf, _, err := pkcs12.DecodeChain(data, password)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%x", leaf.SerialNumber), nil
}

// pemFileSerial returns the serial of the first certificate of a PEM file.
func pemFileSerial(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	blk, _ := pem.Decode(data)
	if blk == nil {
		return "", fmt.Errorf("%s: no PEM block", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%x", c.SerialNumber), nil
}

func keys(m map[string]int) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
