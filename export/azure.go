package export

import (
	"context"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azcertificates"
)

// ErrKeyVaultNotAuthorized is in the chain of an AzureKeyVault error when
// Key Vault answered 401 or 403: the application authenticated but may not
// do the operation.
var ErrKeyVaultNotAuthorized = errors.New("not authorized: check the app's access policy / RBAC role (Key Vault Certificates Officer)")

// AzureKeyVaultOptions configure NewAzureKeyVault.
type AzureKeyVaultOptions struct {
	// Vault is the vault's URL, "https://NAME.vault.azure.net" (required).
	Vault string
	// TenantID, ClientID and ClientSecret are an application's client
	// secret credential in Microsoft Entra ID. When ClientSecret is empty,
	// the host's managed identity is used instead: the user-assigned one
	// whose client ID is ClientID when set, else the system-assigned one.
	TenantID, ClientID, ClientSecret string
	// AuthorityHost is Entra ID's authority for a sovereign cloud
	// ("https://login.microsoftonline.us/"); "" is Azure's public cloud,
	// https://login.microsoftonline.com/ (the AZURE_AUTHORITY_HOST
	// environment variable is not consulted).
	AuthorityHost string
	// Transport sends the SDK's HTTP requests, to Entra ID and to the
	// vault; nil is the SDK's default (an http.Client per process, with
	// proxy settings from the environment). Tests give one that reaches a
	// local fake.
	Transport policy.Transporter
	// CertName maps a certificate's managed name to its name in the vault;
	// nil is KeyVaultName.
	CertName func(name string) string
}

// AzureKeyVault imports certificates into an Azure Key Vault: each delivery
// adds a version of the certificate under its name, and whatever reads the
// vault (App Gateway, App Service, Front Door, a VM extension) takes the
// newest version.
//
// Build it with NewAzureKeyVault; its zero value is not usable. It is safe
// for concurrent use.
type AzureKeyVault struct {
	vault    string
	client   *azcertificates.Client
	certName func(string) string
	secret   string // to scrub from errors, never printed
	authWith string // "Microsoft Entra ID" or "the managed identity endpoint"
}

var _ Exporter = (*AzureKeyVault)(nil)

// NewAzureKeyVault validates o and builds the exporter. It makes no
// request: the credential is used on the first Deliver or Test.
func NewAzureKeyVault(o AzureKeyVaultOptions) (*AzureKeyVault, error) {
	u, err := url.Parse(o.Vault)
	switch {
	case o.Vault == "":
		return nil, errors.New("azure key vault: vault URL is required")
	case err != nil:
		return nil, fmt.Errorf("azure key vault: vault URL %q: %w", o.Vault, err)
	case u.Scheme != "https" || u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "":
		return nil, fmt.Errorf("azure key vault: vault URL %q: want https://NAME.vault.azure.net", o.Vault)
	}
	vault := "https://" + u.Host
	if o.ClientSecret != "" && (o.TenantID == "" || o.ClientID == "") {
		return nil, fmt.Errorf("azure key vault %s: a client secret needs tenant ID and client ID", vault)
	}

	co := azcore.ClientOptions{Cloud: cloud.AzurePublic}
	if o.AuthorityHost != "" {
		co.Cloud = cloud.Configuration{ActiveDirectoryAuthorityHost: o.AuthorityHost, Services: map[cloud.ServiceName]cloud.ServiceConfiguration{}}
	}
	if o.Transport != nil {
		co.Transport = o.Transport
	}
	var cred azcore.TokenCredential
	if o.ClientSecret != "" {
		cred, err = azidentity.NewClientSecretCredential(o.TenantID, o.ClientID, o.ClientSecret,
			&azidentity.ClientSecretCredentialOptions{ClientOptions: co})
	} else {
		mo := &azidentity.ManagedIdentityCredentialOptions{ClientOptions: co}
		if o.ClientID != "" {
			mo.ID = azidentity.ClientID(o.ClientID)
		}
		cred, err = azidentity.NewManagedIdentityCredential(mo)
	}
	if err != nil {
		return nil, fmt.Errorf("azure key vault %s: credential: %s", vault, scrub(err.Error(), o.ClientSecret))
	}
	// Challenge resource verification stays on: the vault's 401 must name
	// a resource whose domain the vault's host is under
	// (https://aka.ms/azsdk/blog/vault-uri).
	client, err := azcertificates.NewClient(vault, cred, &azcertificates.ClientOptions{ClientOptions: co})
	if err != nil {
		return nil, fmt.Errorf("azure key vault %s: %w", vault, err)
	}
	a := &AzureKeyVault{vault: vault, client: client, certName: o.CertName, secret: o.ClientSecret, authWith: "Microsoft Entra ID"}
	if o.ClientSecret == "" {
		a.authWith = "the managed identity endpoint"
	}
	if a.certName == nil {
		a.certName = KeyVaultName
	}
	return a, nil
}

// keyVaultName is Key Vault's rule for object names.
var keyVaultName = regexp.MustCompile(`^[0-9a-zA-Z-]{1,127}$`)

// KeyVaultName returns host as a Key Vault certificate name, which may hold
// only letters, digits and dashes, 1 to 127 of them: a leading "*." becomes
// "wildcard-", and every other character that is not a letter, digit or
// dash becomes a dash ("www.example.com" -> "www-example-com",
// "*.example.com" -> "wildcard-example-com"). A result over 127 characters
// is cut to 118 and ends with "-" and 8 hex digits of the host's SHA-256.
//
// Different hosts can share a name ("a.b.com" and "a-b.com",
// "*.example.com" and "wildcard.example.com"); a target that delivers
// such a pair sets AzureKeyVaultOptions.CertName.
func KeyVaultName(host string) string {
	name := host
	if rest, ok := strings.CutPrefix(host, "*."); ok {
		name = "wildcard-" + rest
	}
	name = strings.Map(func(r rune) rune {
		if r == '-' || ('0' <= r && r <= '9') || ('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z') {
			return r
		}
		return '-'
	}, name)
	if len(name) > 127 {
		sum := sha256.Sum256([]byte(host))
		name = name[:118] + "-" + hex.EncodeToString(sum[:4])
	}
	return name
}

// Deliver imports c as a new version of the vault's certificate
// CertName(c.Name). Delivering the same certificate again adds a version
// with the same content, which is harmless.
//
// The certificate travels as PKCS #12 (Key Vault's default content type,
// application/x-pkcs12, the form App Gateway and App Service read from the
// vault; importing PEM would need a policy that changes the secret's
// content type for every reader) under a random one-time password. The PFX
// is encrypted the legacy way (3DES, SHA-1 MAC): Key Vault has refused
// AES-256 PKCS #12 files (MicrosoftDocs/azure-docs#39861), the file exists
// only inside this TLS request, and the vault re-protects the key itself.
func (a *AzureKeyVault) Deliver(ctx context.Context, c *Cert) []Result {
	start := time.Now()
	name := a.certName(c.Name)
	host := a.vault + "/certificates/" + name
	res := Result{Host: host}
	res.Err = a.importCert(ctx, name, c)
	res.Took = time.Since(start)
	return []Result{res}
}

func (a *AzureKeyVault) importCert(ctx context.Context, name string, c *Cert) error {
	if !keyVaultName.MatchString(name) {
		return fmt.Errorf("azure key vault %s: %q is not a Key Vault certificate name (letters, digits and dashes, 1-127)", a.vault, name)
	}
	password := rand.Text()
	pfx, err := EncodePFX(c, password, true)
	if err != nil {
		return fmt.Errorf("azure key vault %s: importing %s: %w", a.vault, name, err)
	}
	resp, err := a.client.ImportCertificate(ctx, name, azcertificates.ImportCertificateParameters{
		Base64EncodedCertificate: to.Ptr(base64.StdEncoding.EncodeToString(pfx)),
		Password:                 &password,
		Tags: map[string]*string{
			"edge-name":   to.Ptr(c.Name),
			"edge-serial": to.Ptr(c.Serial()),
		},
	}, nil)
	if err != nil {
		return a.explain("importing "+name, err)
	}
	// The vault answers with what it now holds: it must be this leaf.
	sum := sha1.Sum(c.Leaf().Raw)
	if string(resp.X509Thumbprint) != string(sum[:]) {
		return fmt.Errorf("azure key vault %s: importing %s: the vault holds thumbprint %x, want %x", a.vault, name, resp.X509Thumbprint, sum)
	}
	return nil
}

// Test is the dry run: it authenticates and reads the first page of the
// vault's certificate list, changing nothing. A pass proves the credential (Entra ID issued a
// token for Key Vault), the network path to Entra ID and to the vault, the
// vault's challenge (tenant and resource) and the certificates/list
// permission. It does not prove certificates/import: Key Vault grants
// permissions one by one, and nothing short of an import exercises that
// one, so a Deliver can still fail with ErrKeyVaultNotAuthorized after a
// Test passed.
func (a *AzureKeyVault) Test(ctx context.Context) []Result {
	start := time.Now()
	res := Result{Host: a.vault}
	pager := a.client.NewListCertificatePropertiesPager(nil)
	if _, err := pager.NextPage(ctx); err != nil {
		res.Err = a.explain("listing certificates", err)
	}
	res.Took = time.Since(start)
	return []Result{res}
}

// keyVaultError is an SDK error retold in one line, the SDK's error (and
// ErrKeyVaultNotAuthorized, for a 401 or 403) kept in the chain.
type keyVaultError struct {
	msg  string
	errs []error
}

func (e *keyVaultError) Error() string   { return e.msg }
func (e *keyVaultError) Unwrap() []error { return e.errs }

// explain turns an SDK error into one line that names the vault, the
// operation and the cause. The SDK's own messages span lines (request,
// response, body); the cause is taken from Entra ID's error_description or
// Key Vault's error.message. The client secret is scrubbed from the
// message, though neither service echoes it.
func (a *AzureKeyVault) explain(op string, err error) error {
	prefix := "azure key vault " + a.vault + ": " + op + ": "
	var afe *azidentity.AuthenticationFailedError
	var re *azcore.ResponseError
	switch {
	case errors.As(err, &afe):
		cause := firstLine(err.Error())
		if afe.RawResponse != nil {
			cause = fmt.Sprintf("HTTP %d", afe.RawResponse.StatusCode)
			if d := aadDescription(afe.RawResponse); d != "" {
				cause += ": " + d
			}
		}
		return &keyVaultError{scrub(prefix+"authenticating to "+a.authWith+": "+cause, a.secret), []error{err}}
	case errors.As(err, &re):
		cause := fmt.Sprintf("HTTP %d", re.StatusCode)
		if re.ErrorCode != "" {
			cause += " " + re.ErrorCode
		}
		if m := kvMessage(re.RawResponse); m != "" {
			cause += ": " + m
		}
		if re.StatusCode == http.StatusUnauthorized || re.StatusCode == http.StatusForbidden {
			return &keyVaultError{scrub(prefix+ErrKeyVaultNotAuthorized.Error()+" ("+cause+")", a.secret), []error{ErrKeyVaultNotAuthorized, err}}
		}
		return &keyVaultError{scrub(prefix+cause, a.secret), []error{err}}
	}
	return &keyVaultError{scrub(prefix+firstLine(err.Error()), a.secret), []error{err}}
}

// aadDescription is the first line of an Entra ID error's
// error_description ("AADSTS7000215: Invalid client secret provided. ...").
func aadDescription(resp *http.Response) string {
	body, err := runtime.Payload(resp)
	if err != nil {
		return ""
	}
	var e struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if json.Unmarshal(body, &e) != nil {
		return ""
	}
	if e.Description == "" {
		return e.Error
	}
	return firstLine(e.Description)
}

// kvMessage is Key Vault's error.message.
func kvMessage(resp *http.Response) string {
	if resp == nil {
		return ""
	}
	body, err := runtime.Payload(resp)
	if err != nil {
		return ""
	}
	var e struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &e) != nil {
		return ""
	}
	return firstLine(e.Error.Message)
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(s)
}

func scrub(s, secret string) string {
	if secret == "" {
		return s
	}
	return strings.ReplaceAll(s, secret, "[redacted]")
}
