package config

import (
	"os"
	"path/filepath"
	"testing"
)

// TestPlaceholderSecretsRefused: every kind of secret, inline, from
// ${ENV} (with or without a default) or from its *_file, is refused at
// its FILE:LINE:COL, naming the key, when it is a well-known placeholder.
func TestPlaceholderSecretsRefused(t *testing.T) {
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name string
		src  string
		env  map[string]string
		want []string
	}{
		{"peer secret default change-me", `
cluster:
  peers: ["http://edge-2:80"]
  secret: "${PEER_SECRET:-change-me}"
` + base, nil, []string{`4:11: cluster.secret is "change-me", a well-known placeholder: set a real secret`}},
		{"peer secret from the environment", `
cluster:
  peers: ["http://edge-2:80"]
  secret: "${PEER_SECRET}"
` + base, map[string]string{"PEER_SECRET": "ChangeMe"}, []string{`4:11: cluster.secret is "ChangeMe"`}},
		{"peer secret file", `
cluster:
  peers: ["http://edge-2:80"]
  secret_file: ` + file("peers", "change_me\n") + `
` + base, nil, []string{`4:16: cluster.secret is "change_me", a well-known placeholder (read from secret_file ` + filepath.Join(dir, "peers") + `): set a real secret (such as the output of ` + "`openssl rand -hex 32`" + `), through ${VAR} or secret_file`}},
		{"admin token", `
admin: {listen: "0.0.0.0:9180", token: secret}
` + base, nil, []string{`2:40: admin.token is "secret"`}},
		{"eab hmac key", `
acme: {email: ops@example.com, eab: {key_id: kid-1, hmac_key: xxxxxxxx}}
` + base, nil, []string{`2:63: acme.eab.hmac_key is "xxxxxxxx", one character repeated`}},
		{"cloudflare token", `
acme:
  dns:
    cf: {provider: cloudflare, api_token: "${CF_API_TOKEN:-example-token}", zone_token: "<your zone token>"}
` + base, nil, []string{
			`4:43: acme.dns[cf].api_token is "example-token", a well-known placeholder`,
			`4:89: acme.dns[cf].zone_token is "<your zone token>", a template left unfilled`,
		}},
		{"tsig key in base64", `
acme:
  dns:
    lan: {provider: rfc2136, server: "10.0.0.53:53", key_name: edge, key_alg: hmac-sha256, key: c2VjcmV0}
` + base, nil, []string{`4:97: acme.dns[lan].key is the base64 of "secret", a well-known placeholder`}},
		{"redis and sentinel passwords", `
storage:
  type: redis
  password: password
  sentinel: {master: m, addresses: ["10.0.0.1:26379"], password: "********"}
` + base, nil, []string{
			`4:13: storage.password is "password"`,
			`5:66: storage.sentinel.password is "********", one character repeated`,
		}},
		{"export passwords", `
exports:
  - {name: ccs, type: pfx_dir, path: /mnt/ccs, password: "${PFX_PASSWORD:-changeme}"}
  - {name: share, type: smb, servers: [fs1], share: CCS, user: edge, password: Passw0rd, pfx_password: example}
  - {name: apache, type: sftp, hosts: ["web1:22"], user: deploy, password: "{{ sftp_password }}", known_hosts: /etc/edge/known_hosts, path: /srv}
  - {name: vault, type: azure_keyvault, vault: "https://v.vault.azure.net", tenant_id: t, client_id: c, client_secret: "<redacted>"}
` + base, nil, []string{
			`3:58: exports[0].password is "changeme"`,
			`4:80: exports[1].password is "Passw0rd"`,
			`4:104: exports[1].pfx_password is "example"`,
			`5:76: exports[2].password is "{{ sftp_password }}", a template left unfilled`,
			`6:120: exports[3].client_secret is "<redacted>"`,
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkProblems(t, problems(t, tc.src, mapEnv(tc.env)), tc.want)
		})
	}
}

// TestRealSecretsAccepted: secrets that merely contain a word, short
// ones tests use, and real-looking random ones pass.
func TestRealSecretsAccepted(t *testing.T) {
	src := `
admin: {listen: "0.0.0.0:9180", token: "${ADMIN_TOKEN}"}
acme:
  email: ops@example.com
  eab: {key_id: kid-1, hmac_key: "kS9vQ2l0ZV9obWFjX2tleV9mb3JfdGVzdHM"}
  dns:
    cf: {provider: cloudflare, api_token: "my-secret-cloudflare-token-2f9c"}
    lan: {provider: rfc2136, server: "10.0.0.53:53", key_name: edge, key_alg: hmac-sha256, key: "3q2+7wIbhW0p5bDAeUMl4Q=="}
cluster: {peers: ["http://edge-2:80"], secret: s}
exports:
  - {name: ccs, type: pfx_dir, path: /mnt/ccs, password: s3cret}
` + base
	env := mapEnv(map[string]string{"ADMIN_TOKEN": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"})
	if got := problems(t, src, env); len(got) != 0 {
		t.Errorf("real secrets refused:\n  %v", got)
	}
}

func TestPlaceholder(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"change-me", true}, {"CHANGE_ME", true}, {"change me", true}, {"changeit", true},
		{"secret", true}, {"Secret!", true}, {"password", true}, {"passw0rd", true},
		{"xxx", true}, {"XXXXXXXXXXXX", true}, {"000000", true}, {"<token>", true}, {"{{ .Token }}", true},
		{"Y2hhbmdlLW1l", true}, // base64("change-me")
		{"", false}, {"x", false}, {"xx", false}, {"s3cret", false}, {"farm-secret-for-tests", false},
		{"example-admin-token-change-me-0123456789abcdef", false},
		{"9f86d081884c7d659a2feaa0c55ad015", false}, {"3q2+7wIbhW0p5bDAeUMl4Q==", false},
	}
	for _, tc := range tests {
		if _, got := placeholder(tc.in); got != tc.want {
			t.Errorf("placeholder(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}
