package export

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hirochachacha/go-smb2"
)

// ErrLogonFailure is wrapped by the error of a delivery or test that the
// server refused at logon (STATUS_LOGON_FAILURE): wrong user, wrong
// password, or a user the server does not know. Retrying does not help.
var ErrLogonFailure = errors.New("logon failure: check user and password_file")

// NTSTATUS codes that get their own message ([MS-ERREF] 2.3.1).
const (
	ntStatusLogonFailure     = 0xC000006D // STATUS_LOGON_FAILURE
	ntStatusAccountDisabled  = 0xC0000072 // STATUS_ACCOUNT_DISABLED
	ntStatusPasswordExpired  = 0xC0000071 // STATUS_PASSWORD_EXPIRED
	ntStatusAccountLockedOut = 0xC0000234 // STATUS_ACCOUNT_LOCKED_OUT
	ntStatusBadNetworkName   = 0xC00000CC // STATUS_BAD_NETWORK_NAME
)

// SMBOptions configures NewSMB. Servers, Share and User are required.
type SMBOptions struct {
	// Servers are "host:port" addresses of the file servers that hold the
	// share (every node of a farm that keeps its own copy of the store);
	// a server without a port gets 445.
	Servers []string
	// Share is the share's name ("certs"), without \\server\.
	Share string
	// Path is the directory inside the share, "" for its root, with / or
	// \ separators. Missing directories are created.
	Path string
	// User, Password and Domain log in with NTLMv2. Domain "" lets the
	// server use its own (a standalone server's accounts).
	User, Password, Domain string
	// PFXPassword protects the PFX files, as IIS's Centralized Certificate
	// Store is configured to expect.
	PFXPassword string
	// Legacy encodes the PFX with 3DES and SHA-1 rather than AES-256 and
	// SHA-256, for Windows Server 2016 and older (see EncodePFX).
	Legacy bool
	// Timeout bounds the whole attempt on one server: dial, logon, tree
	// connect and writes. 0 means that only the context passed to Deliver
	// or Test bounds it.
	Timeout time.Duration
}

// SMB delivers certificates as PFX files straight to an SMB share (an IIS
// Centralized Certificate Store), without mounting it: Path\NAME.pfx, NAME
// being Cert.FileName() ("_.example.com.pfx" for "*.example.com"), the
// name CCS looks for. Each file is written to a temporary name in its
// directory and renamed over the old one, so IIS never reads half a file.
//
// Build it with NewSMB; the zero value is not usable. It is safe for
// concurrent use; one Deliver opens one SMB session per server.
type SMB struct {
	servers []smbServer
	share   string
	dir     string // Path with \ separators, no leading or trailing one
	user    string
	pass    string
	domain  string
	pfxPass string
	legacy  bool
	timeout time.Duration
}

var _ Exporter = (*SMB)(nil)

// smbServer is one server, resolved at construction.
type smbServer struct {
	addr string // host:port, dialed
	host string // host, in the UNC path of the tree connect
	unc  string // \\server\share\path, for Result.Host and messages
}

// NewSMB checks o and returns the exporter. Every problem found is
// returned, joined; no error holds a password.
func NewSMB(o SMBOptions) (*SMB, error) {
	var errs []error
	s := &SMB{
		share: o.Share, user: o.User, pass: o.Password, domain: o.Domain,
		pfxPass: o.PFXPassword, legacy: o.Legacy, timeout: o.Timeout,
	}
	if len(o.Servers) == 0 {
		errs = append(errs, errors.New("smb: no servers"))
	}
	switch {
	case o.Share == "":
		errs = append(errs, errors.New("smb: no share"))
	case strings.ContainsAny(o.Share, `/\`):
		errs = append(errs, fmt.Errorf(`smb: share %q: want a share name, without \\server\`, o.Share))
	}
	if o.User == "" {
		errs = append(errs, errors.New("smb: no user (go-smb2 cannot log in anonymously)"))
	}
	if o.Timeout < 0 {
		errs = append(errs, fmt.Errorf("smb: negative timeout %s", o.Timeout))
	}
	dir, err := smbDir(o.Path)
	if err != nil {
		errs = append(errs, err)
	}
	s.dir = dir
	seen := map[string]bool{}
	for _, srv := range o.Servers {
		addr, host, err := smbAddr(srv)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if seen[addr] {
			errs = append(errs, fmt.Errorf("smb: server %s is listed twice", addr))
			continue
		}
		seen[addr] = true
		name := addr // \\host\ when the port is the usual one
		if _, port, _ := net.SplitHostPort(addr); port == "445" {
			name = host
		}
		unc := `\\` + name + `\` + o.Share
		if dir != "" {
			unc += `\` + dir
		}
		s.servers = append(s.servers, smbServer{addr: addr, host: host, unc: unc})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return s, nil
}

// smbAddr returns srv as host:port, with port 445 when srv has none, and
// its host.
func smbAddr(srv string) (addr, host string, err error) {
	srv = strings.TrimSpace(srv)
	if srv == "" {
		return "", "", errors.New("smb: empty server")
	}
	if h, port, err := net.SplitHostPort(srv); err == nil {
		if h == "" || port == "" {
			return "", "", fmt.Errorf("smb: server %q: want host or host:port", srv)
		}
		return srv, h, nil
	}
	h := strings.Trim(srv, "[]") // "fs1", "192.0.2.1", "::1" or "[::1]"
	return net.JoinHostPort(h, "445"), h, nil
}

// smbDir returns p with \ separators and no empty, leading or trailing
// elements; "." and ".." are refused.
func smbDir(p string) (string, error) {
	var elems []string
	for _, e := range strings.FieldsFunc(p, func(r rune) bool { return r == '/' || r == '\\' }) {
		if e == "." || e == ".." {
			return "", fmt.Errorf("smb: path %q: %q is not allowed", p, e)
		}
		elems = append(elems, e)
	}
	return strings.Join(elems, `\`), nil
}

// join returns name inside the share's directory.
func (s *SMB) join(name string) string {
	if s.dir == "" {
		return name
	}
	return s.dir + `\` + name
}

// Deliver encodes c as a PFX once and writes it to every server at once. It
// returns one Result per server, in Servers order.
func (s *SMB) Deliver(ctx context.Context, c *Cert) []Result {
	name := c.FileName()
	var err error
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, `/\:*?"<>|`) {
		err = fmt.Errorf("certificate name %q cannot be a file name", c.Name)
	}
	var pfx []byte
	if err == nil {
		pfx, err = EncodePFX(c, s.pfxPass, s.legacy)
	}
	if err != nil {
		results := make([]Result, len(s.servers))
		for i, srv := range s.servers {
			results[i] = Result{Host: srv.unc, Err: fmt.Errorf(`%s: %w`, srv.unc, err)}
		}
		return results
	}
	return s.eachServer(ctx, func(sc *smbConn) error {
		if _, err := sc.mkdirAll(s.dir); err != nil {
			return err
		}
		return sc.writeFile(s.join(name+".pfx"), pfx)
	})
}

// Test connects, logs on and connects to the share on every server, then
// writes and removes a probe file Path\.edge-probe-RANDOM. Directories of
// Path that are missing are created for the probe, as Deliver would, and
// removed after it.
func (s *SMB) Test(ctx context.Context) []Result {
	return s.eachServer(ctx, func(sc *smbConn) error {
		created, err := sc.mkdirAll(s.dir)
		if err != nil {
			return err
		}
		probe := s.join(".edge-probe-" + smbRandHex())
		err = sc.create(probe, []byte("edge export -dry-run probe\r\n"))
		if err == nil {
			err = sc.remove(probe, "removing probe")
		}
		for i := len(created) - 1; i >= 0; i-- { // deepest first
			if rerr := sc.remove(created[i], "removing directory made for the probe"); err == nil {
				err = rerr
			}
		}
		return err
	})
}

// eachServer runs do on an SMB session to every server, concurrently.
func (s *SMB) eachServer(ctx context.Context, do func(*smbConn) error) []Result {
	results := make([]Result, len(s.servers))
	var wg sync.WaitGroup
	for i, srv := range s.servers {
		wg.Go(func() {
			start := time.Now()
			err := s.onServer(ctx, srv, do)
			results[i] = Result{Host: srv.unc, Err: err, Took: time.Since(start)}
		})
	}
	wg.Wait()
	return results
}

func (s *SMB) onServer(ctx context.Context, srv smbServer, do func(*smbConn) error) error {
	var cancel context.CancelFunc
	if s.timeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, s.timeout)
	} else {
		ctx, cancel = context.WithCancel(ctx)
	}
	defer cancel()
	sc, err := s.connect(ctx, srv)
	if err != nil {
		return err
	}
	err = do(sc)
	if cerr := sc.close(); err == nil {
		err = cerr
	}
	return err
}

// smbConn is a session on one server with the share connected. Its TCP
// connection is closed when its context ends, which makes any call in
// progress return.
type smbConn struct {
	ctx   context.Context
	unc   string
	nc    net.Conn
	sess  *smb2.Session
	share *smb2.Share
	stop  func() bool // stops the close-on-cancel
}

// connect dials, logs on and connects to the share.
func (s *SMB) connect(ctx context.Context, srv smbServer) (*smbConn, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", srv.unc, err)
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", srv.addr)
	if err != nil {
		return nil, fmt.Errorf("%s: dialing %s: %w", srv.unc, srv.addr, smbCtxErr(ctx, err))
	}
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	fail := func(err error) (*smbConn, error) {
		stop()
		nc.Close()
		return nil, err
	}
	dialer := &smb2.Dialer{Initiator: &smb2.NTLMInitiator{User: s.user, Password: s.pass, Domain: s.domain}}
	sess, err := dialer.DialContext(ctx, nc)
	if err != nil {
		return fail(smbLogonError(ctx, srv.unc, s.user, err))
	}
	sess = sess.WithContext(ctx)
	sc := &smbConn{ctx: ctx, unc: srv.unc, nc: nc, sess: sess, stop: stop}
	share, err := sess.Mount(`\\` + srv.host + `\` + s.share)
	if err != nil {
		_ = sess.Logoff()
		var re *smb2.ResponseError
		switch {
		case errors.As(err, &re) && re.Code == ntStatusBadNetworkName:
			err = fmt.Errorf("%s: connecting to share %s: no such share (STATUS_BAD_NETWORK_NAME)", srv.unc, s.share)
		case errors.Is(err, fs.ErrPermission):
			err = fmt.Errorf("%s: connecting to share %s: access denied to user %s", srv.unc, s.share, s.user)
		default:
			err = fmt.Errorf("%s: connecting to share %s: %w", srv.unc, s.share, smbCtxErr(ctx, err))
		}
		return fail(err)
	}
	sc.share = share.WithContext(ctx)
	return sc, nil
}

// smbLogonError explains a failed negotiation or session setup.
func smbLogonError(ctx context.Context, unc, user string, err error) error {
	var re *smb2.ResponseError
	if errors.As(err, &re) {
		switch re.Code {
		case ntStatusLogonFailure:
			return fmt.Errorf("%s: logging on as %s: %w (STATUS_LOGON_FAILURE)", unc, user, ErrLogonFailure)
		case ntStatusAccountDisabled:
			return fmt.Errorf("%s: logging on as %s: the account is disabled (STATUS_ACCOUNT_DISABLED)", unc, user)
		case ntStatusPasswordExpired:
			return fmt.Errorf("%s: logging on as %s: the password has expired (STATUS_PASSWORD_EXPIRED)", unc, user)
		case ntStatusAccountLockedOut:
			return fmt.Errorf("%s: logging on as %s: the account is locked out (STATUS_ACCOUNT_LOCKED_OUT)", unc, user)
		}
	}
	// go-smb2's errors carry NTSTATUS text, never the credentials.
	return fmt.Errorf("%s: negotiating and logging on as %s: %w", unc, user, smbCtxErr(ctx, err))
}

// close disconnects from the share and logs off, which closes the TCP
// connection; on an error it closes it anyway.
func (sc *smbConn) close() error {
	defer sc.stop()
	defer sc.nc.Close()
	var err error
	if uerr := sc.share.Umount(); uerr != nil {
		err = sc.errorf("disconnecting from the share", uerr)
	}
	if lerr := sc.sess.Logoff(); lerr != nil && err == nil {
		err = sc.errorf("logging off", lerr)
	}
	return err
}

func (sc *smbConn) errorf(step string, err error) error {
	return fmt.Errorf("%s: %s: %w", sc.unc, step, smbCtxErr(sc.ctx, err))
}

// mkdirAll creates dir and its missing parents, and returns those it
// created, parents first.
func (sc *smbConn) mkdirAll(dir string) ([]string, error) {
	if dir == "" {
		return nil, nil
	}
	var created []string
	elems := strings.Split(dir, `\`)
	for i := range elems {
		p := strings.Join(elems[:i+1], `\`)
		st, err := sc.share.Stat(p)
		if err == nil {
			if !st.IsDir() {
				return created, fmt.Errorf(`%s: creating directory %s: a file is in the way`, sc.unc, p)
			}
			continue
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return created, sc.errorf("looking up directory "+p, err)
		}
		if err := sc.share.Mkdir(p, 0o755); err != nil {
			if errors.Is(err, fs.ErrExist) { // made by another edge meanwhile
				continue
			}
			return created, sc.errorf("creating directory "+p, err)
		}
		created = append(created, p)
	}
	return created, nil
}

// create writes data to a new file name, failing if it exists.
func (sc *smbConn) create(name string, data []byte) error {
	f, err := sc.share.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return sc.errorf("creating "+name, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		_ = sc.share.Remove(name)
		return sc.errorf("writing "+name, err)
	}
	if err := f.Sync(); err != nil { // SMB2 FLUSH: on the server's disk before the rename
		f.Close()
		_ = sc.share.Remove(name)
		return sc.errorf("flushing "+name, err)
	}
	if err := f.Close(); err != nil {
		_ = sc.share.Remove(name)
		return sc.errorf("writing "+name, err)
	}
	return nil
}

func (sc *smbConn) remove(name, step string) error {
	if err := sc.share.Remove(name); err != nil {
		return sc.errorf(step+" "+name, err)
	}
	return nil
}

// writeFile writes data to name so that a reader sees the old file or the
// new one: a temporary file in the same directory, then renamed over name.
func (sc *smbConn) writeFile(name string, data []byte) error {
	dir, base := "", name
	if i := strings.LastIndexByte(name, '\\'); i >= 0 {
		dir, base = name[:i+1], name[i+1:]
	}
	// The temporary names do not end in .pfx, so CCS ignores them.
	tmp := dir + "." + base + ".tmp-" + smbRandHex()
	if err := sc.create(tmp, data); err != nil {
		return err
	}
	err := sc.share.Rename(tmp, name)
	if errors.Is(err, fs.ErrExist) {
		err = sc.replace(tmp, name, dir+"."+base+".old-"+smbRandHex())
	}
	if err != nil {
		_ = sc.share.Remove(tmp)
		return sc.errorf("renaming "+tmp+" to "+name, err)
	}
	return nil
}

// replace renames tmp over an existing name.
//
// What is wanted is one SMB2 SET_INFO FileRenameInformation with
// ReplaceIfExists set ([MS-FSCC] 2.4.42.2, [MS-SMB2] 3.3.5.21.1), which
// replaces the target atomically, as rename(2) does. go-smb2 v1.1.0's
// Share.Rename always sends ReplaceIfExists = 0 (client.go) and exports no
// lower-level call, so a rename onto an existing file fails with
// STATUS_OBJECT_NAME_COLLISION. Instead: the old file is renamed aside,
// the new one into place, and the old one removed. A reader between the
// two renames finds no file for a moment, never half of one; if the second
// rename fails, the old file is put back. Two edges replacing the same file
// at once could leave a .old- file behind; the Dispatcher delivers one
// edge at a time.
func (sc *smbConn) replace(tmp, name, aside string) error {
	if err := sc.share.Rename(name, aside); err != nil {
		return fmt.Errorf("moving the old file aside: %w", err)
	}
	if err := sc.share.Rename(tmp, name); err != nil {
		if rerr := sc.share.Rename(aside, name); rerr != nil {
			return fmt.Errorf("%w; putting the old file back from %s: %v", err, aside, rerr)
		}
		return err
	}
	// The new file is in place, so the delivery is done even if the old
	// one cannot be removed (a reader holding it open without
	// FILE_SHARE_DELETE): failing would have the dispatcher redo all of
	// this. The leftover's name does not end in .pfx, so CCS ignores it.
	_ = sc.share.Remove(aside)
	return nil
}

// smbRandHex returns 8 random hex digits, for temporary names.
func smbRandHex() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// smbCtxErr returns the context's error when it ended (the connection was
// closed because of it), so that a timeout reads as one; err otherwise.
func smbCtxErr(ctx context.Context, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("%w (%v)", ctxErr, err)
	}
	return err
}
