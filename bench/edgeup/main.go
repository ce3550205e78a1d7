// Command edgeup starts edge for the benchmark the way `make demo` does:
// pebble-challtestsrv (DNS), Pebble (the local ACME CA) and `edge run` with a
// config for one site whose pool holds the given backends. It waits until
// edge has obtained the site's certificate over HTTP-01, copies the
// certificate chain and key that edge stored into -out (cert.pem, key.pem),
// so the other servers under test serve the very same certificate, writes
// edge's pid to -out/edge.pid, its admin URL to -out/admin and "ready" to
// -out/ready, then keeps
// everything running until SIGTERM or SIGINT, when it stops its children.
//
// EDGE_BIN names a prebuilt edge binary (otherwise ./cmd/edge is built).
package main

import (
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/farmedge/edge/internal/testenv"
)

func main() {
	name := flag.String("name", "bench.test", "site host name (the certificate's name)")
	backends := flag.String("backends", "", "comma-separated backend URLs (http://127.0.0.1:PORT)")
	httpsAddr := flag.String("https", "127.0.0.1:8443", "edge's HTTPS listen address")
	out := flag.String("out", "", "directory for cert.pem, key.pem, edge.pid and ready")
	flag.Parse()
	if *backends == "" || *out == "" {
		fmt.Fprintln(os.Stderr, "edgeup: -backends and -out are required")
		os.Exit(2)
	}
	tb := testenv.NewProgram("edgeup", os.Getenv("BENCH_VERBOSE") == "1")
	code := tb.Run(func() { run(tb, *name, strings.Split(*backends, ","), *httpsAddr, *out) })
	testenv.RemoveBuild()
	os.Exit(code)
}

func run(tb *testenv.Program, name string, backends []string, httpsAddr, out string) {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)

	cts := testenv.StartChallTestSrv(tb)
	ports := testenv.FreePorts(tb, 2)
	httpPort, adminPort := ports[0], ports[1]
	peb := testenv.StartPebble(tb, testenv.PebbleOptions{HTTPPort: httpPort, DNSServer: cts.DNSAddr})
	storage := filepath.Join(tb.Root, "storage")
	var quoted []string
	for _, b := range backends {
		quoted = append(quoted, fmt.Sprintf("%q", strings.TrimSpace(b)))
	}
	// No active health checks: none of the other servers runs them either.
	cfg := fmt.Sprintf(`listen: {http: %q, https: %q}
admin: {listen: %q}
acme: {email: bench@example.com, ca: %q, ca_root_file: %q, challenges: [http-01]}
storage: {type: file, path: %q}
log: {access: false, level: warn, format: json}
sites:
  - hosts: [%s]
    routes: [{path: /, pool: web}]
pools:
  web:
    policy: round_robin
    backends: [%s]
`, testenv.Addr(httpPort), httpsAddr, testenv.Addr(adminPort),
		peb.DirectoryURL, peb.MinicaRootFile, storage, name, strings.Join(quoted, ", "))
	e := testenv.StartEdge(tb, cfg)
	if err := e.WaitReady(90 * time.Second); err != nil {
		tb.Fatalf("%v", err)
	}
	crt, key := findCert(tb, storage, name)
	if err := copyFile(crt, filepath.Join(out, "cert.pem"), 0o644); err != nil {
		tb.Fatalf("%v", err)
	}
	if err := copyFile(key, filepath.Join(out, "key.pem"), 0o600); err != nil {
		tb.Fatalf("%v", err)
	}
	if err := os.WriteFile(filepath.Join(out, "edge.pid"), []byte(fmt.Sprintln(e.Pid())), 0o644); err != nil {
		tb.Fatalf("%v", err)
	}
	if err := os.WriteFile(filepath.Join(out, "admin"), []byte(e.AdminURL+"\n"), 0o644); err != nil {
		tb.Fatalf("%v", err)
	}
	if err := os.WriteFile(filepath.Join(out, "edge.yaml"), []byte(cfg), 0o644); err != nil {
		tb.Fatalf("%v", err)
	}
	if err := os.WriteFile(filepath.Join(out, "ready"), []byte("ready\n"), 0o644); err != nil {
		tb.Fatalf("%v", err)
	}
	fmt.Printf("edgeup: edge (pid %d) serves https://%s on %s with %s\n", e.Pid(), name, httpsAddr, crt)
	select {
	case <-sig:
	case <-e.Done():
		tb.Fatalf("edge exited unexpectedly\n%s", e.Tail(20))
	}
	if err := e.Stop(); err != nil {
		tb.Fatalf("%v", err)
	}
}

// findCert returns the certificate chain and key edge stored for name:
// certificates/<issuer>/<name>/<name>.crt and .key under the storage path.
func findCert(tb *testenv.Program, storage, name string) (crt, key string) {
	err := filepath.WalkDir(filepath.Join(storage, "certificates"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && d.Name() == name+".crt" {
			crt = p
			key = strings.TrimSuffix(p, ".crt") + ".key"
			return fs.SkipAll
		}
		return nil
	})
	if err != nil || crt == "" {
		tb.Fatalf("no %s.crt under %s/certificates (err %v)", name, storage, err)
	}
	return crt, key
}

func copyFile(from, to string, mode os.FileMode) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, mode)
}
