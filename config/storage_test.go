package config

import (
	"os"
	"path/filepath"
	"testing"
)

// The redis storage keys as users run Redis: an ACL username, TLS with a
// CA file, Sentinel (its own password_file).
func TestStorageRedisKeys(t *testing.T) {
	dir := t.TempDir()
	sentinelPW := filepath.Join(dir, "sentinel-pw")
	if err := os.WriteFile(sentinelPW, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	src := `
storage:
  type: redis
  username: edge
  password: pw
  tls: true
  tls_ca_file: /etc/edge/redis-ca.pem
  sentinel:
    master: mymaster
    addresses: ["10.0.0.1:26379", "10.0.0.2:26379"]
    username: watcher
    password_file: ` + sentinelPW + `
` + base
	c, err := Parse("t.yaml", []byte(src), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	s := c.Storage
	if s.Username != "edge" || s.Password != "pw" || !s.TLS || s.TLSCAFile != "/etc/edge/redis-ca.pem" || s.Prefix != DefaultRedisPrefix {
		t.Errorf("storage = %+v", s)
	}
	sen := s.Sentinel
	if sen == nil || sen.Master != "mymaster" || len(sen.Addresses) != 2 || sen.Addresses[1] != "10.0.0.2:26379" ||
		sen.Username != "watcher" || sen.Password != "s3cret" {
		t.Fatalf("sentinel = %+v", sen)
	}

	// Equal compares the sentinel by value, so a reload that re-reads the
	// same file is no storage change.
	c2, err := Parse("t.yaml", []byte(src), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Storage.Equal(c2.Storage) {
		t.Error("the same storage section parsed twice is not Equal")
	}
	changed := c2.Storage
	sc := *changed.Sentinel
	sc.Addresses = []string{"10.0.0.1:26379"}
	changed.Sentinel = &sc
	if c.Storage.Equal(changed) {
		t.Error("storages with different sentinel addresses are Equal")
	}
	if noSentinel := c.Storage; func() bool { noSentinel.Sentinel = nil; return c.Storage.Equal(noSentinel) }() {
		t.Error("a storage with sentinel Equals one without")
	}

	// The sentinel's password is a secret: redacted for edge config.
	if r := c.Redact(); r.Storage.Sentinel.Password != Redacted || r.Storage.Password != Redacted || c.Storage.Sentinel.Password != "s3cret" {
		t.Errorf("Redact: sentinel password %q, password %q; original %q", r.Storage.Sentinel.Password, r.Storage.Password, c.Storage.Sentinel.Password)
	}
}

func TestStorageRedisErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{"tls_ca_file without tls", `
storage:
  type: redis
  address: "redis:6379"
  tls_ca_file: /etc/edge/redis-ca.pem
`, []string{`5:16: tls_ca_file needs tls: true`}},
		{"address and sentinel", `
storage:
  type: redis
  address: "redis:6379"
  sentinel: {master: m, addresses: ["s1:26379"]}
`, []string{`4:12: set address or sentinel, not both`}},
		{"sentinel without master and addresses", `
storage:
  type: redis
  sentinel: {username: x}
`, []string{
			`4:13: sentinel needs master`,
			`4:13: sentinel needs addresses`,
		}},
		{"sentinel bad address", `
storage:
  type: redis
  sentinel:
    master: m
    addresses: ["s1:26379", "s2"]
`, []string{`6:29: invalid address "s2"`}},
		{"sentinel unknown key", `
storage:
  type: redis
  sentinel: {master: m, addresses: ["s1:26379"], adresses: []}
`, []string{`4:50: unknown key "adresses" (did you mean "addresses"?)`}},
		{"neither address nor sentinel", `
storage:
  type: redis
  username: edge
`, []string{`3:3: redis storage needs address (or sentinel)`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkProblems(t, problems(t, tc.src+base, noEnv), tc.want)
		})
	}
}

func TestStorageSentinelOnFileWarns(t *testing.T) {
	c, err := Parse("t.yaml", []byte("storage:\n  type: file\n  sentinel: {master: m, addresses: [\"s1:26379\"]}\n"+base), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	w := c.Warnings()
	if len(w) != 1 || w[0].Line != 3 || w[0].Col != 13 {
		t.Fatalf("warnings = %v, want one at 3:13 about sentinel", w)
	}
}
