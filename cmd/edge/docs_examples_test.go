package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/pem"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// TestDocsExamplesValidate: every YAML file under docs/examples passes
// `edge validate` as it is written (what cmdValidate runs: config.Load and
// the translation, which reads key and known_hosts files), so the IIS and
// Apache pages cannot rot. Each ${VAR} the file names is set to a real
// random value; EDGE_SSH_KEY and EDGE_KNOWN_HOSTS to a real ed25519 key and
// a known_hosts file.
func TestDocsExamplesValidate(t *testing.T) {
	files, err := filepath.Glob("../../docs/examples/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no docs/examples/*.yaml")
	}
	dir := t.TempDir()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "edge")
	if err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, "id_ed25519")
	if err := os.WriteFile(key, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	kh := filepath.Join(dir, "known_hosts")
	line := knownhosts.Line([]string{"web1.farm.internal", "web2.farm.internal"}, sshPub) + "\n"
	if err := os.WriteFile(kh, []byte(line), 0o644); err != nil {
		t.Fatal(err)
	}
	fileVars := map[string]string{"EDGE_SSH_KEY": key, "EDGE_KNOWN_HOSTS": kh}
	varRE := regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}`)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range varRE.FindAllStringSubmatch(string(src), -1) {
				if v, ok := fileVars[m[1]]; ok {
					t.Setenv(m[1], v)
					continue
				}
				b := make([]byte, 24)
				rand.Read(b)
				t.Setenv(m[1], hex.EncodeToString(b))
			}
			var out bytes.Buffer
			if err := cmdValidate([]string{"-config", f}, &out); err != nil {
				t.Fatalf("edge validate -config %s:\n%v", f, err)
			}
			if !strings.Contains(out.String(), ": ok: ") || strings.Contains(out.String(), "warning:") {
				t.Errorf("edge validate -config %s:\n%s", f, out.String())
			}
		})
	}
}
