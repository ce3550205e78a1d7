package main

import (
	"net/http"
	"net/url"
)

// clusterInfo is GET /api/cluster, for the status page: this edge's node
// name, the storage type (redis: shared with the other edges) and the
// configured peers (userinfo removed).
type clusterInfo struct {
	Node    string   `json:"node"`
	Storage string   `json:"storage"`
	Shared  bool     `json:"shared"`
	Peers   []string `json:"peers"`
}

func (s *server) apiCluster(*http.Request) (any, error) {
	cfg := s.gen.Load().cfg
	out := clusterInfo{Node: s.node, Storage: cfg.Storage.Type, Shared: cfg.Storage.Type == "redis", Peers: []string{}}
	for _, p := range cfg.Cluster.Peers {
		if u, err := url.Parse(p); err == nil {
			u.User = nil
			p = u.String()
		}
		out.Peers = append(out.Peers, p)
	}
	return out, nil
}
