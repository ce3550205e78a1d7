package kvfake

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"software.sslmate.com/src/go-pkcs12"
)

// apiVersions are the Key Vault data-plane versions the fake accepts.
var apiVersions = []string{"2016-10-01", "7.0", "7.1", "7.2", "7.3", "7.4", "7.5", "7.6"}

// validName is Key Vault's rule for object names.
var validName = regexp.MustCompile(`^[0-9a-zA-Z-]{1,127}$`)

func (s *Server) vaultRoutes(mux *http.ServeMux) {
	h := s.vaultHost()
	mux.HandleFunc("GET "+h+"/certificates", s.vault("list", s.listCertificates))
	mux.HandleFunc("GET "+h+"/certificates/{name}/{$}", s.vault("get", s.getCertificate))
	mux.HandleFunc("GET "+h+"/certificates/{name}", s.vault("get", s.getCertificate))
	mux.HandleFunc("GET "+h+"/certificates/{name}/{version}", s.vault("get", s.getCertificate))
	mux.HandleFunc("POST "+h+"/certificates/{name}/import", s.vault("import", s.importCertificate))
}

// kvError is the body of Key Vault's errors.
type kvError struct {
	Error kvErrorDetail `json:"error"`
}

type kvErrorDetail struct {
	Code       string         `json:"code"`
	Message    string         `json:"message"`
	InnerError *kvErrorDetail `json:"innererror,omitempty"`
}

func writeKVError(w http.ResponseWriter, status int, code, msg string, inner string) {
	e := kvError{Error: kvErrorDetail{Code: code, Message: msg}}
	if inner != "" {
		e.Error.InnerError = &kvErrorDetail{Code: inner}
	}
	writeJSON(w, status, e)
}

// challenge is Key Vault's 401: it names the authority (with the vault's
// tenant) and the resource to ask a token for.
func (s *Server) challenge(w http.ResponseWriter, msg string) {
	w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer authorization="https://%s/%s", resource="%s"`, LoginHost, s.opts.TenantID, Resource))
	writeKVError(w, http.StatusUnauthorized, "Unauthorized", msg, "")
}

// vault checks what Key Vault checks before an operation: the API
// version, the bearer token (issued by the fake, unexpired, for the vault's
// tenant and for Key Vault) and the application's permission.
func (s *Server) vault(perm string, next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		switch v := r.URL.Query().Get("api-version"); {
		case v == "":
			writeKVError(w, http.StatusBadRequest, "BadParameter", "The 'api-version' query parameter is required.", "")
			return
		case !slices.Contains(apiVersions, v):
			writeKVError(w, http.StatusBadRequest, "BadParameter", fmt.Sprintf(
				"The specified version (%s) is not recognized. Consider using the latest supported version (7.6).", v), "")
			return
		}
		h := r.Header.Get("Authorization")
		if h == "" {
			s.challenge(w, "AKV10000: Request is missing a Bearer or PoP token.")
			return
		}
		raw, ok := strings.CutPrefix(h, "Bearer ")
		s.mu.Lock()
		tok, known := s.tokens[raw]
		s.mu.Unlock()
		switch {
		case !ok || !known:
			s.challenge(w, "[BearerReadAccessTokenFailed] Error validating token: 'S2S12005'.")
			return
		case time.Now().After(tok.expires):
			s.challenge(w, "[TokenExpired] Error validating token: 'S2S12086'.")
			return
		case tok.tenant != s.opts.TenantID:
			s.challenge(w, fmt.Sprintf("AKV10032: Invalid issuer. Expected one of https://sts.windows.net/%s/, found https://sts.windows.net/%s/.", s.opts.TenantID, tok.tenant))
			return
		case tok.resource != Resource:
			s.challenge(w, "AKV10022: Invalid audience. Expected "+Resource+", found: "+tok.resource+".")
			return
		}
		if !slices.Contains(s.opts.Permissions, perm) {
			writeKVError(w, http.StatusForbidden, "Forbidden", fmt.Sprintf(
				"The user, group or application 'appid=%s;oid=%s;iss=https://sts.windows.net/%s/' does not have certificates %s permission on key vault '%s;location=westeurope'. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125287",
				tok.client, tok.client, tok.tenant, perm, s.opts.VaultName), "AccessDenied")
			return
		}
		if name := r.PathValue("name"); name != "" && !validName.MatchString(name) {
			writeKVError(w, http.StatusBadRequest, "BadParameter", "The request URI contains an invalid name: "+name, "")
			return
		}
		next(w, r)
	}
}

// importRequest is the body of "Import Certificate".
type importRequest struct {
	Value      *string           `json:"value"`
	Password   *string           `json:"pwd"`
	Policy     *json.RawMessage  `json:"policy"`
	Attributes *json.RawMessage  `json:"attributes"`
	Tags       map[string]string `json:"tags"`
}

const errPKCS12 = "The specified PKCS#12 X.509 certificate content can not be read. Please check if certificate is in valid PKCS#12 format."

func (s *Server) importCertificate(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		writeKVError(w, http.StatusBadRequest, "BadParameter", "The request content type must be application/json.", "")
		return
	}
	var req importRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil {
		writeKVError(w, http.StatusBadRequest, "BadParameter", "The request body is not valid JSON: "+err.Error(), "")
		return
	}
	if req.Value == nil || *req.Value == "" {
		writeKVError(w, http.StatusBadRequest, "BadParameter", "Property value is required but is null or empty.", "")
		return
	}
	if req.Policy != nil {
		var p struct {
			Secret *struct {
				ContentType string `json:"contentType"`
			} `json:"secret_props"`
		}
		if err := json.Unmarshal(*req.Policy, &p); err == nil && p.Secret != nil && p.Secret.ContentType != "" && p.Secret.ContentType != "application/x-pkcs12" {
			// The PEM path (contentType application/x-pem-file) is not
			// implemented: edge imports PKCS #12.
			writeKVError(w, http.StatusBadRequest, "BadParameter", "kvfake: only application/x-pkcs12 imports are implemented", "")
			return
		}
	}
	if len(req.Tags) > 15 {
		writeKVError(w, http.StatusBadRequest, "BadParameter", "The number of tags exceeds the maximum of 15.", "")
		return
	}
	der, err := base64.StdEncoding.DecodeString(*req.Value)
	if err != nil {
		writeKVError(w, http.StatusBadRequest, "BadParameter", errPKCS12, "")
		return
	}
	pwd := ""
	if req.Password != nil {
		pwd = *req.Password
	}
	key, leaf, cas, err := pkcs12.DecodeChain(der, pwd)
	if err != nil {
		writeKVError(w, http.StatusBadRequest, "BadParameter", errPKCS12, "")
		return
	}
	signer, ok := key.(crypto.Signer)
	if _, rsaKey := key.(*rsa.PrivateKey); !rsaKey {
		if _, ecKey := key.(*ecdsa.PrivateKey); !ecKey {
			writeKVError(w, http.StatusBadRequest, "BadParameter", "The specified certificate's key type is not supported: Key Vault holds RSA and EC keys.", "")
			return
		}
	}
	if !ok || !publicKeyEqual(signer.Public(), leaf.PublicKey) {
		writeKVError(w, http.StatusBadRequest, "BadParameter", "The private key in the PKCS#12 content does not match the certificate's public key.", "")
		return
	}
	v := Version{
		Version: randomHex(16),
		Chain:   append([]*x509.Certificate{leaf}, cas...),
		Leaf:    leaf,
		Tags:    req.Tags,
		Created: time.Now().UTC().Truncate(time.Second),
	}
	v.ID = s.URL() + "/certificates/" + name + "/" + v.Version
	s.mu.Lock()
	s.certs[name] = append(s.certs[name], v)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, s.bundle(name, v))
}

func publicKeyEqual(a, b crypto.PublicKey) bool {
	switch a := a.(type) {
	case *ecdsa.PublicKey:
		return a.Equal(b)
	case *rsa.PublicKey:
		return a.Equal(b)
	}
	return false // Key Vault holds RSA and EC keys only
}

func (s *Server) getCertificate(w http.ResponseWriter, r *http.Request) {
	name, version := r.PathValue("name"), r.PathValue("version")
	s.mu.Lock()
	vs := s.certs[name]
	s.mu.Unlock()
	i := len(vs) - 1
	if version != "" {
		i = slices.IndexFunc(vs, func(v Version) bool { return v.Version == version })
	}
	if i < 0 {
		id := name
		if version != "" {
			id += "/" + version
		}
		writeKVError(w, http.StatusNotFound, "CertificateNotFound", fmt.Sprintf(
			"A certificate with (name/id) %s was not found in this key vault. If you recently deleted this certificate you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182", id), "")
		return
	}
	writeJSON(w, http.StatusOK, s.bundle(name, vs[i]))
}

func (s *Server) listCertificates(w http.ResponseWriter, r *http.Request) {
	if m := r.URL.Query().Get("maxresults"); m != "" {
		if n, err := strconv.Atoi(m); err != nil || n < 1 || n > 25 {
			writeKVError(w, http.StatusBadRequest, "BadParameter", "Invalid value for maxresults: "+m+". The value must be between 1 and 25.", "")
			return
		}
	}
	s.mu.Lock()
	names := make([]string, 0, len(s.certs))
	for n := range s.certs {
		names = append(names, n)
	}
	slices.Sort(names)
	items := []map[string]any{}
	for _, n := range names {
		v := s.certs[n][len(s.certs[n])-1]
		items = append(items, map[string]any{
			"id":         s.URL() + "/certificates/" + n,
			"x5t":        thumbprint(v.Leaf),
			"attributes": attributes(v),
			"tags":       tags(v),
		})
	}
	s.mu.Unlock()
	// One page: nextLink null, as the service sends on the last page.
	writeJSON(w, http.StatusOK, map[string]any{"value": items, "nextLink": nil})
}

// bundle is a CertificateBundle as the service returns it.
func (s *Server) bundle(name string, v Version) map[string]any {
	base := s.URL()
	return map[string]any{
		"id":         v.ID,
		"kid":        base + "/keys/" + name + "/" + v.Version,
		"sid":        base + "/secrets/" + name + "/" + v.Version,
		"x5t":        thumbprint(v.Leaf),
		"cer":        base64.StdEncoding.EncodeToString(v.Leaf.Raw),
		"attributes": attributes(v),
		"tags":       tags(v),
		"policy": map[string]any{
			"id":           base + "/certificates/" + name + "/policy",
			"key_props":    map[string]any{"exportable": true, "kty": keyType(v.Leaf), "reuse_key": false},
			"secret_props": map[string]any{"contentType": "application/x-pkcs12"},
			"x509_props": map[string]any{
				"subject":         v.Leaf.Subject.String(),
				"sans":            map[string]any{"dns_names": v.Leaf.DNSNames},
				"validity_months": max(1, int(v.Leaf.NotAfter.Sub(v.Leaf.NotBefore).Hours()/24/30)),
			},
			"lifetime_actions": []map[string]any{{
				"trigger": map[string]any{"lifetime_percentage": 80},
				"action":  map[string]any{"action_type": "EmailContacts"},
			}},
			"issuer":     map[string]any{"name": "Unknown"},
			"attributes": map[string]any{"enabled": true, "created": v.Created.Unix(), "updated": v.Created.Unix()},
		},
	}
}

func attributes(v Version) map[string]any {
	return map[string]any{
		"enabled":         true,
		"nbf":             v.Leaf.NotBefore.Unix(),
		"exp":             v.Leaf.NotAfter.Unix(),
		"created":         v.Created.Unix(),
		"updated":         v.Created.Unix(),
		"recoveryLevel":   "Recoverable+Purgeable",
		"recoverableDays": 90,
	}
}

func tags(v Version) map[string]string {
	if v.Tags == nil {
		return map[string]string{}
	}
	return v.Tags
}

// thumbprint is x5t: the SHA-1 of the DER, base64url without padding.
func thumbprint(c *x509.Certificate) string {
	sum := sha1.Sum(c.Raw)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func keyType(c *x509.Certificate) string {
	switch c.PublicKeyAlgorithm {
	case x509.ECDSA:
		return "EC"
	case x509.RSA:
		return "RSA"
	}
	return "OKP"
}
