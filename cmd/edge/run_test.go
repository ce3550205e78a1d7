package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/farmedge/edge/config"
)

// storageDir is a directory for a file storage that certmagic's order
// goroutines may still write to for a moment after the Manager stopped.
func storageDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "edge-apply-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for range 100 {
			if os.RemoveAll(dir) == nil {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	return dir
}

// TestApplyKeepsState drives the plan/apply step as reloads do: a reload
// that changes one pool keeps the other's health; identical bytes change
// nothing; a storage change is refused at its position and leaves the
// running generation; a removed backend's series leave the registry.
func TestApplyKeepsState(t *testing.T) {
	sick := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(sick.Close)
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(ok.Close)
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(other.Close)

	dir := storageDir(t)
	path := filepath.Join(t.TempDir(), "edge.yaml")
	render := func(storage, apiBackend string) []byte {
		return []byte(`listen: {http: "127.0.0.1:0", https: "127.0.0.1:0"}
admin: {listen: "127.0.0.1:0"}
acme: {ca: "https://127.0.0.1:1/dir"}
storage: {path: "` + storage + `"}
sites: [{hosts: [a.test], routes: [{path: /api/, pool: api}, {path: /, pool: web}]}]
pools:
  web: {backends: ["` + sick.URL + `"], health: {path: /healthz, interval: 1h}}
  api: {backends: ["` + apiBackend + `"]}
`)
	}
	s, err := newServer(path, zap.NewNop(), "test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.close)
	apply := func(data []byte) error {
		t.Helper()
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Parse(path, data, nil)
		if err != nil {
			t.Fatal(err)
		}
		return s.apply(t.Context(), cfg)
	}
	first := render(dir, ok.URL)
	if err := apply(first); err != nil {
		t.Fatal(err)
	}
	s.applied = first
	webUp := func() bool {
		for _, p := range s.gen.Load().proxy.Status() {
			if p.Name == "web" {
				return p.Backends[0].Up
			}
		}
		t.Fatal("no pool web")
		return false
	}
	if webUp() {
		t.Fatal("web's backend fails its first probe but is up")
	}

	if text := gather(t, s); !strings.Contains(text, ok.URL) {
		t.Fatalf("no series for backend %s before the reload", ok.URL)
	}

	// Same bytes through the watcher's path: nothing is rebuilt.
	g := s.gen.Load()
	s.reload(t.Context(), "file changed", first)
	if s.gen.Load() != g {
		t.Error("identical bytes built a new generation")
	}

	// Pool api changes; web keeps its verdict (its check runs hourly, so
	// only kept state can say down).
	if err := apply(render(dir, other.URL)); err != nil {
		t.Fatal(err)
	}
	if webUp() {
		t.Error("a reload that changed another pool brought web's down backend back")
	}
	if text := gather(t, s); strings.Contains(text, ok.URL) {
		t.Errorf("series of the removed backend %s remain", ok.URL)
	}

	// A storage change is refused at its position.
	g = s.gen.Load()
	err = apply(render(storageDir(t), other.URL))
	if err == nil || !strings.Contains(err.Error(), "edge.yaml:4:") || !strings.Contains(err.Error(), "storage changed") {
		t.Errorf("storage change: %v, want a refusal at edge.yaml:4", err)
	}
	if s.gen.Load() != g {
		t.Error("a refused reload replaced the running generation")
	}
}

func gather(t *testing.T, s *server) string {
	t.Helper()
	mfs, err := s.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, mf := range mfs {
		b.WriteString(mf.String())
	}
	return b.String()
}
