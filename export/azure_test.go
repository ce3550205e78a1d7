package export

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/farmedge/edge/internal/kvfake"
)

func newAzureForFake(t *testing.T, kv *kvfake.Server, secret string) *AzureKeyVault {
	t.Helper()
	a, err := NewAzureKeyVault(AzureKeyVaultOptions{
		Vault:         kv.URL(),
		TenantID:      kv.TenantID(),
		ClientID:      kv.ClientID(),
		ClientSecret:  secret,
		AuthorityHost: kv.AuthorityHost(),
		Transport:     kv.Client(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestAzureKeyVaultName(t *testing.T) {
	long := strings.Repeat("a", 60) + "." + strings.Repeat("b", 60) + ".example.com"
	for _, tc := range []struct{ host, want string }{
		{"www.example.com", "www-example-com"},
		{"*.example.com", "wildcard-example-com"},
		{"Edge-01.example.com", "Edge-01-example-com"},
		{"a_b.example.com", "a-b-example-com"},
		{"xn--bcher-kva.example", "xn--bcher-kva-example"},
	} {
		t.Run(tc.host, func(t *testing.T) {
			if got := KeyVaultName(tc.host); got != tc.want {
				t.Errorf("KeyVaultName(%q) = %q, want %q", tc.host, got, tc.want)
			}
		})
	}
	t.Run("long", func(t *testing.T) {
		got := KeyVaultName(long)
		if len(got) != 127 || !keyVaultName.MatchString(got) {
			t.Errorf("KeyVaultName(long) = %q (%d chars), want a valid name of 127", got, len(got))
		}
		if other := KeyVaultName(long + "x"); other == got {
			t.Errorf("two long hosts share the name %q", got)
		}
	})
}

func TestAzureNewValidates(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    AzureKeyVaultOptions
		want string // "" means valid
	}{
		{"client secret", AzureKeyVaultOptions{Vault: "https://v.vault.azure.net", TenantID: "t", ClientID: "c", ClientSecret: "s"}, ""},
		{"managed identity", AzureKeyVaultOptions{Vault: "https://v.vault.azure.net/"}, ""},
		{"user-assigned identity", AzureKeyVaultOptions{Vault: "https://v.vault.azure.net", ClientID: "c"}, ""},
		{"no vault", AzureKeyVaultOptions{}, "vault URL is required"},
		{"http", AzureKeyVaultOptions{Vault: "http://v.vault.azure.net"}, "want https://"},
		{"path", AzureKeyVaultOptions{Vault: "https://v.vault.azure.net/certificates"}, "want https://"},
		{"no host", AzureKeyVaultOptions{Vault: "https:///"}, "want https://"},
		{"secret without tenant", AzureKeyVaultOptions{Vault: "https://v.vault.azure.net", ClientID: "c", ClientSecret: "hunter2"}, "needs tenant ID and client ID"},
		{"secret without client", AzureKeyVaultOptions{Vault: "https://v.vault.azure.net", TenantID: "t", ClientSecret: "hunter2"}, "needs tenant ID and client ID"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewAzureKeyVault(tc.o)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("NewAzureKeyVault: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("NewAzureKeyVault: got %v, want an error with %q", err, tc.want)
			case err != nil && strings.Contains(err.Error(), "hunter2"):
				t.Fatalf("error holds the secret: %v", err)
			}
		})
	}
}

// TestAzureDeliver imports through the real SDK (azidentity's client
// secret credential, azcertificates' challenge policy) into the fake.
func TestAzureDeliver(t *testing.T) {
	kv := kvfake.New(kvfake.Options{})
	defer kv.Close()
	a := newAzureForFake(t, kv, kv.Secret())

	for _, name := range []string{"www.example.com", "*.example.com"} {
		t.Run(name, func(t *testing.T) {
			kvName := KeyVaultName(name)
			for i, serial := range []int64{1001, 1002} {
				c := testCert(t, name, serial)
				res := a.Deliver(t.Context(), c)
				if len(res) != 1 || res[0].Err != nil {
					t.Fatalf("Deliver: %+v", res)
				}
				if want := kv.URL() + "/certificates/" + kvName; res[0].Host != want {
					t.Errorf("Host = %q, want %q", res[0].Host, want)
				}
				vs := kv.Imported(kvName)
				if len(vs) != i+1 {
					t.Fatalf("the vault holds %d versions of %s, want %d", len(vs), kvName, i+1)
				}
				v := vs[len(vs)-1]
				if got := fmt.Sprintf("%x", v.Leaf.SerialNumber); got != c.Serial() {
					t.Errorf("newest version's serial = %s, want %s", got, c.Serial())
				}
				if len(v.Chain) != 2 || !v.Chain[1].Equal(c.Chain[1]) {
					t.Errorf("the vault holds a chain of %d, want the leaf and the intermediate", len(v.Chain))
				}
				if v.Tags["edge-name"] != name || v.Tags["edge-serial"] != c.Serial() {
					t.Errorf("tags = %v", v.Tags)
				}
			}
		})
	}
	t.Logf("requests: %q", kv.Requests())
}

func TestAzureWrongSecret(t *testing.T) {
	kv := kvfake.New(kvfake.Options{})
	defer kv.Close()
	const wrong = "wrong~SecretValue-1234567890"
	a := newAzureForFake(t, kv, wrong)

	for _, tc := range []struct {
		name string
		run  func() []Result
	}{
		{"Deliver", func() []Result { return a.Deliver(t.Context(), testCert(t, "www.example.com", 7)) }},
		{"Test", func() []Result { return a.Test(t.Context()) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := tc.run()
			if len(res) != 1 || res[0].Err == nil {
				t.Fatalf("%s with a wrong secret: %+v, want an error", tc.name, res)
			}
			msg := res[0].Err.Error()
			t.Logf("error: %s", msg)
			for _, want := range []string{kv.URL(), "Entra ID", "AADSTS7000215", "Invalid client secret"} {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q does not name %q", msg, want)
				}
			}
			if strings.Contains(msg, wrong) || strings.Contains(msg, kv.Secret()) || strings.Contains(msg, "\n") {
				t.Errorf("error holds a secret or spans lines: %q", msg)
			}
		})
	}
	if n := len(kv.Imported(KeyVaultName("www.example.com"))); n != 0 {
		t.Errorf("the vault holds %d versions after a failed login", n)
	}
}

func TestAzureTest(t *testing.T) {
	for _, tc := range []struct {
		name        string
		perms       []string
		secret      bool // the right one
		testOK      bool
		deliverOK   bool
		unauthorize bool // the failure is ErrKeyVaultNotAuthorized
	}{
		{"all permissions", nil, true, true, true, false},
		{"wrong secret", nil, false, false, false, false},
		// Test proves list, not import: it passes and Deliver fails.
		{"list only", []string{"list"}, true, true, false, true},
		{"import only", []string{"import"}, true, false, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kv := kvfake.New(kvfake.Options{Permissions: tc.perms})
			defer kv.Close()
			secret := kv.Secret()
			if !tc.secret {
				secret = "not-the-secret"
			}
			a := newAzureForFake(t, kv, secret)

			res := a.Test(t.Context())
			if len(res) != 1 || res[0].Host != kv.URL() {
				t.Fatalf("Test: %+v", res)
			}
			if (res[0].Err == nil) != tc.testOK {
				t.Fatalf("Test: err = %v, want ok %v", res[0].Err, tc.testOK)
			}
			if res[0].Err != nil && tc.unauthorize && !errors.Is(res[0].Err, ErrKeyVaultNotAuthorized) {
				t.Errorf("Test: %v, want ErrKeyVaultNotAuthorized", res[0].Err)
			}
			d := a.Deliver(t.Context(), testCert(t, "www.example.com", 9))
			if (d[0].Err == nil) != tc.deliverOK {
				t.Fatalf("Deliver: err = %v, want ok %v", d[0].Err, tc.deliverOK)
			}
			if d[0].Err != nil {
				t.Logf("Deliver: %v", d[0].Err)
				if tc.unauthorize && !errors.Is(d[0].Err, ErrKeyVaultNotAuthorized) {
					t.Errorf("Deliver: %v, want ErrKeyVaultNotAuthorized", d[0].Err)
				}
				if !strings.Contains(d[0].Err.Error(), kv.URL()) || strings.Contains(d[0].Err.Error(), "\n") {
					t.Errorf("Deliver error does not name the vault in one line: %q", d[0].Err)
				}
			}
		})
	}
}

func TestAzureCancelled(t *testing.T) {
	kv := kvfake.New(kvfake.Options{})
	defer kv.Close()
	a := newAzureForFake(t, kv, kv.Secret())
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	res := a.Deliver(ctx, testCert(t, "www.example.com", 3))
	if res[0].Err == nil || !errors.Is(res[0].Err, context.Canceled) {
		t.Fatalf("Deliver with a cancelled context: %v, want context.Canceled", res[0].Err)
	}
}

func TestAzureBadCertName(t *testing.T) {
	kv := kvfake.New(kvfake.Options{})
	defer kv.Close()
	a, err := NewAzureKeyVault(AzureKeyVaultOptions{
		Vault: kv.URL(), TenantID: kv.TenantID(), ClientID: kv.ClientID(), ClientSecret: kv.Secret(),
		AuthorityHost: kv.AuthorityHost(), Transport: kv.Client(),
		CertName: func(name string) string { return name }, // dots: refused
	})
	if err != nil {
		t.Fatal(err)
	}
	res := a.Deliver(t.Context(), testCert(t, "www.example.com", 4))
	if res[0].Err == nil || !strings.Contains(res[0].Err.Error(), "not a Key Vault certificate name") {
		t.Fatalf("Deliver: %v, want a name error", res[0].Err)
	}
	if len(kv.Requests()) != 0 {
		t.Errorf("a bad name reached the network: %q", kv.Requests())
	}
}

// miFake is the fake that the managed identity tests share, for the whole
// test binary: MSAL for Go caches managed identity tokens in a process-wide
// cache, so a second fake would be sent the first one's token (and refuse
// it, as Key Vault would a token it did not issue).
var miFake = sync.OnceValue(func() *kvfake.Server { return kvfake.New(kvfake.Options{}) })

// TestAzureManagedIdentity delivers with no client secret: azidentity's
// managed identity credential asks the fake's IMDS for the token.
func TestAzureManagedIdentity(t *testing.T) {
	// The SDK picks the managed identity source from the environment;
	// these make it IMDS, as on a VM.
	for _, v := range []string{"IDENTITY_ENDPOINT", "IDENTITY_HEADER", "IDENTITY_SERVER_THUMBPRINT", "MSI_ENDPOINT", "MSI_SECRET", "IMDS_ENDPOINT"} {
		t.Setenv(v, "")
	}
	kv := miFake()
	for _, tc := range []struct {
		name, clientID string
		ok             bool
	}{
		{"system-assigned", "", true},
		{"user-assigned", kv.ClientID(), true},
		{"not assigned", "00000000-0000-0000-0000-000000000001", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := NewAzureKeyVault(AzureKeyVaultOptions{Vault: kv.URL(), ClientID: tc.clientID, Transport: kv.Client()})
			if err != nil {
				t.Fatal(err)
			}
			c := testCert(t, "www.example.com", time.Now().UnixNano())
			res := a.Deliver(t.Context(), c)
			if (res[0].Err == nil) != tc.ok {
				t.Fatalf("Deliver: %v, want ok %v", res[0].Err, tc.ok)
			}
			if !tc.ok {
				t.Logf("Deliver: %v", res[0].Err)
				if !strings.Contains(res[0].Err.Error(), "managed identity") {
					t.Errorf("error does not say the managed identity failed: %v", res[0].Err)
				}
				return
			}
			vs := kv.Imported("www-example-com")
			if len(vs) == 0 || fmt.Sprintf("%x", vs[len(vs)-1].Leaf.SerialNumber) != c.Serial() {
				t.Fatalf("the vault's newest version is not the delivered one (%d versions)", len(vs))
			}
		})
	}
}
