package testenv

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// H2SpecModule is the h2spec that RequireH2Spec builds (no go.mod: the
// +incompatible version; its dependencies resolve to their latest).
const H2SpecModule = "github.com/summerwind/h2spec/cmd/h2spec@v2.2.1+incompatible"

var h2specBuild struct {
	once sync.Once
	path string
	err  error
}

// RequireH2Spec returns the path of h2spec: ./bin/h2spec when it is there,
// else built once into ./bin with `go install H2SpecModule` (GOBIN=./bin)
// and kept for later runs. When it cannot be built (no module proxy, no
// cache), the test fails with CI set and skips otherwise, as RequireTool.
func RequireH2Spec(tb TB) string {
	tb.Helper()
	h2specBuild.once.Do(func() {
		h2specBuild.path, h2specBuild.err = buildH2Spec()
	})
	if h2specBuild.err == nil {
		return h2specBuild.path
	}
	if s, ok := tb.(skipper); ok && os.Getenv("CI") == "" {
		s.Skipf("%v", h2specBuild.err)
	}
	tb.Fatalf("%v", h2specBuild.err)
	return ""
}

func buildH2Spec() (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(root, "bin")
	p := filepath.Join(bin, "h2spec")
	if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
		return p, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "install", H2SpecModule)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOBIN="+bin)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("h2spec not in ./bin and `go install %s` failed: %w\n%s", H2SpecModule, err, out)
	}
	return p, nil
}

// H2SpecOptions says what RunH2Spec tests.
type H2SpecOptions struct {
	// Addr is the server, "host:port". Host is dialed and, with TLS, is
	// the SNI name (h2spec has no separate SNI flag), so it must resolve:
	// "localhost" for a site of that name.
	Addr string
	// TLS connects over TLS (h2 by ALPN) without verifying the
	// certificate (-t -k); false is h2c with prior knowledge.
	TLS bool
	// Strict also runs the strict cases (-S).
	Strict bool
	// CaseTimeout bounds each case (-o, whole seconds); 0 is h2spec's 2 s.
	CaseTimeout time.Duration
	// Timeout bounds the whole run; 0 is 3 minutes.
	Timeout time.Duration
	// Sections limits the run ("http2/6.5.3", "hpack"); none is all.
	Sections []string
}

// H2SpecCase is one h2spec test case.
type H2SpecCase struct {
	// ID is the case as h2spec's arguments name it: "http2/6.5.3/1",
	// the section and the case's number in it.
	ID string
	// Desc is h2spec's description of what it sends.
	Desc    string
	Passed  bool
	Skipped bool
	// Message is h2spec's text for a failure: the frames it expected,
	// one a line, then the one it got (last line), or "Timeout".
	Message string
}

// H2SpecReport is the result of one h2spec run.
type H2SpecReport struct {
	Cases []H2SpecCase
	// Output is h2spec's console report, for the test log.
	Output string
}

// Failed returns the cases that failed.
func (r *H2SpecReport) Failed() []H2SpecCase {
	var out []H2SpecCase
	for _, c := range r.Cases {
		if !c.Passed && !c.Skipped {
			out = append(out, c)
		}
	}
	return out
}

// Counts returns the numbers of cases passed, failed and skipped.
func (r *H2SpecReport) Counts() (passed, failed, skipped int) {
	for _, c := range r.Cases {
		switch {
		case c.Skipped:
			skipped++
		case c.Passed:
			passed++
		default:
			failed++
		}
	}
	return passed, failed, skipped
}

// RunH2Spec runs h2spec (RequireH2Spec) against opts.Addr and parses its
// JUnit report. h2spec exits 1 when a case fails; that is not an error
// here, the failures are in the report. An error means no report: h2spec
// did not run, timed out or wrote nothing.
func RunH2Spec(tb TB, opts H2SpecOptions) (*H2SpecReport, error) {
	tb.Helper()
	bin := RequireH2Spec(tb)
	host, port, err := net.SplitHostPort(opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("h2spec: %w", err)
	}
	junit := filepath.Join(tb.TempDir(), "h2spec.xml")
	args := []string{"-h", host, "-p", port, "-j", junit}
	if opts.TLS {
		args = append(args, "-t", "-k")
	}
	if opts.Strict {
		args = append(args, "-S")
	}
	if opts.CaseTimeout > 0 {
		args = append(args, "-o", strconv.Itoa(max(1, int(opts.CaseTimeout.Round(time.Second)/time.Second))))
	}
	args = append(args, opts.Sections...)
	timeout := opts.Timeout
	if timeout == 0 {
		timeout = 3 * time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	setProcessGroup(cmd)
	out, runErr := cmd.CombinedOutput()
	if ctx.Err() != nil {
		return nil, fmt.Errorf("h2spec %s: no result within %s\n%s", strings.Join(args, " "), timeout, tail(out, 30))
	}
	b, err := os.ReadFile(junit)
	if err != nil {
		return nil, fmt.Errorf("h2spec %s: %v (no report: %w)\n%s", strings.Join(args, " "), runErr, err, tail(out, 30))
	}
	cases, err := ParseH2SpecJUnit(b)
	if err != nil {
		return nil, fmt.Errorf("h2spec %s: %w", strings.Join(args, " "), err)
	}
	if len(cases) == 0 {
		return nil, fmt.Errorf("h2spec %s: the report has no cases (%v)\n%s", strings.Join(args, " "), runErr, tail(out, 30))
	}
	return &H2SpecReport{Cases: cases, Output: string(out)}, nil
}

// ParseH2SpecJUnit reads h2spec's -j report. Each testsuite is a section
// (package "http2/6.5.3"); its cases are numbered from 1 in order, as
// h2spec numbers them. h2spec v2.2.1 writes every failure as <error>
// (its <failure> branch never matches), with the expected frames and then
// the actual one as its content, and a case's timeout as "Timeout".
func ParseH2SpecJUnit(b []byte) ([]H2SpecCase, error) {
	var doc struct {
		Suites []struct {
			Package string `xml:"package,attr"`
			Cases   []struct {
				ClassName string    `xml:"classname,attr"`
				Failure   *xmlInner `xml:"failure"`
				Error     *xmlInner `xml:"error"`
				Skipped   *xmlInner `xml:"skipped"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("parsing the h2spec JUnit report: %w", err)
	}
	var out []H2SpecCase
	for _, s := range doc.Suites {
		if s.Package == "" {
			return nil, errors.New("parsing the h2spec JUnit report: a testsuite without package")
		}
		for i, c := range s.Cases {
			hc := H2SpecCase{ID: fmt.Sprintf("%s/%d", s.Package, i+1), Desc: c.ClassName, Passed: true}
			switch {
			case c.Skipped != nil:
				hc.Passed, hc.Skipped = false, true
			case c.Failure != nil:
				hc.Passed, hc.Message = false, strings.TrimSpace(c.Failure.Text)
			case c.Error != nil:
				hc.Passed, hc.Message = false, strings.TrimSpace(c.Error.Text)
			}
			out = append(out, hc)
		}
	}
	return out, nil
}

type xmlInner struct {
	Text string `xml:",chardata"`
}
