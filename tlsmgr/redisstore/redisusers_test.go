package redisstore

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/farmedge/edge/internal/testenv"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap/zaptest"
)

// Redis as users run it: TLS with a private CA, an ACL user, Sentinel.

func newStorage(t *testing.T, opts Options) *Storage {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = zaptest.NewLogger(t)
	}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func roundTrip(t *testing.T, s *Storage, key, val string) {
	t.Helper()
	if err := s.Store(t.Context(), key, []byte(val)); err != nil {
		t.Fatalf("store %s: %v", key, err)
	}
	if b, err := s.Load(t.Context(), key); err != nil || string(b) != val {
		t.Fatalf("load %s = %q, %v", key, b, err)
	}
}

// A redis-server serving TLS only, its certificate from a test CA: the
// store connects with that CA as its roots, and is refused (certificate
// verification) with the system roots or over plain TCP.
func TestTLSWithCAFile(t *testing.T) {
	srv := testenv.StartRedis(t, testenv.RedisOptions{TLS: true})
	pem, err := os.ReadFile(srv.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		t.Fatal("no certificate in the test CA file")
	}

	s := newStorage(t, Options{Addrs: []string{srv.Addr}, Prefix: "tls", TLS: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}})
	if err := s.Ping(t.Context()); err != nil {
		t.Fatalf("ping over TLS with the CA: %v", err)
	}
	roundTrip(t, s, "certificates/a.example/a.example.crt", "pem")

	sys := newStorage(t, Options{Addrs: []string{srv.Addr}, Prefix: "tls", TLS: &tls.Config{MinVersion: tls.VersionTLS12}})
	err = sys.Ping(t.Context())
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Errorf("ping over TLS with the system roots = %v, want x509.UnknownAuthorityError", err)
	}

	plain := newStorage(t, Options{Addrs: []string{srv.Addr}, Prefix: "tls"})
	if err := plain.Ping(t.Context()); err == nil {
		t.Error("ping over plain TCP to a TLS-only server succeeded")
	}
}

// An ACL user allowed only the keys of its prefix: the store works as that
// user (scripts and locks included), a wrong password is refused with
// WRONGPASS, and another prefix is refused with NOPERM, so the user really
// is the one connected.
func TestACLUser(t *testing.T) {
	srv := testenv.StartRedis(t, testenv.RedisOptions{Args: []string{
		"--user", "edge", "on", ">s3cret", "~{acl}:*", "+@all",
		"--user", "default", "off",
	}})
	s := newStorage(t, Options{Addrs: []string{srv.Addr}, Prefix: "acl", Username: "edge", Password: "s3cret", Instance: "acl-1"})
	if err := s.Ping(t.Context()); err != nil {
		t.Fatalf("ping as edge: %v", err)
	}
	roundTrip(t, s, "certificates/a.example/a.example.key", "key")
	if err := s.Lock(t.Context(), "issue_cert_a.example"); err != nil {
		t.Fatal(err)
	}
	if err := s.Unlock(t.Context(), "issue_cert_a.example"); err != nil {
		t.Fatal(err)
	}
	if who, err := srv.Do("ACL", "WHOAMI"); err == nil {
		t.Errorf("the default user is on (ACL WHOAMI = %v without AUTH)", who)
	}

	wrong := newStorage(t, Options{Addrs: []string{srv.Addr}, Prefix: "acl", Username: "edge", Password: "nope"})
	if err := wrong.Ping(t.Context()); err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
		t.Errorf("ping with a wrong password = %v, want WRONGPASS", err)
	}
	other := newStorage(t, Options{Addrs: []string{srv.Addr}, Prefix: "other", Username: "edge", Password: "s3cret"})
	if err := other.Store(t.Context(), "k", []byte("v")); err == nil || !strings.Contains(err.Error(), "NOPERM") {
		t.Errorf("store under a prefix the user may not touch = %v, want NOPERM", err)
	}
}

// Sentinel: a master, a replica and three sentinels (quorum 2). The store
// finds the master through the sentinels; after SENTINEL FAILOVER (the old
// master demoted to a replica, so writes to it would be READONLY) it
// follows the new master: what it wrote before is there, writes and locks
// work again within seconds.
func TestSentinelFailover(t *testing.T) {
	sen := testenv.StartSentinel(t, testenv.SentinelOptions{})
	s := newStorage(t, Options{Addrs: sen.Addrs, MasterName: sen.Master, Prefix: "sen", Instance: "sen-1"})
	if _, ok := s.client.(*redis.Client); !ok {
		t.Fatalf("client is %T, want the failover *redis.Client", s.client)
	}
	if err := s.Ping(t.Context()); err != nil {
		t.Fatal(err)
	}
	roundTrip(t, s, "before", "1")
	unknown := newStorage(t, Options{Addrs: sen.Addrs, MasterName: "nosuch", Prefix: "sen"})
	if err := unknown.Ping(t.Context()); err == nil || !strings.Contains(err.Error(), `master "nosuch" via sentinels `+sen.Addrs[0]) {
		t.Errorf("ping of a master no sentinel monitors = %v, want an error naming it and the sentinels", err)
	}
	if err := sen.WaitReplicated(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	old, err := sen.MasterAddr()
	if err != nil {
		t.Fatal(err)
	}
	if err := sen.Failover(); err != nil {
		t.Fatalf("SENTINEL FAILOVER: %v", err)
	}
	start := time.Now()
	newAddr, err := sen.WaitNewMaster(old, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("failover %s -> %s in %s", old, newAddr, time.Since(start).Round(time.Millisecond))

	// The first writes may land on the demoted master (READONLY) or a
	// closed connection; within a deadline they must succeed.
	var lastErr error
	deadline := time.Now().Add(20 * time.Second)
	for {
		if lastErr = s.Store(t.Context(), "after", []byte("2")); lastErr == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no successful store within 20s of the failover: %v", lastErr)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("first store after the failover %s after it began", time.Since(start).Round(time.Millisecond))
	if b, err := s.Load(t.Context(), "before"); err != nil || string(b) != "1" {
		t.Errorf("load of a key written before the failover = %q, %v", b, err)
	}
	got, err := testenv.RedisDo(newAddr, "HGET", "{sen}:v:after", "d")
	if err != nil || got != "2" {
		t.Errorf("new master %s has {sen}:v:after = %v, %v; want the store to have gone there", newAddr, got, err)
	}
	// Sentinel demotes the old master once the new one is in charge.
	deadline = time.Now().Add(20 * time.Second)
	for role, _ := sen.Role(old); role != "slave"; role, _ = sen.Role(old) {
		if time.Now().After(deadline) {
			t.Fatalf("old master %s has role %q 20s after the failover, want slave", old, role)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := s.Lock(t.Context(), "after"); err != nil {
		t.Fatalf("lock after the failover: %v", err)
	}
	if err := s.Unlock(t.Context(), "after"); err != nil {
		t.Fatal(err)
	}
}

// Sentinel credentials without a master name are a mistake New refuses.
func TestSentinelOptionsCheck(t *testing.T) {
	if _, err := New(Options{Addrs: []string{"127.0.0.1:1"}, SentinelPassword: "x"}); err == nil {
		t.Error("New accepted SentinelPassword without MasterName")
	}
}
