package main

import (
	"strings"
	"testing"

	"github.com/farmedge/edge/config"
)

func TestBuildPeers(t *testing.T) {
	for _, tc := range []struct {
		name      string
		cluster   config.Cluster
		wantPeers bool
		wantErr   string
	}{
		{name: "no cluster", cluster: config.Cluster{}},
		{name: "peers and secret", cluster: config.Cluster{Peers: []string{"http://edge-2:80"}, Secret: "s3cret"}, wantPeers: true},
		// Answers peers' asks, asks nobody itself.
		{name: "secret only", cluster: config.Cluster{Secret: "s3cret"}, wantPeers: true},
		{name: "peers without secret", cluster: config.Cluster{Peers: []string{"http://edge-2:80"}}, wantErr: "cluster.secret"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := buildPeers(tc.cluster, nil)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (p != nil) != tc.wantPeers {
				t.Fatalf("peers = %+v, want present %v", p, tc.wantPeers)
			}
			if p != nil && (string(p.Secret) != tc.cluster.Secret || len(p.URLs) != len(tc.cluster.Peers)) {
				t.Fatalf("peers = %+v, want secret and URLs from %+v", p, tc.cluster)
			}
		})
	}
}
