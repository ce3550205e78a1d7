package export

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// SFTPOptions configures NewSFTP. Hosts, User, KnownHosts, Path and one of
// KeyFile or Password are required.
type SFTPOptions struct {
	// Hosts are "host:port" addresses; a host without a port gets 22.
	Hosts []string
	// User is the login name on every host.
	User string
	// KeyFile is the path of an OpenSSH (or PEM) private key without a
	// passphrase. It is read once, by NewSFTP.
	KeyFile string
	// Password is used when the server asks for it (password or
	// keyboard-interactive), after KeyFile's key if both are set.
	Password string
	// KnownHosts is the path of a known_hosts file (OpenSSH format), read
	// once, by NewSFTP. A host whose key is not in it, or differs from
	// it, is refused; host keys are never skipped.
	KnownHosts string
	// Path is the remote directory; each certificate goes to
	// Path/NAME/{privkey,cert,chain,fullchain}.pem. A relative path is
	// relative to the SFTP server's start directory (the user's home).
	Path string
	// Then is a command run on each host, over the same connection, after
	// its files are in place ("sudo systemctl reload apache2"). "" runs
	// nothing.
	Then string
	// Timeout bounds the whole attempt on one host: dial, handshake,
	// authentication, writes and Then. 0 means that only the context
	// passed to Deliver or Test bounds it.
	Timeout time.Duration
}

// SFTP delivers certificates to hosts over SFTP, in the layout certbot and
// pem_dir write, for Apache's SSLCertificateFile/SSLCertificateKeyFile:
// Path/NAME/privkey.pem (0600), cert.pem, chain.pem and fullchain.pem
// (0644), NAME being Cert.FileName(). Each file is written to a temporary
// name in its directory and renamed over the old one, so Apache never
// reads half a file.
//
// Build it with NewSFTP; the zero value is not usable. It is safe for
// concurrent use; one Deliver opens one SSH connection per host.
type SFTP struct {
	hosts    []sftpHost
	user     string
	auth     []ssh.AuthMethod
	hostKeys ssh.HostKeyCallback
	known    string // the known_hosts path, for messages
	dir      string
	then     string
	timeout  time.Duration
}

var _ Exporter = (*SFTP)(nil)

// sftpHost is one host, resolved at construction.
type sftpHost struct {
	addr string // host:port
	// algos are the host key algorithms of the keys known_hosts holds for
	// the host, nil when it holds none (a @cert-authority line may still
	// accept it).
	algos []string
}

// ThenOutputMax is how much of Then's combined output a Result keeps: the
// last ThenOutputMax bytes.
const ThenOutputMax = 4 << 10

// NewSFTP checks o, reads and parses the key file and the known_hosts file,
// and returns the exporter. Every problem found is returned, joined; errors
// name the file and never hold the key or the password.
func NewSFTP(o SFTPOptions) (*SFTP, error) {
	var errs []error
	s := &SFTP{user: o.User, known: o.KnownHosts, dir: o.Path, then: o.Then, timeout: o.Timeout}
	if len(o.Hosts) == 0 {
		errs = append(errs, errors.New("sftp: no hosts"))
	}
	seen := map[string]bool{}
	for _, h := range o.Hosts {
		addr, err := sftpAddr(h)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if seen[addr] {
			errs = append(errs, fmt.Errorf("sftp: host %s is listed twice", addr))
			continue
		}
		seen[addr] = true
		s.hosts = append(s.hosts, sftpHost{addr: addr})
	}
	if o.User == "" {
		errs = append(errs, errors.New("sftp: no user"))
	}
	if o.Path == "" {
		errs = append(errs, errors.New("sftp: no remote path"))
	}
	if o.Timeout < 0 {
		errs = append(errs, fmt.Errorf("sftp: negative timeout %s", o.Timeout))
	}
	if o.KeyFile == "" && o.Password == "" {
		errs = append(errs, errors.New("sftp: no key file and no password"))
	}
	if o.KeyFile != "" {
		signer, err := readSSHKey(o.KeyFile)
		if err != nil {
			errs = append(errs, err)
		} else {
			s.auth = append(s.auth, ssh.PublicKeys(signer))
		}
	}
	if o.Password != "" {
		pw := o.Password
		s.auth = append(s.auth, ssh.Password(pw),
			ssh.KeyboardInteractive(func(_, _ string, questions []string, echos []bool) ([]string, error) {
				answers := make([]string, len(questions))
				for i := range questions {
					if !echos[i] { // a password prompt, not a user name one
						answers[i] = pw
					}
				}
				return answers, nil
			}))
	}
	if o.KnownHosts == "" {
		errs = append(errs, errors.New("sftp: no known_hosts file (host keys are always checked)"))
	} else {
		cb, err := knownhosts.New(o.KnownHosts)
		if err != nil {
			// An *fs.PathError or "knownhosts: FILE:LINE: ..." names the file.
			errs = append(errs, fmt.Errorf("sftp: known_hosts: %w", err))
		} else {
			s.hostKeys = cb
			for i := range s.hosts {
				s.hosts[i].algos = knownAlgorithms(cb, s.hosts[i].addr)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return s, nil
}

// sftpAddr returns h as host:port, with port 22 when h has none.
func sftpAddr(h string) (string, error) {
	h = strings.TrimSpace(h)
	if h == "" {
		return "", errors.New("sftp: empty host")
	}
	if host, port, err := net.SplitHostPort(h); err == nil {
		if host == "" || port == "" {
			return "", fmt.Errorf("sftp: host %q: want host or host:port", h)
		}
		return h, nil
	}
	// No port: "web1", "192.0.2.1", "::1" or "[::1]".
	return net.JoinHostPort(strings.Trim(h, "[]"), "22"), nil
}

// readSSHKey reads and parses a passphrase-less private key.
func readSSHKey(file string) (ssh.Signer, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("sftp: key file: %w", err) // *fs.PathError names it
	}
	signer, err := ssh.ParsePrivateKey(b)
	var missing *ssh.PassphraseMissingError
	switch {
	case errors.As(err, &missing):
		return nil, fmt.Errorf("sftp: key file %s is protected by a passphrase; edge needs a key without one", file)
	case err != nil:
		return nil, fmt.Errorf("sftp: parsing key file %s: %w", file, err)
	}
	return signer, nil
}

// knownAlgorithms returns the host key algorithms of the keys known_hosts
// holds for addr, Ed25519 first as OpenSSH orders them, or nil when it
// holds none.
//
// Without it the client offers Go's default list, which puts ECDSA and RSA
// before Ed25519: a server with the usual three host keys then shows its
// ECDSA key, and a known_hosts that lists only its Ed25519 key (as one an
// OpenSSH client wrote often does) reports a mismatch. OpenSSH's client does
// the same ordering by known keys. See golang/go#29286.
func knownAlgorithms(cb ssh.HostKeyCallback, addr string) []string {
	// Ask about a key no file holds: the KeyError lists the known ones.
	probe, err := ssh.NewPublicKey(ed25519.PublicKey(make([]byte, ed25519.PublicKeySize)))
	if err != nil {
		return nil
	}
	var keyErr *knownhosts.KeyError
	if err := cb(addr, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 22}, probe); !errors.As(err, &keyErr) || len(keyErr.Want) == 0 {
		return nil
	}
	var algos []string
	seen := map[string]bool{}
	for _, k := range keyErr.Want {
		seen[k.Key.Type()] = true
	}
	for _, typ := range []string{ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521, ssh.KeyAlgoRSA} {
		if seen[typ] {
			algos = append(algos, hostKeyAlgorithms(typ)...)
			delete(seen, typ)
		}
	}
	for _, typ := range slices.Sorted(maps.Keys(seen)) { // sk-*: the type is the algorithm
		algos = append(algos, typ)
	}
	return algos
}

// hostKeyAlgorithms returns the algorithms that show a key of type typ.
func hostKeyAlgorithms(typ string) []string {
	if typ == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	}
	return []string{typ}
}

// Deliver writes c to every host at once and, on each host where the files
// are in place, runs Then. It returns one Result per host, in Hosts order.
func (s *SFTP) Deliver(ctx context.Context, c *Cert) []Result {
	files, dir, err := s.certFiles(c)
	if err != nil {
		results := make([]Result, len(s.hosts))
		for i, h := range s.hosts {
			results[i] = Result{Host: h.addr, Err: fmt.Errorf("%s: %w", h.addr, err)}
		}
		return results
	}
	return s.eachHost(ctx, func(ctx context.Context, h *hostConn) (string, error) {
		if err := h.writeFiles(dir, files); err != nil {
			return "", err
		}
		if s.then == "" {
			return "", nil
		}
		return h.run(s.then)
	})
}

// Test connects and authenticates to every host, writes and removes a probe
// file Path/.edge-probe-RANDOM, and does not run Then. Directories of Path
// that are missing are created for the probe, as Deliver would, and removed
// after it.
func (s *SFTP) Test(ctx context.Context) []Result {
	return s.eachHost(ctx, func(ctx context.Context, h *hostConn) (string, error) {
		return "", h.probe(s.dir)
	})
}

// remoteFile is one file to write.
type remoteFile struct {
	name string
	data []byte
	mode os.FileMode
}

// certFiles returns c's files and the remote directory they go to.
func (s *SFTP) certFiles(c *Cert) ([]remoteFile, string, error) {
	name := c.FileName()
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\\") {
		return nil, "", fmt.Errorf("certificate name %q cannot be a directory name", c.Name)
	}
	key, err := c.KeyPEM()
	if err != nil {
		return nil, "", err
	}
	return []remoteFile{
		{"privkey.pem", key, 0o600},
		{"cert.pem", c.CertPEM(), 0o644},
		{"chain.pem", c.ChainPEM(), 0o644},
		{"fullchain.pem", c.FullchainPEM(), 0o644},
	}, path.Join(s.dir, name), nil
}

// eachHost connects to every host concurrently and runs do on each
// connection; do's output goes to Result.Output.
func (s *SFTP) eachHost(ctx context.Context, do func(context.Context, *hostConn) (string, error)) []Result {
	results := make([]Result, len(s.hosts))
	var wg sync.WaitGroup
	for i, h := range s.hosts {
		wg.Go(func() {
			start := time.Now()
			out, err := s.onHost(ctx, h, do)
			results[i] = Result{Host: h.addr, Err: err, Took: time.Since(start), Output: out}
		})
	}
	wg.Wait()
	return results
}

func (s *SFTP) onHost(ctx context.Context, h sftpHost, do func(context.Context, *hostConn) (string, error)) (string, error) {
	var cancel context.CancelFunc
	if s.timeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, s.timeout)
	} else {
		ctx, cancel = context.WithCancel(ctx)
	}
	defer cancel()
	conn, err := s.dial(ctx, h)
	if err != nil {
		return "", err
	}
	defer conn.close()
	return do(ctx, conn)
}

// hostConn is an SSH connection to one host with its SFTP client. Its
// network connection is closed when its context ends, which makes any
// SFTP or session call in progress return.
type hostConn struct {
	ctx  context.Context
	addr string
	ssh  *ssh.Client
	sftp *sftp.Client
	stop func() bool // stops the close-on-cancel
}

// dial connects, checks the host key, authenticates and starts SFTP.
func (s *SFTP) dial(ctx context.Context, h sftpHost) (*hostConn, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", h.addr, err)
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", h.addr)
	if err != nil {
		return nil, fmt.Errorf("%s: dialing: %w", h.addr, ctxErr(ctx, err))
	}
	stop := context.AfterFunc(ctx, func() { nc.Close() })

	var (
		hostKeyOK  bool
		hostKeyErr error
		offered    ssh.PublicKey
	)
	cfg := &ssh.ClientConfig{
		User: s.user,
		Auth: s.auth,
		HostKeyCallback: func(hostname string, remote net.Addr, key ssh.PublicKey) error {
			offered = key
			if hostKeyErr = s.hostKeys(hostname, remote, key); hostKeyErr == nil {
				hostKeyOK = true
			}
			return hostKeyErr
		},
		HostKeyAlgorithms: h.algos,
	}
	c, chans, reqs, err := ssh.NewClientConn(nc, h.addr, cfg)
	if err != nil {
		stop()
		nc.Close()
		switch {
		case hostKeyErr != nil:
			return nil, s.hostKeyError(h.addr, offered, hostKeyErr)
		case ctx.Err() != nil:
			step := "ssh handshake"
			if hostKeyOK {
				step = "authenticating as " + s.user
			}
			return nil, fmt.Errorf("%s: %s: %w", h.addr, step, ctx.Err())
		case hostKeyOK:
			return nil, fmt.Errorf("%s: authenticating as %s: %w", h.addr, s.user, err)
		default:
			return nil, fmt.Errorf("%s: ssh handshake: %w", h.addr, err)
		}
	}
	client := ssh.NewClient(c, chans, reqs)
	hc := &hostConn{ctx: ctx, addr: h.addr, ssh: client, stop: stop}
	sc, err := sftp.NewClient(client)
	if err != nil {
		hc.close()
		return nil, hc.errorf("starting sftp", err)
	}
	hc.sftp = sc
	return hc, nil
}

// hostKeyError says what was wrong with the host key: unknown, changed or
// revoked, with the fingerprints and the known_hosts lines.
func (s *SFTP) hostKeyError(addr string, offered ssh.PublicKey, err error) error {
	fp := "?"
	if offered != nil {
		fp = offered.Type() + " " + ssh.FingerprintSHA256(offered)
	}
	var keyErr *knownhosts.KeyError
	var revoked *knownhosts.RevokedError
	switch {
	case errors.As(err, &revoked):
		return fmt.Errorf("%s: host key %s is revoked in %s:%d: %w", addr, fp, revoked.Revoked.Filename, revoked.Revoked.Line, err)
	case errors.As(err, &keyErr) && len(keyErr.Want) == 0:
		return fmt.Errorf("%s: unknown host key %s: %s has no key for the host: %w", addr, fp, s.known, err)
	case errors.As(err, &keyErr):
		want := make([]string, len(keyErr.Want))
		for i, k := range keyErr.Want {
			want[i] = fmt.Sprintf("%s %s at %s:%d", k.Key.Type(), ssh.FingerprintSHA256(k.Key), k.Filename, k.Line)
		}
		return fmt.Errorf("%s: host key mismatch: the server offered %s, known_hosts has %s: %w", addr, fp, strings.Join(want, ", "), err)
	default:
		return fmt.Errorf("%s: checking host key %s: %w", addr, fp, err)
	}
}

func (h *hostConn) close() {
	h.stop()
	if h.sftp != nil {
		h.sftp.Close()
	}
	h.ssh.Close()
}

// errorf names the host and the step; when the context ended, its error
// replaces the closed connection's. The step names the path, so a
// *fs.PathError's own is dropped.
func (h *hostConn) errorf(step string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return fmt.Errorf("%s: %s: %w", h.addr, step, ctxErr(h.ctx, err))
}

func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// writeFiles writes every file to a temporary name in dir, then renames
// them over the targets: all four files change within a few round trips,
// after every one of them was written whole.
func (h *hostConn) writeFiles(dir string, files []remoteFile) error {
	if _, err := h.mkdirs(dir); err != nil {
		return err
	}
	tmps := make([]string, 0, len(files))
	defer func() {
		for _, t := range tmps { // those not renamed, after a failure
			_ = h.sftp.Remove(t)
		}
	}()
	for _, f := range files {
		tmp, err := h.writeTemp(dir, f)
		if err != nil {
			return err
		}
		tmps = append(tmps, tmp)
	}
	for len(tmps) > 0 {
		target := path.Join(dir, files[0].name)
		if err := h.rename(tmps[0], target); err != nil {
			return h.errorf("writing "+target, err)
		}
		tmps, files = tmps[1:], files[1:]
	}
	return nil
}

// writeTemp writes f to a new temporary file in dir, with f's mode set
// before any data, and returns its path.
func (h *hostConn) writeTemp(dir string, f remoteFile) (string, error) {
	target := path.Join(dir, f.name)
	tmp := path.Join(dir, "."+f.name+".tmp-"+rand.Text()[:12])
	fh, err := h.sftp.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return "", h.errorf("writing "+target, err)
	}
	fail := func(err error) (string, error) {
		fh.Close()
		_ = h.sftp.Remove(tmp)
		return "", h.errorf("writing "+target, err)
	}
	// The server created it with its umask (often 0644): no key byte is
	// written before the mode is 0600.
	if err := fh.Chmod(f.mode); err != nil {
		return fail(err)
	}
	if _, err := fh.Write(f.data); err != nil {
		return fail(err)
	}
	if _, ok := h.sftp.HasExtension("fsync@openssh.com"); ok {
		if err := fh.Sync(); err != nil {
			return fail(err)
		}
	}
	if err := fh.Close(); err != nil {
		_ = h.sftp.Remove(tmp)
		return "", h.errorf("writing "+target, err)
	}
	return tmp, nil
}

// rename moves tmp over target: atomically with posix-rename@openssh.com;
// plain SFTP rename fails when the target exists (RFC draft-ietf-secsh-
// filexfer-02 §6.5), so without the extension the target is removed first
// and a reader may briefly find no file.
func (h *hostConn) rename(tmp, target string) error {
	if _, ok := h.sftp.HasExtension("posix-rename@openssh.com"); ok {
		return h.sftp.PosixRename(tmp, target)
	}
	if err := h.sftp.Remove(target); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return h.sftp.Rename(tmp, target)
}

// mkdirs creates dir and its missing parents, mode 0700, and returns the
// ones it created, parents first.
func (h *hostConn) mkdirs(dir string) ([]string, error) {
	var missing []string
	for p := dir; ; p = path.Dir(p) {
		fi, err := h.sftp.Stat(p)
		if err == nil {
			if !fi.IsDir() {
				return nil, h.errorf("creating directory "+dir, fmt.Errorf("%s is not a directory", p))
			}
			break
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, h.errorf("creating directory "+dir, err)
		}
		missing = append(missing, p)
		if parent := path.Dir(p); parent == p {
			break
		}
	}
	var created []string
	for _, p := range slices.Backward(missing) {
		if err := h.sftp.Mkdir(p); err != nil {
			// Another delivery to this host may have made it meanwhile.
			if fi, serr := h.sftp.Stat(p); serr != nil || !fi.IsDir() {
				return created, h.errorf("creating directory "+p, err)
			}
			continue
		}
		created = append(created, p)
		// Mkdir takes the server's umask; the key's directory is
		// nobody else's business.
		if err := h.sftp.Chmod(p, 0o700); err != nil {
			return created, h.errorf("creating directory "+p, err)
		}
	}
	return created, nil
}

// probe writes and removes dir/.edge-probe-RANDOM, creating dir if missing
// and removing what it created.
func (h *hostConn) probe(dir string) (err error) {
	created, err := h.mkdirs(dir)
	defer func() {
		for _, p := range slices.Backward(created) {
			if rerr := h.sftp.RemoveDirectory(p); rerr != nil && err == nil {
				err = h.errorf("removing directory "+p+" made for the probe", rerr)
			}
		}
	}()
	if err != nil {
		return err
	}
	p := path.Join(dir, ".edge-probe-"+rand.Text()[:12])
	f, err := h.sftp.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return h.errorf("writing probe "+p, err)
	}
	_, werr := f.Write([]byte("edge export -dry-run\n"))
	cerr := f.Close()
	if rerr := h.sftp.Remove(p); rerr != nil {
		return h.errorf("removing probe "+p, rerr)
	}
	if err := errors.Join(werr, cerr); err != nil {
		return h.errorf("writing probe "+p, err)
	}
	return nil
}

// run runs cmd in a session and returns its combined output, the last
// ThenOutputMax bytes, trimmed. A non-zero exit is an error.
func (h *hostConn) run(cmd string) (string, error) {
	sess, err := h.ssh.NewSession()
	if err != nil {
		return "", h.errorf("starting then command", err)
	}
	defer sess.Close()
	var out tailBuffer
	sess.Stdout = &out
	sess.Stderr = &out
	err = sess.Run(cmd)
	output := out.String()
	var exit *ssh.ExitError
	var missing *ssh.ExitMissingError
	switch {
	case err == nil:
		return output, nil
	case h.ctx.Err() != nil:
		return output, h.errorf("running then command", err)
	case errors.As(err, &exit) && exit.Signal() != "":
		return output, fmt.Errorf("%s: then command killed by signal %s", h.addr, exit.Signal())
	case errors.As(err, &exit):
		return output, fmt.Errorf("%s: then command exited with status %d", h.addr, exit.ExitStatus())
	case errors.As(err, &missing):
		return output, fmt.Errorf("%s: then command exited without a status", h.addr)
	default:
		return output, h.errorf("running then command", err)
	}
}

// tailBuffer keeps the last ThenOutputMax bytes written to it. Safe for
// concurrent use (a session copies stdout and stderr in two goroutines).
type tailBuffer struct {
	mu  sync.Mutex
	b   []byte
	cut bool
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - ThenOutputMax; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
		t.cut = true
	}
	return len(p), nil
}

// String is the output, trimmed, valid UTF-8, "[...] " first when cut.
func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := strings.TrimSpace(strings.ToValidUTF8(string(t.b), ""))
	if t.cut {
		s = "[...] " + s
	}
	return s
}
