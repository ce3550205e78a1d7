package testenv

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// TestSSLOptions says what RunTestSSL checks.
type TestSSLOptions struct {
	// Addr is the server, "host:port"; host is the SNI name.
	Addr string
	// IP is the address dialed instead of resolving host (--ip); "" is
	// 127.0.0.1, so a test name needs no DNS.
	IP string
	// CAFile is a PEM file of roots trusted besides the system's
	// (--add-ca), e.g. the test CA's issuing root.
	CAFile string
	// Checks are testssl.sh's check options; none is "-p -s -f -U"
	// (protocols, cipher categories, forward secrecy, vulnerabilities).
	Checks []string
	// Timeout bounds the whole run; 0 is 2 minutes.
	Timeout time.Duration
}

// TestSSLFinding is one entry of testssl.sh's flat JSON (--jsonfile).
type TestSSLFinding struct {
	// ID names the check: "SSLv3", "cipherlist_NULL", "LUCKY13",
	// "cert_revocation".
	ID string `json:"id"`
	IP string `json:"ip"`
	// Severity is DEBUG, INFO, OK, LOW, MEDIUM, HIGH, CRITICAL, WARN or
	// FATAL (a scan problem).
	Severity string `json:"severity"`
	CVE      string `json:"cve"`
	Finding  string `json:"finding"`
}

// TestSSLReport is the result of one testssl.sh run.
type TestSSLReport struct {
	Findings []TestSSLFinding
	// Output is testssl.sh's console report, for the test log.
	Output string
}

// Get returns the finding with id.
func (r *TestSSLReport) Get(id string) (TestSSLFinding, bool) {
	for _, f := range r.Findings {
		if f.ID == id {
			return f, true
		}
	}
	return TestSSLFinding{}, false
}

// RequireTestSSL returns the path of testssl.sh: Debian installs it as
// testssl, upstream as testssl.sh. Missing, it fails the test with CI set
// and skips it otherwise (RequireTool).
func RequireTestSSL(tb TB) string {
	tb.Helper()
	if p, err := FindTool("testssl.sh"); err == nil {
		return p
	}
	return RequireTool(tb, "testssl")
}

// RunTestSSL runs testssl.sh against opts.Addr, with no DNS lookups
// (--nodns none), no banner, colour or interactive warnings, connect and
// openssl timeouts of 10 s, and parses its JSON. Its exit status (a count
// of findings) is not an error; an error means no usable result: it did
// not finish within the timeout, wrote no JSON, or reported a scan problem
// (a FATAL finding, such as the server going away).
func RunTestSSL(tb TB, opts TestSSLOptions) (*TestSSLReport, error) {
	tb.Helper()
	bin := RequireTestSSL(tb)
	if _, _, err := net.SplitHostPort(opts.Addr); err != nil {
		return nil, fmt.Errorf("testssl.sh: %w", err)
	}
	ip := opts.IP
	if ip == "" {
		ip = "127.0.0.1"
	}
	checks := opts.Checks
	if len(checks) == 0 {
		checks = []string{"-p", "-s", "-f", "-U"}
	}
	dir := tb.TempDir()
	jsonPath := filepath.Join(dir, "testssl.json") // must not exist yet
	args := []string{
		"--quiet", "--color", "0", "--warnings", "off", "--nodns", "none",
		"--connect-timeout", "10", "--openssl-timeout", "10",
		"--ip", ip, "--jsonfile", jsonPath,
	}
	if opts.CAFile != "" {
		args = append(args, "--add-ca", opts.CAFile)
	}
	args = append(args, checks...)
	args = append(args, opts.Addr)
	timeout := opts.Timeout
	if timeout == 0 {
		timeout = 2 * time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "TMPDIR="+dir)
	// testssl.sh runs openssl and its own children; a timeout must stop
	// them all, not leave them holding connections.
	setProcessGroup(cmd)
	start := time.Now()
	out, runErr := cmd.CombinedOutput()
	if ctx.Err() != nil {
		return nil, fmt.Errorf("testssl.sh %s: no result within %s\n%s", strings.Join(args, " "), timeout, tail(out, 40))
	}
	tb.Logf("testssl.sh took %s", time.Since(start).Round(100*time.Millisecond))
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		return nil, fmt.Errorf("testssl.sh %s: %v (no JSON: %w)\n%s", strings.Join(args, " "), runErr, err, tail(out, 40))
	}
	findings, err := ParseTestSSLJSON(b)
	if err != nil {
		return nil, err
	}
	r := &TestSSLReport{Findings: findings, Output: string(out)}
	for _, f := range findings {
		if f.Severity == "FATAL" {
			return r, fmt.Errorf("testssl.sh: scan problem %s: %s\n%s", f.ID, f.Finding, tail(out, 40))
		}
	}
	return r, nil
}

// ParseTestSSLJSON reads testssl.sh's flat JSON (--jsonfile): an array of
// findings.
func ParseTestSSLJSON(b []byte) ([]TestSSLFinding, error) {
	var out []TestSSLFinding
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("parsing testssl.sh JSON: %w", err)
	}
	return out, nil
}

// setProcessGroup starts cmd in its own process group, which a cancelled
// context kills whole (SIGKILL to the group) and which dies with the test
// binary (Pdeathsig); output pipes held by a surviving grandchild are
// given up after 5 s.
func setProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
}
