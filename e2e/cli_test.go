package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/farmedge/edge/internal/testenv"
)

// TestCLI runs `edge version` and `edge validate` on a good and a bad file.
func TestCLI(t *testing.T) {
	bin := testenv.BuildEdge(t)
	dir := t.TempDir()

	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "edge ") {
		t.Errorf("edge version: %v %q", err, out)
	}

	good := filepath.Join(dir, "good.yaml")
	conf := edgeConf{
		httpPort: 18080, httpsPort: 18443, adminPort: 19180,
		ca: "https://127.0.0.1:14000/dir", caRoot: testenv.TestdataPath(t, "pebble.minica.pem"),
		challenges: []string{"http-01"}, storage: filepath.Join(dir, "storage"),
		sites:    []site{{hosts: []string{"a.test"}}},
		backends: []string{"http://127.0.0.1:8081"},
	}
	if err := os.WriteFile(good, []byte(conf.yaml()), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command(bin, "validate", "-config", good).CombinedOutput()
	if err != nil {
		t.Errorf("edge validate on a good file: %v\n%s", err, out)
	} else if lines := strings.Split(strings.TrimSpace(string(out)), "\n"); len(lines) != 1 {
		t.Errorf("edge validate on a good file printed %d lines, want a one-line summary:\n%s", len(lines), out)
	}

	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte(`listen: {http: "127.0.0.1:18080", https: "127.0.0.1:18443"}
admin: {listen: "127.0.0.1:19180"}
bogus_key: 1
sites:
  - hosts: [a.test]
    routes: [{path: /, pool: nope}]
pools:
  web: {backends: ["http://127.0.0.1:8081"], health: {interval: fast}}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command(bin, "validate", "-config", bad).CombinedOutput()
	if code := testenv.ExitCode(err); code != 1 {
		t.Errorf("edge validate on a bad file: exit %d, want 1\n%s", code, out)
	}
	for _, line := range []int{3, 6, 8} {
		re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(bad) + `:` + itoa(line) + `:\d+: \S`)
		if !re.Match(out) {
			t.Errorf("edge validate: no error reported as %s:%d:COL: ...; output:\n%s", bad, line, out)
		}
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
