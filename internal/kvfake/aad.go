package kvfake

import (
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// token is an access token the fake's Entra ID issued.
type token struct {
	tenant, client, resource string
	expires                  time.Time
}

// tokenLifetime is what Entra ID gives a client-credentials token.
const tokenLifetime = 3599 * time.Second

func (s *Server) aadRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET "+LoginHost+"/common/discovery/instance", s.instanceDiscovery)
	mux.HandleFunc("GET "+LoginHost+"/{tenant}/v2.0/.well-known/openid-configuration", s.openIDConfiguration)
	mux.HandleFunc("POST "+LoginHost+"/{tenant}/oauth2/v2.0/token", s.issueToken)
}

// aadError is the body of Entra ID's OAuth errors (RFC 6749 section 5.2
// plus Microsoft's fields).
type aadError struct {
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description"`
	ErrorCodes       []int  `json:"error_codes"`
	Timestamp        string `json:"timestamp"`
	TraceID          string `json:"trace_id"`
	CorrelationID    string `json:"correlation_id"`
	ErrorURI         string `json:"error_uri"`
}

func writeAADError(w http.ResponseWriter, r *http.Request, status int, code string, aadsts int, msg string) {
	now := time.Now().UTC()
	corr := r.Header.Get("client-request-id")
	if corr == "" {
		corr = newGUID()
	}
	trace := newGUID()
	body := aadError{
		Error: code,
		ErrorDescription: fmt.Sprintf("AADSTS%d: %s\r\nTrace ID: %s\r\nCorrelation ID: %s\r\nTimestamp: %s",
			aadsts, msg, trace, corr, now.Format("2006-01-02 15:04:05Z")),
		ErrorCodes:    []int{aadsts},
		Timestamp:     now.Format("2006-01-02 15:04:05Z"),
		TraceID:       trace,
		CorrelationID: corr,
		ErrorURI:      fmt.Sprintf("https://%s/error?code=%d", LoginHost, aadsts),
	}
	writeJSON(w, status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (s *Server) tenantNotFound(w http.ResponseWriter, r *http.Request, tenant string) {
	writeAADError(w, r, http.StatusBadRequest, "invalid_tenant", 90002, fmt.Sprintf(
		"Tenant '%s' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.", tenant))
}

// instanceDiscovery is what MSAL asks before using an authority host that
// is not on its trusted list: Entra ID knows its own clouds' hosts only.
func (s *Server) instanceDiscovery(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	ep, err := url.Parse(q.Get("authorization_endpoint"))
	if q.Get("api-version") == "" || err != nil || ep.Host == "" {
		writeAADError(w, r, http.StatusBadRequest, "invalid_request", 900144, "The request body must contain the following parameter: 'authorization_endpoint'.")
		return
	}
	if ep.Host != LoginHost {
		writeAADError(w, r, http.StatusBadRequest, "invalid_instance", 50049, "Unknown or invalid instance.")
		return
	}
	tenant, _, _ := strings.Cut(strings.TrimPrefix(ep.Path, "/"), "/")
	writeJSON(w, http.StatusOK, map[string]any{
		"tenant_discovery_endpoint": fmt.Sprintf("https://%s/%s/v2.0/.well-known/openid-configuration", LoginHost, tenant),
		"api-version":               "1.1",
		"metadata": []map[string]any{{
			"preferred_network": LoginHost,
			"preferred_cache":   "login.windows.net",
			"aliases":           []string{LoginHost, "login.windows.net", "login.microsoft.com", "sts.windows.net"},
		}},
	})
}

// openIDConfiguration is the tenant's OpenID Connect metadata, from which
// MSAL takes the token endpoint.
func (s *Server) openIDConfiguration(w http.ResponseWriter, r *http.Request) {
	tenant := r.PathValue("tenant")
	if tenant != s.opts.TenantID {
		s.tenantNotFound(w, r, tenant)
		return
	}
	base := "https://" + LoginHost + "/" + tenant
	writeJSON(w, http.StatusOK, map[string]any{
		"token_endpoint":                        base + "/oauth2/v2.0/token",
		"token_endpoint_auth_methods_supported": []string{"client_secret_post", "private_key_jwt", "client_secret_basic"},
		"jwks_uri":                              base + "/discovery/v2.0/keys",
		"response_modes_supported":              []string{"query", "fragment", "form_post"},
		"subject_types_supported":               []string{"pairwise"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"response_types_supported":              []string{"code", "id_token", "code id_token", "id_token token"},
		"scopes_supported":                      []string{"openid", "profile", "email", "offline_access"},
		"issuer":                                base + "/v2.0",
		"request_uri_parameter_supported":       false,
		"userinfo_endpoint":                     "https://graph.microsoft.com/oidc/userinfo",
		"authorization_endpoint":                base + "/oauth2/v2.0/authorize",
		"device_authorization_endpoint":         base + "/oauth2/v2.0/devicecode",
		"http_logout_supported":                 true,
		"frontchannel_logout_supported":         true,
		"end_session_endpoint":                  base + "/oauth2/v2.0/logout",
		"claims_supported":                      []string{"sub", "iss", "aud", "exp", "iat", "nbf", "tid"},
		"kerberos_endpoint":                     base + "/kerberos",
		"tenant_region_scope":                   "EU",
		"cloud_instance_name":                   "microsoftonline.com",
		"cloud_graph_host_name":                 "graph.windows.net",
		"msgraph_host":                          "graph.microsoft.com",
		"rbac_url":                              "https://pas.windows.net",
	})
}

// issueToken is the client-credentials grant (RFC 6749 section 4.4) as
// Entra ID's v2.0 endpoint serves it: the client secret in the form body,
// the scope a resource's "/.default".
func (s *Server) issueToken(w http.ResponseWriter, r *http.Request) {
	tenant := r.PathValue("tenant")
	if tenant != s.opts.TenantID {
		s.tenantNotFound(w, r, tenant)
		return
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/x-www-form-urlencoded" {
		writeAADError(w, r, http.StatusBadRequest, "invalid_request", 900144, "The request body must contain the following parameter: 'grant_type'.")
		return
	}
	if err := r.ParseForm(); err != nil {
		writeAADError(w, r, http.StatusBadRequest, "invalid_request", 900144, "The request body must contain the following parameter: 'grant_type'.")
		return
	}
	f := r.PostForm
	switch f.Get("grant_type") {
	case "client_credentials":
	case "":
		writeAADError(w, r, http.StatusBadRequest, "invalid_request", 900144, "The request body must contain the following parameter: 'grant_type'.")
		return
	default:
		writeAADError(w, r, http.StatusBadRequest, "unsupported_grant_type", 70003, "The app requested an unsupported grant type '"+f.Get("grant_type")+"'.")
		return
	}
	client := f.Get("client_id")
	switch {
	case client == "":
		writeAADError(w, r, http.StatusBadRequest, "invalid_request", 900144, "The request body must contain the following parameter: 'client_id'.")
		return
	case client != s.opts.ClientID:
		writeAADError(w, r, http.StatusBadRequest, "unauthorized_client", 700016, fmt.Sprintf(
			"Application with identifier '%s' was not found in the directory '%s'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.", client, tenant))
		return
	}
	switch secret := f.Get("client_secret"); {
	case secret == "" && f.Get("client_assertion") == "":
		writeAADError(w, r, http.StatusUnauthorized, "invalid_client", 7000216, "'client_assertion', 'client_secret' or 'request' is required for the 'client_credentials' grant type.")
		return
	case secret != s.opts.Secret:
		writeAADError(w, r, http.StatusUnauthorized, "invalid_client", 7000215, fmt.Sprintf(
			"Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '%s'.", client))
		return
	}
	scopes := strings.Fields(f.Get("scope"))
	if len(scopes) == 0 {
		writeAADError(w, r, http.StatusBadRequest, "invalid_request", 900144, "The request body must contain the following parameter: 'scope'.")
		return
	}
	var resource string
	for _, sc := range scopes {
		switch sc {
		case "openid", "profile", "offline_access": // MSAL adds these; ignored for this grant
			continue
		}
		res, ok := strings.CutSuffix(sc, "/.default")
		if !ok || resource != "" {
			writeAADError(w, r, http.StatusBadRequest, "invalid_scope", 1002012, fmt.Sprintf(
				"The provided value for scope %s is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).", f.Get("scope")))
			return
		}
		resource = res
	}
	switch resource {
	case Resource, "https://management.azure.com":
	default:
		writeAADError(w, r, http.StatusBadRequest, "invalid_resource", 500011, fmt.Sprintf(
			"The resource principal named %s was not found in the tenant named %s. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant.", resource, tenant))
		return
	}
	tok := s.Token(resource)
	writeJSON(w, http.StatusOK, map[string]any{
		"token_type":     "Bearer",
		"expires_in":     int(tokenLifetime.Seconds()),
		"ext_expires_in": int(tokenLifetime.Seconds()),
		"access_token":   tok,
	})
}

// Token issues an access token for the application in the fake's tenant,
// for resource ("https://vault.azure.net"), as the token endpoint would:
// for tests that call the vault's REST API directly.
func (s *Server) Token(resource string) string {
	tok := "kvfake." + randomHex(32)
	s.mu.Lock()
	s.tokens[tok] = token{tenant: s.opts.TenantID, client: s.opts.ClientID, resource: resource, expires: time.Now().Add(tokenLifetime)}
	s.mu.Unlock()
	return tok
}

// imdsToken is the instance metadata service's managed identity endpoint,
// GET /metadata/identity/oauth2/token (api-version 2018-02-01), as a VM
// serves it.
func (s *Server) imdsToken(w http.ResponseWriter, r *http.Request) {
	fail := func(status int, code, desc string) {
		writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
	}
	q := r.URL.Query()
	switch {
	case r.Method != http.MethodGet || r.URL.Path != "/metadata/identity/oauth2/token":
		http.Error(w, "Not Found", http.StatusNotFound)
		return
	case r.Header.Get("Metadata") != "true":
		fail(http.StatusBadRequest, "invalid_request", "Required metadata header not specified")
		return
	case q.Get("api-version") == "":
		fail(http.StatusBadRequest, "invalid_request", "Required query variable 'api-version' is missing")
		return
	case q.Get("resource") == "":
		fail(http.StatusBadRequest, "invalid_request", "Required query variable 'resource' is missing")
		return
	}
	if id := q.Get("client_id"); (id != "" && id != s.opts.ClientID) || q.Get("object_id") != "" || q.Get("msi_res_id") != "" {
		fail(http.StatusBadRequest, "invalid_request", "Identity not found")
		return
	}
	resource := strings.TrimSuffix(q.Get("resource"), "/")
	if resource != Resource && resource != "https://management.azure.com" {
		fail(http.StatusBadRequest, "invalid_resource", fmt.Sprintf("AADSTS500011: The resource principal named %s was not found in the tenant named %s.", resource, s.opts.TenantID))
		return
	}
	now := time.Now()
	writeJSON(w, http.StatusOK, map[string]string{
		"access_token":   s.Token(resource),
		"client_id":      s.opts.ClientID,
		"expires_in":     fmt.Sprint(int(tokenLifetime.Seconds())),
		"expires_on":     fmt.Sprint(now.Add(tokenLifetime).Unix()),
		"ext_expires_in": fmt.Sprint(int(tokenLifetime.Seconds())),
		"not_before":     fmt.Sprint(now.Unix()),
		"resource":       resource,
		"token_type":     "Bearer",
	})
}
