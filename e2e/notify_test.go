package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/farmedge/edge/internal/testenv"
)

// notifyMsg is one datagram edge sent to $NOTIFY_SOCKET.
type notifyMsg struct {
	at     time.Time
	fields map[string]string
	raw    string
}

// notifySocket is a unix datagram socket standing in for systemd's.
type notifySocket struct {
	name string // what NOTIFY_SOCKET says: a path, or @name (abstract)
	conn *net.UnixConn
	msgs chan notifyMsg
}

func listenNotify(t *testing.T, name string) *notifySocket {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatalf("listening on %s: %v", name, err)
	}
	ns := &notifySocket{name: name, conn: conn, msgs: make(chan notifyMsg, 1024)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return // closed by Cleanup
			}
			m := notifyMsg{at: time.Now(), fields: map[string]string{}, raw: string(buf[:n])}
			for _, line := range strings.Split(strings.TrimSpace(m.raw), "\n") {
				k, v, _ := strings.Cut(line, "=")
				m.fields[k] = v
			}
			select {
			case ns.msgs <- m:
			default: // the test stopped reading
			}
		}
	}()
	t.Cleanup(func() {
		conn.Close()
		<-done
	})
	return ns
}

// next returns the next message that has key, failing after timeout. Others
// (WATCHDOG=1 between the ones a test waits for) are passed over.
func (ns *notifySocket) next(t *testing.T, key string, timeout time.Duration) notifyMsg {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case m := <-ns.msgs:
			if _, ok := m.fields[key]; ok {
				return m
			}
		case <-deadline:
			t.Fatalf("no %s= on %s within %s", key, ns.name, timeout)
			return notifyMsg{}
		}
	}
}

// startNotified starts edge run with NOTIFY_SOCKET (and env) set.
func startNotified(t *testing.T, cfgYAML string, env ...string) *testenv.Process {
	t.Helper()
	bin := testenv.BuildEdge(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "edge.yaml")
	if err := os.WriteFile(path, []byte(cfgYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	return testenv.Start(t, testenv.Cmd{Name: "edge-notify", Path: bin, Args: []string{"run", "-config", path}, Dir: dir, Env: env})
}

// TestSystemdNotify runs edge as systemd's Type=notify would: NOTIFY_SOCKET
// pointing at a datagram socket the test reads, WATCHDOG_USEC set. The
// first run orders the certificate; the second, on the same storage, must
// send READY=1 only when its listeners accept connections and the stored
// certificate is already served, then WATCHDOG=1 at half WATCHDOG_USEC,
// RELOADING=1 (with MONOTONIC_USEC) and READY=1 around a SIGHUP, and
// STOPPING=1 on SIGTERM before it exits 0.
func TestSystemdNotify(t *testing.T) {
	cts := testenv.StartChallTestSrv(t)
	ports := testenv.FreePorts(t, 3)
	peb := testenv.StartPebble(t, testenv.PebbleOptions{HTTPPort: ports[0], DNSServer: cts.DNSAddr})
	live := testenv.NewBackend(t, 1, 0)
	conf := edgeConf{
		httpPort: ports[0], httpsPort: ports[1], adminPort: ports[2],
		ca: peb.DirectoryURL, caRoot: peb.MinicaRootFile,
		challenges: []string{"http-01"},
		storage:    filepath.Join(t.TempDir(), "storage"),
		sites:      []site{{hosts: []string{"notify.test"}}},
		backends:   []string{live.URL},
	}
	cfgYAML := conf.yaml()
	adminURL := "http://" + testenv.Addr(ports[2])
	roots, err := peb.IssuingRoots()
	if err != nil {
		t.Fatal(err)
	}

	// First run, on an abstract socket: READY=1 comes, the certificate is
	// ordered afterwards.
	var suffix [6]byte
	_, _ = rand.Read(suffix[:])
	abstract := listenNotify(t, "@edge-notify-test-"+hex.EncodeToString(suffix[:]))
	first := startNotified(t, cfgYAML, "NOTIFY_SOCKET="+abstract.name)
	m := abstract.next(t, "READY", 30*time.Second)
	if m.fields["READY"] != "1" || !strings.HasPrefix(m.fields["STATUS"], "serving") {
		t.Errorf("first message %q: want READY=1 and STATUS=serving...", m.raw)
	}
	if err := testenv.WaitReady(adminURL, readyTimeout); err != nil {
		t.Fatalf("%v\n%s", err, first.Tail(30))
	}
	if err := first.Stop(); err != nil {
		t.Fatalf("first edge: %v\n%s", err, first.Tail(30))
	}

	// Second run, on a socket path, with the watchdog.
	sock := listenNotify(t, filepath.Join(t.TempDir(), "notify.sock"))
	const watchdogUsec = 400_000 // pings every 200 ms
	e := startNotified(t, cfgYAML, "NOTIFY_SOCKET="+sock.name, "WATCHDOG_USEC="+strconv.Itoa(watchdogUsec))
	ready := sock.next(t, "READY", 30*time.Second)
	if ready.fields["READY"] != "1" {
		t.Fatalf("READY message %q", ready.raw)
	}
	// At READY=1: both public listeners accept, the admin API answers, and
	// the certificate from storage is served.
	for _, addr := range []string{testenv.Addr(ports[0]), testenv.Addr(ports[1])} {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			t.Errorf("dial %s right after READY=1: %v", addr, err)
			continue
		}
		c.Close()
	}
	if st, err := testenv.Handshake(testenv.Addr(ports[1]), "notify.test", roots); err != nil {
		t.Errorf("handshake right after READY=1: %v (the stored certificate should be loaded before READY)", err)
	} else if cn := st.PeerCertificates[0].DNSNames; len(cn) == 0 || cn[0] != "notify.test" {
		t.Errorf("certificate after READY=1 names %v", cn)
	}

	// Watchdog: several WATCHDOG=1, about 200 ms apart.
	var pings []time.Time
	for len(pings) < 4 {
		pings = append(pings, sock.next(t, "WATCHDOG", 5*time.Second).at)
	}
	if gap := pings[3].Sub(pings[1]) / 2; gap < 100*time.Millisecond || gap > 2*time.Second {
		t.Errorf("WATCHDOG=1 every %v, want about %v (half of WATCHDOG_USEC)", gap, time.Duration(watchdogUsec)*time.Microsecond/2)
	}

	// A reload: RELOADING=1 with MONOTONIC_USEC, then READY=1.
	if err := e.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	rl := sock.next(t, "RELOADING", 10*time.Second)
	usec, err := strconv.ParseInt(rl.fields["MONOTONIC_USEC"], 10, 64)
	if err != nil || usec <= 0 {
		t.Errorf("RELOADING message %q: want MONOTONIC_USEC=<CLOCK_MONOTONIC µs>", rl.raw)
	}
	if r := sock.next(t, "READY", 10*time.Second); r.fields["READY"] != "1" {
		t.Errorf("after RELOADING=1: %q, want READY=1", r.raw)
	}

	// SIGTERM: STOPPING=1, then a clean exit.
	if err := e.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	sock.next(t, "STOPPING", 10*time.Second)
	if err := e.Wait(15 * time.Second); err != nil {
		t.Errorf("edge after SIGTERM: %v\n%s", err, e.Tail(30))
	}
}

// TestSystemdUnit: systemd-analyze verify accepts docker/edge.service, as
// installed with the binary where ExecStart says (the copy points at the
// binary the tests built), with no warning at all: systemd-analyze exits 0
// on a misspelt value and only prints it.
func TestSystemdUnit(t *testing.T) {
	analyze := testenv.RequireTool(t, "systemd-analyze")
	unit, err := os.ReadFile(filepath.Join(dockerDir(t), "edge.service"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Type=notify\n", "NotifyAccess=main\n", "WatchdogSec=30s\n"} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("edge.service lacks %q", strings.TrimSpace(want))
		}
	}
	const installed = "/usr/local/bin/edge"
	if !strings.Contains(string(unit), "ExecStart="+installed+" ") {
		t.Fatalf("edge.service: no ExecStart=%s", installed)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "edge.service")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(string(unit), installed, testenv.BuildEdge(t))), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify edge.service: %v\n%s", err, out)
	}
}
