// Package cffake is a local stand-in for the parts of Cloudflare's v4 API
// that github.com/libdns/cloudflare v0.2.2 uses: zone lookup by name and
// listing, creating, updating and deleting DNS records. It checks the
// "Authorization: Bearer" token the way Cloudflare does and writes every
// record change into a real DNS server (BIND) with TSIG-signed RFC 2136
// updates, so an ACME server validating DNS-01 there sees the records.
//
// It is test code: records live in memory and nothing is persisted.
package cffake

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Options configure New.
type Options struct {
	// Token is the API token accepted for every call (required).
	Token string
	// ZoneToken, if set, is also accepted for zone lookups only (the
	// Zone:Read token libdns/cloudflare calls ZoneToken).
	ZoneToken string
	// Zones maps zone names ("app.test") to Cloudflare zone ids.
	Zones map[string]string
	// DNSServer is the "host:port" of the primary that receives the
	// records; "" keeps them in memory only.
	DNSServer string
	// TSIGName and TSIGSecret (base64) sign the updates; TSIGAlg defaults
	// to hmac-sha256.
	TSIGName, TSIGSecret, TSIGAlg string
}

// Record is a DNS record as the fake's API shows it.
type Record struct {
	ID         string    `json:"id"`
	ZoneID     string    `json:"zone_id"`
	ZoneName   string    `json:"zone_name"`
	Name       string    `json:"name"`
	Type       string    `json:"type"`
	Content    string    `json:"content"`
	Proxiable  bool      `json:"proxiable"`
	Proxied    bool      `json:"proxied"`
	TTL        int       `json:"ttl"`
	Priority   *int      `json:"priority,omitempty"`
	Comment    *string   `json:"comment"`
	Tags       []string  `json:"tags"`
	CreatedOn  time.Time `json:"created_on"`
	ModifiedOn time.Time `json:"modified_on"`
}

// Server is a running fake. It is safe for concurrent use.
type Server struct {
	opts Options
	srv  *httptest.Server

	mu      sync.Mutex
	records map[string][]Record // by zone id
	calls   int
}

// APIPath is where the API lives on the server, as on api.cloudflare.com.
const APIPath = "/client/v4"

// New starts a fake on a free 127.0.0.1 port. Close stops it.
func New(opts Options) *Server {
	if opts.TSIGAlg == "" {
		opts.TSIGAlg = "hmac-sha256"
	}
	s := &Server{opts: opts, records: map[string][]Record{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+APIPath+"/zones", s.auth(true, s.listZones))
	mux.HandleFunc("GET "+APIPath+"/zones/{zone}", s.auth(true, s.getZone))
	mux.HandleFunc("GET "+APIPath+"/zones/{zone}/dns_records", s.auth(false, s.listRecords))
	mux.HandleFunc("POST "+APIPath+"/zones/{zone}/dns_records", s.auth(false, s.createRecord))
	mux.HandleFunc("GET "+APIPath+"/zones/{zone}/dns_records/{id}", s.auth(false, s.getRecord))
	mux.HandleFunc("PATCH "+APIPath+"/zones/{zone}/dns_records/{id}", s.auth(false, s.updateRecord))
	mux.HandleFunc("PUT "+APIPath+"/zones/{zone}/dns_records/{id}", s.auth(false, s.updateRecord))
	mux.HandleFunc("DELETE "+APIPath+"/zones/{zone}/dns_records/{id}", s.auth(false, s.deleteRecord))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeErr(w, http.StatusNotFound, cfError{7000, "No route for that URI"})
	})
	s.srv = httptest.NewServer(mux)
	return s
}

// URL is the server's root, "http://127.0.0.1:port".
func (s *Server) URL() string { return s.srv.URL }

// APIURL is the API base, URL()+"/client/v4": what libdns/cloudflare calls
// https://api.cloudflare.com/client/v4 (edge's api_url).
func (s *Server) APIURL() string { return s.srv.URL + APIPath }

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// Client returns an HTTP client that sends requests for
// https://api.cloudflare.com to the fake, over plain HTTP; other hosts are
// refused. Give it to libdns/cloudflare as HTTPClient.
func (s *Server) Client() *http.Client {
	u, _ := url.Parse(s.srv.URL)
	return &http.Client{Timeout: 10 * time.Second, Transport: &redirectTransport{to: u, next: s.srv.Client().Transport}}
}

type redirectTransport struct {
	to   *url.URL
	next http.RoundTripper
}

func (t *redirectTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Host != "api.cloudflare.com" {
		return nil, fmt.Errorf("cffake: refusing a request for %s", req.URL.Host)
	}
	r := req.Clone(req.Context())
	r.URL.Scheme, r.URL.Host, r.Host = t.to.Scheme, t.to.Host, ""
	return t.next.RoundTrip(r)
}

// Records returns the records the fake holds for zone (by name).
func (s *Server) Records(zone string) []Record {
	id := s.opts.Zones[strings.TrimSuffix(zone, ".")]
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.records[id])
}

// Calls is the number of API requests served so far, authenticated or not.
func (s *Server) Calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

// cfError is one element of a Cloudflare "errors" array.
type cfError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

// Cloudflare's answers, as it sends them.
var (
	errInvalidToken = cfError{9109, "Invalid access token"}
	errNoAuth       = cfError{9106, "Missing X-Auth-Key, X-Auth-Email or Authorization headers"}
	errBadHeader    = cfError{6003, "Invalid request headers"}
	errAuth         = cfError{10000, "Authentication error"}
	errBadZone      = cfError{7003, "Could not route to /zones, perhaps your object identifier is invalid?"}
	errNoRecord     = cfError{81044, "Record does not exist."}
)

// auth checks the bearer token. Cloudflare answers a well-formed but
// unknown token with HTTP 403 and code 9109 "Invalid access token".
func (s *Server) auth(zoneRead bool, next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.calls++
		s.mu.Unlock()
		h := r.Header.Get("Authorization")
		tok, ok := strings.CutPrefix(h, "Bearer ")
		switch {
		case h == "":
			writeErr(w, http.StatusBadRequest, errNoAuth)
		case !ok || tok == "" || strings.ContainsAny(tok, " \t"):
			writeErr(w, http.StatusBadRequest, errBadHeader)
		case tok == s.opts.Token:
			next(w, r)
		case zoneRead && s.opts.ZoneToken != "" && tok == s.opts.ZoneToken:
			next(w, r)
		case s.opts.ZoneToken != "" && tok == s.opts.ZoneToken:
			writeErr(w, http.StatusForbidden, errAuth)
		default:
			writeErr(w, http.StatusForbidden, errInvalidToken)
		}
	}
}

type response struct {
	Result     any         `json:"result"`
	Success    bool        `json:"success"`
	Errors     []cfError   `json:"errors"`
	Messages   []any       `json:"messages"`
	ResultInfo *resultInfo `json:"result_info,omitempty"`
}

type resultInfo struct {
	Page       int `json:"page"`
	PerPage    int `json:"per_page"`
	Count      int `json:"count"`
	TotalCount int `json:"total_count"`
	TotalPages int `json:"total_pages"`
}

func writeJSON(w http.ResponseWriter, code int, v response) {
	if v.Errors == nil {
		v.Errors = []cfError{}
	}
	v.Messages = []any{}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, code int, e cfError) {
	writeJSON(w, code, response{Success: false, Errors: []cfError{e}})
}

func writeOK(w http.ResponseWriter, result any, info *resultInfo) {
	writeJSON(w, http.StatusOK, response{Success: true, Result: result, ResultInfo: info})
}

type zone struct {
	ID          string   `json:"id"`
	Name        string   `json:"name"`
	Status      string   `json:"status"`
	Paused      bool     `json:"paused"`
	Type        string   `json:"type"`
	NameServers []string `json:"name_servers"`
}

func (s *Server) zoneByID(id string) (string, bool) {
	for name, zid := range s.opts.Zones {
		if zid == id {
			return name, true
		}
	}
	return "", false
}

func bare(name string) string { return strings.ToLower(strings.TrimSuffix(name, ".")) }

func (s *Server) listZones(w http.ResponseWriter, r *http.Request) {
	want := bare(r.URL.Query().Get("name"))
	var out []zone
	for name, id := range s.opts.Zones {
		if want == "" || bare(name) == want {
			out = append(out, zone{ID: id, Name: name, Status: "active", Type: "full", NameServers: []string{"ns.localhost"}})
		}
	}
	slices.SortFunc(out, func(a, b zone) int { return strings.Compare(a.Name, b.Name) })
	if out == nil {
		out = []zone{}
	}
	writeOK(w, out, &resultInfo{Page: 1, PerPage: 20, Count: len(out), TotalCount: len(out), TotalPages: 1})
}

func (s *Server) getZone(w http.ResponseWriter, r *http.Request) {
	name, ok := s.zoneByID(r.PathValue("zone"))
	if !ok {
		writeErr(w, http.StatusNotFound, errBadZone)
		return
	}
	writeOK(w, zone{ID: r.PathValue("zone"), Name: name, Status: "active", Type: "full"}, nil)
}

func (s *Server) listRecords(w http.ResponseWriter, r *http.Request) {
	zid := r.PathValue("zone")
	if _, ok := s.zoneByID(zid); !ok {
		writeErr(w, http.StatusNotFound, errBadZone)
		return
	}
	q := r.URL.Query()
	page, perPage := atoiDefault(q.Get("page"), 1), atoiDefault(q.Get("per_page"), 100)
	if page < 1 || perPage < 1 {
		writeErr(w, http.StatusBadRequest, cfError{1004, "DNS Validation Error"})
		return
	}
	s.mu.Lock()
	var match []Record
	for _, rec := range s.records[zid] {
		switch {
		case q.Has("type") && !strings.EqualFold(rec.Type, q.Get("type")):
		case q.Has("name") && bare(rec.Name) != bare(q.Get("name")):
		case q.Has("content.exact") && rec.Content != q.Get("content.exact"):
		case q.Has("content.contains") && !strings.Contains(rec.Content, q.Get("content.contains")):
		case q.Has("content") && rec.Content != q.Get("content"):
		default:
			match = append(match, rec)
		}
	}
	s.mu.Unlock()
	total := len(match)
	lo, hi := min((page-1)*perPage, total), min(page*perPage, total)
	out := append([]Record{}, match[lo:hi]...)
	writeOK(w, out, &resultInfo{Page: page, PerPage: perPage, Count: len(out), TotalCount: total, TotalPages: (total + perPage - 1) / perPage})
}

func atoiDefault(s string, def int) int {
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return -1
	}
	return n
}

func (s *Server) getRecord(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	rec, _, ok := s.find(r.PathValue("zone"), r.PathValue("id"))
	s.mu.Unlock()
	if !ok {
		writeErr(w, http.StatusNotFound, errNoRecord)
		return
	}
	writeOK(w, rec, nil)
}

// find returns a record and its index; s.mu must be held.
func (s *Server) find(zid, id string) (Record, int, bool) {
	for i, rec := range s.records[zid] {
		if rec.ID == id {
			return rec, i, true
		}
	}
	return Record{}, -1, false
}

// recordInput is what a client sends to create or update a record.
type recordInput struct {
	Type     string `json:"type"`
	Name     string `json:"name"`
	Content  string `json:"content"`
	TTL      int    `json:"ttl"`
	Priority *int   `json:"priority"`
	Proxied  bool   `json:"proxied"`
}

func (s *Server) createRecord(w http.ResponseWriter, r *http.Request) {
	zid := r.PathValue("zone")
	zname, ok := s.zoneByID(zid)
	if !ok {
		writeErr(w, http.StatusNotFound, errBadZone)
		return
	}
	var in recordInput
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		writeErr(w, http.StatusBadRequest, cfError{9207, "Request body is invalid."})
		return
	}
	rec, cerr := s.build(zid, zname, in)
	if cerr != nil {
		writeErr(w, http.StatusBadRequest, *cerr)
		return
	}
	rec.ID = newID()
	rec.CreatedOn = time.Now().UTC()
	rec.ModifiedOn = rec.CreatedOn
	if err := s.update(zname, nil, &rec); err != nil {
		writeErr(w, http.StatusInternalServerError, cfError{1000, "cffake: " + err.Error()})
		return
	}
	s.mu.Lock()
	s.records[zid] = append(s.records[zid], rec)
	s.mu.Unlock()
	writeOK(w, rec, nil)
}

// build validates in as Cloudflare would and makes a record of zone.
func (s *Server) build(zid, zname string, in recordInput) (Record, *cfError) {
	typ := strings.ToUpper(in.Type)
	if typ == "" {
		return Record{}, &cfError{9000, "DNS name is invalid."}
	}
	name := bare(in.Name)
	switch {
	case name == "" || name == "@":
		name = zname
	case name == zname || strings.HasSuffix(name, "."+zname):
	default:
		name = name + "." + zname // Cloudflare takes relative names
	}
	if in.Content == "" {
		return Record{}, &cfError{9005, "Content for " + typ + " record is invalid."}
	}
	ttl := in.TTL
	if ttl == 0 {
		ttl = 1 // "automatic"
	}
	if _, err := toRR(Record{Name: name, Type: typ, Content: in.Content, TTL: ttl}); err != nil {
		return Record{}, &cfError{9005, "Content for " + typ + " record is invalid."}
	}
	return Record{ZoneID: zid, ZoneName: zname, Name: name, Type: typ, Content: in.Content, TTL: ttl,
		Priority: in.Priority, Proxied: in.Proxied, Tags: []string{}}, nil
}

func (s *Server) updateRecord(w http.ResponseWriter, r *http.Request) {
	zid, id := r.PathValue("zone"), r.PathValue("id")
	zname, ok := s.zoneByID(zid)
	if !ok {
		writeErr(w, http.StatusNotFound, errBadZone)
		return
	}
	var in recordInput
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		writeErr(w, http.StatusBadRequest, cfError{9207, "Request body is invalid."})
		return
	}
	s.mu.Lock()
	old, _, ok := s.find(zid, id)
	s.mu.Unlock()
	if !ok {
		writeErr(w, http.StatusNotFound, errNoRecord)
		return
	}
	if r.Method == http.MethodPatch { // PATCH changes only what is sent
		if in.Type == "" {
			in.Type = old.Type
		}
		if in.Name == "" {
			in.Name = old.Name
		}
		if in.Content == "" {
			in.Content = old.Content
		}
		if in.TTL == 0 {
			in.TTL = old.TTL
		}
	}
	rec, cerr := s.build(zid, zname, in)
	if cerr != nil {
		writeErr(w, http.StatusBadRequest, *cerr)
		return
	}
	rec.ID, rec.CreatedOn, rec.ModifiedOn = id, old.CreatedOn, time.Now().UTC()
	if err := s.update(zname, &old, &rec); err != nil {
		writeErr(w, http.StatusInternalServerError, cfError{1000, "cffake: " + err.Error()})
		return
	}
	s.mu.Lock()
	if _, i, ok := s.find(zid, id); ok {
		s.records[zid][i] = rec
	}
	s.mu.Unlock()
	writeOK(w, rec, nil)
}

func (s *Server) deleteRecord(w http.ResponseWriter, r *http.Request) {
	zid, id := r.PathValue("zone"), r.PathValue("id")
	zname, ok := s.zoneByID(zid)
	if !ok {
		writeErr(w, http.StatusNotFound, errBadZone)
		return
	}
	s.mu.Lock()
	old, _, ok := s.find(zid, id)
	s.mu.Unlock()
	if !ok {
		writeErr(w, http.StatusNotFound, errNoRecord)
		return
	}
	if err := s.update(zname, &old, nil); err != nil {
		writeErr(w, http.StatusInternalServerError, cfError{1000, "cffake: " + err.Error()})
		return
	}
	s.mu.Lock()
	if _, i, ok := s.find(zid, id); ok {
		s.records[zid] = slices.Delete(s.records[zid], i, i+1)
	}
	s.mu.Unlock()
	// Cloudflare answers a delete with the id only.
	writeOK(w, map[string]string{"id": id}, nil)
}

// toRR turns a record into DNS data. TXT content may be quoted (as
// libdns/cloudflare sends it) or not; TTL 1 ("automatic") becomes 60 s.
func toRR(rec Record) (dns.RR, error) {
	ttl := uint32(rec.TTL)
	if ttl <= 1 {
		ttl = 60
	}
	hdr := dns.RR_Header{Name: dns.Fqdn(rec.Name), Class: dns.ClassINET, Ttl: ttl}
	if rec.Type == "TXT" {
		hdr.Rrtype = dns.TypeTXT
		txt := rec.Content
		if len(txt) >= 2 && strings.HasPrefix(txt, `"`) && strings.HasSuffix(txt, `"`) {
			txt = txt[1 : len(txt)-1]
		}
		return &dns.TXT{Hdr: hdr, Txt: splitTXT(txt)}, nil
	}
	content := rec.Content
	if rec.Priority != nil && rec.Type == "MX" {
		content = fmt.Sprintf("%d %s", *rec.Priority, content)
	}
	return dns.NewRR(fmt.Sprintf("%s %d IN %s %s", hdr.Name, ttl, rec.Type, content))
}

// splitTXT cuts a value into character-strings of at most 255 bytes.
func splitTXT(s string) []string {
	var out []string
	for len(s) > 255 {
		out = append(out, s[:255])
		s = s[255:]
	}
	return append(out, s)
}

// update sends one RFC 2136 update to the DNS server: remove old's data,
// add neu's (either may be nil).
func (s *Server) update(zname string, old, neu *Record) error {
	if s.opts.DNSServer == "" {
		return nil
	}
	m := new(dns.Msg)
	m.SetUpdate(dns.Fqdn(zname))
	if old != nil {
		rr, err := toRR(*old)
		if err != nil {
			return err
		}
		m.Remove([]dns.RR{rr})
	}
	if neu != nil {
		rr, err := toRR(*neu)
		if err != nil {
			return err
		}
		m.Insert([]dns.RR{rr})
	}
	key := dns.Fqdn(s.opts.TSIGName)
	c := &dns.Client{Net: "tcp", Timeout: 5 * time.Second}
	if s.opts.TSIGName != "" {
		m.SetTsig(key, dns.Fqdn(s.opts.TSIGAlg), 300, time.Now().Unix())
		c.TsigSecret = map[string]string{key: s.opts.TSIGSecret}
	}
	in, _, err := c.Exchange(m, s.opts.DNSServer)
	if err != nil {
		return fmt.Errorf("RFC 2136 update of %s at %s: %w", zname, s.opts.DNSServer, err)
	}
	if in.Rcode != dns.RcodeSuccess {
		return fmt.Errorf("RFC 2136 update of %s at %s: %s", zname, s.opts.DNSServer, dns.RcodeToString[in.Rcode])
	}
	return nil
}

func newID() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic(errors.New("cffake: no randomness"))
	}
	return hex.EncodeToString(b)
}
