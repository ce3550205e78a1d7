package main

import (
	"encoding/json"
	"testing"

	"github.com/farmedge/edge/config"
)

// TestAPICluster: /api/cluster names this edge, says whether the store is
// shared and lists the peers without their userinfo.
func TestAPICluster(t *testing.T) {
	s := &server{node: "edge-1"}
	cfg := &config.Config{}
	cfg.Storage.Type = "redis"
	cfg.Cluster.Peers = []string{"http://edge-2:80", "http://ops:hunter2@edge-3:80"}
	s.gen.Store(&generation{cfg: cfg})
	v, err := s.apiCluster(nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(v)
	want := `{"node":"edge-1","storage":"redis","shared":true,"peers":["http://edge-2:80","http://edge-3:80"]}`
	if string(b) != want {
		t.Fatalf("got  %s\nwant %s", b, want)
	}
}
