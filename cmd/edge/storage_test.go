package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/farmedge/edge/config"
	"github.com/farmedge/edge/internal/testenv"
	"github.com/farmedge/edge/tlsmgr"
	"github.com/farmedge/edge/tlsmgr/redisstore"
)

// pingStorage builds the storage of sc as edge run does and pings it.
func pingStorage(t *testing.T, sc config.Storage) error {
	t.Helper()
	st, err := buildStorage(sc, storageDeps{node: "test"})
	if err != nil {
		t.Fatalf("buildStorage: %v", err)
	}
	defer closeStorage(st)
	rs := st.(*tlsmgr.Mirror).Storage.(*redisstore.Storage)
	return rs.Ping(t.Context())
}

// The storage keys reach go-redis: a TLS-only Redis with a private CA and
// an ACL user, reached with tls_ca_file and username; the same without
// tls_ca_file fails certificate verification.
func TestStorageTLSAndUser(t *testing.T) {
	srv := testenv.StartRedis(t, testenv.RedisOptions{TLS: true, Args: []string{"--user", "edge", "on", ">pw", "~{edge}:*", "+@all", "--user", "default", "off"}})
	sc := config.Storage{Type: "redis", Path: t.TempDir(), Address: srv.Addr, Prefix: "edge",
		Username: "edge", Password: "pw", TLS: true, TLSCAFile: srv.CAFile}
	if err := pingStorage(t, sc); err != nil {
		t.Fatalf("tls_ca_file and username: %v", err)
	}
	noCA := sc
	noCA.TLSCAFile = ""
	if err := pingStorage(t, noCA); err == nil || !strings.Contains(err.Error(), "certificate signed by unknown authority") {
		t.Errorf("without tls_ca_file: %v, want a verification error", err)
	}
	wrong := sc
	wrong.Password = "nope"
	if err := pingStorage(t, wrong); err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
		t.Errorf("wrong password: %v, want WRONGPASS", err)
	}
}

// storage.sentinel: the store finds the master through the sentinels,
// each set asking for its own password (sentinel.password for the
// sentinels, password for the master).
func TestStorageSentinel(t *testing.T) {
	sen := testenv.StartSentinel(t, testenv.SentinelOptions{MasterAuth: "master-pw", SentinelPassword: "sentinel-pw"})
	sc := config.Storage{Type: "redis", Path: t.TempDir(), Prefix: "edge", Password: "master-pw",
		Sentinel: &config.Sentinel{Master: sen.Master, Addresses: sen.Addrs, Password: "sentinel-pw"}}
	st, err := buildStorage(sc, storageDeps{node: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer closeStorage(st)
	if err := st.Store(t.Context(), "probe", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if v, err := testenv.RedisDoAuth(sen.Servers[0].Addr, "master-pw", "HGET", "{edge}:v:probe", "d"); err != nil || v != "x" {
		t.Errorf("master has %v, %v; want the stored value", v, err)
	}
	for _, tc := range []struct {
		name, want string
		sc         func(*config.Storage)
	}{
		{"master name no sentinel monitors", `master "nosuchmaster" via sentinels`, func(c *config.Storage) { c.Sentinel.Master = "nosuchmaster" }},
		{"no sentinel password", "NOAUTH", func(c *config.Storage) { c.Sentinel.Password = "" }},
		{"the master's password to the sentinels", "WRONGPASS", func(c *config.Storage) { c.Sentinel.Password = "master-pw" }},
		{"wrong master password", "WRONGPASS", func(c *config.Storage) { c.Password = "sentinel-pw" }},
	} {
		bad := sc
		s := *sc.Sentinel
		bad.Sentinel = &s
		tc.sc(&bad)
		if err := pingStorage(t, bad); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: ping = %v, want an error with %q", tc.name, err, tc.want)
		}
	}
}

// A tls_ca_file that cannot be read or holds no certificate is an error
// at its FILE:LINE:COL from edge validate, naming the file.
func TestStorageTLSCAFileErrors(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, file, want string }{
		{"missing", filepath.Join(dir, "missing.pem"), "no such file"},
		{"no certificate", notPEM, "no PEM certificates found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "edge.yaml")
			data := "listen: {http: \"127.0.0.1:0\", https: \"127.0.0.1:0\"}\nadmin: {listen: \"127.0.0.1:0\"}\n" +
				"storage:\n  type: redis\n  address: \"127.0.0.1:6379\"\n  tls: true\n  tls_ca_file: " + tc.file + "\n" +
				"sites: [{hosts: [a.test], routes: [{path: /, pool: web}]}]\npools: {web: {backends: [\"http://127.0.0.1:8080\"]}}\n"
			if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			err := Run(context.Background(), []string{"validate", "-config", path}, &out, &out)
			if err == nil {
				t.Fatalf("edge validate accepted tls_ca_file %s", tc.file)
			}
			want := path + ":7:16: tls_ca_file"
			if msg := err.Error(); !strings.HasPrefix(msg, want) || !strings.Contains(msg, tc.file) || !strings.Contains(msg, tc.want) {
				t.Errorf("edge validate: %q, want %q... naming %s (%s)", msg, want, tc.file, tc.want)
			}
		})
	}
}
