// Package kvfake is a local stand-in for the parts of Azure Key Vault and
// Microsoft Entra ID (Azure AD) that the Azure SDK for Go calls when edge
// imports a certificate: Entra ID's OpenID metadata, instance discovery and
// client-credentials token endpoint (what azidentity's ClientSecretCredential
// and MSAL for Go request), and Key Vault's bearer challenge, certificate
// import, get and list (what azcertificates v1.4.0 requests, API 7.6).
//
// It checks requests the way the services do: Entra ID refuses an unknown
// tenant, an unknown client and a wrong secret with AADSTS error bodies;
// Key Vault answers a request without a token with its 401 challenge,
// refuses a token it did not issue, for another tenant or for another
// resource, a certificate name outside [0-9a-zA-Z-]{1,127}, a value that is
// not a PKCS #12 file readable with the given password or whose key is not
// the leaf's, and, with Options.Permissions, an operation the application
// has no access policy for (403).
//
// The fake answers under the services' own host names: the vault at
// https://NAME.vault.azure.net, Entra ID at https://login.microsoftonline.com
// (both served with a certificate for those names that only Client trusts)
// and IMDS at http://169.254.169.254. Client sends those hosts to the fake and
// refuses every other. So the SDK runs its production path, challenge
// resource verification and Entra ID's trusted-host logic included, with no
// option set for the test.
//
// It is test code: certificates live in memory and nothing is persisted.
package kvfake

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"time"
)

// Hosts the fake answers for, as in Azure's public cloud.
const (
	// LoginHost is Entra ID's authority host.
	LoginHost = "login.microsoftonline.com"
	// VaultDomain is the DNS suffix of every vault; Resource is the token
	// audience Key Vault asks for in its challenge.
	VaultDomain = "vault.azure.net"
	Resource    = "https://vault.azure.net"
	// IMDSHost is the Azure instance metadata service, which gives a
	// VM's managed identity its tokens.
	IMDSHost = "169.254.169.254"
)

// Options configure New. The zero value is a vault named "edgetest" in a
// random tenant, with one application that may do everything.
type Options struct {
	// VaultName is the vault's name, the first label of its host
	// (default "edgetest").
	VaultName string
	// TenantID, ClientID and Secret are the directory, the application
	// (client) ID and its client secret (random when empty).
	TenantID, ClientID, Secret string
	// The application is also the host's managed identity: IMDS issues
	// its tokens to a system-assigned request (no client_id) and to a
	// user-assigned one for ClientID.
	//
	// Permissions are the application's certificate permissions in the
	// vault's access policy ("get", "list", "import"); nil grants all.
	Permissions []string
}

// Version is one version of a certificate held by the vault.
type Version struct {
	// ID is the certificate version's identifier,
	// https://NAME.vault.azure.net/certificates/CERT/VERSION.
	ID string
	// Version is the 32-hex-digit version.
	Version string
	// Chain is what the PKCS #12 held, leaf first; Leaf is Chain[0].
	Chain []*x509.Certificate
	Leaf  *x509.Certificate
	// Tags are the import's tags.
	Tags map[string]string
	// Created is when it was imported.
	Created time.Time
}

// Server is a running fake. It is safe for concurrent use.
type Server struct {
	opts Options
	srv  *httptest.Server
	imds *httptest.Server // plain HTTP, as 169.254.169.254:80
	pool *x509.CertPool

	mu       sync.Mutex
	tokens   map[string]token
	certs    map[string][]Version // by certificate name, oldest first
	requests []string
}

// New starts a fake on a free 127.0.0.1 port. Close stops it.
func New(opts Options) *Server {
	if opts.VaultName == "" {
		opts.VaultName = "edgetest"
	}
	if opts.TenantID == "" {
		opts.TenantID = newGUID()
	}
	if opts.ClientID == "" {
		opts.ClientID = newGUID()
	}
	if opts.Secret == "" {
		opts.Secret = "kvfake~" + rand.Text()
	}
	if opts.Permissions == nil {
		opts.Permissions = []string{"get", "list", "import"}
	}
	s := &Server{opts: opts, tokens: map[string]token{}, certs: map[string][]Version{}}

	mux := http.NewServeMux()
	s.aadRoutes(mux)
	s.vaultRoutes(mux)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "kvfake: no such endpoint: "+r.Method+" "+r.Host+r.URL.Path, http.StatusNotFound)
	})

	cert, pool := serverCert(s.vaultHost(), LoginHost)
	s.pool = pool
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.requests = append(s.requests, r.Method+" "+r.Host+r.URL.Path)
		s.mu.Unlock()
		mux.ServeHTTP(w, r)
	}))
	s.srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	s.srv.StartTLS()
	s.imds = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.requests = append(s.requests, r.Method+" "+r.Host+r.URL.Path)
		s.mu.Unlock()
		s.imdsToken(w, r)
	}))
	return s
}

// Close stops the server.
func (s *Server) Close() {
	s.srv.Close()
	s.imds.Close()
}

// URL is the vault's URL, "https://NAME.vault.azure.net", reachable through
// Client only.
func (s *Server) URL() string { return "https://" + s.vaultHost() }

// AuthorityHost is Entra ID's authority host, "https://login.microsoftonline.com/"
// (azidentity's cloud.AzurePublic), reachable through Client only.
func (s *Server) AuthorityHost() string { return "https://" + LoginHost + "/" }

// TenantID, ClientID and Secret are the credentials Entra ID accepts.
func (s *Server) TenantID() string { return s.opts.TenantID }

// ClientID is the application (client) ID Entra ID knows.
func (s *Server) ClientID() string { return s.opts.ClientID }

// Secret is the application's client secret.
func (s *Server) Secret() string { return s.opts.Secret }

// Client returns an HTTP client that sends requests for the vault's host
// and login.microsoftonline.com (port 443) to the fake and trusts the
// fake's certificate for them, and requests for the instance metadata
// service (http://169.254.169.254) to the fake's IMDS; other hosts are
// refused. Give it to the SDK as azcore.ClientOptions.Transport.
func (s *Server) Client() *http.Client {
	tlsAddr, imdsAddr := s.srv.Listener.Addr().String(), s.imds.Listener.Addr().String()
	var d net.Dialer
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, hostport string) (net.Conn, error) {
			switch hostport {
			case s.vaultHost() + ":443", LoginHost + ":443":
				return d.DialContext(ctx, network, tlsAddr)
			case IMDSHost + ":80":
				return d.DialContext(ctx, network, imdsAddr)
			}
			return nil, fmt.Errorf("kvfake: refusing a connection to %s", hostport)
		},
		TLSClientConfig:   &tls.Config{RootCAs: s.pool, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2: true,
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: tr}
}

// Imported returns the versions of certificate name the vault holds,
// oldest first.
func (s *Server) Imported(name string) []Version {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.certs[name])
}

// Requests returns every request served so far, as "METHOD host/path".
func (s *Server) Requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

func (s *Server) vaultHost() string { return s.opts.VaultName + "." + VaultDomain }

// serverCert makes a self-signed certificate for hosts and a pool that
// trusts it.
func serverCert(hosts ...string) (tls.Certificate, *x509.CertPool) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic("kvfake: " + err.Error())
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "kvfake"},
		DNSNames:              hosts,
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		panic("kvfake: " + err.Error())
	}
	leaf, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

func newGUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%x", b)
}
