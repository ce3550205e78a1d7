package challenge

import (
	"context"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// mapStore is an in-memory Loader.
type mapStore struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (s *mapStore) Load(_ context.Context, key string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v, ok := s.m[key]; ok {
		return v, nil
	}
	return nil, fs.ErrNotExist
}

// edgeNode is a plain-HTTP listener wired like cmd/edge wires it.
func edgeNode(t *testing.T, node string, solver Solver, peers *Peers) *httptest.Server {
	t.Helper()
	notFound := http.NotFoundHandler()
	h := NewHTTPHandler(HTTPOptions{Solver: solver, Fallback: peers, Node: node}, notFound)
	if peers != nil {
		h = peers.PeerHandler(solver, h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, base, host, path string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", base+path, nil)
	req.Host = host
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// tokB looks like a real ACME token (base64url, 43 characters).
const tokB = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA"

func TestPeersAnswerUnknownToken(t *testing.T) {
	secret := []byte("shared-secret")
	// B knows the token; A does not and asks B.
	b := edgeNode(t, "b", fakeSolver{host: "a.test", token: tokB, source: "local"}, &Peers{Secret: secret})
	a := edgeNode(t, "a", fakeSolver{host: "a.test", token: "other"}, &Peers{Secret: secret, URLs: []string{b.URL}})

	if code, body := get(t, a.URL, "a.test", PathPrefix+tokB); code != 200 || body != tokB+".thumb" {
		t.Fatalf("A asking B: %d %q", code, body)
	}
	if code, _ := get(t, a.URL, "a.test", PathPrefix+"nobodyknowsthistokenatallxyz"); code != 404 {
		t.Fatalf("unknown everywhere: %d, want 404", code)
	}
}

func TestPeersAskOnlyForPlausibleRequests(t *testing.T) {
	secret := []byte("s")
	var asks atomic.Int32
	counting := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asks.Add(1)
		http.NotFound(w, r)
	}))
	defer counting.Close()
	p := &Peers{Secret: secret, URLs: []string{counting.URL}, Manages: func(h string) bool { return h == "a.test" }}
	for _, tc := range []struct{ host, token string }{
		{"a.test", "short"},                  // not an ACME token
		{"a.test", tokB[:30] + "%3Fx%2E%2E"}, // not base64url once decoded
		{"scanner.example", tokB},            // a host edge does not serve
	} {
		p.ServeChallenge(httptest.NewRecorder(), httptest.NewRequest("GET", "http://"+tc.host+PathPrefix+tc.token, nil))
	}
	if n := asks.Load(); n != 0 {
		t.Fatalf("peers were asked %d times for implausible requests", n)
	}
	p.ServeChallenge(httptest.NewRecorder(), httptest.NewRequest("GET", "http://a.test"+PathPrefix+tokB, nil))
	if n := asks.Load(); n != 1 {
		t.Fatalf("peers asked %d times for a plausible request, want 1", n)
	}
}

func TestPeersDeadPeerDoesNotHideOthers(t *testing.T) {
	secret := []byte("s")
	// A peer that never answers within the ask timeout, listed first.
	stuck := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	}))
	defer stuck.Close()
	b := edgeNode(t, "b", fakeSolver{host: "a.test", token: tokB}, &Peers{Secret: secret})
	p := &Peers{Secret: secret, URLs: []string{stuck.URL, stuck.URL, b.URL}}
	start := time.Now()
	rec := httptest.NewRecorder()
	if !p.ServeChallenge(rec, httptest.NewRequest("GET", "http://a.test"+PathPrefix+tokB, nil)) {
		t.Fatal("the live peer behind two stuck ones was not heard")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("answer took %s: peers asked one after another", d)
	}
}

func TestPeersRejectBadAsks(t *testing.T) {
	b := edgeNode(t, "b", fakeSolver{host: "a.test", token: tokB}, &Peers{Secret: []byte("right")})
	u, _ := url.Parse(b.URL)

	wrong := &Peers{Secret: []byte("wrong"), URLs: []string{b.URL}}
	rec := httptest.NewRecorder()
	if wrong.ServeChallenge(rec, httptest.NewRequest("GET", "http://a.test"+PathPrefix+tokB, nil)) {
		t.Fatal("a peer with the wrong secret got an answer")
	}
	// A replayed ask from long ago is refused.
	old := &Peers{Secret: []byte("right"), URLs: []string{b.URL}, now: func() time.Time { return time.Now().Add(-5 * time.Minute) }}
	if old.ServeChallenge(httptest.NewRecorder(), httptest.NewRequest("GET", "http://a.test"+PathPrefix+tokB, nil)) {
		t.Fatal("a stale ask got an answer")
	}
	// No signature at all.
	if code, _ := get(t, "http://"+u.Host, "a.test", PeerPath+tokB); code != http.StatusForbidden {
		t.Fatalf("unsigned ask: %d, want 403", code)
	}
}

func TestPeersDoNotLoop(t *testing.T) {
	secret := []byte("s")
	// Two peers pointing at each other, neither knowing the token.
	var aURL string
	pa := &Peers{Secret: secret}
	pb := &Peers{Secret: secret}
	a := edgeNode(t, "a", fakeSolver{}, pa)
	b := edgeNode(t, "b", fakeSolver{}, pb)
	aURL = a.URL
	pa.URLs, pb.URLs = []string{b.URL}, []string{aURL}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if code, _ := get(t, a.URL, "a.test", PathPrefix+tokB); code != 404 {
			t.Errorf("code %d, want 404", code)
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("peers asked each other in a loop")
	}
}

func TestPreflight(t *testing.T) {
	probe := NewProbe()
	store := &mapStore{m: map[string][]byte{ProbeKey(probe.Token): []byte(probe.Value)}}
	good := edgeNode(t, "good", ProbeSolver{Store: store}, nil)
	bad := edgeNode(t, "bad", ProbeSolver{Store: &mapStore{}}, nil)

	res := Preflight{Attempts: 3, ConnectTo: strings.TrimPrefix(good.URL, "http://")}.Check(t.Context(), []string{"a.test"}, probe)
	if len(res) != 1 || res[0].Failed() != 0 || res[0].Attempts[0].Node != "good" {
		t.Fatalf("healthy node: %+v", res)
	}
	res = Preflight{Attempts: 2, ConnectTo: strings.TrimPrefix(bad.URL, "http://")}.Check(t.Context(), []string{"a.test"}, probe)
	if res[0].Failed() != 2 || res[0].Attempts[0].Node != "bad" || res[0].Attempts[0].Status != 404 {
		t.Fatalf("broken node not reported: %+v", res)
	}
	// Something that is not edge at all.
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("hi")) }))
	defer other.Close()
	res = Preflight{Attempts: 1, ConnectTo: strings.TrimPrefix(other.URL, "http://")}.Check(t.Context(), []string{"a.test"}, probe)
	if res[0].Failed() != 1 || !strings.Contains(res[0].Attempts[0].Error, "not answered by edge") {
		t.Fatalf("foreign server not reported: %+v", res)
	}
}
