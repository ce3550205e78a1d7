package challenge

import (
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/caddyserver/certmagic"
	"github.com/mholt/acmez/v3/acme"

	"github.com/farmedge/edge/tlsmgr"
)

// recordingStorage is a certmagic.Storage that holds one challenge token
// file and records every key asked for under a context marked by fuzzMark
// (the request's), ignoring the background work of the Manager.
type recordingStorage struct {
	mu     sync.Mutex
	keys   []string
	tokens map[string][]byte // challenge_tokens file name -> content
}

var _ certmagic.Storage = (*recordingStorage)(nil)

type fuzzMark struct{}

func (s *recordingStorage) record(ctx context.Context, op, key string) {
	if ctx.Value(fuzzMark{}) == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys = append(s.keys, op+" "+key)
}

// take returns the keys recorded since the last call.
func (s *recordingStorage) take() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.keys
	s.keys = nil
	return k
}

func (s *recordingStorage) Load(ctx context.Context, key string) ([]byte, error) {
	s.record(ctx, "load", key)
	if dir, file := path.Split(key); strings.HasSuffix(dir, "/challenge_tokens/") {
		if b, ok := s.tokens[file]; ok {
			return b, nil
		}
	}
	return nil, fs.ErrNotExist
}

func (s *recordingStorage) Store(ctx context.Context, key string, _ []byte) error {
	s.record(ctx, "store", key)
	return nil
}

func (s *recordingStorage) Delete(ctx context.Context, key string) error {
	s.record(ctx, "delete", key)
	return nil
}

func (s *recordingStorage) Exists(ctx context.Context, key string) bool {
	s.record(ctx, "exists", key)
	return false
}

func (s *recordingStorage) List(ctx context.Context, key string, _ bool) ([]string, error) {
	s.record(ctx, "list", key)
	return nil, fs.ErrNotExist
}

func (s *recordingStorage) Stat(ctx context.Context, key string) (certmagic.KeyInfo, error) {
	s.record(ctx, "stat", key)
	return certmagic.KeyInfo{}, fs.ErrNotExist
}

func (s *recordingStorage) Lock(ctx context.Context, name string) error {
	s.record(ctx, "lock", name)
	return nil
}

func (s *recordingStorage) Unlock(ctx context.Context, name string) error {
	s.record(ctx, "unlock", name)
	return nil
}

// recordingTransport answers every peer ask 404 and records its path.
type recordingTransport struct {
	mu    sync.Mutex
	paths []string
}

func (rt *recordingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	rt.mu.Lock()
	rt.paths = append(rt.paths, r.URL.Path)
	rt.mu.Unlock()
	return &http.Response{StatusCode: http.StatusNotFound, Status: "404 Not Found", Body: io.NopCloser(strings.NewReader("")),
		Header: http.Header{}, Request: r}, nil
}

func (rt *recordingTransport) take() []string {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	p := rt.paths
	rt.paths = nil
	return p
}

// The one token that storage holds, for fuzzHost.
const (
	fuzzHost    = "a.example.com"
	fuzzToken   = "tok3n_tok3n-tok3n_tok3n"
	fuzzKeyAuth = fuzzToken + ".thumbprint"
)

// challengeKey is the only shape of storage key an HTTP-01 request may
// reach: certmagic's challenge_tokens/NAME.json of one issuer.
var challengeKey = regexp.MustCompile(`^load acme/[^/]+/challenge_tokens/[^/]*\.json$`)

// refToken is the reference for the token shape peers are asked for
// (RFC 8555 section 8.1: base64url, 128 bits or more, so 22 characters or
// more; edge caps it at 256).
func refToken(s string) bool {
	return len(s) >= 22 && len(s) <= 256 && strings.Trim(s,
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") == ""
}

// FuzzChallengePath sends arbitrary request targets and Host headers to
// the HTTP-01 handler in front of a real tlsmgr.Manager (over a storage
// that records the keys asked for) and Peers (over a transport that
// records the asks). It checks that a path outside PathPrefix reaches
// neither storage nor peers and goes to the next handler; that a path
// under it reaches no storage key but a challenge_tokens file (no
// traversal out of that namespace, whatever the dots, encoded slashes or
// NULs); that peers are asked only for PeerPath plus the request's token,
// of the token shape; that nothing answers but 404 or the key
// authorization of the one stored token, for its host and exact path.
func FuzzChallengePath(f *testing.F) {
	for _, s := range [][3]string{
		{"GET", "/.well-known/acme-challenge/" + fuzzToken, fuzzHost},
		{"GET", "/.well-known/acme-challenge/" + fuzzToken, "A.Example.COM:80"},
		{"GET", "/.well-known/acme-challenge/" + fuzzToken, "b.example.com"},
		{"GET", "/.well-known/acme-challenge/../../../etc/passwd", fuzzHost},
		{"GET", "/.well-known/acme-challenge/..%2f..%2fx", "../../x"},
		{"GET", "/.well-known/acme-challenge/%00" + fuzzToken, fuzzHost + "%00"},
		{"GET", "/.well-known/acme-challenge/" + strings.Repeat("A", 300), fuzzHost},
		{"GET", "/.well-known/acme-challenge/", ""},
		{"HEAD", "/.well-known/acme-challenge/" + fuzzToken, fuzzHost},
		{"GET", "/.well-known/acme-challenge", fuzzHost},
		{"GET", "/", fuzzHost},
		{"GET", "//.well-known/acme-challenge/" + fuzzToken, fuzzHost},
		{"GET", "/.well-known/edge-peer/acme-challenge/" + fuzzToken, fuzzHost},
		{"GET", "http://evil/.well-known/acme-challenge/" + fuzzToken, "[::1]:80"},
		{"GET", "/.well-known/acme-challenge/" + fuzzToken + "?x=../y", "..."},
	} {
		f.Add(s[0], s[1], s[2])
	}

	tokenFile, err := json.Marshal(certmagic.Challenge{Challenge: acme.Challenge{
		Type: acme.ChallengeTypeHTTP01, Token: fuzzToken, KeyAuthorization: fuzzKeyAuth,
		Identifier: acme.Identifier{Type: "dns", Value: fuzzHost},
	}})
	if err != nil {
		f.Fatal(err)
	}
	store := &recordingStorage{tokens: map[string][]byte{certmagic.StorageKeys.Safe(fuzzHost) + ".json": tokenFile}}
	m := tlsmgr.New(nil, nil)
	f.Cleanup(m.Stop)
	ctx, cancel := context.WithCancel(context.Background())
	f.Cleanup(cancel)
	if err := m.Apply(ctx, tlsmgr.Options{
		CA: "https://127.0.0.1:1/directory", Storage: store, HTTP01: true, HTTPPort: 1, TLSPort: 2,
		Groups: []tlsmgr.Group{{Names: []string{fuzzHost}}},
	}); err != nil {
		f.Fatal(err)
	}
	transport := &recordingTransport{}
	peers := &Peers{URLs: []string{"http://peer.test"}, Secret: []byte("secret"), Client: &http.Client{Transport: transport}}
	nextCalled := false
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		nextCalled = true
		w.WriteHeader(http.StatusTeapot)
	})
	h := NewHTTPHandler(HTTPOptions{Solver: m, Fallback: peers, Node: "node-1"}, next)

	f.Fuzz(func(t *testing.T, method, target, host string) {
		u, err := url.ParseRequestURI(target)
		if err != nil {
			u = &url.URL{Path: target} // as a handler in front may hand it on
		}
		r := (&http.Request{Method: method, URL: u, Host: host, Header: http.Header{}, RequestURI: target,
			Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, RemoteAddr: "192.0.2.1:1234", Body: http.NoBody,
		}).WithContext(context.WithValue(t.Context(), fuzzMark{}, true))
		store.take()
		transport.take()
		nextCalled = false
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		keys, asks := store.take(), transport.take()

		if !strings.HasPrefix(u.Path, PathPrefix) {
			if !nextCalled || len(keys) > 0 || len(asks) > 0 {
				t.Fatalf("%s %q (path %q, host %q): next called %v, storage keys %q, peer asks %q; want next only",
					method, target, u.Path, host, nextCalled, keys, asks)
			}
			return
		}
		if nextCalled {
			t.Fatalf("%s %q (path %q) went to the next handler", method, target, u.Path)
		}
		for _, k := range keys {
			if !challengeKey.MatchString(k) || path.Clean(k[len("load "):]) != k[len("load "):] {
				t.Fatalf("%s %q (path %q, host %q) reached storage key %q, outside the challenge tokens", method, target, u.Path, host, k)
			}
		}
		token := strings.TrimPrefix(u.Path, PathPrefix)
		for _, a := range asks {
			if a != PeerPath+token || !refToken(token) || method != http.MethodGet {
				t.Fatalf("%s %q (path %q, host %q) asked a peer for %q", method, target, u.Path, host, a)
			}
		}
		if method == http.MethodGet && u.Path == PathPrefix+fuzzToken && host == fuzzHost && w.Code != http.StatusOK {
			t.Fatalf("GET %q for %s, whose token is stored, answered %d", target, host, w.Code)
		}
		switch w.Code {
		case http.StatusNotFound:
		case http.StatusOK:
			if body := w.Body.String(); body != fuzzKeyAuth || u.Path != PathPrefix+fuzzToken || method != http.MethodGet ||
				!strings.EqualFold(hostOnly(host), fuzzHost) {
				t.Fatalf("%s %q (path %q, host %q) answered 200 %q", method, target, u.Path, host, body)
			}
		default:
			t.Fatalf("%s %q (path %q, host %q) answered %d, want 200 or 404", method, target, u.Path, host, w.Code)
		}
	})
}
