package export

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/farmedge/edge/internal/testenv"
)

// sftpWait bounds every Deliver and Test in these tests.
const sftpWait = 30 * time.Second

func sftpCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), sftpWait)
	t.Cleanup(cancel)
	return ctx
}

func newTestSFTP(t *testing.T, o SFTPOptions) *SFTP {
	t.Helper()
	s, err := NewSFTP(o)
	if err != nil {
		t.Fatalf("NewSFTP: %v", err)
	}
	return s
}

// sshdOptions are the SFTPOptions that reach d.
func sshdOptions(d *testenv.SSHD, dir string) SFTPOptions {
	return SFTPOptions{
		Hosts:      []string{d.Addr},
		User:       d.User,
		KeyFile:    d.ClientKeyFile,
		KnownHosts: d.KnownHostsFile,
		Path:       dir,
	}
}

// oneResult checks that rs is one result for host and returns it.
func oneResult(t *testing.T, rs []Result, host string) Result {
	t.Helper()
	if len(rs) != 1 {
		t.Fatalf("got %d results, want 1: %+v", len(rs), rs)
	}
	if rs[0].Host != host {
		t.Errorf("Result.Host = %q, want %q", rs[0].Host, host)
	}
	return rs[0]
}

// checkPEMDir checks that dir holds c's four files with their modes, and
// nothing else (no temporary file left behind).
func checkPEMDir(t *testing.T, dir string, c *Cert) {
	t.Helper()
	key, err := c.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		data []byte
		mode os.FileMode
	}{
		"privkey.pem":   {key, 0o600},
		"cert.pem":      {c.CertPEM(), 0o644},
		"chain.pem":     {c.ChainPEM(), 0o644},
		"fullchain.pem": {c.FullchainPEM(), 0o644},
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		w, ok := want[e.Name()]
		if !ok {
			t.Errorf("unexpected file %s in %s", e.Name(), dir)
			continue
		}
		delete(want, e.Name())
		p := filepath.Join(dir, e.Name())
		got, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, w.data) {
			t.Errorf("%s: content differs from the certificate's", p)
		}
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != w.mode {
			t.Errorf("%s: mode %o, want %o", p, fi.Mode().Perm(), w.mode)
		}
	}
	for name := range want {
		t.Errorf("%s missing in %s", name, dir)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("%s: %v, mode %v, want 0700", dir, err, fi.Mode().Perm())
	}
}

func TestSFTPDeliver(t *testing.T) {
	// ECDSAHostKey: sshd also offers an ECDSA key that known_hosts lacks,
	// which Go's default algorithm order would pick.
	d := testenv.StartSSHD(t, testenv.SSHDOptions{ECDSAHostKey: true})
	root := t.TempDir()
	o := sshdOptions(d, filepath.Join(root, "ssl")) // missing: created 0700
	o.Then = "touch " + filepath.Join(root, "reloaded") + " && echo done"
	s := newTestSFTP(t, o)

	for serial := int64(2); serial <= 3; serial++ { // the second replaces the first
		c := testCert(t, "*.example.com", serial)
		r := oneResult(t, s.Deliver(sftpCtx(t), c), d.Addr)
		if r.Err != nil {
			t.Fatalf("Deliver serial %d: %v", serial, r.Err)
		}
		if r.Output != "done" {
			t.Errorf("Output = %q, want %q", r.Output, "done")
		}
		if r.Took <= 0 || r.Took > sftpWait {
			t.Errorf("Took = %s", r.Took)
		}
		checkPEMDir(t, filepath.Join(root, "ssl", "_.example.com"), c)
		if _, err := os.Stat(filepath.Join(root, "reloaded")); err != nil {
			t.Errorf("then did not run: %v", err)
		}
		os.Remove(filepath.Join(root, "reloaded"))
	}
	if fi, err := os.Stat(filepath.Join(root, "ssl")); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("created Path: %v, mode %v, want 0700", err, fi.Mode().Perm())
	}
}

func TestSFTPThenFails(t *testing.T) {
	d := testenv.StartSSHD(t, testenv.SSHDOptions{})
	dir := t.TempDir()
	o := sshdOptions(d, dir)
	o.Then = "echo apache2 says no >&2; exit 3"
	c := testCert(t, "www.example.com", 5)
	r := oneResult(t, newTestSFTP(t, o).Deliver(sftpCtx(t), c), d.Addr)
	if r.Err == nil || !strings.Contains(r.Err.Error(), d.Addr) || !strings.Contains(r.Err.Error(), "status 3") {
		t.Errorf("Err = %v, want the host and exit status 3", r.Err)
	}
	if r.Output != "apache2 says no" {
		t.Errorf("Output = %q", r.Output)
	}
	checkPEMDir(t, filepath.Join(dir, "www.example.com"), c) // then runs after the files
}

func TestSFTPWriteDenied(t *testing.T) {
	// Root may write anywhere; a server that refuses opens stands in for
	// a directory the user cannot write.
	d := testenv.StartSSHD(t, testenv.SSHDOptions{SFTPArgs: []string{"-P", "open"}})
	root := t.TempDir()
	o := sshdOptions(d, filepath.Join(root, "ssl"))
	o.Then = "touch " + filepath.Join(root, "reloaded")
	r := oneResult(t, newTestSFTP(t, o).Deliver(sftpCtx(t), testCert(t, "www.example.com", 2)), d.Addr)
	want := d.Addr + ": writing " + filepath.Join(root, "ssl", "www.example.com", "privkey.pem") + ": permission denied"
	if r.Err == nil || r.Err.Error() != want {
		t.Errorf("Err = %v, want %q", r.Err, want)
	}
	if _, err := os.Stat(filepath.Join(root, "reloaded")); err == nil {
		t.Errorf("then ran after a failed write")
	}
}

func TestSFTPRefusesHostKey(t *testing.T) {
	d := testenv.StartSSHD(t, testenv.SSHDOptions{})
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	other, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, line, want string
	}{
		{"changed key", knownhosts.Line([]string{d.Addr}, other), "host key mismatch"},
		{"unknown host", knownhosts.Line([]string{"[127.0.0.1]:1", "web9"}, d.HostKey), "unknown host key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kh := filepath.Join(t.TempDir(), "known_hosts")
			if err := os.WriteFile(kh, []byte(tc.line+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			dir := filepath.Join(t.TempDir(), "ssl")
			o := sshdOptions(d, dir)
			o.KnownHosts = kh
			o.Then = "touch " + filepath.Join(t.TempDir(), "ran")
			s := newTestSFTP(t, o)
			for name, rs := range map[string][]Result{
				"Deliver": s.Deliver(sftpCtx(t), testCert(t, "www.example.com", 2)),
				"Test":    s.Test(sftpCtx(t)),
			} {
				r := oneResult(t, rs, d.Addr)
				var keyErr *knownhosts.KeyError
				if r.Err == nil || !strings.Contains(r.Err.Error(), d.Addr+": "+tc.want) || !errors.As(r.Err, &keyErr) {
					t.Errorf("%s: Err = %v, want %q and a *knownhosts.KeyError", name, r.Err, d.Addr+": "+tc.want)
				}
				t.Logf("%s: %v", name, r.Err)
			}
			if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s was created (%v): something was written", dir, err)
			}
		})
	}
}

func TestSFTPAuthFailure(t *testing.T) {
	d := testenv.StartSSHD(t, testenv.SSHDOptions{})
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "id_ed25519")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	o := sshdOptions(d, t.TempDir())
	o.KeyFile = keyFile
	o.Password = "s3cret-never-shown"
	r := oneResult(t, newTestSFTP(t, o).Test(sftpCtx(t)), d.Addr)
	want := d.Addr + ": authenticating as " + d.User
	if r.Err == nil || !strings.Contains(r.Err.Error(), want) {
		t.Fatalf("Err = %v, want %q", r.Err, want)
	}
	if strings.Contains(r.Err.Error(), o.Password) {
		t.Errorf("the error holds the password: %v", r.Err)
	}
	t.Logf("%v", r.Err)
}

func TestSFTPHostDown(t *testing.T) {
	d := testenv.StartSSHD(t, testenv.SSHDOptions{})
	dir := t.TempDir()
	s := newTestSFTP(t, sshdOptions(d, dir))
	c := testCert(t, "www.example.com", 7)

	d.Stop()
	r := oneResult(t, s.Deliver(sftpCtx(t), c), d.Addr)
	if r.Err == nil || !strings.Contains(r.Err.Error(), d.Addr+": dialing") {
		t.Fatalf("Err = %v, want %q", r.Err, d.Addr+": dialing")
	}
	t.Logf("down: %v", r.Err)

	d.Start()
	if r := oneResult(t, s.Deliver(sftpCtx(t), c), d.Addr); r.Err != nil {
		t.Fatalf("Deliver after Start: %v", r.Err)
	}
	checkPEMDir(t, filepath.Join(dir, "www.example.com"), c)
}

func TestSFTPTwoHosts(t *testing.T) {
	// One relative Path, two start directories: each host's own files.
	dirs := []string{t.TempDir(), t.TempDir()}
	a := testenv.StartSSHD(t, testenv.SSHDOptions{SFTPDir: dirs[0]})
	b := testenv.StartSSHD(t, testenv.SSHDOptions{SFTPDir: dirs[1], AuthorizedKeys: []ssh.PublicKey{a.ClientKey.PublicKey()}})
	var kh []byte
	for _, d := range []*testenv.SSHD{a, b} {
		line, err := os.ReadFile(d.KnownHostsFile)
		if err != nil {
			t.Fatal(err)
		}
		kh = append(kh, line...)
	}
	khFile := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(khFile, kh, 0o644); err != nil {
		t.Fatal(err)
	}
	o := sshdOptions(a, "ssl")
	o.Hosts = []string{a.Addr, b.Addr}
	o.KnownHosts = khFile
	s := newTestSFTP(t, o)

	c := testCert(t, "www.example.com", 9)
	rs := s.Deliver(sftpCtx(t), c)
	if len(rs) != 2 {
		t.Fatalf("got %d results, want 2: %+v", len(rs), rs)
	}
	for i, d := range []*testenv.SSHD{a, b} {
		if rs[i].Host != d.Addr || rs[i].Err != nil {
			t.Errorf("result %d = %+v, want host %s, no error", i, rs[i], d.Addr)
		}
		checkPEMDir(t, filepath.Join(dirs[i], "ssl", "www.example.com"), c)
	}

	b.Stop()
	rs = s.Deliver(sftpCtx(t), testCert(t, "www.example.com", 10))
	if len(rs) != 2 || rs[0].Err != nil || rs[1].Err == nil || !strings.Contains(rs[1].Err.Error(), b.Addr) {
		t.Errorf("with %s down: %+v, want only its result failed, naming it", b.Addr, rs)
	}
}

func TestSFTPTestProbe(t *testing.T) {
	d := testenv.StartSSHD(t, testenv.SSHDOptions{})
	root := t.TempDir()
	for _, tc := range []struct {
		name string
		path string
	}{
		{"existing directory", root},
		{"missing directory", filepath.Join(root, "a", "b")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := sshdOptions(d, tc.path)
			o.Then = "touch " + filepath.Join(root, "then-ran")
			r := oneResult(t, newTestSFTP(t, o).Test(sftpCtx(t)), d.Addr)
			if r.Err != nil {
				t.Fatalf("Test: %v", r.Err)
			}
			// No probe, no directory made for it, no then.
			entries, _ := os.ReadDir(root)
			for _, e := range entries {
				t.Errorf("left behind in %s: %s", root, e.Name())
			}
		})
	}

	t.Run("probe is written", func(t *testing.T) {
		// A server that refuses removals keeps the probe: proof that Test
		// wrote it, and an error naming the step.
		d := testenv.StartSSHD(t, testenv.SSHDOptions{SFTPArgs: []string{"-P", "remove"}})
		dir := t.TempDir()
		r := oneResult(t, newTestSFTP(t, sshdOptions(d, dir)).Test(sftpCtx(t)), d.Addr)
		want := d.Addr + ": removing probe " + dir + "/.edge-probe-"
		if r.Err == nil || !strings.Contains(r.Err.Error(), want) || !errors.Is(r.Err, os.ErrPermission) {
			t.Errorf("Err = %v, want %q and permission denied", r.Err, want)
		}
		t.Logf("%v", r.Err)
		probes, _ := filepath.Glob(filepath.Join(dir, ".edge-probe-*"))
		if len(probes) != 1 {
			t.Fatalf("probes in %s: %v, want one", dir, probes)
		}
	})
}

func TestSFTPTimeout(t *testing.T) {
	// A server that accepts and never speaks SSH.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { // hold it until the client gives up
				io.Copy(io.Discard, c)
				c.Close()
			}()
		}
	}()
	kh := filepath.Join(t.TempDir(), "known_hosts")
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	key, _ := ssh.NewPublicKey(pub)
	if err := os.WriteFile(kh, []byte(knownhosts.Line([]string{ln.Addr().String()}, key)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	keyFile := writeTestKey(t)
	s := newTestSFTP(t, SFTPOptions{
		Hosts: []string{ln.Addr().String()}, User: "deploy", KeyFile: keyFile,
		KnownHosts: kh, Path: "/srv/ssl", Timeout: 300 * time.Millisecond,
	})
	start := time.Now()
	r := oneResult(t, s.Test(sftpCtx(t)), ln.Addr().String())
	if !errors.Is(r.Err, context.DeadlineExceeded) || !strings.Contains(r.Err.Error(), "ssh handshake") {
		t.Errorf("Err = %v, want the ssh handshake and context.DeadlineExceeded", r.Err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("took %s with a 300ms timeout", took)
	}
}

func writeTestKey(t *testing.T) string {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "id_ed25519")
	if err := os.WriteFile(p, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestNewSFTPErrors(t *testing.T) {
	dir := t.TempDir()
	keyFile := writeTestKey(t)
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	sshPub, _ := ssh.NewPublicKey(pub)
	kh := filepath.Join(dir, "known_hosts")
	os.WriteFile(kh, []byte(knownhosts.Line([]string{"web1"}, sshPub)+"\n"), 0o644)
	badKH := filepath.Join(dir, "bad_known_hosts")
	os.WriteFile(badKH, []byte("web1 ssh-ed25519 not-base64!\n"), 0o644)
	garbage := filepath.Join(dir, "garbage_key")
	os.WriteFile(garbage, []byte("not a key\n"), 0o600)
	block, _ := ssh.MarshalPrivateKeyWithPassphrase(priv, "", []byte("pw"))
	locked := filepath.Join(dir, "locked_key")
	os.WriteFile(locked, pem.EncodeToMemory(block), 0o600)

	ok := SFTPOptions{Hosts: []string{"web1"}, User: "deploy", KeyFile: keyFile, KnownHosts: kh, Path: "/etc/apache2/ssl"}
	if _, err := NewSFTP(ok); err != nil {
		t.Fatalf("NewSFTP(valid): %v", err)
	}
	for _, tc := range []struct {
		name string
		edit func(*SFTPOptions)
		want string
	}{
		{"missing key file", func(o *SFTPOptions) { o.KeyFile = filepath.Join(dir, "nope") }, filepath.Join(dir, "nope")},
		{"unparsable key file", func(o *SFTPOptions) { o.KeyFile = garbage }, garbage},
		{"key with passphrase", func(o *SFTPOptions) { o.KeyFile = locked }, locked + " is protected by a passphrase"},
		{"missing known_hosts", func(o *SFTPOptions) { o.KnownHosts = filepath.Join(dir, "nokh") }, filepath.Join(dir, "nokh")},
		{"unparsable known_hosts", func(o *SFTPOptions) { o.KnownHosts = badKH }, badKH + ":1"},
		{"no known_hosts", func(o *SFTPOptions) { o.KnownHosts = "" }, "no known_hosts"},
		{"no hosts", func(o *SFTPOptions) { o.Hosts = nil }, "no hosts"},
		{"duplicate host", func(o *SFTPOptions) { o.Hosts = []string{"web1", "web1:22"} }, "web1:22 is listed twice"},
		{"no auth", func(o *SFTPOptions) { o.KeyFile = "" }, "no key file and no password"},
		{"no path", func(o *SFTPOptions) { o.Path = "" }, "no remote path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := ok
			tc.edit(&o)
			_, err := NewSFTP(o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestSFTPAddr(t *testing.T) {
	for in, want := range map[string]string{
		"web1":          "web1:22",
		"web1:2222":     "web1:2222",
		"192.0.2.1":     "192.0.2.1:22",
		"::1":           "[::1]:22",
		"[2001:db8::1]": "[2001:db8::1]:22",
		"[::1]:2222":    "[::1]:2222",
		" web2.lan:22 ": "web2.lan:22",
	} {
		if got, err := sftpAddr(in); err != nil || got != want {
			t.Errorf("sftpAddr(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestSFTPTailBuffer(t *testing.T) {
	var b tailBuffer
	b.Write([]byte(strings.Repeat("a", ThenOutputMax)))
	b.Write([]byte("\nlast line\n"))
	s := b.String()
	if !strings.HasPrefix(s, "[...] ") || !strings.HasSuffix(s, "a\nlast line") || len(s) > ThenOutputMax+len("[...] ") {
		t.Errorf("String() = %q...(%d bytes)", s[:20], len(s))
	}
}
