package redisstore

import (
	"errors"
	"io/fs"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// A one-node Redis Cluster (all 16384 slots on one server) reached through
// go-redis's ClusterClient: the scripts must pass cluster mode's checks,
// which they do because every key carries the {prefix} hash tag.
func TestClusterMode(t *testing.T) {
	srv := startRedis(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
	raw := rawClient(t, srv)
	if err := raw.Do(t.Context(), "CLUSTER", "ADDSLOTSRANGE", 0, 16383).Err(); err != nil {
		t.Fatalf("CLUSTER ADDSLOTSRANGE: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, _ := raw.ClusterInfo(t.Context()).Result()
		if strings.Contains(info, "cluster_state:ok") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster not ready: %s", info)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Two seed addresses select the ClusterClient.
	s, err := New(Options{Addrs: []string{srv.addr, srv.addr}, Prefix: "cl", Instance: "cl-1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if _, ok := s.client.(*redis.ClusterClient); !ok {
		t.Fatalf("client is %T, want *redis.ClusterClient", s.client)
	}
	ctx := t.Context()
	seed(t, s)
	if got, err := s.List(ctx, "a", true); err != nil || !slices.Equal(got, []string{"a/b", "a/b/c.txt", "a/b/d.txt", "a/e.txt"}) {
		t.Fatalf("List = %q, %v", got, err)
	}
	if info, err := s.Stat(ctx, "a/b"); err != nil || info.IsTerminal {
		t.Fatalf("Stat(dir) = %+v, %v", info, err)
	}
	if err := s.Delete(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(ctx, "a/b/c.txt"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load after Delete(a) = %v", err)
	}
	if err := s.Lock(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	if err := s.RenewLockLease(ctx, "x", time.Minute); err != nil {
		t.Fatal(err)
	}
	if locks, err := s.Locks(ctx); err != nil || len(locks) != 1 || locks[0].Holder != "cl-1" {
		t.Fatalf("Locks = %+v, %v", locks, err)
	}
	if err := s.Unlock(ctx, "x"); err != nil {
		t.Fatal(err)
	}
}
