package export

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/farmedge/edge/internal/testenv"
)

const smbTestPFXPassword = "pfx-pass-5d1c"

// smbTestContext bounds a test's SMB calls.
func smbTestContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newTestSMB(t *testing.T, o SMBOptions) *SMB {
	t.Helper()
	s, err := NewSMB(o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// smbOptions logs on to srvs (which share one user and share name) as
// their user.
func smbOptions(path string, srvs ...*testenv.Samba) SMBOptions {
	o := SMBOptions{
		Share: srvs[0].Share, Path: path,
		User: srvs[0].User, Password: srvs[0].Password,
		PFXPassword: smbTestPFXPassword, Timeout: 20 * time.Second,
	}
	for _, s := range srvs {
		o.Servers = append(o.Servers, s.Addr)
	}
	return o
}

// requireOK fails the test unless there is one result per server, each
// nil, with the expected Host.
func requireOK(t *testing.T, results []Result, hosts ...string) {
	t.Helper()
	if len(results) != len(hosts) {
		t.Fatalf("got %d results, want %d: %+v", len(results), len(hosts), results)
	}
	for i, r := range results {
		if r.Err != nil {
			t.Fatalf("result %d (%s): %v", i, r.Host, r.Err)
		}
		if r.Host != hosts[i] {
			t.Errorf("result %d: Host = %q, want %q", i, r.Host, hosts[i])
		}
	}
}

// pfxLeafSerial opens file with openssl and returns the leaf's serial in
// lower-case hex.
func pfxLeafSerial(t *testing.T, file, password string) string {
	t.Helper()
	openssl := testenv.RequireTool(t, "openssl")
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, openssl, "pkcs12", "-in", file, "-passin", "pass:"+password,
		"-nodes", "-clcerts").CombinedOutput()
	if err != nil {
		t.Fatalf("openssl pkcs12 %s: %v\n%s", file, err, out)
	}
	if !strings.Contains(string(out), "PRIVATE KEY-----") {
		t.Errorf("openssl pkcs12 %s: no private key in\n%s", file, out)
	}
	for rest := out; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			t.Fatalf("openssl pkcs12 %s: no certificate in\n%s", file, out)
		}
		if b.Type == "CERTIFICATE" {
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			return c.SerialNumber.Text(16)
		}
	}
}

// dirNames lists dir, failing the test on an error.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestSMBDeliver(t *testing.T) {
	t.Parallel()
	// Two servers, as two nodes of a web farm that each keep a store; the
	// user name is not a Unix user (Samba maps it to the one running smbd).
	a := testenv.StartSamba(t, testenv.SambaOptions{User: "edge-deploy"})
	b := testenv.StartSamba(t, testenv.SambaOptions{User: a.User, Password: a.Password})

	tests := []struct {
		name    string
		cert    string
		path    string // SMBOptions.Path
		local   string // where it lands, relative to the share's directory
		file    string
		legacy  bool
		wantUNC string // \\server\share\path after the server
	}{
		{name: "root", cert: "www.example.com", file: "www.example.com.pfx", wantUNC: `\certs`},
		{name: "wildcard", cert: "*.example.com", file: "_.example.com.pfx", wantUNC: `\certs`},
		{name: "slash path", cert: "api.example.com", path: "/ccs/prod/", local: "ccs/prod",
			file: "api.example.com.pfx", wantUNC: `\certs\ccs\prod`},
		{name: "backslash path, legacy", cert: "old.example.com", path: `ccs\legacy`, local: "ccs/legacy",
			file: "old.example.com.pfx", legacy: true, wantUNC: `\certs\ccs\legacy`},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := smbOptions(tc.path, a, b)
			o.Legacy = tc.legacy
			s := newTestSMB(t, o)
			c := testCert(t, tc.cert, int64(1000+i))
			results := s.Deliver(smbTestContext(t), c)
			requireOK(t, results, `\\`+a.Addr+tc.wantUNC, `\\`+b.Addr+tc.wantUNC)
			for _, srv := range []*testenv.Samba{a, b} {
				dir := filepath.Join(srv.Dir, filepath.FromSlash(tc.local))
				if got := pfxLeafSerial(t, filepath.Join(dir, tc.file), smbTestPFXPassword); got != c.Serial() {
					t.Errorf("%s: leaf serial %s, want %s", srv.Addr, got, c.Serial())
				}
				for _, n := range dirNames(t, dir) {
					if strings.Contains(n, ".tmp-") || strings.Contains(n, ".old-") {
						t.Errorf("%s: temporary file %s left behind", srv.Addr, n)
					}
				}
			}
		})
	}
}

func TestSMBDeliverReplaces(t *testing.T) {
	t.Parallel()
	srv := testenv.StartSamba(t, testenv.SambaOptions{})
	s := newTestSMB(t, smbOptions("ccs", srv))
	file := filepath.Join(srv.Dir, "ccs", "_.example.com.pfx")
	for i, serial := range []int64{0x51, 0x52, 0x52} { // the last one again: idempotent
		c := testCert(t, "*.example.com", serial)
		requireOK(t, s.Deliver(smbTestContext(t), c), `\\`+srv.Addr+`\certs\ccs`)
		if got := pfxLeafSerial(t, file, smbTestPFXPassword); got != c.Serial() {
			t.Fatalf("delivery %d: leaf serial %s, want %s", i+1, got, c.Serial())
		}
	}
	if got := dirNames(t, filepath.Join(srv.Dir, "ccs")); !slices.Equal(got, []string{"_.example.com.pfx"}) {
		t.Errorf("share holds %q, want only _.example.com.pfx", got)
	}
}

func TestSMBLogonFailure(t *testing.T) {
	t.Parallel()
	srv := testenv.StartSamba(t, testenv.SambaOptions{User: "edge"})
	const wrong = "not-the-password-7f3a"
	for _, tc := range []struct{ name, user, password string }{
		{"wrong password", srv.User, wrong},
		{"unknown user", "nobody-here", srv.Password},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := smbOptions("", srv)
			o.User, o.Password = tc.user, tc.password
			s := newTestSMB(t, o)
			for _, op := range []struct {
				name string
				run  func() []Result
			}{
				{"Deliver", func() []Result { return s.Deliver(smbTestContext(t), testCert(t, "www.example.com", 7)) }},
				{"Test", func() []Result { return s.Test(smbTestContext(t)) }},
			} {
				results := op.run()
				if len(results) != 1 || results[0].Err == nil {
					t.Fatalf("%s: got %+v, want one failed result", op.name, results)
				}
				err := results[0].Err
				if !errors.Is(err, ErrLogonFailure) {
					t.Errorf("%s: error %q does not wrap ErrLogonFailure", op.name, err)
				}
				msg := err.Error()
				for _, want := range []string{`\\` + srv.Addr + `\certs`, "logon failure: check user and password_file", tc.user} {
					if !strings.Contains(msg, want) {
						t.Errorf("%s: error %q does not say %q", op.name, msg, want)
					}
				}
				for _, secret := range []string{tc.password, smbTestPFXPassword} {
					if strings.Contains(msg, secret) {
						t.Errorf("%s: error %q holds a password", op.name, msg)
					}
				}
			}
			if names := dirNames(t, srv.Dir); len(names) != 0 {
				t.Errorf("share holds %q after failed logons", names)
			}
		})
	}
}

func TestSMBTest(t *testing.T) {
	t.Parallel()
	rw := testenv.StartSamba(t, testenv.SambaOptions{})
	ro := testenv.StartSamba(t, testenv.SambaOptions{ReadOnly: true, User: rw.User, Password: rw.Password})

	t.Run("writable", func(t *testing.T) {
		// A directory that already exists stays; the ones made for the
		// probe go.
		if err := os.Mkdir(filepath.Join(rw.Dir, "ccs"), 0o755); err != nil {
			t.Fatal(err)
		}
		s := newTestSMB(t, smbOptions("ccs/new/deeper", rw))
		requireOK(t, s.Test(smbTestContext(t)), `\\`+rw.Addr+`\certs\ccs\new\deeper`)
		if got := dirNames(t, rw.Dir); !slices.Equal(got, []string{"ccs"}) {
			t.Errorf("share root holds %q, want only ccs", got)
		}
		if got := dirNames(t, filepath.Join(rw.Dir, "ccs")); len(got) != 0 {
			t.Errorf("ccs holds %q, want nothing", got)
		}
	})
	t.Run("read-only share", func(t *testing.T) {
		// The probe is really written: on a share that refuses writes,
		// Test fails at that step.
		s := newTestSMB(t, smbOptions("", ro))
		results := s.Test(smbTestContext(t))
		if len(results) != 1 || results[0].Err == nil {
			t.Fatalf("got %+v, want one failed result", results)
		}
		msg := results[0].Err.Error()
		if !strings.Contains(msg, `\\`+ro.Addr+`\certs: creating .edge-probe-`) || !errors.Is(results[0].Err, os.ErrPermission) {
			t.Errorf("error %q: want the probe's creation refused with permission denied", msg)
		}
	})
	t.Run("no such share", func(t *testing.T) {
		o := smbOptions("", rw)
		o.Share = "nope"
		results := newTestSMB(t, o).Test(smbTestContext(t))
		if len(results) != 1 || results[0].Err == nil || !strings.Contains(results[0].Err.Error(), "no such share") {
			t.Fatalf("got %+v, want a no-such-share error", results)
		}
	})
}

func TestSMBTimeout(t *testing.T) {
	t.Parallel()
	// A server that accepts and never answers: the negotiation hangs until
	// the per-server Timeout closes the connection.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan net.Conn, 16)
	go func() {
		defer close(accepted)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	defer func() {
		ln.Close()
		for c := range accepted {
			c.Close()
		}
	}()
	s := newTestSMB(t, SMBOptions{Servers: []string{ln.Addr().String()}, Share: "certs", User: "u", Password: "p",
		Timeout: 300 * time.Millisecond})
	start := time.Now()
	results := s.Test(smbTestContext(t))
	took := time.Since(start)
	if len(results) != 1 || !errors.Is(results[0].Err, context.DeadlineExceeded) {
		t.Fatalf("got %+v, want a deadline error", results)
	}
	if took > 5*time.Second {
		t.Errorf("took %s with a 300ms timeout", took)
	}
}

func TestNewSMB(t *testing.T) {
	t.Parallel()
	ok := SMBOptions{Servers: []string{"fs1", "fs2:4450", "[::1]"}, Share: "certs", Path: `/a\b/`, User: "u", Password: "secret-pw"}
	s, err := NewSMB(ok)
	if err != nil {
		t.Fatal(err)
	}
	var hosts, addrs []string
	for _, srv := range s.servers {
		hosts, addrs = append(hosts, srv.unc), append(addrs, srv.addr)
	}
	if want := []string{`\\fs1\certs\a\b`, `\\fs2:4450\certs\a\b`, `\\::1\certs\a\b`}; !slices.Equal(hosts, want) {
		t.Errorf("hosts %q, want %q", hosts, want)
	}
	if want := []string{"fs1:445", "fs2:4450", "[::1]:445"}; !slices.Equal(addrs, want) {
		t.Errorf("addrs %q, want %q", addrs, want)
	}

	for _, tc := range []struct {
		name string
		edit func(*SMBOptions)
		want string
	}{
		{"no servers", func(o *SMBOptions) { o.Servers = nil }, "no servers"},
		{"twice", func(o *SMBOptions) { o.Servers = []string{"fs1", "fs1:445"} }, "listed twice"},
		{"empty server", func(o *SMBOptions) { o.Servers = []string{" "} }, "empty server"},
		{"no share", func(o *SMBOptions) { o.Share = "" }, "no share"},
		{"unc share", func(o *SMBOptions) { o.Share = `\\fs1\certs` }, "want a share name"},
		{"no user", func(o *SMBOptions) { o.User = "" }, "no user"},
		{"dotdot", func(o *SMBOptions) { o.Path = "a/../b" }, `".." is not allowed`},
		{"negative timeout", func(o *SMBOptions) { o.Timeout = -time.Second }, "negative timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := ok
			tc.edit(&o)
			_, err := NewSMB(o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "secret-pw") {
				t.Errorf("error %q holds the password", err)
			}
		})
	}
}
