package export

import (
	"errors"
	"fmt"

	pkcs12 "software.sslmate.com/src/go-pkcs12"
)

// EncodePFX returns c as a PKCS #12 (PFX) file protected by password: the
// key, the leaf, and the intermediates as CA certificates, so that Windows
// imports the chain with it.
//
// The default encoding (legacy false) is pkcs12.Modern2023: PBES2 with
// PBKDF2-HMAC-SHA-256 and AES-256-CBC, MAC HMAC-SHA-256. Windows Server
// 2019 and later, OpenSSL 1.1.1 and later and Java 12 and later read it.
//
// legacy true is pkcs12.LegacyDES: 3DES for both the certificates and the
// key, MAC HMAC-SHA-1, the encoding of OpenSSL's -descert. It is for
// Windows Server 2016 and older, which cannot import AES/SHA-256 PFX
// files. LegacyDES rather than LegacyRC2 (what OpenSSL < 3 and
// pkcs12.Encode produce) because RC2 is only in OpenSSL 3's legacy
// provider, so `openssl pkcs12` without -legacy cannot open an RC2 file,
// whereas 3DES is in the default provider and Windows 2016 imports it.
// The legacy encryption is weak: protect the file by other means (the
// share's ACL).
//
// An empty password is allowed with both encodings (OpenSSL opens such a
// file with -passin pass:); IIS's Centralized Certificate Store is
// configured with the PFX password, so in practice give one. The password
// never appears in an error.
func EncodePFX(c *Cert, password string, legacy bool) ([]byte, error) {
	if c == nil || len(c.Chain) == 0 || c.Key == nil {
		return nil, errors.New("encoding PFX: certificate without a chain or a key")
	}
	enc := pkcs12.Modern2023
	if legacy {
		enc = pkcs12.LegacyDES
	}
	data, err := enc.Encode(c.Key, c.Leaf(), c.Chain[1:], password)
	if err != nil {
		return nil, fmt.Errorf("encoding %s as PFX: %w", c.Name, err)
	}
	return data, nil
}
