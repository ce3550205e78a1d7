package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// SambaOptions configures StartSamba. The zero value is one smbd on a free
// port with a writable share "certs" and a user named after the current
// Unix user, with a random password.
type SambaOptions struct {
	// Port on 127.0.0.1; 0 picks a free one.
	Port int
	// Share is the share's name; "" is "certs".
	Share string
	// User is the SMB user name; "" is the current Unix user's name. Any
	// other name is mapped to the current Unix user (username map): Samba
	// needs a Unix account behind every passdb entry, and smbd run by one
	// user can act only as that user.
	User string
	// Password is the user's password; "" generates one.
	Password string
	// ReadOnly makes the share read-only: logons and tree connects work,
	// writes fail with access denied.
	ReadOnly bool
	// Config holds extra [global] lines, written after the defaults
	// (smbd keeps the last value it reads).
	Config []string
}

// Samba is a running smbd (Samba's file server) on 127.0.0.1 with one
// writable share and one user, all of its state in a temporary directory:
// nothing under /etc/samba, /var/lib/samba, /run/samba or /var/log/samba is
// read or written. Safe for concurrent use (its fields do not change).
type Samba struct {
	// Addr is "127.0.0.1:port".
	Addr string
	Port int
	// Share is the share's name.
	Share string
	// Dir is the share's local path: the files a client writes appear here.
	Dir string
	// User and Password log in (NTLMv2); the passdb is a tdbsam in the
	// temporary directory.
	User     string
	Password string
	// ConfigFile is the smb.conf smbd runs with.
	ConfigFile string

	proc *Process
}

// StartSamba writes an smb.conf, creates the user's passdb entry with
// pdbedit and starts `smbd --foreground --no-process-group --debug-stdout`,
// waiting until it accepts connections. It works as root and as any other
// user: smbd needs no privilege for a port above 1023 and state it owns,
// and then serves the share as that user. Cleanup stops it (SIGTERM, then
// SIGKILL) and then kills what is left of its process group (the children
// smbd forks for each connection).
func StartSamba(tb TB, opts SambaOptions) *Samba {
	tb.Helper()
	bin := RequireTool(tb, "smbd")
	pdbedit := RequireTool(tb, "pdbedit")
	if opts.Port == 0 {
		opts.Port = FreePort(tb)
	}
	if opts.Share == "" {
		opts.Share = "certs"
	}
	u, err := user.Current()
	if err != nil {
		tb.Fatalf("smbd: current user: %v", err)
	}
	if opts.User == "" {
		opts.User = u.Username
	}
	if opts.Password == "" {
		b := make([]byte, 12)
		_, _ = rand.Read(b)
		opts.Password = hex.EncodeToString(b)
	}

	// smbd's messaging and ncalrpc sockets live under its state
	// directories, and a Unix socket path is limited to 107 bytes: a
	// t.TempDir() named after a long subtest can be too long. So the state
	// lives in a short directory of its own.
	state, err := os.MkdirTemp("", "smbd-")
	if err != nil {
		tb.Fatalf("smbd: %v", err)
	}
	tb.Cleanup(func() { os.RemoveAll(state) }) // runs after the process's Cleanup
	for _, d := range []string{"state", "cache", "lock", "pid", "private", "ncalrpc", "log", "binddns"} {
		if err := os.Mkdir(filepath.Join(state, d), 0o755); err != nil {
			tb.Fatalf("smbd: %v", err)
		}
	}
	share := tb.TempDir()

	s := &Samba{
		Addr:       Addr(opts.Port),
		Port:       opts.Port,
		Share:      opts.Share,
		Dir:        share,
		User:       opts.User,
		Password:   opts.Password,
		ConfigFile: filepath.Join(state, "smb.conf"),
	}

	var b strings.Builder
	in := func(d string) string { return filepath.Join(state, d) }
	fmt.Fprintf(&b, `[global]
	server role = standalone server
	security = user
	workgroup = WORKGROUP
	netbios name = EDGETEST
	smb ports = %d
	interfaces = 127.0.0.1
	bind interfaces only = yes
	disable netbios = yes
	server min protocol = SMB2_10
	map to guest = never
	state directory = %s
	cache directory = %s
	lock directory = %s
	pid directory = %s
	private dir = %s
	ncalrpc dir = %s
	binddns dir = %s
	log file = %s
	max log size = 0
	passdb backend = tdbsam:%s
	usershare path =
	load printers = no
	printing = bsd
	printcap name = /dev/null
	disable spoolss = yes
	rpc start on demand helpers = no
	map archive = no
`, opts.Port, in("state"), in("cache"), in("lock"), in("pid"), in("private"),
		in("ncalrpc"), in("binddns"), filepath.Join(in("log"), "smbd.log"),
		filepath.Join(in("private"), "passdb.tdb"))
	if opts.User != u.Username {
		// "unix name = SMB name": the client's name is mapped before the
		// passdb lookup, so the passdb entry is the Unix user's.
		umap := filepath.Join(state, "username.map")
		if err := os.WriteFile(umap, []byte(u.Username+" = "+opts.User+"\n"), 0o644); err != nil {
			tb.Fatalf("smbd: %v", err)
		}
		fmt.Fprintf(&b, "\tusername map = %s\n", umap)
	}
	for _, l := range opts.Config {
		b.WriteString("\t" + l + "\n")
	}
	fmt.Fprintf(&b, `[%s]
	path = %s
	read only = %s
	browseable = yes
	valid users = %s
`, opts.Share, share, yesNo(opts.ReadOnly), u.Username)
	if err := os.WriteFile(s.ConfigFile, []byte(b.String()), 0o644); err != nil {
		tb.Fatalf("smbd: %v", err)
	}

	// pdbedit -t reads the new password twice from stdin. Not smbpasswd:
	// `smbpasswd -a` (even with -L) refuses to run as anyone but root,
	// while pdbedit writes a tdbsam its user owns.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, pdbedit, "-s", s.ConfigFile, "-a", "-u", u.Username, "-t")
	cmd.Stdin = strings.NewReader(opts.Password + "\n" + opts.Password + "\n")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Dir = state
	if err := cmd.Run(); err != nil {
		tb.Fatalf("smbd: adding %s to the passdb: %v\n%s", u.Username, err, out.String())
	}

	p := Start(tb, Cmd{
		Name: "smbd-" + strconv.Itoa(opts.Port),
		Path: bin,
		// -d 2 logs each authentication failure with its NTSTATUS.
		Args: []string{"--foreground", "--no-process-group", "--debug-stdout", "-d", "2", "-s", s.ConfigFile},
		Dir:  state,
	})
	s.proc = p
	// Registered after Start's, so it runs first: stop smbd, then kill
	// the connection children left in its process group (Start makes the
	// process a group leader, and --no-process-group keeps smbd there).
	pgid := p.Pid()
	tb.Cleanup(func() {
		_ = p.Stop()
		if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			tb.Logf("smbd: killing process group %d: %v", pgid, err)
		}
	})
	if err := waitListening(p, s.Addr, 20*time.Second); err != nil {
		tb.Fatalf("smbd: %v\n%s", err, p.Tail(30))
	}
	return s
}

// Process is the smbd process.
func (s *Samba) Process() *Process { return s.proc }

// waitListening waits until addr accepts TCP connections, failing early when
// p exits.
func waitListening(p *Process, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if p.Exited() {
			return fmt.Errorf("%s exited before listening on %s: %v", p.Name, addr, p.Wait(time.Second))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("waiting for %s to accept connections on %s: %w", p.Name, addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
