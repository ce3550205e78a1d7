package export

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// PFXDirOptions configure a PFXDir.
type PFXDirOptions struct {
	// Path is the directory IIS's Centralized Certificate Store reads,
	// local or a mounted share. It must not be empty and must exist: a
	// PFXDir does not create it, so that an unmounted share is an error
	// rather than files on the local disk under the mount point. A
	// relative path is taken from the working directory and cleaned.
	Path string
	// Password protects every PFX file; it must be the one configured in
	// CCS. Empty is allowed (see EncodePFX).
	Password string
	// Legacy selects the 3DES/SHA-1 encoding that Windows Server 2016 and
	// older import; false is AES-256/SHA-256 (see EncodePFX).
	Legacy bool
}

// PFXDir writes one PFX file per certificate into a directory, as IIS's
// Centralized Certificate Store expects: Path/www.example.com.pfx, and
// Path/_.example.com.pfx for "*.example.com" (Cert.FileName). Each file is
// replaced atomically (writeFileAtomic, mode 0600), so IIS never reads
// half of one.
//
// The zero value is not usable: build one with NewPFXDir. A PFXDir is safe
// for concurrent use.
type PFXDir struct {
	path     string
	password string
	legacy   bool
}

var (
	_ Exporter = (*PFXDir)(nil)
	_ Files    = (*PFXDir)(nil)
)

// NewPFXDir checks o and returns the exporter. It touches no file.
func NewPFXDir(o PFXDirOptions) (*PFXDir, error) {
	if o.Path == "" {
		return nil, errors.New("pfx_dir: path is empty")
	}
	return &PFXDir{path: filepath.Clean(o.Path), password: o.Password, legacy: o.Legacy}, nil
}

// Deliver writes c as Path/NAME.pfx. It returns one Result whose Host is
// Path.
func (d *PFXDir) Deliver(ctx context.Context, c *Cert) []Result {
	start := time.Now()
	err := d.deliver(ctx, c)
	return []Result{{Host: d.path, Err: err, Took: time.Since(start)}}
}

func (d *PFXDir) deliver(ctx context.Context, c *Cert) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("writing %s to %s: %w", c.Name, d.path, err)
	}
	name, err := localFileName(c)
	if err != nil {
		return err
	}
	if err := d.checkDir(); err != nil {
		return err
	}
	data, err := EncodePFX(c, d.password, d.legacy)
	if err != nil {
		return err
	}
	return writeFileAtomic(d.path, name+".pfx", data, 0o600)
}

// checkDir reports a missing Path or one that is not a directory.
func (d *PFXDir) checkDir() error {
	fi, err := os.Stat(d.path)
	if err != nil {
		return fmt.Errorf("checking %s: %w", d.path, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("checking %s: not a directory", d.path)
	}
	return nil
}

// Test writes and removes a probe file Path/.edge-probe-RANDOM. It changes
// no certificate.
func (d *PFXDir) Test(ctx context.Context) []Result {
	start := time.Now()
	err := ctx.Err()
	if err == nil {
		if err = d.checkDir(); err == nil {
			err = probeLocalDir(d.path)
		}
	}
	return []Result{{Host: d.path, Err: err, Took: time.Since(start)}}
}

// Paths returns Path/NAME.pfx; a PFXDir writes no PEM files.
func (d *PFXDir) Paths(c *Cert) (fullchain, key, pfx string) {
	return "", "", filepath.Join(d.path, c.FileName()+".pfx")
}
