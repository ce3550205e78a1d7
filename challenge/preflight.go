package challenge

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// Preflight probes: `edge preflight` stores a probe under ProbeKey in the
// storage the edges read, then fetches it through the real path (DNS, load
// balancer) as the CA would. Edges answer probe tokens like real ones, from
// storage or from a peer, so a probe that fails names an edge that would
// fail a real validation.

// probePrefix starts every probe token; real ACME tokens are base64url
// without this prefix.
const probePrefix = "edge-preflight-"

// NodeHeader names the edge that answered a challenge-path request.
const NodeHeader = "X-Edge-Node"

// ProbeKey is the storage key of a probe token.
func ProbeKey(token string) string { return "edge/preflight/" + token + ".txt" }

// Probe is one token and the value edges must answer with.
type Probe struct{ Token, Value string }

// NewProbe makes a random probe.
func NewProbe() Probe {
	var b [16]byte
	_, _ = rand.Read(b[:])
	var v [24]byte
	_, _ = rand.Read(v[:])
	return Probe{Token: probePrefix + hex.EncodeToString(b[:]), Value: hex.EncodeToString(v[:])}
}

// Loader reads a storage key; certmagic.Storage satisfies it.
type Loader interface {
	Load(ctx context.Context, key string) ([]byte, error)
}

// ProbeSolver answers probe tokens from storage.
type ProbeSolver struct{ Store Loader }

var _ Solver = ProbeSolver{}

// HandleHTTPChallenge implements Solver for probe tokens only.
func (p ProbeSolver) HandleHTTPChallenge(w http.ResponseWriter, r *http.Request) (bool, string) {
	token := strings.TrimPrefix(r.URL.Path, PathPrefix)
	if p.Store == nil || !strings.HasPrefix(token, probePrefix) || strings.Contains(token, "/") {
		return false, ""
	}
	v, err := p.Store.Load(r.Context(), ProbeKey(token))
	if err != nil {
		return false, ""
	}
	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write(v)
	return true, "storage"
}

// Solvers asks each solver in turn.
type Solvers []Solver

var _ Solver = Solvers(nil)

// HandleHTTPChallenge implements Solver.
func (s Solvers) HandleHTTPChallenge(w http.ResponseWriter, r *http.Request) (bool, string) {
	for _, one := range s {
		if ok, src := one.HandleHTTPChallenge(w, r); ok {
			return true, src
		}
	}
	return false, ""
}

// Attempt is one probe request.
type Attempt struct {
	Node   string `json:"node,omitempty"` // the X-Edge-Node that answered, if any
	Status int    `json:"status,omitempty"`
	OK     bool   `json:"ok"`
	Error  string `json:"error,omitempty"`
}

// Result is every attempt for one name.
type Result struct {
	Name     string    `json:"name"`
	Attempts []Attempt `json:"attempts"`
}

// Failed counts failed attempts.
func (r Result) Failed() int {
	n := 0
	for _, a := range r.Attempts {
		if !a.OK {
			n++
		}
	}
	return n
}

// Preflight fetches a probe for each name. The zero value makes 6 attempts
// per name through the system resolver on port 80.
type Preflight struct {
	Attempts int
	// ConnectTo, if set ("host:port"), is dialled instead of NAME:80, like
	// curl --connect-to; the Host header still carries the name.
	ConnectTo string
	Timeout   time.Duration
}

// Check makes the attempts, each on a new connection (as the CA does).
func (pf Preflight) Check(ctx context.Context, names []string, probe Probe) []Result {
	attempts := pf.Attempts
	if attempts <= 0 {
		attempts = 6
	}
	timeout := pf.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	dialer := &net.Dialer{Timeout: timeout}
	tr := &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if pf.ConnectTo != "" {
				addr = pf.ConnectTo
			}
			return dialer.DialContext(ctx, network, addr)
		},
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	var out []Result
	for _, name := range names {
		res := Result{Name: name}
		for range attempts {
			res.Attempts = append(res.Attempts, fetchProbe(ctx, client, name, probe))
		}
		out = append(out, res)
	}
	return out
}

func fetchProbe(ctx context.Context, c *http.Client, name string, probe Probe) Attempt {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+name+PathPrefix+probe.Token, nil)
	if err != nil {
		return Attempt{Error: err.Error()}
	}
	resp, err := c.Do(req)
	if err != nil {
		return Attempt{Error: err.Error()}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	a := Attempt{Node: resp.Header.Get(NodeHeader), Status: resp.StatusCode}
	switch {
	case resp.StatusCode != http.StatusOK:
		a.Error = fmt.Sprintf("HTTP %d", resp.StatusCode)
	case !bytes.Equal(bytes.TrimSpace(body), []byte(probe.Value)):
		a.Error = "wrong answer (not an edge sharing this storage?)"
	default:
		a.OK = true
	}
	if a.Node == "" && !a.OK {
		a.Error += "; no " + NodeHeader + " header: not answered by edge"
	}
	return a
}
