package export

import (
	"bytes"
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestPEMDirDeliver(t *testing.T) {
	tests := []struct {
		name, dir string
	}{
		{"www.example.com", "www.example.com"},
		{"*.example.com", "_.example.com"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// A path not there yet, given uncleaned.
			root := filepath.Join(t.TempDir(), "certs")
			d, err := NewPEMDir(PEMDirOptions{Path: root + "/./"})
			if err != nil {
				t.Fatal(err)
			}
			c := testCert(t, tc.name, 42)
			rs := d.Deliver(t.Context(), c)
			if len(rs) != 1 || rs[0].Err != nil {
				t.Fatalf("Deliver = %+v", rs)
			}
			if rs[0].Host != root {
				t.Errorf("Host = %q, want %q", rs[0].Host, root)
			}

			dir := filepath.Join(root, tc.dir)
			wantLocalMode(t, dir, os.ModeDir|0o700)
			key := readLocal(t, filepath.Join(dir, "privkey.pem"))
			wantLocalMode(t, filepath.Join(dir, "privkey.pem"), 0o600)
			fullchain := readLocal(t, filepath.Join(dir, "fullchain.pem"))
			if _, err := tls.X509KeyPair(fullchain, key); err != nil {
				t.Errorf("fullchain.pem and privkey.pem do not match: %v", err)
			}
			for file, want := range map[string][]byte{
				"fullchain.pem": c.FullchainPEM(),
				"cert.pem":      c.CertPEM(),
				"chain.pem":     c.ChainPEM(),
			} {
				if got := readLocal(t, filepath.Join(dir, file)); !bytes.Equal(got, want) {
					t.Errorf("%s differs from the certificate's", file)
				}
			}
			if got := strings.Count(string(fullchain), "BEGIN CERTIFICATE"); got != 2 {
				t.Errorf("fullchain.pem holds %d certificates, want 2", got)
			}
			entries, _ := os.ReadDir(dir)
			if len(entries) != 4 {
				t.Errorf("%s holds %d entries, want the 4 files (no temporary left)", dir, len(entries))
			}

			fc, k, pfx := d.Paths(c)
			if fc != filepath.Join(dir, "fullchain.pem") || k != filepath.Join(dir, "privkey.pem") || pfx != "" {
				t.Errorf("Paths = %q, %q, %q", fc, k, pfx)
			}

			// Again, over an existing directory with a wider mode.
			os.Chmod(dir, 0o755)
			if rs := d.Deliver(t.Context(), testCert(t, tc.name, 43)); rs[0].Err != nil {
				t.Fatal(rs[0].Err)
			}
			wantLocalMode(t, dir, os.ModeDir|0o700)
		})
	}
}

// TestPEMDirAtomicReplace reads fullchain.pem while it is replaced 50
// times by one of two certificates: every read is one of them, whole.
func TestPEMDirAtomicReplace(t *testing.T) {
	root := t.TempDir()
	d, err := NewPEMDir(PEMDirOptions{Path: root})
	if err != nil {
		t.Fatal(err)
	}
	certs := []*Cert{testCert(t, "a.example.com", 1), testCert(t, "a.example.com", 2)}
	if rs := d.Deliver(t.Context(), certs[0]); rs[0].Err != nil {
		t.Fatal(rs[0].Err)
	}
	file, keyFile, _ := d.Paths(certs[0])

	done := make(chan struct{})
	var (
		wg    sync.WaitGroup
		reads int
		bad   []string
	)
	wg.Go(func() {
		deadline := time.After(5 * time.Second)
		for {
			select {
			case <-done:
				return
			case <-deadline:
				return
			default:
			}
			data, err := os.ReadFile(file)
			reads++
			switch {
			case err != nil:
				bad = append(bad, err.Error())
			case bytes.Equal(data, certs[0].FullchainPEM()), bytes.Equal(data, certs[1].FullchainPEM()):
			default:
				bad = append(bad, "a read of "+strings.TrimSpace(string(data[:min(len(data), 40)]))+"... is neither certificate")
			}
		}
	})
	for i := range 50 {
		if rs := d.Deliver(t.Context(), certs[i%2]); rs[0].Err != nil {
			t.Error(rs[0].Err)
			break
		}
	}
	close(done)
	wg.Wait()
	if len(bad) > 0 {
		t.Errorf("%d of %d reads were wrong, first: %s", len(bad), reads, bad[0])
	}
	t.Logf("%d reads", reads)
	// The last delivery was certs[1]: the pair on disk matches.
	if _, err := tls.X509KeyPair(readLocal(t, file), readLocal(t, keyFile)); err != nil {
		t.Errorf("after the deliveries: %v", err)
	}
	if !bytes.Equal(readLocal(t, file), certs[1].FullchainPEM()) {
		t.Error("fullchain.pem is not the last certificate delivered")
	}
}

func TestPEMDirTest(t *testing.T) {
	root := filepath.Join(t.TempDir(), "new")
	d, _ := NewPEMDir(PEMDirOptions{Path: root})
	rs := d.Test(t.Context())
	if len(rs) != 1 || rs[0].Err != nil || rs[0].Host != root {
		t.Fatalf("Test = %+v", rs)
	}
	if entries, _ := os.ReadDir(root); len(entries) != 0 {
		t.Errorf("the probe was left: %v", entries)
	}

	// A path that is a file: the error names it.
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o600)
	d, _ = NewPEMDir(PEMDirOptions{Path: file})
	if rs := d.Test(t.Context()); rs[0].Err == nil || !strings.Contains(rs[0].Err.Error(), file) {
		t.Errorf("Test on a file = %v, want an error naming %s", rs[0].Err, file)
	}
	if rs := d.Deliver(t.Context(), testCert(t, "x.example.com", 1)); rs[0].Err == nil || !strings.Contains(rs[0].Err.Error(), file) {
		t.Errorf("Deliver under a file = %v, want an error naming %s", rs[0].Err, file)
	}
}

func TestPEMDirOptions(t *testing.T) {
	if _, err := NewPEMDir(PEMDirOptions{}); err == nil {
		t.Error("NewPEMDir with no path: no error")
	}
	d, err := NewPEMDir(PEMDirOptions{Path: "certs//live/"})
	if err != nil || d.path != "certs/live" {
		t.Errorf("NewPEMDir(relative) = %v, %v", d, err)
	}
	d, _ = NewPEMDir(PEMDirOptions{Path: t.TempDir()})
	c := testCert(t, "x.example.com", 1)
	for _, name := range []string{"..", "a/b", `a\b`, ""} {
		c.Name = name
		if rs := d.Deliver(t.Context(), c); rs[0].Err == nil {
			t.Errorf("Deliver(%q): no error", name)
		}
	}
}

func readLocal(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func wantLocalMode(t *testing.T, name string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(name)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode() != want {
		t.Errorf("%s: mode %v, want %v", name, fi.Mode(), want)
	}
}
