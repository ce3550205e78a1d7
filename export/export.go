// Package export delivers the certificates edge obtains to the servers
// behind it: PEM files, PFX files for IIS's Centralized Certificate Store
// (on a directory or straight to an SMB share), SFTP to Apache hosts, Azure
// Key Vault, and hooks.
//
// One Exporter per target kind, one file each (pem_dir.go, pfx_dir.go,
// smb.go, sftp.go, azure.go, exec.go). The Dispatcher (dispatch.go) owns the
// delivery state: for every (certificate, target) the serial delivered last,
// kept in the certificate storage so that the edges of a farm share it, and
// delivers what is missing or old, with retries, one edge at a time.
//
// Nothing here is on the request path and nothing here touches serving: a
// failed delivery is retried and the certificate keeps being served.
package export

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"strings"
	"time"
)

// Cert is one certificate to deliver, as edge serves it.
type Cert struct {
	// Name is the managed name the certificate was obtained for
	// ("www.example.com", "*.example.com").
	Name string
	// Chain is the leaf first, then the intermediates, as served.
	Chain []*x509.Certificate
	// Key is the leaf's private key (*ecdsa.PrivateKey, *rsa.PrivateKey or
	// ed25519.PrivateKey).
	Key crypto.Signer
}

// Leaf returns the certificate itself.
func (c *Cert) Leaf() *x509.Certificate { return c.Chain[0] }

// Serial returns the leaf's serial number in lower-case hex.
func (c *Cert) Serial() string { return fmt.Sprintf("%x", c.Leaf().SerialNumber) }

// FileName returns Name as a file name: a leading "*" becomes "_", as IIS's
// Centralized Certificate Store expects ("_.example.com.pfx").
func (c *Cert) FileName() string { return FileName(c.Name) }

// FileName returns name with a leading "*" replaced by "_".
func FileName(name string) string {
	if rest, ok := strings.CutPrefix(name, "*"); ok {
		return "_" + rest
	}
	return name
}

// FullchainPEM returns the leaf and intermediates as PEM.
func (c *Cert) FullchainPEM() []byte { return certsPEM(c.Chain) }

// ChainPEM returns the intermediates only, as PEM.
func (c *Cert) ChainPEM() []byte { return certsPEM(c.Chain[1:]) }

// CertPEM returns the leaf only, as PEM.
func (c *Cert) CertPEM() []byte { return certsPEM(c.Chain[:1]) }

// KeyPEM returns the private key as PKCS #8 PEM.
func (c *Cert) KeyPEM() ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(c.Key)
	if err != nil {
		return nil, fmt.Errorf("encoding the key of %s: %w", c.Name, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func certsPEM(certs []*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// Exporter delivers certificates to one target (a directory, a share, a
// set of SFTP hosts, a vault, a hook).
//
// Implementations MUST be safe for concurrent use, honor ctx (cancellation
// and deadline) on every network or process operation, and never put a
// secret (password, key, client secret) in an error or a log line.
type Exporter interface {
	// Deliver writes c to every host of the target, replacing what was
	// there so that a reader never sees half a file. It returns one
	// result per host (one, for a target with a single place); the
	// delivery counts as done only when every result has a nil Err.
	// Deliver is idempotent: delivering the same certificate again is safe.
	Deliver(ctx context.Context, c *Cert) []Result
	// Test is edge export -dry-run: it connects, authenticates, writes and
	// removes a probe (or checks the permission to import), changing no
	// certificate, and returns one result per host.
	Test(ctx context.Context) []Result
}

// Result is the outcome of a delivery or a test on one host of a target.
type Result struct {
	// Host is where: a directory, "server:port", a vault URL, a command.
	Host string
	// Err is nil on success. Its message names the host and the cause and
	// never holds a secret.
	Err error
	// Took is how long the attempt took.
	Took time.Duration
	// Output is what a remote command (sftp then:, exec) printed, trimmed;
	// "" when there is none.
	Output string
}

// Files are what a file-writing target wrote for a certificate, for the
// exec hook's environment (EDGE_CERT_FULLCHAIN, EDGE_CERT_KEY,
// EDGE_CERT_PFX). Exporters that write local files implement it.
type Files interface {
	// Paths returns the local paths written for c ("" when not written):
	// fullchain, key and pfx.
	Paths(c *Cert) (fullchain, key, pfx string)
}
