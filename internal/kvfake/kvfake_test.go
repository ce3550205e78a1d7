package kvfake

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"software.sslmate.com/src/go-pkcs12"
)

func selfSigned(t *testing.T, serial int64) (*ecdsa.PrivateKey, *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: "www.example.com"},
		DNSNames:     []string{"www.example.com"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return key, leaf
}

func pfx(t *testing.T, enc *pkcs12.Encoder, key any, leaf *x509.Certificate, pwd string) string {
	t.Helper()
	data, err := enc.Encode(key, leaf, nil, pwd)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(data)
}

// call sends one request through the fake's client and returns the status,
// the body and the response.
func call(t *testing.T, s *Server, method, u, token, contentType string, body []byte) (int, string, *http.Response) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, u, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp
}

func TestAzureTokenEndpoint(t *testing.T) {
	s := New(Options{})
	defer s.Close()
	good := url.Values{
		"grant_type":    {"client_credentials"},
		"client_id":     {s.ClientID()},
		"client_secret": {s.Secret()},
		"scope":         {"https://vault.azure.net/.default openid offline_access profile"},
	}
	with := func(k, v string) url.Values {
		f := url.Values{}
		for kk, vv := range good {
			f[kk] = vv
		}
		if v == "" {
			f.Del(k)
		} else {
			f.Set(k, v)
		}
		return f
	}
	for _, tc := range []struct {
		name   string
		tenant string
		form   url.Values
		status int
		want   string
	}{
		{"good", s.TenantID(), good, 200, `"access_token"`},
		{"wrong secret", s.TenantID(), with("client_secret", "nope"), 401, "AADSTS7000215"},
		{"no secret", s.TenantID(), with("client_secret", ""), 401, "AADSTS7000216"},
		{"unknown client", s.TenantID(), with("client_id", newGUID()), 400, "AADSTS700016"},
		{"unknown tenant", newGUID(), good, 400, "AADSTS90002"},
		{"other grant", s.TenantID(), with("grant_type", "password"), 400, "unsupported_grant_type"},
		{"scope without .default", s.TenantID(), with("scope", "https://vault.azure.net/certificates"), 400, "AADSTS1002012"},
		{"unknown resource", s.TenantID(), with("scope", "https://nowhere.example/.default"), 400, "AADSTS500011"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := "https://" + LoginHost + "/" + tc.tenant + "/oauth2/v2.0/token"
			status, body, _ := call(t, s, "POST", u, "", "application/x-www-form-urlencoded", []byte(tc.form.Encode()))
			if status != tc.status || !strings.Contains(body, tc.want) {
				t.Fatalf("got %d %s, want %d with %q", status, body, tc.status, tc.want)
			}
			if strings.Contains(body, s.Secret()) || (tc.form.Get("client_secret") != "" && strings.Contains(body, tc.form.Get("client_secret"))) {
				t.Errorf("the answer echoes the secret: %s", body)
			}
		})
	}
}

func TestAzureDiscovery(t *testing.T) {
	s := New(Options{})
	defer s.Close()
	q := func(host string) string {
		return "https://" + LoginHost + "/common/discovery/instance?" + url.Values{
			"api-version":            {"1.1"},
			"authorization_endpoint": {"https://" + host + "/" + s.TenantID() + "/oauth2/v2.0/authorize"},
		}.Encode()
	}
	if status, body, _ := call(t, s, "GET", q(LoginHost), "", "", nil); status != 200 || !strings.Contains(body, "tenant_discovery_endpoint") {
		t.Errorf("instance discovery for %s: %d %s", LoginHost, status, body)
	}
	if status, body, _ := call(t, s, "GET", q("login.example.com"), "", "", nil); status != 400 || !strings.Contains(body, "AADSTS50049") {
		t.Errorf("instance discovery for an unknown host: %d %s, want 400 AADSTS50049", status, body)
	}
	oidc := "https://" + LoginHost + "/%s/v2.0/.well-known/openid-configuration"
	if status, body, _ := call(t, s, "GET", strings.Replace(oidc, "%s", s.TenantID(), 1), "", "", nil); status != 200 || !strings.Contains(body, `"token_endpoint"`) {
		t.Errorf("openid-configuration: %d %s", status, body)
	}
	if status, body, _ := call(t, s, "GET", strings.Replace(oidc, "%s", newGUID(), 1), "", "", nil); status != 400 || !strings.Contains(body, "AADSTS90002") {
		t.Errorf("openid-configuration of an unknown tenant: %d %s", status, body)
	}
}

func TestAzureVaultImport(t *testing.T) {
	s := New(Options{})
	defer s.Close()
	key, leaf := selfSigned(t, 42)
	otherKey, _ := selfSigned(t, 43)
	tok := s.Token(Resource)
	importURL := func(name string) string { return s.URL() + "/certificates/" + name + "/import?api-version=7.6" }
	body := func(value, pwd string) []byte {
		b, _ := json.Marshal(map[string]any{"value": value, "pwd": pwd})
		return b
	}
	good := body(pfx(t, pkcs12.LegacyDES, key, leaf, "pw"), "pw")

	for _, tc := range []struct {
		name, url, token string
		body             []byte
		status           int
		want             string
	}{
		{"no token", importURL("www-example-com"), "", good, 401, "AKV10000"},
		{"wrong token", importURL("www-example-com"), "kvfake.0123", good, 401, "S2S12005"},
		{"token for another resource", importURL("www-example-com"), s.Token("https://management.azure.com"), good, 401, "AKV10022"},
		{"no api-version", strings.TrimSuffix(importURL("www-example-com"), "?api-version=7.6"), tok, good, 400, "api-version"},
		{"name with dots", importURL("www.example.com"), tok, good, 400, "invalid name"},
		{"name too long", importURL(strings.Repeat("a", 128)), tok, good, 400, "invalid name"},
		{"no value", importURL("www-example-com"), tok, []byte(`{"pwd":"pw"}`), 400, "BadParameter"},
		{"not base64", importURL("www-example-com"), tok, body("%%%", "pw"), 400, "PKCS#12"},
		{"not PKCS12", importURL("www-example-com"), tok, body(base64.StdEncoding.EncodeToString([]byte("hello")), "pw"), 400, "PKCS#12"},
		{"wrong password", importURL("www-example-com"), tok, body(pfx(t, pkcs12.LegacyDES, key, leaf, "pw"), "other"), 400, "PKCS#12"},
		{"key not the leaf's", importURL("www-example-com"), tok, body(pfx(t, pkcs12.LegacyDES, otherKey, leaf, "pw"), "pw"), 400, "does not match"},
		{"not JSON", importURL("www-example-com"), tok, []byte("value=x"), 400, "BadParameter"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, got, resp := call(t, s, "POST", tc.url, tc.token, "application/json", tc.body)
			if status != tc.status || !strings.Contains(got, tc.want) {
				t.Fatalf("got %d %s, want %d with %q", status, got, tc.status, tc.want)
			}
			if status == 401 {
				want := `Bearer authorization="https://login.microsoftonline.com/` + s.TenantID() + `", resource="https://vault.azure.net"`
				if h := resp.Header.Get("WWW-Authenticate"); h != want {
					t.Errorf("WWW-Authenticate = %q, want %q", h, want)
				}
			}
		})
	}
	if n := len(s.Imported("www-example-com")); n != 0 {
		t.Fatalf("refused imports stored %d versions", n)
	}

	// Both encodings go-pkcs12 writes are accepted; each import is a version.
	for i, enc := range []*pkcs12.Encoder{pkcs12.LegacyDES, pkcs12.Modern2023} {
		status, got, _ := call(t, s, "POST", importURL("www-example-com"), tok, "application/json", body(pfx(t, enc, key, leaf, "pw"), "pw"))
		if status != 200 {
			t.Fatalf("import %d: %d %s", i, status, got)
		}
		var b struct {
			ID  string `json:"id"`
			X5t string `json:"x5t"`
			Cer string `json:"cer"`
		}
		if err := json.Unmarshal([]byte(got), &b); err != nil {
			t.Fatal(err)
		}
		vs := s.Imported("www-example-com")
		sum := sha1.Sum(leaf.Raw)
		if len(vs) != i+1 || b.ID != vs[i].ID || !strings.HasPrefix(b.ID, s.URL()+"/certificates/www-example-com/") ||
			b.X5t != base64.RawURLEncoding.EncodeToString(sum[:]) || b.Cer != base64.StdEncoding.EncodeToString(leaf.Raw) {
			t.Fatalf("import %d answered %s; the vault holds %d versions", i, got, len(vs))
		}
		if vs[i].Leaf.SerialNumber.Int64() != 42 {
			t.Errorf("stored serial %v", vs[i].Leaf.SerialNumber)
		}
	}

	// Reads: the newest version, a missing certificate, the list.
	vs := s.Imported("www-example-com")
	if status, got, _ := call(t, s, "GET", s.URL()+"/certificates/www-example-com/?api-version=7.6", tok, "", nil); status != 200 || !strings.Contains(got, vs[1].ID) {
		t.Errorf("get newest: %d %s", status, got)
	}
	if status, got, _ := call(t, s, "GET", s.URL()+"/certificates/www-example-com/"+vs[0].Version+"?api-version=7.6", tok, "", nil); status != 200 || !strings.Contains(got, vs[0].ID) {
		t.Errorf("get a version: %d %s", status, got)
	}
	if status, got, _ := call(t, s, "GET", s.URL()+"/certificates/nothing/?api-version=7.6", tok, "", nil); status != 404 || !strings.Contains(got, "CertificateNotFound") {
		t.Errorf("get a missing certificate: %d %s", status, got)
	}
	if status, got, _ := call(t, s, "GET", s.URL()+"/certificates?api-version=7.6", tok, "", nil); status != 200 || !strings.Contains(got, s.URL()+"/certificates/www-example-com\"") {
		t.Errorf("list: %d %s", status, got)
	}
}

func TestAzureVaultPermissions(t *testing.T) {
	s := New(Options{Permissions: []string{"list"}})
	defer s.Close()
	key, leaf := selfSigned(t, 1)
	tok := s.Token(Resource)
	b, _ := json.Marshal(map[string]any{"value": pfx(t, pkcs12.LegacyDES, key, leaf, "pw"), "pwd": "pw"})
	status, got, _ := call(t, s, "POST", s.URL()+"/certificates/c/import?api-version=7.6", tok, "application/json", b)
	if status != 403 || !strings.Contains(got, "does not have certificates import permission") || !strings.Contains(got, "AccessDenied") {
		t.Errorf("import without the permission: %d %s, want 403", status, got)
	}
	if status, got, _ = call(t, s, "GET", s.URL()+"/certificates?api-version=7.6", tok, "", nil); status != 200 {
		t.Errorf("list with the permission: %d %s", status, got)
	}
	if status, got, _ = call(t, s, "GET", s.URL()+"/certificates/c/?api-version=7.6", tok, "", nil); status != 403 {
		t.Errorf("get without the permission: %d %s, want 403", status, got)
	}
}

func TestAzureClientRefusesOtherHosts(t *testing.T) {
	s := New(Options{})
	defer s.Close()
	for _, u := range []string{"https://example.com/", "https://other.vault.azure.net/certificates?api-version=7.6"} {
		resp, err := s.Client().Get(u)
		if err == nil {
			resp.Body.Close()
			t.Errorf("GET %s reached somewhere", u)
		}
	}
}

func TestAzureIMDS(t *testing.T) {
	s := New(Options{})
	defer s.Close()
	base := "http://" + IMDSHost + "/metadata/identity/oauth2/token?"
	get := func(q url.Values, metadata bool) (int, string) {
		req, _ := http.NewRequestWithContext(t.Context(), "GET", base+q.Encode(), nil)
		if metadata {
			req.Header.Set("Metadata", "true")
		}
		resp, err := s.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	q := url.Values{"api-version": {"2018-02-01"}, "resource": {Resource}}
	for _, tc := range []struct {
		name     string
		q        url.Values
		metadata bool
		status   int
		want     string
	}{
		{"system-assigned", q, true, 200, `"access_token"`},
		{"user-assigned", url.Values{"api-version": q["api-version"], "resource": q["resource"], "client_id": {s.ClientID()}}, true, 200, `"access_token"`},
		{"no Metadata header", q, false, 400, "Required metadata header"},
		{"identity not assigned", url.Values{"api-version": q["api-version"], "resource": q["resource"], "client_id": {newGUID()}}, true, 400, "Identity not found"},
		{"unknown resource", url.Values{"api-version": q["api-version"], "resource": {"https://nowhere.example"}}, true, 400, "AADSTS500011"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if status, body := get(tc.q, tc.metadata); status != tc.status || !strings.Contains(body, tc.want) {
				t.Fatalf("got %d %s, want %d with %q", status, body, tc.status, tc.want)
			}
		})
	}
}
