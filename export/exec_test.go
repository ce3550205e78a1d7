package export

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// recordScript writes an executable /bin/sh script that records its
// arguments, the EDGE_* and EXTRA variables, the mode of the key's
// directory and copies of the files it is given into out.*, then prints
// to stdout and stderr.
func recordScript(t *testing.T) (script, out string) {
	t.Helper()
	dir := t.TempDir()
	out = filepath.Join(dir, "out")
	script = filepath.Join(dir, "hook.sh")
	body := `#!/bin/sh
out="$1"; shift
for a in "$@"; do printf 'arg=%s\n' "$a"; done > "$out.args"
env | grep -E '^(EDGE_|EXTRA=)' | sort > "$out.env"
if [ -n "$EDGE_CERT_FULLCHAIN" ]; then
	cat "$EDGE_CERT_FULLCHAIN" > "$out.fullchain"
	cat "$EDGE_CERT_KEY" > "$out.key"
	stat -c %a "$(dirname "$EDGE_CERT_KEY")" "$EDGE_CERT_KEY" > "$out.modes"
fi
echo "to stdout"
echo "to stderr" >&2
`
	if err := os.WriteFile(script, []byte(body), 0o700); err != nil {
		t.Fatal(err)
	}
	return script, out
}

// hookEnv parses the out.env file the script wrote.
func hookEnv(t *testing.T, out string) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(readLocal(t, out+".env"))), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			env[k] = v
		}
	}
	return env
}

func TestExecDeliver(t *testing.T) {
	// Inherited values of the hook's variables never reach it.
	t.Setenv("EDGE_CERT_PFX", "/inherited.pfx")
	t.Setenv("EDGE_EXPORT_DRY_RUN", "1")
	script, out := recordScript(t)
	e, err := NewExec(ExecOptions{
		Command: []string{script, out, "--name={name}", "{name}"},
		Env:     []string{"EXTRA=a=b"},
		Timeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	c := testCert(t, "*.example.com", 0x1234)
	rs := e.Deliver(t.Context(), c)
	if len(rs) != 1 || rs[0].Err != nil {
		t.Fatalf("Deliver = %+v", rs)
	}
	if rs[0].Host != script {
		t.Errorf("Host = %q, want %q", rs[0].Host, script)
	}
	if want := "to stdout\nto stderr"; rs[0].Output != want {
		t.Errorf("Output = %q, want %q", rs[0].Output, want)
	}
	if got, want := string(readLocal(t, out+".args")), "arg=--name=*.example.com\narg=*.example.com\n"; got != want {
		t.Errorf("args = %q, want %q", got, want)
	}

	env := hookEnv(t, out)
	for k, want := range map[string]string{
		"EDGE_CERT_NAME":      "*.example.com",
		"EDGE_CERT_SERIAL":    "1234",
		"EDGE_CERT_NOT_AFTER": c.Leaf().NotAfter.UTC().Format(time.RFC3339),
		"EXTRA":               "a=b",
	} {
		if env[k] != want {
			t.Errorf("%s = %q, want %q", k, env[k], want)
		}
	}
	for _, k := range []string{"EDGE_CERT_PFX", "EDGE_EXPORT_DRY_RUN"} {
		if v, ok := env[k]; ok {
			t.Errorf("%s = %q, want it unset", k, v)
		}
	}
	if _, err := time.Parse(time.RFC3339, env["EDGE_CERT_NOT_AFTER"]); err != nil {
		t.Error(err)
	}

	// The temporary files were readable, 0700/0600, and are gone.
	key, _ := c.KeyPEM()
	if !bytes.Equal(readLocal(t, out+".fullchain"), c.FullchainPEM()) || !bytes.Equal(readLocal(t, out+".key"), key) {
		t.Error("the hook did not read the certificate's files")
	}
	if got := string(readLocal(t, out+".modes")); got != "700\n600\n" {
		t.Errorf("temporary directory and key modes %q, want 700 and 600", got)
	}
	if filepath.Dir(env["EDGE_CERT_FULLCHAIN"]) != filepath.Dir(env["EDGE_CERT_KEY"]) {
		t.Errorf("fullchain %s and key %s are not in one directory", env["EDGE_CERT_FULLCHAIN"], env["EDGE_CERT_KEY"])
	}
	if _, err := os.Stat(filepath.Dir(env["EDGE_CERT_KEY"])); !os.IsNotExist(err) {
		t.Errorf("the temporary directory %s is still there (%v)", filepath.Dir(env["EDGE_CERT_KEY"]), err)
	}
}

func TestExecFiles(t *testing.T) {
	pemDir, _ := NewPEMDir(PEMDirOptions{Path: t.TempDir()})
	pfxDir, _ := NewPFXDir(PFXDirOptions{Path: t.TempDir(), Password: "pw"})
	c := testCert(t, "www.example.com", 5)
	for _, x := range []Exporter{pemDir, pfxDir} {
		if rs := x.Deliver(t.Context(), c); rs[0].Err != nil {
			t.Fatal(rs[0].Err)
		}
	}
	fullchain, key, _ := pemDir.Paths(c)
	_, _, pfx := pfxDir.Paths(c)

	tests := []struct {
		name           string
		files          Files
		fullchain, key string // "" means a temporary file
		pfx            string
	}{
		{"pem_dir", pemDir, fullchain, key, ""},
		{"pfx_dir", pfxDir, "", "", pfx},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			script, out := recordScript(t)
			e, err := NewExec(ExecOptions{Command: []string{script, out}, Files: tc.files})
			if err != nil {
				t.Fatal(err)
			}
			if rs := e.Deliver(t.Context(), c); rs[0].Err != nil {
				t.Fatalf("Deliver: %v (%s)", rs[0].Err, rs[0].Output)
			}
			env := hookEnv(t, out)
			if tc.fullchain != "" && (env["EDGE_CERT_FULLCHAIN"] != tc.fullchain || env["EDGE_CERT_KEY"] != tc.key) {
				t.Errorf("fullchain %q, key %q; want %q, %q", env["EDGE_CERT_FULLCHAIN"], env["EDGE_CERT_KEY"], tc.fullchain, tc.key)
			}
			if tc.fullchain == "" && (env["EDGE_CERT_FULLCHAIN"] == "" || env["EDGE_CERT_KEY"] == "") {
				t.Errorf("no temporary PEM files alongside a PFX-only target: %v", env)
			}
			if got, ok := env["EDGE_CERT_PFX"]; got != tc.pfx || ok != (tc.pfx != "") {
				t.Errorf("EDGE_CERT_PFX = %q (set %v), want %q", got, ok, tc.pfx)
			}
			if !bytes.Equal(readLocal(t, out+".fullchain"), c.FullchainPEM()) {
				t.Error("the hook did not read the fullchain")
			}
		})
	}
}

func TestExecFailure(t *testing.T) {
	tests := []struct {
		name    string
		command []string
		errHas  []string
		output  string
	}{
		{"exit status", []string{"/bin/sh", "-c", "echo boom; echo bad >&2; exit 3"}, []string{"/bin/sh", "exit status 3"}, "boom\nbad"},
		{"not found", []string{"/nonexistent/hook"}, []string{"/nonexistent/hook", "no such file"}, ""},
		{"signal", []string{"/bin/sh", "-c", "kill -TERM $$"}, []string{"/bin/sh", "signal: terminated"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, err := NewExec(ExecOptions{Command: tc.command})
			if err != nil {
				t.Fatal(err)
			}
			r := e.Deliver(t.Context(), testCert(t, "www.example.com", 1))[0]
			if r.Err == nil {
				t.Fatal("no error")
			}
			for _, s := range tc.errHas {
				if !strings.Contains(r.Err.Error(), s) {
					t.Errorf("error %q does not say %q", r.Err, s)
				}
			}
			if r.Output != tc.output {
				t.Errorf("Output = %q, want %q", r.Output, tc.output)
			}
		})
	}
}

func TestExecOutputCap(t *testing.T) {
	e, _ := NewExec(ExecOptions{Command: []string{"/bin/sh", "-c", "i=0; while [ $i -lt 2000 ]; do echo line $i; i=$((i+1)); done; echo last"}})
	r := e.Deliver(t.Context(), testCert(t, "www.example.com", 1))[0]
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	if len(r.Output) > ExecOutputMax || !strings.HasPrefix(r.Output, "[...]") || !strings.HasSuffix(r.Output, "line 1999\nlast") {
		t.Errorf("Output: %d bytes, %q...%q", len(r.Output), r.Output[:min(20, len(r.Output))], r.Output[max(0, len(r.Output)-20):])
	}
}

// TestExecTimeout: the timeout kills the hook and what it started (its
// process group), well before the sleeps end.
func TestExecTimeout(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	e, _ := NewExec(ExecOptions{
		Command: []string{"/bin/sh", "-c", `sleep 30 & echo $! > "$1"; echo started; sleep 30`, "hook", pidFile},
		Timeout: 300 * time.Millisecond,
	})
	start := time.Now()
	r := e.Deliver(t.Context(), testCert(t, "www.example.com", 1))[0]
	took := time.Since(start)
	if r.Err == nil || !strings.Contains(r.Err.Error(), "timeout") || !strings.Contains(r.Err.Error(), "/bin/sh") {
		t.Errorf("error %v, want a timeout naming /bin/sh", r.Err)
	}
	// 300ms then the kill; execWaitDelay would add 2s if the background
	// sleep were left holding the output.
	if took > 1500*time.Millisecond {
		t.Errorf("Deliver took %v with a 300ms timeout", took)
	}
	if r.Output != "started" {
		t.Errorf("Output = %q", r.Output)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(readLocal(t, pidFile))))
	if err != nil {
		t.Fatal(err)
	}
	// The background sleep is gone (or a zombie waiting for its reaper).
	deadline := time.Now().Add(2 * time.Second)
	for !processGone(pid) {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("the hook's background process %d survived the timeout", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// A context that ends does the same.
	e, _ = NewExec(ExecOptions{Command: []string{"sleep", "30"}})
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	start = time.Now()
	r = e.Deliver(ctx, testCert(t, "www.example.com", 1))[0]
	if r.Err == nil || time.Since(start) > 1500*time.Millisecond {
		t.Errorf("Deliver with an ending context: %v after %v", r.Err, time.Since(start))
	}
}

// processGone reports whether pid no longer runs: no such process, or a
// zombie.
func processGone(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return true
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	// "pid (comm) S ...": the state follows the last ')'.
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] == 'Z'
}

func TestExecTest(t *testing.T) {
	t.Setenv("EDGE_CERT_FULLCHAIN", "/inherited.pem")
	script, out := recordScript(t)
	e, _ := NewExec(ExecOptions{Command: []string{script, out, "{name}"}})
	r := e.Test(t.Context())[0]
	if r.Err != nil || r.Host != script {
		t.Fatalf("Test = %+v", r)
	}
	if got := string(readLocal(t, out+".args")); got != "arg=_test\n" {
		t.Errorf("args = %q", got)
	}
	env := hookEnv(t, out)
	want := map[string]string{"EDGE_CERT_NAME": "_test", "EDGE_EXPORT_DRY_RUN": "1"}
	if len(env) != len(want) {
		t.Errorf("env = %v, want %v", env, want)
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("%s = %q, want %q", k, env[k], v)
		}
	}

	e, _ = NewExec(ExecOptions{Command: []string{"/bin/sh", "-c", "exit 1"}})
	if r := e.Test(t.Context())[0]; r.Err == nil {
		t.Error("a failing dry run: no error")
	}
}

func TestExecOptions(t *testing.T) {
	for _, o := range []ExecOptions{
		{},
		{Command: []string{""}},
		{Command: []string{"true"}, Timeout: -time.Second},
		{Command: []string{"true"}, Env: []string{"NOVALUE"}},
		{Command: []string{"true"}, Env: []string{"=x"}},
	} {
		if _, err := NewExec(o); err == nil {
			t.Errorf("NewExec(%+v): no error", o)
		}
	}
	// The error never holds the entry: it may be a secret.
	_, err := NewExec(ExecOptions{Command: []string{"true"}, Env: []string{"A=1", "TOKENsecret"}})
	if err == nil || strings.Contains(err.Error(), "secret") || !strings.Contains(err.Error(), "Env[1]") {
		t.Errorf("NewExec with a bad Env entry: %v", err)
	}
}

// TestSweepTemp: the directories a hook's run left in TMPDIR go when the
// edge that made them has ended (or had this process's PID before it
// started: a container's restart); those of running edges, this one's own
// included, and anything else, stay.
func TestSweepTemp(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("TMPDIR", dir)
	ended := exec.Command("true")
	if err := ended.Run(); err != nil {
		t.Fatal(err)
	}
	dead := ended.Process.Pid
	mk := func(name string, dir bool) string {
		t.Helper()
		p := filepath.Join(os.TempDir(), name)
		var err error
		if dir {
			err = os.MkdirAll(filepath.Join(p, "sub"), 0o700)
			if err == nil {
				err = os.WriteFile(filepath.Join(p, "privkey.pem"), []byte("key"), 0o600)
			}
		} else {
			err = os.WriteFile(p, nil, 0o600)
		}
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	former := mk(tempPrefix+strconv.Itoa(os.Getpid())+"-456", true) // this PID, before this process
	if err := os.Chtimes(former, started.Add(-time.Hour), started.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	gone := []string{
		mk(tempPrefix+strconv.Itoa(dead)+"-123", true),
		former,
	}
	kept := []string{
		mk(tempPrefix+strconv.Itoa(os.Getpid())+"-789", true),  // this process's, a run in flight
		mk(tempPrefix+strconv.Itoa(os.Getppid())+"-789", true), // the test's parent runs
		mk(tempPrefix+strconv.Itoa(dead)+"-file", false),       // not a directory
		mk("edge-exec-123456", true),                           // no PID in the name
		mk(tempPrefix+"x-1", true),
		mk("other", true),
	}
	removed, err := SweepTemp("")
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(gone)
	if !slices.Equal(removed, gone) { // in name order
		t.Errorf("removed %q, want %q", removed, gone)
	}
	for _, p := range gone {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s is still there (%v)", p, err)
		}
	}
	for _, p := range kept {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("%s: %v, want it kept", p, err)
		}
	}

	// A hook's run makes its directory under this process's PID.
	script, out := recordScript(t)
	e, err := NewExec(ExecOptions{Command: []string{script, out}, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if rs := e.Deliver(t.Context(), testCert(t, "a.example.com", 1)); rs[0].Err != nil {
		t.Fatal(rs[0].Err)
	}
	if got, want := filepath.Base(filepath.Dir(hookEnv(t, out)["EDGE_CERT_KEY"])), tempPrefix+strconv.Itoa(os.Getpid())+"-"; !strings.HasPrefix(got, want) {
		t.Errorf("temporary directory %s, want it to start with %s", got, want)
	}
}
