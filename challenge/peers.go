package challenge

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// PeerPath is where an edge asks a peer for an HTTP-01 answer. The peer
// answers only from what it knows itself, never asks its own peers, so a
// ring of peers cannot loop.
const PeerPath = "/.well-known/edge-peer/acme-challenge/"

// peerHeader carries "ts=<unix seconds>,mac=<hex HMAC-SHA256>" over
// host|token|ts with the shared secret. The secret itself never crosses the
// wire, and a captured ask is useless after peerSkew.
const peerHeader = "X-Edge-Peer-Auth"

const peerSkew = 60 * time.Second

// Peers asks other edges (without shared storage) for tokens this one does
// not know. The zero value asks nobody. Safe for concurrent use.
type Peers struct {
	// URLs are the peers' plain-HTTP base URLs ("http://edge-2:80").
	URLs []string
	// Secret authenticates asks in both directions. Required.
	Secret []byte
	// Client is used for asks; nil means a client with a 3 s timeout.
	Client *http.Client
	// Manages, if set, limits asks to hosts this edge serves, so a scanner
	// requesting random names cannot make it query every peer.
	Manages func(host string) bool
	Logger  *slog.Logger
	// now is time.Now; tests replace it.
	now func() time.Time

	once sync.Once
	own  *http.Client
}

var _ Fallback = (*Peers)(nil)

func (p *Peers) client() *http.Client {
	if p.Client != nil {
		return p.Client
	}
	p.once.Do(func() {
		// Its own transport (never http.DefaultTransport) and no redirects:
		// an answer is a 200 from the peer itself or nothing.
		p.own = &http.Client{
			Timeout:       3 * time.Second,
			Transport:     &http.Transport{MaxIdleConnsPerHost: 4, IdleConnTimeout: 30 * time.Second},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	})
	return p.own
}

// Close drops the idle connections of the client Peers made for itself (a
// Client given in the struct is the caller's to close). Asks still running
// finish. Safe to call more than once and on a nil *Peers.
func (p *Peers) Close() {
	if p == nil {
		return
	}
	p.once.Do(func() {}) // no client is made after Close
	if p.own != nil {
		p.own.CloseIdleConnections()
	}
}

// validToken reports whether s can be an ACME token (RFC 8555 §8.1: base64url,
// at least 128 bits of entropy, so 22 characters or more) or a probe.
func validToken(s string) bool {
	if len(s) < 22 || len(s) > 256 {
		return false
	}
	for _, c := range s {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func (p *Peers) clock() time.Time {
	if p.now != nil {
		return p.now()
	}
	return time.Now()
}

func (p *Peers) mac(host, token string, ts int64) string {
	h := hmac.New(sha256.New, p.Secret)
	fmt.Fprintf(h, "%s|%s|%d", strings.ToLower(host), token, ts)
	return hex.EncodeToString(h.Sum(nil))
}

// ServeChallenge asks all peers at once for the token in r and copies the
// first 200 answer (one dead peer must not hide the others: the CA validates
// from several places within seconds). It reports whether one answered.
func (p *Peers) ServeChallenge(w http.ResponseWriter, r *http.Request) bool {
	if p == nil || len(p.URLs) == 0 || r.Method != http.MethodGet {
		return false
	}
	token := strings.TrimPrefix(r.URL.Path, PathPrefix)
	host := strings.ToLower(hostOnly(r.Host))
	if !validToken(token) || (p.Manages != nil && !p.Manages(host)) {
		return false
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	type answer struct {
		peer string
		body []byte
		err  error
	}
	answers := make(chan answer, len(p.URLs))
	for _, base := range p.URLs {
		go func() {
			body, err := p.ask(ctx, base, host, token)
			answers <- answer{base, body, err}
		}()
	}
	for range p.URLs {
		a := <-answers
		if a.err != nil {
			p.log().Debug("peer did not answer challenge", "peer", a.peer, "host", host, "error", a.err)
			continue
		}
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write(a.body)
		p.log().Info("served key authentication from peer", "peer", a.peer, "host", host)
		return true // cancel() stops the other asks; answers is buffered
	}
	return false
}

func (p *Peers) log() *slog.Logger {
	if p.Logger != nil {
		return p.Logger
	}
	return slog.New(slog.DiscardHandler)
}

func (p *Peers) ask(ctx context.Context, base, host, token string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(base, "/")+PeerPath+token, nil)
	if err != nil {
		return nil, err
	}
	req.Host = host
	ts := p.clock().Unix()
	req.Header.Set(peerHeader, fmt.Sprintf("ts=%d,mac=%s", ts, p.mac(host, token, ts)))
	resp, err := p.client().Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("peer %s: %s", base, resp.Status)
	}
	return body, nil
}

// errPeerAuth is returned for an ask without a valid signature.
var errPeerAuth = errors.New("peer ask not authenticated")

func (p *Peers) verify(r *http.Request, token string) error {
	v := r.Header.Get(peerHeader)
	var tsStr, mac string
	for part := range strings.SplitSeq(v, ",") {
		k, val, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "ts":
			tsStr = val
		case "mac":
			mac = val
		}
	}
	ts, err := strconv.ParseInt(tsStr, 10, 64)
	if err != nil || mac == "" {
		return errPeerAuth
	}
	if d := p.clock().Sub(time.Unix(ts, 0)); d > peerSkew || d < -peerSkew {
		return fmt.Errorf("%w: clock skew %s", errPeerAuth, d.Round(time.Second))
	}
	if !hmac.Equal([]byte(mac), []byte(p.mac(hostOnly(r.Host), token, ts))) {
		return errPeerAuth
	}
	return nil
}

// PeerHandler answers asks from peers at PeerPath using only solver (no
// further asks), after checking their signature. Other paths go to next.
func (p *Peers) PeerHandler(solver Solver, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, PeerPath) {
			next.ServeHTTP(w, r)
			return
		}
		token := strings.TrimPrefix(r.URL.Path, PeerPath)
		if len(p.Secret) == 0 || !validToken(token) {
			http.NotFound(w, r)
			return
		}
		if err := p.verify(r, token); err != nil {
			p.log().Warn("rejected peer ask", "remote", r.RemoteAddr, "host", r.Host, "error", err)
			http.Error(w, err.Error(), http.StatusForbidden)
			return
		}
		// Present it to the solver as the CA's own request would look.
		r2 := r.Clone(r.Context())
		r2.URL.Path = PathPrefix + token
		r2.RequestURI = r2.URL.Path
		if ok, _ := solver.HandleHTTPChallenge(w, r2); !ok {
			http.Error(w, "unknown challenge token", http.StatusNotFound)
		}
	})
}

func hostOnly(hostport string) string {
	if i := strings.LastIndexByte(hostport, ':'); i >= 0 && !strings.Contains(hostport[i:], "]") {
		return strings.Trim(hostport[:i], "[]")
	}
	return strings.Trim(hostport, "[]")
}
