package export

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// PEMDirOptions configure a PEMDir.
type PEMDirOptions struct {
	// Path is the directory that holds one directory per certificate. It
	// must not be empty; a relative path is taken from the working
	// directory and cleaned. It is created (0700) if missing.
	Path string
}

// PEMDir writes every certificate as PEM files into a local directory, in
// the layout certbot and nginx/HAProxy/Apache configs expect:
//
//	Path/NAME/privkey.pem   the key, PKCS #8, mode 0600
//	Path/NAME/cert.pem      the leaf
//	Path/NAME/chain.pem     the intermediates
//	Path/NAME/fullchain.pem the leaf then the intermediates
//
// NAME is Cert.FileName ("_.example.com" for "*.example.com") and
// Path/NAME is mode 0700.
//
// Each file is replaced atomically (writeFileAtomic): a reader sees the
// old file or the new one, never half of one. The four files are not
// replaced as one: privkey.pem is written first and fullchain.pem last,
// so a reader that reacts to fullchain.pem changing (a path watcher, or
// an exec hook that reloads nginx after this target) finds the matching
// key already there. A reader that loads the pair in the short window
// between the two renames sees the new key with the old certificate and
// fails; reload servers from a hook after the delivery, not on a timer.
// If a write fails midway, Deliver reports it and the Dispatcher retries.
//
// The zero value is not usable: build one with NewPEMDir. A PEMDir is
// safe for concurrent use; concurrent deliveries of the same name each
// leave a whole file, the last rename winning per file.
type PEMDir struct {
	path string
}

var (
	_ Exporter = (*PEMDir)(nil)
	_ Files    = (*PEMDir)(nil)
)

// NewPEMDir checks o and returns the exporter. It touches no file.
func NewPEMDir(o PEMDirOptions) (*PEMDir, error) {
	if o.Path == "" {
		return nil, errors.New("pem_dir: path is empty")
	}
	return &PEMDir{path: filepath.Clean(o.Path)}, nil
}

// Deliver writes c's four files into Path/NAME, creating the directories
// if missing. It returns one Result whose Host is Path.
func (d *PEMDir) Deliver(ctx context.Context, c *Cert) []Result {
	start := time.Now()
	err := d.deliver(ctx, c)
	return []Result{{Host: d.path, Err: err, Took: time.Since(start)}}
}

func (d *PEMDir) deliver(ctx context.Context, c *Cert) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("writing %s to %s: %w", c.Name, d.path, err)
	}
	name, err := localFileName(c)
	if err != nil {
		return err
	}
	key, err := c.KeyPEM()
	if err != nil {
		return err
	}
	dir := filepath.Join(d.path, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	// MkdirAll leaves an existing directory's mode alone, and the umask
	// may have narrowed a new one's; the key's directory is 0700 either way.
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("setting the mode of %s: %w", dir, err)
	}
	// The order matters: see PEMDir.
	files := []struct {
		name string
		data []byte
		perm os.FileMode
	}{
		{"privkey.pem", key, 0o600},
		{"cert.pem", c.CertPEM(), 0o644},
		{"chain.pem", c.ChainPEM(), 0o644},
		{"fullchain.pem", c.FullchainPEM(), 0o644},
	}
	for _, f := range files {
		if err := writeFileAtomic(dir, f.name, f.data, f.perm); err != nil {
			return err
		}
	}
	return nil
}

// Test creates Path if missing (as Deliver would), then writes and removes
// a probe file Path/.edge-probe-RANDOM. It changes no certificate.
func (d *PEMDir) Test(ctx context.Context) []Result {
	start := time.Now()
	err := ctx.Err()
	if err == nil {
		if err = os.MkdirAll(d.path, 0o700); err != nil {
			err = fmt.Errorf("creating %s: %w", d.path, err)
		} else {
			err = probeLocalDir(d.path)
		}
	}
	return []Result{{Host: d.path, Err: err, Took: time.Since(start)}}
}

// Paths returns Path/NAME/fullchain.pem and Path/NAME/privkey.pem; a
// PEMDir writes no PFX.
func (d *PEMDir) Paths(c *Cert) (fullchain, key, pfx string) {
	dir := filepath.Join(d.path, c.FileName())
	return filepath.Join(dir, "fullchain.pem"), filepath.Join(dir, "privkey.pem"), ""
}

// localFileName returns c.FileName() if it is one path element, so that a
// name can never write outside the target's directory.
func localFileName(c *Cert) (string, error) {
	name := c.FileName()
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, `/\`) || strings.ContainsRune(name, 0) {
		return "", fmt.Errorf("certificate name %q cannot be a file name", c.Name)
	}
	return name, nil
}

// probeLocalDir writes dir/.edge-probe-RANDOM the way a delivery writes a
// file (temporary file, sync, rename) and removes it.
func probeLocalDir(dir string) error {
	var b [8]byte
	rand.Read(b[:])
	name := ".edge-probe-" + hex.EncodeToString(b[:])
	if err := writeFileAtomic(dir, name, []byte("edge export probe\n"), 0o600); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(dir, name)); err != nil {
		return fmt.Errorf("removing the probe: %w", err)
	}
	return nil
}
