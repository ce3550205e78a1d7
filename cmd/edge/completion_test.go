package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/farmedge/edge/internal/testenv"
)

func completionScript(t *testing.T, shell string) string {
	t.Helper()
	var out bytes.Buffer
	if err := Run(context.Background(), []string{"completion", shell}, &out, &out); err != nil {
		t.Fatalf("edge completion %s: %v\n%s", shell, err, out.String())
	}
	return out.String()
}

// TestCompletionSyntax: each shell parses its script without running it
// (bash -n, zsh -n, fish --no-execute).
func TestCompletionSyntax(t *testing.T) {
	for _, tc := range []struct{ shell, flag string }{
		{"bash", "-n"}, {"zsh", "-n"}, {"fish", "--no-execute"},
	} {
		t.Run(tc.shell, func(t *testing.T) {
			sh := testenv.RequireTool(t, tc.shell)
			path := filepath.Join(t.TempDir(), "edge."+tc.shell)
			if err := os.WriteFile(path, []byte(completionScript(t, tc.shell)), 0o644); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command(sh, tc.flag, path).CombinedOutput(); err != nil {
				t.Fatalf("%s %s: %v\n%s", tc.shell, tc.flag, err, out)
			}
		})
	}
}

// bashComplete sources the bash script, sets COMP_WORDS to words (the
// last one is the word being completed) and returns COMPREPLY.
func bashComplete(t *testing.T, bash, script string, words ...string) []string {
	t.Helper()
	var quoted []string
	for _, w := range words {
		quoted = append(quoted, shQuote(w))
	}
	prog := script + "\nCOMP_WORDS=(" + strings.Join(quoted, " ") + ")\nCOMP_CWORD=$((${#COMP_WORDS[@]}-1))\n_edge\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n"
	cmd := exec.Command(bash, "--norc", "--noprofile", "-c", prog)
	cmd.Dir = t.TempDir()
	for _, f := range []string{"edge.yaml", "edge-2.yaml", "other.txt"} {
		if err := os.WriteFile(filepath.Join(cmd.Dir, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("bash completing %q: %v\n%s", words, err, out)
	}
	got := strings.Fields(string(out))
	slices.Sort(got)
	return got
}

// TestBashCompletion runs the bash script's function as bash's completion
// would and checks what it offers.
func TestBashCompletion(t *testing.T) {
	bash := testenv.RequireTool(t, "bash")
	script := completionScript(t, "bash")
	for _, tc := range []struct {
		name  string
		words []string
		want  []string
	}{
		{"commands", []string{"edge", ""}, sorted(commandNames())},
		{"command prefix", []string{"edge", "va"}, []string{"validate"}},
		{"two commands", []string{"edge", "re"}, []string{"renew", "revoke"}},
		{"flags", []string{"edge", "validate", "-"}, []string{"-check-dns", "-config"}},
		{"flag prefix", []string{"edge", "certs", "-t"}, []string{"-token-file"}},
		{"file after -config", []string{"edge", "run", "-config", "edge"}, []string{"edge-2.yaml", "edge.yaml"}},
		{"file after --config", []string{"edge", "run", "--config", "ot"}, []string{"other.txt"}},
		{"nothing after a URL flag", []string{"edge", "certs", "-admin", ""}, nil},
		{"shells", []string{"edge", "completion", ""}, []string{"bash", "fish", "zsh"}},
		{"help topics", []string{"edge", "help", "ex"}, []string{"export"}},
		{"unknown command", []string{"edge", "nope", "-"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := bashComplete(t, bash, script, tc.words...); !slices.Equal(got, tc.want) {
				t.Errorf("completing %q: %q, want %q", tc.words, got, tc.want)
			}
		})
	}
}

// helpFlagRE finds the flags in `edge CMD -h` output ("  -config string").
var helpFlagRE = regexp.MustCompile(`(?m)^  (-[a-z][a-z0-9-]*)`)

// TestCompletionMatchesHelp: for every command edge help lists, bash
// completes exactly the flags `edge CMD -h` prints, and fish the same.
func TestCompletionMatchesHelp(t *testing.T) {
	bash := testenv.RequireTool(t, "bash")
	script := completionScript(t, "bash")
	var fishScript, fish string
	if p, err := testenv.FindTool("fish"); err == nil {
		fish, fishScript = p, filepath.Join(t.TempDir(), "edge.fish")
		if err := os.WriteFile(fishScript, []byte(completionScript(t, "fish")), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range commandNames() {
		t.Run(name, func(t *testing.T) {
			var help bytes.Buffer
			if name != "help" {
				if err := Run(context.Background(), []string{name, "-h"}, &help, &help); err != nil {
					t.Fatalf("edge %s -h: %v", name, err)
				}
			}
			var want []string
			for _, m := range helpFlagRE.FindAllStringSubmatch(help.String(), -1) {
				want = append(want, m[1])
			}
			slices.Sort(want)
			if got := bashComplete(t, bash, script, "edge", name, "-"); !slices.Equal(got, want) {
				t.Errorf("bash completes edge %s - to %q; edge %s -h lists %q", name, got, name, want)
			}
			if fish == "" {
				return
			}
			out, err := exec.Command(fish, "--no-config", "-c", "source "+fishScript+"; complete -C 'edge "+name+" -'").CombinedOutput()
			if err != nil {
				t.Fatalf("fish: %v\n%s", err, out)
			}
			var got []string
			for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				if f, _, _ := strings.Cut(line, "\t"); strings.HasPrefix(f, "-") {
					got = append(got, f)
				}
			}
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Errorf("fish completes edge %s - to %q; edge %s -h lists %q", name, got, name, want)
			}
		})
	}
}

func commandNames() []string {
	var out []string
	for _, c := range commands {
		out = append(out, c.name)
	}
	return out
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
