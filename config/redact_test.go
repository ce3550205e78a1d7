package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestEffectiveRoundTrips: the effective YAML of config.example.yaml parses
// back to the same configuration, so edge config shows exactly what runs.
func TestEffectiveRoundTrips(t *testing.T) {
	env := exampleEnv
	c, err := Parse("../config.example.yaml", mustRead(t, "../config.example.yaml"), env)
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.Effective()
	if err != nil {
		t.Fatal(err)
	}
	again, err := Parse("effective.yaml", out, env)
	if err != nil {
		t.Fatalf("the effective config does not parse:\n%v\n%s", err, out)
	}
	c.vals, c.poolOrder, c.File = nil, nil, ""
	again.vals, again.poolOrder, again.File = nil, nil, ""
	if !reflect.DeepEqual(c, again) {
		t.Errorf("round trip changed the config:\n%s", out)
	}
	if !strings.Contains(string(out), "read_header_timeout: 10s") {
		t.Errorf("defaults or durations missing:\n%s", out)
	}
}

// TestRedact: every secret, given inline or as a *_file, is replaced, and
// the original is left alone.
func TestRedact(t *testing.T) {
	dir := t.TempDir()
	file := func(name, v string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	src := `
admin: {listen: "127.0.0.1:9180", token_file: ` + file("token", "S-admin") + `}
acme:
  ca: "https://ca.internal/dir"
  eab: {key_id: kid, hmac_key: S-hmac}
  dns:
    cf: {provider: cloudflare, api_token: S-cf, zone_token: S-zone}
    lan: {provider: rfc2136, server: "10.0.0.53:53", key_name: edge, key: U19rZXk=}
storage: {type: redis, address: "redis:6379", password: S-redis}
cluster: {peers: ["http://e2:80"], secret_file: ` + file("peers", "S-peers") + `}
sites: [{hosts: [a.example.com], routes: [{path: /, pool: web}]}]
pools: {web: {backends: ["http://127.0.0.1:8080"]}}
exports:
  - {name: ccs, type: pfx_dir, path: /mnt/ccs, password: S-pfx}
  - {name: share, type: smb, servers: [fs1], share: CCS, user: u, password: S-smb, pfx_password: S-smbpfx}
  - {name: vault, type: azure_keyvault, vault: "https://v.vault.azure.net", tenant_id: t, client_id: c, client_secret: S-azure}
`
	c, err := Parse("t.yaml", []byte(src), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.Redact().Effective()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"S-admin", "S-hmac", "S-cf", "S-zone", "U19rZXk=", "S-redis", "S-peers", "S-pfx", "S-smb", "S-smbpfx", "S-azure"} {
		if strings.Contains(string(out), s) {
			t.Errorf("secret %s in the redacted config:\n%s", s, out)
		}
	}
	if n := strings.Count(string(out), Redacted); n != 11 {
		t.Errorf("%d redacted values, want 11:\n%s", n, out)
	}
	if c.Admin.Token != "S-admin" || c.Exports[0].Password != "S-pfx" || c.ACME.DNS["cf"].APIToken != "S-cf" {
		t.Error("Redact changed the original")
	}
}
