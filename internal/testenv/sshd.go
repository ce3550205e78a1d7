package testenv

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// SSHDOptions configures StartSSHD. The zero value is one OpenSSH sshd on a
// free port with an ed25519 host key, public-key login for the current user
// and the internal SFTP server.
type SSHDOptions struct {
	// Port on 127.0.0.1; 0 picks a free one. Start after Stop reuses it.
	Port int
	// SFTPDir is the SFTP server's start directory (internal-sftp -d):
	// relative SFTP paths resolve under it rather than under the user's
	// home, so two servers on one machine can hold different files.
	// "" leaves the home directory.
	SFTPDir string
	// SFTPArgs are extra internal-sftp flags, such as "-P", "remove" to
	// deny removals (see sftp-server(8); internal-sftp -Q requests lists
	// the names).
	SFTPArgs []string
	// AuthorizedKeys are accepted next to the generated client key, so
	// that one client key can reach several servers.
	AuthorizedKeys []ssh.PublicKey
	// ECDSAHostKey adds an ECDSA P-256 host key that sshd offers next to
	// the ed25519 one. KnownHostsFile still lists only the ed25519 key, as
	// a known_hosts written by an OpenSSH client often does: a client must
	// ask for the algorithm of the key it knows.
	ECDSAHostKey bool
	// Config holds extra sshd_config lines, written before the defaults
	// (sshd keeps the first value it reads for most keywords).
	Config []string
}

// SSHD is a running OpenSSH sshd (sshd -D -e) on 127.0.0.1, as the current
// user, with keys generated for the test. Safe for concurrent use.
type SSHD struct {
	// Addr is "127.0.0.1:port".
	Addr string
	Port int
	// User is the current user's name: the only one who can log in.
	User string
	// ClientKeyFile is an unencrypted ed25519 private key in OpenSSH
	// format, listed in the server's authorized_keys.
	ClientKeyFile string
	// ClientKey is that key as a signer.
	ClientKey ssh.Signer
	// KnownHostsFile holds one line, "[127.0.0.1]:port ssh-ed25519 ...".
	KnownHostsFile string
	// HostKey is the server's ed25519 host key.
	HostKey ssh.PublicKey
	// Dir holds the config, keys and pid file.
	Dir string

	tb     TB
	bin    string
	config string

	mu     sync.Mutex
	proc   *Process
	starts int
}

// StartSSHD generates the keys, writes the config and starts sshd, waiting
// until it listens. Cleanup stops it (SIGTERM, then SIGKILL).
//
// Run as root, sshd needs its privilege separation directory /run/sshd,
// which systemd normally creates; StartSSHD creates it when missing.
func StartSSHD(tb TB, opts SSHDOptions) *SSHD {
	tb.Helper()
	bin := RequireTool(tb, "sshd")
	if opts.Port == 0 {
		opts.Port = FreePort(tb)
	}
	u, err := user.Current()
	if err != nil {
		tb.Fatalf("sshd: current user: %v", err)
	}
	dir := tb.TempDir()
	s := &SSHD{
		Addr:           Addr(opts.Port),
		Port:           opts.Port,
		User:           u.Username,
		Dir:            dir,
		ClientKeyFile:  filepath.Join(dir, "client_ed25519"),
		KnownHostsFile: filepath.Join(dir, "known_hosts"),
		tb:             tb,
		bin:            bin,
		config:         filepath.Join(dir, "sshd_config"),
	}

	hostKeys := []string{filepath.Join(dir, "ssh_host_ed25519_key")}
	_, hostPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatalf("sshd: %v", err)
	}
	s.HostKey = writeSSHKey(tb, hostKeys[0], hostPriv)
	if opts.ECDSAHostKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			tb.Fatalf("sshd: %v", err)
		}
		p := filepath.Join(dir, "ssh_host_ecdsa_key")
		writeSSHKey(tb, p, k)
		hostKeys = append(hostKeys, p)
	}
	_, clientPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatalf("sshd: %v", err)
	}
	clientPub := writeSSHKey(tb, s.ClientKeyFile, clientPriv)
	if s.ClientKey, err = ssh.NewSignerFromKey(clientPriv); err != nil {
		tb.Fatalf("sshd: %v", err)
	}
	authKeys := filepath.Join(dir, "authorized_keys")
	authorized := ssh.MarshalAuthorizedKey(clientPub)
	for _, k := range opts.AuthorizedKeys {
		authorized = append(authorized, ssh.MarshalAuthorizedKey(k)...)
	}
	writeSSHDFile(tb, authKeys, authorized, 0o600)
	writeSSHDFile(tb, s.KnownHostsFile, []byte(knownhosts.Line([]string{s.Addr}, s.HostKey)+"\n"), 0o644)

	sftp := "internal-sftp"
	if opts.SFTPDir != "" {
		sftp += " -d " + opts.SFTPDir
	}
	if len(opts.SFTPArgs) > 0 {
		sftp += " " + strings.Join(opts.SFTPArgs, " ")
	}
	var b strings.Builder
	for _, l := range opts.Config {
		b.WriteString(l + "\n")
	}
	fmt.Fprintf(&b, "ListenAddress %s\n", s.Addr)
	for _, k := range hostKeys {
		fmt.Fprintf(&b, "HostKey %s\n", k)
	}
	fmt.Fprintf(&b, `PidFile %s
AuthorizedKeysFile %s
StrictModes no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin prohibit-password
AllowUsers %s
PrintMotd no
UseDNS no
LogLevel VERBOSE
Subsystem sftp %s
`, filepath.Join(dir, "sshd.pid"), authKeys, s.User, sftp)
	writeSSHDFile(tb, s.config, []byte(b.String()), 0o600)

	if os.Geteuid() == 0 {
		// sshd -t and sshd itself fail with "Missing privilege
		// separation directory" without it.
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			tb.Fatalf("sshd: creating /run/sshd: %v", err)
		}
	}
	s.Start()
	return s
}

// Start starts sshd again after Stop, on the same port, keys and config.
// Starting a running server is a test error.
func (s *SSHD) Start() {
	s.tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil && !s.proc.Exited() {
		s.tb.Fatalf("sshd on %s is already running", s.Addr)
	}
	s.starts++
	// The absolute path matters: sshd re-executes itself for every
	// connection and refuses to run from a relative one.
	p := Start(s.tb, Cmd{
		Name: fmt.Sprintf("sshd-%d-%d", s.Port, s.starts),
		Path: s.bin,
		Args: []string{"-D", "-e", "-f", s.config},
		Dir:  s.Dir,
	})
	s.proc = p
	if err := p.WaitLog("Server listening on", 10*time.Second); err != nil {
		s.tb.Fatalf("sshd on %s: %v\n%s", s.Addr, err, p.Tail(20))
	}
	if err := WaitTCP(s.Addr, 5*time.Second); err != nil {
		s.tb.Fatalf("sshd: %v\n%s", err, p.Tail(20))
	}
}

// Stop stops sshd (SIGTERM, then SIGKILL) and waits for it: new
// connections are refused until Start.
func (s *SSHD) Stop() {
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	if p != nil {
		_ = p.Stop() // sshd exits 255 on SIGTERM
	}
	// sshd's exit does not always close the port at once (a per-connection
	// child may still hold the listening socket for a moment): a connection
	// made then completes and is reset. Wait until one is refused.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", s.Addr, time.Second)
		if err != nil {
			return
		}
		c.Close()
		time.Sleep(20 * time.Millisecond)
	}
	s.tb.Fatalf("sshd on %s: the port still accepts connections 5 s after sshd exited", s.Addr)
}

// Process is the current sshd process (a new one after each Start).
func (s *SSHD) Process() *Process {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc
}

// writeSSHKey writes key in OpenSSH format, unencrypted, mode 0600 (sshd
// and ssh refuse a private key others can read), and returns its public key.
func writeSSHKey(tb TB, path string, key any) ssh.PublicKey {
	tb.Helper()
	block, err := ssh.MarshalPrivateKey(key, "edge-test")
	if err != nil {
		tb.Fatalf("sshd: encoding %s: %v", path, err)
	}
	writeSSHDFile(tb, path, pem.EncodeToMemory(block), 0o600)
	signer, err := ssh.NewSignerFromKey(key)
	if err != nil {
		tb.Fatalf("sshd: %v", err)
	}
	return signer.PublicKey()
}

func writeSSHDFile(tb TB, path string, data []byte, perm os.FileMode) {
	tb.Helper()
	if err := os.WriteFile(path, data, perm); err != nil {
		tb.Fatalf("sshd: %v", err)
	}
}
