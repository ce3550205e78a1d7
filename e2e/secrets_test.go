package e2e

import (
	"encoding/base64"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/farmedge/edge/internal/testenv"
)

// TestSecretsStayInside runs an edge at log level debug whose config holds
// a secret in every place that takes one: the Redis password, the peers'
// secret, a Cloudflare token, a TSIG key, the PFX, SMB, SFTP and Key Vault
// passwords. It obtains a certificate, delivers it (to a PFX directory that
// works and to targets that fail, whose errors are logged), and is asked
// every admin endpoint. No secret, and no private key, may appear in its
// log, its answers, its metrics or edge config. Keys and account keys in the file
// storage and the Redis local copy are 0600 in 0700 directories.
func TestSecretsStayInside(t *testing.T) {
	for _, storage := range []string{"file", "redis"} {
		t.Run(storage, func(t *testing.T) { secretsRun(t, storage) })
	}
}

func secretsRun(t *testing.T, storage string) {
	ports := testenv.FreePorts(t, 6)
	peb := startPebbleHTTP01(t, ports[0])
	b := testenv.NewBackend(t, 1, 0)
	dir := t.TempDir()
	secret := func(what string) string { return "s3cr3t-" + what + "-" + randomName("x")[:12] }
	secrets := map[string]string{
		"redis": secret("redis"), "peers": secret("peers"), "cloudflare": secret("cf"), "tsig": secret("tsig"),
		"pfx": secret("pfx"), "smb": secret("smb"), "smb-pfx": secret("smbpfx"), "sftp": secret("sftp"), "azure": secret("azure"),
	}
	tsig := base64.StdEncoding.EncodeToString([]byte(secrets["tsig"]))
	secrets["tsig-base64"] = tsig
	closed := testenv.Addr(ports[3]) // nothing listens: the deliveries there fail
	knownHosts := filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(knownHosts, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	store := filepath.Join(dir, "state", "edge") // edge makes it
	storageYAML := fmt.Sprintf("storage: {type: file, path: %q}\n", store)
	if storage == "redis" {
		r := testenv.StartRedis(t, testenv.RedisOptions{Args: []string{"--requirepass", secrets["redis"]}})
		storageYAML = fmt.Sprintf("storage: {type: redis, address: %q, password: %q, path: %q}\n", r.Addr, secrets["redis"], store)
	}
	pfxDir := filepath.Join(dir, "ccs")
	if err := os.Mkdir(pfxDir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`listen: {http: %q, https: %q}
admin: {listen: %q}
acme:
  email: test@example.com
  ca: %q
  ca_root_file: %q
  challenges: [http-01]
  dns:
    cf: {provider: cloudflare, api_token: %q, api_url: "http://%s/client/v4"}
    lan: {provider: rfc2136, server: %q, key_name: edge, key: %q}
%scluster: {peers: ["http://%s"], secret: %q}
log: {level: debug, format: json, access: true}
sites:
  - hosts: [a.test]
    routes: [{path: /, pool: web}]
pools:
  web: {backends: [%q]}
exports:
  - {name: ccs, type: pfx_dir, path: %q, password: %q}
  - {name: share, type: smb, servers: [%q], share: CCS, user: edge, password: %q, pfx_password: %q, timeout: 2s}
  - {name: apache, type: sftp, hosts: [%q], user: deploy, password: %q, known_hosts: %q, path: /srv, timeout: 2s}
  - {name: vault, type: azure_keyvault, vault: "https://%s", tenant_id: t, client_id: c, client_secret: %q, timeout: 2s}
`, testenv.Addr(ports[0]), testenv.Addr(ports[1]), testenv.Addr(ports[2]), peb.DirectoryURL, peb.MinicaRootFile,
		secrets["cloudflare"], closed, closed, tsig, storageYAML, closed, secrets["peers"], b.URL,
		pfxDir, secrets["pfx"], closed, secrets["smb"], secrets["smb-pfx"], closed, secrets["sftp"], knownHosts,
		closed, secrets["azure"])
	e := testenv.StartEdge(t, cfg)
	if err := e.WaitReady(readyTimeout); err != nil {
		t.Fatal(err)
	}
	// The working target gets its file; the others fail and log why.
	waitFor(t, 60*time.Second, "the PFX delivery", func() bool {
		_, err := os.Stat(filepath.Join(pfxDir, "a.test.pfx"))
		return err == nil
	})
	waitFor(t, 30*time.Second, "the failing deliveries to be logged", func() bool {
		log, _ := os.ReadFile(e.LogPath)
		return strings.Count(string(log), "export failed") >= 3
	})

	var answers strings.Builder
	for _, path := range []string{"/metrics", "/api/certificates", "/api/locks", "/api/pools", "/api/status", "/api/events", "/healthz", "/readyz", "/"} {
		resp, err := http.Get(e.AdminURL + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Fprintf(&answers, "--- %s %d\n%s\n", path, resp.StatusCode, body)
	}
	req, _ := http.NewRequest(http.MethodPost, e.AdminURL+"/api/export?dry_run=1", nil)
	req.Header.Set("X-Edge-Admin", "1")
	if resp, err := http.DefaultClient.Do(req); err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Fprintf(&answers, "--- POST /api/export?dry_run=1 %d\n%s\n", resp.StatusCode, body)
	}
	out, err := exec.Command(testenv.BuildEdge(t), "config", "-config", e.ConfigPath).CombinedOutput()
	if err != nil {
		t.Fatalf("edge config: %v\n%s", err, out)
	}
	fmt.Fprintf(&answers, "--- edge config\n%s\n", out)
	if !strings.Contains(string(out), "<redacted>") {
		t.Errorf("edge config redacted nothing:\n%s", out)
	}
	if err := e.Stop(); err != nil {
		t.Errorf("edge stop: %v", err)
	}
	log, err := os.ReadFile(e.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(log), `"level":"debug"`) {
		t.Fatal("the log has no debug lines: the test would prove nothing")
	}
	for what, s := range secrets {
		for where, text := range map[string]string{"the log": string(log), "the admin answers": answers.String()} {
			if i := strings.Index(text, s); i >= 0 {
				t.Errorf("the %s secret is in %s: ...%s...", what, where, text[max(0, i-200):min(len(text), i+len(s)+50)])
			}
		}
	}
	for _, marker := range []string{"PRIVATE KEY", "BEGIN EC", "BEGIN RSA"} {
		if strings.Contains(string(log), marker) || strings.Contains(answers.String(), marker) {
			t.Errorf("%q appears in the log or the admin answers", marker)
		}
	}

	// Keys on disk: 0600 files in 0700 directories, everything edge made.
	files := 0
	err = filepath.WalkDir(store, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		mode := info.Mode().Perm()
		switch {
		case d.IsDir() && mode != 0o700:
			t.Errorf("directory %s is %o, want 700", p, mode)
		case !d.IsDir() && mode != 0o600:
			t.Errorf("file %s is %o, want 600", p, mode)
		case !d.IsDir() && strings.HasSuffix(p, ".key"):
			files++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files == 0 {
		t.Errorf("no key files under %s: the permission check saw nothing", store)
	}
	t.Logf("%d key files under %s, all 0600 in 0700 directories", files, store)
}

// waitFor polls cond every 100 ms until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
