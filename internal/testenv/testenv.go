// Package testenv starts the real programs edge is tested against (Pebble,
// pebble-challtestsrv, HAProxy, the edge binary itself) and small in-process
// backends, each on a free loopback port, with its output in a log file that
// is printed when the test fails. With TESTENV_LOGDIR set, the logs are kept
// there after the test.
//
// It is used by the e2e tests and by the demo (internal/demo), so it does not
// depend on package testing: everything takes a TB, which *testing.T
// satisfies. Every process a helper starts is stopped in TB.Cleanup.
package testenv

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
)

// TB is the part of testing.TB the helpers need. *testing.T and *testing.B
// satisfy it; the demo has its own implementation.
//
// Two optional methods are used when present: Skipf (RequireTool skips
// rather than fails outside CI) and Failed (process logs are printed in
// Cleanup only when the test failed).
type TB interface {
	Helper()
	Logf(format string, args ...any)
	Fatalf(format string, args ...any)
	Cleanup(func())
	TempDir() string
}

type skipper interface {
	Skipf(format string, args ...any)
}

type failer interface{ Failed() bool }

// failed reports whether tb has failed; a TB without Failed counts as failed,
// so its logs are always printed.
func failed(tb TB) bool {
	if f, ok := tb.(failer); ok {
		return f.Failed()
	}
	return true
}

// RepoRoot is the directory holding edge's go.mod. It is found from this
// source file's location, falling back to the working directory and its
// parents.
func RepoRoot() (string, error) {
	if _, file, _, ok := runtime.Caller(0); ok {
		dir := filepath.Join(filepath.Dir(file), "..", "..")
		if isRepoRoot(dir) {
			return filepath.Clean(dir), nil
		}
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("finding repository root: %w", err)
	}
	for {
		if isRepoRoot(dir) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("finding repository root: no go.mod with edge's module above the working directory")
		}
		dir = parent
	}
}

func isRepoRoot(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "module" {
			return f[1] == "github.com/farmedge/edge"
		}
	}
	return false
}

func mustRepoRoot(tb TB) string {
	tb.Helper()
	root, err := RepoRoot()
	if err != nil {
		tb.Fatalf("%v", err)
	}
	return root
}

// TestdataPath is the path of a file in internal/testenv/testdata
// (Pebble's minica root and its localhost certificate and key).
func TestdataPath(tb TB, name string) string {
	tb.Helper()
	p := filepath.Join(mustRepoRoot(tb), "internal", "testenv", "testdata", name)
	if _, err := os.Stat(p); err != nil {
		tb.Fatalf("testdata: %v", err)
	}
	return p
}

// FindTool returns the path of a program: the repository's bin/ first (where
// `make deps` installs Pebble), then /usr/sbin and /usr/local/sbin (HAProxy,
// named, sshd live there and are often not on a user's PATH), then PATH.
func FindTool(name string) (string, error) {
	if root, err := RepoRoot(); err == nil {
		p := filepath.Join(root, "bin", name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/sbin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in ./bin, PATH or /usr/sbin (run `make deps`)", name)
}

// RequireTool returns the path of a program, or stops the test: it fails
// when the environment variable CI is set (in CI a missing tool is an
// error) and skips otherwise.
func RequireTool(tb TB, name string) string {
	tb.Helper()
	p, err := FindTool(name)
	if err == nil {
		return p
	}
	if s, ok := tb.(skipper); ok && os.Getenv("CI") == "" {
		s.Skipf("%v", err)
	}
	tb.Fatalf("%v", err)
	return ""
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(tb TB) int {
	tb.Helper()
	return FreePorts(tb, 1)[0]
}

// FreePorts returns n distinct TCP ports on 127.0.0.1, free when chosen.
//
// They come from below the kernel's ephemeral range
// (net.ipv4.ip_local_port_range), not from a listener on port 0: a port from
// that range, once closed, may become the source port of any outgoing
// connection on the machine (a load test's, a health check's) before the
// server meant for it binds it, and the server then fails with "address
// already in use". No port is handed out twice in one test process.
func FreePorts(tb TB, n int) []int {
	tb.Helper()
	ports := make([]int, 0, n)
	lo, hi := portRange()
	picked.mu.Lock()
	defer picked.mu.Unlock()
	for tries := 0; len(ports) < n; tries++ {
		if tries > 10000 {
			tb.Fatalf("finding a free port: none free in %d-%d", lo, hi)
		}
		p := lo + rand.IntN(hi-lo)
		if picked.m[p] {
			continue
		}
		ln, err := net.Listen("tcp", Addr(p))
		if err != nil {
			continue
		}
		ln.Close()
		picked.m[p] = true
		ports = append(ports, p)
	}
	return ports
}

// FreePortWith returns a port p such that p and p+offset are both free and
// below the ephemeral range, for servers that also bind p+offset (Redis
// Cluster's bus port is the client port plus 10000).
func FreePortWith(tb TB, offset int) int {
	tb.Helper()
	lo, hi := portRange()
	picked.mu.Lock()
	defer picked.mu.Unlock()
	for tries := 0; tries <= 10000; tries++ {
		if hi-offset <= lo {
			break
		}
		p := lo + rand.IntN(hi-offset-lo)
		if picked.m[p] || picked.m[p+offset] {
			continue
		}
		free := true
		for _, q := range []int{p, p + offset} {
			ln, err := net.Listen("tcp", Addr(q))
			if err != nil {
				free = false
				break
			}
			ln.Close()
		}
		if free {
			picked.m[p], picked.m[p+offset] = true, true
			return p
		}
	}
	tb.Fatalf("finding a free port pair %d apart below %d: none", offset, hi)
	return 0
}

// picked are the ports FreePorts handed out in this process.
var picked = struct {
	mu sync.Mutex
	m  map[int]bool
}{m: map[int]bool{}}

// portRange is where FreePorts picks: from 10000 to just below the
// ephemeral range.
func portRange() (lo, hi int) {
	lo, hi = 10000, 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if first, err := strconv.Atoi(f[0]); err == nil && first > lo+1000 {
				hi = first
			}
		}
	}
	return lo, hi
}

// Addr is "127.0.0.1:port".
func Addr(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// WaitTCP waits until something accepts TCP connections on addr.
func WaitTCP(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("waiting for %s to accept connections: %w", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
