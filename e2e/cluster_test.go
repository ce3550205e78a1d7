package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/farmedge/edge/internal/testenv"
)

// The cluster tests run several edge processes as one farm: sharing a Redis
// store (TestRedisFarm, TestRedisKillMidIssuance, TestPreflight) or asking
// each other for challenge tokens (TestPeersFarm), behind HAProxy round
// robin on the port Pebble's validator dials.

// clusterConf is an edgeConf whose storage is Redis or whose cluster asks
// peers.
type clusterConf struct {
	edgeConf
	redis      string   // Redis address; "" keeps file storage at edgeConf.storage
	peers      []string // cluster.peers
	peerSecret string
}

func (c clusterConf) yaml() string {
	var b strings.Builder
	for _, line := range strings.SplitAfter(c.edgeConf.yaml(), "\n") {
		if strings.HasPrefix(line, "storage:") && c.redis != "" {
			// path: the local read-only copy lives under it.
			fmt.Fprintf(&b, "storage: {type: redis, address: %q, prefix: edge, path: %q}\n", c.redis, c.storage)
			continue
		}
		b.WriteString(line)
	}
	if len(c.peers) > 0 {
		fmt.Fprintf(&b, "cluster:\n  secret: %q\n  peers: [", c.peerSecret)
		for i, p := range c.peers {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%q", p)
		}
		b.WriteString("]\n")
	}
	return b.String()
}

// farmNames are n names in three sites, so every edge manages several
// certificates per site.
func farmSites(n int) []site {
	sites := make([]site, 3)
	for i := range n {
		s := &sites[i%3]
		s.hosts = append(s.hosts, fmt.Sprintf("n%02d.farm.test", i+1))
	}
	return sites
}

// nodeName is what an edge sends as X-Edge-Node and uses as its lock
// holder name: hostname:httpport.
func nodeName(t *testing.T, httpPort int) string {
	t.Helper()
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%s:%d", host, httpPort)
}

// farm is n edges with ports, configs and processes.
type farm struct {
	confs []clusterConf
	edges []*testenv.Edge
	// gate, if set, holds the edges' connections to the ACME API until
	// start has seen every edge listening.
	gate *relay
}

// caGate is a relay in front of Pebble's ACME API that holds connections
// until it is opened, and the directory URL through it. Edges start about a
// second apart (each launch runs `edge validate` first, slower still with
// -race), and the first to start would order, and have Pebble validate
// through HAProxy, while the others are not listening yet: HAProxy would
// then hand Pebble a closed connection. With the gate no order starts
// before every edge listens.
func caGate(t *testing.T, peb *testenv.Pebble) (*relay, string) {
	t.Helper()
	u, err := url.Parse(peb.DirectoryURL)
	if err != nil {
		t.Fatal(err)
	}
	gate := startRelay(t, testenv.FreePort(t))
	gate.pebble = u.Host
	return gate, "https://" + gate.ln.Addr().String() + u.Path
}

// newFarmConfs makes n configs alike but for ports and local directories,
// ordering from the ACME directory ca (Pebble's, or a gate in front of it).
func newFarmConfs(t *testing.T, n int, ca string, peb *testenv.Pebble, backends []string, sites []site, redisAddr string) []clusterConf {
	ports := testenv.FreePorts(t, 3*n)
	confs := make([]clusterConf, n)
	for i := range confs {
		confs[i] = clusterConf{
			edgeConf: edgeConf{
				httpPort: ports[3*i], httpsPort: ports[3*i+1], adminPort: ports[3*i+2],
				// The same CA URL spelling on every edge: certmagic keys
				// stored challenges and certificates by it.
				ca: ca, caRoot: peb.MinicaRootFile,
				challenges: []string{"http-01"},
				storage:    filepath.Join(t.TempDir(), fmt.Sprintf("edge%d", i)),
				sites:      sites,
				backends:   backends,
			},
			redis: redisAddr,
		}
	}
	return confs
}

func (f *farm) httpAddrs() []string {
	var out []string
	for _, c := range f.confs {
		out = append(out, testenv.Addr(c.httpPort))
	}
	return out
}

// start launches every edge before waiting for any, so all listen before
// the first validation request arrives.
func (f *farm) start(t *testing.T) {
	t.Helper()
	for _, c := range f.confs {
		f.edges = append(f.edges, testenv.LaunchEdge(t, c.yaml()))
	}
	for _, e := range f.edges {
		if err := e.WaitHealthy(30 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if f.gate != nil {
		f.gate.forward(f.gate.pebble, true)
	}
}

func (f *farm) waitReady(t *testing.T) {
	t.Helper()
	for _, e := range f.edges {
		if err := e.WaitReady(readyTimeout); err != nil {
			t.Fatalf("%v\nwarnings and errors in %s's log:\n%s", err, e.Name, problemLines(e.Log()))
		}
	}
}

// problemLines picks the warn and error lines out of an edge's JSON log,
// which the tail printed on failure buries under debug lines.
func problemLines(log string) string {
	var out []string
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, `"level":"warn"`) || strings.Contains(line, `"level":"error"`) {
			out = append(out, line)
		}
	}
	if len(out) > 40 {
		out = out[len(out)-40:]
	}
	return strings.Join(out, "\n")
}

// challengeCounts sums edge_acme_challenge_requests_total by source and
// edge_acme_orders_total{result=success} over edges, logging each edge's.
type challengeCounts struct {
	orders, local, storage, peer, unknown float64
}

func countChallenges(t *testing.T, edges []*testenv.Edge) (per []challengeCounts, sum challengeCounts) {
	t.Helper()
	for i, e := range edges {
		m, err := e.Metrics()
		if err != nil {
			t.Fatal(err)
		}
		c := challengeCounts{
			orders:  m.Sum("edge_acme_orders_total", "result", "success"),
			local:   m.Sum("edge_acme_challenge_requests_total", "source", "local"),
			storage: m.Sum("edge_acme_challenge_requests_total", "source", "storage"),
			peer:    m.Sum("edge_acme_challenge_requests_total", "source", "peer"),
			unknown: m.Sum("edge_acme_challenge_requests_total", "source", "unknown"),
		}
		t.Logf("edge %c: orders %g; challenge requests answered local %g, storage %g, peer %g, unknown %g",
			'A'+i, c.orders, c.local, c.storage, c.peer, c.unknown)
		per = append(per, c)
		sum.orders += c.orders
		sum.local += c.local
		sum.storage += c.storage
		sum.peer += c.peer
		sum.unknown += c.unknown
	}
	return per, sum
}

// validationsPerName counts Pebble's HTTP-01 requests by the name in the
// URL (three per authorization).
func validationsPerName(st testenv.PebbleStats) map[string]int {
	out := map[string]int{}
	for _, u := range st.ValidationURL {
		host := strings.TrimPrefix(u, "http://")
		if i := strings.IndexAny(host, ":/"); i >= 0 {
			host = host[:i]
		}
		out[host]++
	}
	return out
}

// readyz is the /readyz answer.
type readyz struct {
	Code     int
	Ready    bool     `json:"ready"`
	Problems []string `json:"problems"`
}

func getReadyz(e *testenv.Edge) (readyz, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(e.AdminURL + "/readyz")
	if err != nil {
		return readyz{}, err
	}
	defer resp.Body.Close()
	var r readyz
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return readyz{}, fmt.Errorf("/readyz: %w", err)
	}
	r.Code = resp.StatusCode
	return r, nil
}

func (r readyz) storageProblem() bool {
	for _, p := range r.Problems {
		if strings.Contains(p, "storage") {
			return true
		}
	}
	return false
}

// lockInfo is one element of /api/locks.
type lockInfo struct {
	Name   string  `json:"name"`
	Holder string  `json:"holder"`
	Age    float64 `json:"age_seconds"`
}

func getLocks(e *testenv.Edge) ([]lockInfo, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(e.AdminURL + "/api/locks")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/api/locks: %s: %s", resp.Status, b)
	}
	var out []lockInfo
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("/api/locks: %w: %s", err, b)
	}
	return out, nil
}

// serials handshakes with e for every name and returns the leaf serials.
func serials(t *testing.T, e *testenv.Edge, names []string, peb *testenv.Pebble) map[string]string {
	t.Helper()
	roots, err := peb.IssuingRoots()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, name := range names {
		cs, err := testenv.Handshake(e.HTTPSAddr, name, roots)
		if err != nil {
			t.Errorf("%s: %v", e.Name, err)
			continue
		}
		out[name] = cs.PeerCertificates[0].SerialNumber.Text(16)
	}
	return out
}

// TestRedisFarm: three edges sharing one Redis behind HAProxy round robin,
// twelve names. One edge orders each name (the Redis lock keeps the others
// out), validation requests land on all three and the ones that did not
// order answer from the token in Redis. Then Redis stops: the edges keep
// serving, an edge restarted meanwhile serves from its local copy, and when
// Redis is back they catch up.
func TestRedisFarm(t *testing.T) {
	rds := testenv.StartRedis(t, testenv.RedisOptions{})
	cts := testenv.StartChallTestSrv(t)
	lbPort := testenv.FreePort(t)
	peb := testenv.StartPebble(t, testenv.PebbleOptions{HTTPPort: lbPort, DNSServer: cts.DNSAddr})
	b1 := testenv.NewBackend(t, 1, 0)
	b2 := testenv.NewBackend(t, 2, 0)
	sites := farmSites(12)
	gate, ca := caGate(t, peb)
	f := &farm{gate: gate, confs: newFarmConfs(t, 3, ca, peb, []string{b1.URL, b2.URL}, sites, rds.Addr)}
	names := f.confs[0].names()
	testenv.StartHAProxy(t, testenv.HAProxyOptions{Port: lbPort, Backends: f.httpAddrs(), Mode: "tcp", Balance: "roundrobin"})

	start := time.Now()
	f.start(t)
	f.waitReady(t)
	t.Logf("12 names ready on all three edges %s after launch", time.Since(start).Round(time.Millisecond))

	per, sum := countChallenges(t, f.edges)
	st := peb.Stats()
	perName := validationsPerName(st)
	t.Logf("pebble: %d accounts, %d orders, %d issued, %d HTTP-01 requests, validation requests per name %v",
		st.Accounts, st.Orders, st.Issued, st.HTTPAttempts, perName)

	// Exactly one order per name, seen from both ends.
	if st.Orders != len(names) || st.Issued != len(names) {
		t.Errorf("pebble saw %d orders and issued %d certificates for %d names, want one each", st.Orders, st.Issued, len(names))
	}
	if int(sum.orders) != len(names) {
		t.Errorf("sum of edge_acme_orders_total{result=success} over the edges = %g, want %d", sum.orders, len(names))
	}
	for _, n := range names {
		if perName[n] != 3 {
			t.Errorf("pebble made %d validation requests for %s, want 3 (one authorization)", perName[n], n)
		}
	}
	t.Logf("FIGURE orders per name: %.2f (pebble %d orders, edges %g successful orders, %d names)",
		float64(st.Orders)/float64(len(names)), st.Orders, sum.orders, len(names))

	// Validation requests answered by an edge that did not place the order.
	answered := sum.local + sum.storage
	if int(answered) != 3*len(names) {
		t.Errorf("validation requests answered over the edges = %g, want %d", answered, 3*len(names))
	}
	if sum.unknown != 0 {
		t.Errorf("edges answered %g validation requests as unknown tokens", sum.unknown)
	}
	if sum.storage == 0 {
		t.Errorf("no validation request was answered from Redis by an edge that did not order")
	}
	if answered > 0 {
		t.Logf("FIGURE share of validation requests answered by a non-ordering edge: %.0f%% (storage %g / (local %g + storage %g))",
			100*sum.storage/answered, sum.storage, sum.local, sum.storage)
	}
	for i, c := range per {
		if c.orders == 0 && c.local != 0 {
			t.Errorf("edge %c placed no order but answered %g requests as local", 'A'+i, c.local)
		}
	}

	// Every edge serves the same certificate per name: the one in Redis.
	want := serials(t, f.edges[0], names, peb)
	for i, e := range f.edges[1:] {
		got := serials(t, e, names, peb)
		for _, n := range names {
			if got[n] != want[n] {
				t.Errorf("%s: edge %c serves serial %s, edge A %s", n, 'B'+i, got[n], want[n])
			}
		}
	}
	if t.Failed() {
		return
	}

	roots, err := peb.IssuingRoots()
	if err != nil {
		t.Fatal(err)
	}
	okBefore := make([]float64, len(f.edges))

	t.Run("redis stopped", func(t *testing.T) {
		rds.Stop()
		for i, e := range f.edges {
			got := serials(t, e, names, peb)
			for _, n := range names {
				if got[n] != want[n] {
					t.Errorf("%s with Redis down: edge %c serves serial %q, want %s", n, 'A'+i, got[n], want[n])
				}
			}
			client := testenv.HTTPSClient(roots, e.HTTPSAddr)
			for _, n := range []string{names[0], names[len(names)-1]} {
				body, code, err := fetch(client, "https://"+n+"/")
				if err != nil || code != http.StatusOK || !strings.HasPrefix(body, "hello from backend") {
					t.Errorf("edge %c with Redis down: GET https://%s/: %d %v %q", 'A'+i, n, code, err, body)
				}
			}
			r, err := getReadyz(e)
			if err != nil {
				t.Fatal(err)
			}
			if !r.storageProblem() {
				t.Errorf("edge %c /readyz with Redis down: %d %+v, want a storage problem listed", 'A'+i, r.Code, r)
			}
			if r.Code != http.StatusOK || !r.Ready {
				t.Errorf("edge %c /readyz with Redis down: %d %+v, want 200 ready (it serves every name)", 'A'+i, r.Code, r)
			}
		}
	})

	// An edge restarted while Redis is down serves from its local copy.
	// (Not a subtest: the new process must outlive this step.)
	{
		a := f.edges[0]
		if err := a.Stop(); err != nil {
			t.Errorf("edge A on SIGTERM: %v", err)
		}
		restarted := testenv.LaunchEdge(t, f.confs[0].yaml())
		f.edges[0] = restarted
		if err := restarted.WaitHealthy(30 * time.Second); err != nil {
			t.Fatal(err)
		}
		// Loading from the local copy is quick; allow for certmagic's
		// storage timeouts against a refused connection.
		if err := restarted.WaitReady(20 * time.Second); err != nil {
			t.Fatalf("restarted edge with Redis down: %v", err)
		}
		got := serials(t, restarted, names, peb)
		for _, n := range names {
			if got[n] != want[n] {
				t.Errorf("%s: restarted edge serves serial %q, want %s from its local copy", n, got[n], want[n])
			}
		}
		r, err := getReadyz(restarted)
		if err != nil {
			t.Fatal(err)
		}
		if !r.storageProblem() {
			t.Errorf("restarted edge /readyz: %+v, want a storage problem listed", r)
		}
		for i, e := range f.edges {
			m, err := e.Metrics()
			if err != nil {
				t.Fatal(err)
			}
			okBefore[i] = m.Sum("edge_storage_operations_total", "result", "ok")
		}
	}
	if t.Failed() {
		return
	}

	t.Run("redis back", func(t *testing.T) {
		rds.Start()
		back := time.Now()
		for i, e := range f.edges {
			deadline := time.Now().Add(15 * time.Second)
			for {
				r, err := getReadyz(e)
				if err == nil && r.Code == http.StatusOK && len(r.Problems) == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("edge %c /readyz %s after Redis came back: %+v %v", 'A'+i, time.Since(back).Round(time.Millisecond), r, err)
				}
				time.Sleep(100 * time.Millisecond)
			}
			if _, err := getLocks(e); err != nil {
				t.Errorf("edge %c: %v", 'A'+i, err)
			}
			m, err := e.Metrics()
			if err != nil {
				t.Fatal(err)
			}
			if ok := m.Sum("edge_storage_operations_total", "result", "ok"); ok <= okBefore[i] {
				t.Errorf("edge %c: no storage operation succeeded after Redis came back (ok %g before, %g after):\n%s",
					'A'+i, okBefore[i], ok, m.Dump("edge_storage_operations_total"))
			}
		}
		t.Logf("problems cleared on every edge %s after Redis came back", time.Since(back).Round(time.Millisecond))
		for i, e := range f.edges {
			got := serials(t, e, names, peb)
			for _, n := range names {
				if got[n] != want[n] {
					t.Errorf("%s after Redis came back: edge %c serves %q, want %s", n, 'A'+i, got[n], want[n])
				}
			}
		}
	})

	for i, e := range f.edges {
		if err := e.Stop(); err != nil {
			t.Errorf("edge %c on SIGTERM: %v", 'A'+i, err)
		}
	}
}

// relay holds the TCP connections it accepts, unanswered, until forward is
// called; then it relays them (or closes them) and relays every new one to
// the target. It is what Pebble's validator dials in
// TestRedisKillMidIssuance, and the gate in front of Pebble's API (caGate).
type relay struct {
	ln     net.Listener
	pebble string // caGate's target

	mu     sync.Mutex
	target string
	held   []net.Conn
	open   []net.Conn // relayed connections, both ends
	closed bool
	wg     sync.WaitGroup
}

func startRelay(t *testing.T, port int) *relay {
	t.Helper()
	ln, err := net.Listen("tcp", testenv.Addr(port))
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{ln: ln}
	r.wg.Go(r.serve)
	t.Cleanup(r.close)
	return r
}

func (r *relay) serve() {
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		r.mu.Lock()
		target := r.target
		if target == "" {
			r.held = append(r.held, c)
			r.mu.Unlock()
			continue
		}
		r.mu.Unlock()
		r.wg.Go(func() { r.pipe(c, target) })
	}
}

// pipe relays c to target until either side closes.
func (r *relay) pipe(c net.Conn, target string) {
	defer c.Close()
	up, err := net.DialTimeout("tcp", target, 2*time.Second)
	if err != nil {
		return
	}
	defer up.Close()
	if !r.track(c, up) {
		return
	}
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(up, c)
		if tc, ok := up.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		close(done)
	}()
	_, _ = io.Copy(c, up)
	c.Close()
	<-done
}

// track records open connections for close; it reports false once the
// relay is closed.
func (r *relay) track(conns ...net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	r.open = append(r.open, conns...)
	return true
}

// waiting reports how many connections are held unanswered.
func (r *relay) waiting() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.held)
}

// forward relays new connections to target; held ones are relayed too
// when keepHeld is set, else closed.
func (r *relay) forward(target string, keepHeld bool) {
	r.mu.Lock()
	r.target = target
	held := r.held
	r.held = nil
	r.mu.Unlock()
	for _, c := range held {
		if keepHeld && target != "" {
			r.wg.Go(func() { r.pipe(c, target) })
			continue
		}
		c.Close()
	}
}

func (r *relay) close() {
	r.ln.Close()
	r.forward("", false)
	r.mu.Lock()
	r.closed = true
	open := r.open
	r.mu.Unlock()
	for _, c := range open {
		c.Close()
	}
	r.wg.Wait()
}

// TestRedisKillMidIssuance: edge A takes the issue lock for a name and
// starts the order, but Pebble's validation requests hang (the path to the
// edges is a black hole). A is killed with SIGKILL while it holds the lock;
// edge B, sharing the Redis store, waits for the lease to run out, takes the
// lock and finishes the issuance once the path works.
func TestRedisKillMidIssuance(t *testing.T) {
	rds := testenv.StartRedis(t, testenv.RedisOptions{})
	cts := testenv.StartChallTestSrv(t)
	lbPort := testenv.FreePort(t)
	peb := testenv.StartPebble(t, testenv.PebbleOptions{HTTPPort: lbPort, DNSServer: cts.DNSAddr})
	rl := startRelay(t, lbPort)
	b1 := testenv.NewBackend(t, 1, 0)
	confs := newFarmConfs(t, 2, peb.DirectoryURL, peb, []string{b1.URL}, []site{{hosts: []string{"kill.test"}}}, rds.Addr)
	lockName := "issue_cert_kill.test"
	nodeA := nodeName(t, confs[0].httpPort)

	a := testenv.StartEdge(t, confs[0].yaml())
	// A holds the lock and Pebble's validation requests are waiting on the
	// black hole: the middle of an issuance.
	deadline := time.Now().Add(30 * time.Second)
	for {
		locks, err := getLocks(a)
		held := false
		for _, l := range locks {
			held = held || l.Name == lockName && l.Holder == nodeA
		}
		if err == nil && held && rl.waiting() > 0 {
			t.Logf("edge A holds %s; %d validation connections waiting; locks %+v", lockName, rl.waiting(), locks)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("edge A never held %s during validation (locks %+v, %v; %d waiting)\n%s", lockName, locks, err, rl.waiting(), a.Tail(30))
		}
		time.Sleep(50 * time.Millisecond)
	}
	a.Kill()
	killed := time.Now()

	// B comes up; the path to the edges now leads to B.
	rl.forward(testenv.Addr(confs[1].httpPort), false)
	b := testenv.StartEdge(t, confs[1].yaml())
	if locks, err := getLocks(b); err == nil {
		t.Logf("%s after the kill, B sees locks %+v", time.Since(killed).Round(time.Millisecond), locks)
	}
	if err := b.WaitReady(40 * time.Second); err != nil {
		t.Fatalf("edge B did not finish the issuance: %v", err)
	}
	finished := time.Since(killed)

	// When did B get the lock? certmagic logs "lock acquired" with a
	// millisecond timestamp.
	var acquired time.Time
	for _, line := range strings.Split(b.Log(), "\n") {
		if !strings.Contains(line, `"lock acquired"`) || !strings.Contains(line, `"kill.test"`) {
			continue
		}
		var entry struct {
			TS string `json:"ts"`
		}
		if json.Unmarshal([]byte(line), &entry) == nil {
			if ts, err := time.Parse("2006-01-02T15:04:05.000Z0700", entry.TS); err == nil {
				acquired = ts
			}
		}
		break
	}
	if acquired.IsZero() {
		t.Errorf("edge B's log has no \"lock acquired\" for kill.test")
	} else {
		t.Logf("FIGURE lock takeover after kill -9 of the holder: %s (lease 10 s)", acquired.Sub(killed).Round(time.Millisecond))
	}
	t.Logf("FIGURE kill -9 of the lock holder to the other edge's certificate: %s", finished.Round(time.Millisecond))

	m, err := b.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Sum("edge_acme_orders_total", "result", "success"); got != 1 {
		t.Errorf("edge B completed %g orders, want 1:\n%s", got, m.Dump("edge_acme_orders_total"))
	}
	st := peb.Stats()
	t.Logf("pebble: %d orders, %d issued, %d valid and %d invalid authorizations", st.Orders, st.Issued, st.AuthzValid, st.AuthzInvalid)
	if st.Issued != 1 {
		t.Errorf("pebble issued %d certificates, want 1 (B's)", st.Issued)
	}
	// The lease bounds the wait; B's own start and the order come on top.
	if limit := 10*time.Second + 10*time.Second; finished > limit {
		t.Errorf("B finished %s after the kill, want under %s (lease + start + order)", finished, limit)
	}
	if locks, err := getLocks(b); err != nil || len(locks) != 0 {
		t.Errorf("locks after B finished: %+v %v, want none", locks, err)
	}
	if err := b.Stop(); err != nil {
		t.Errorf("edge B on SIGTERM: %v", err)
	}
}

// TestPeersFarm: three edges without shared storage (a file store each),
// each asking the others for tokens it does not know. Every edge orders
// every name itself; Pebble's validation requests for one edge's order land
// on all three, and the other two answer by asking their peers.
func TestPeersFarm(t *testing.T) {
	cts := testenv.StartChallTestSrv(t)
	lbPort := testenv.FreePort(t)
	peb := testenv.StartPebble(t, testenv.PebbleOptions{HTTPPort: lbPort, DNSServer: cts.DNSAddr})
	b1 := testenv.NewBackend(t, 1, 0)
	gate, ca := caGate(t, peb)
	f := &farm{gate: gate, confs: newFarmConfs(t, 3, ca, peb, []string{b1.URL}, farmSites(6), "")}
	for i := range f.confs {
		for j, o := range f.confs {
			if j != i {
				f.confs[i].peers = append(f.confs[i].peers, "http://"+testenv.Addr(o.httpPort))
			}
		}
		f.confs[i].peerSecret = "farm-secret-for-tests"
	}
	names := f.confs[0].names()
	testenv.StartHAProxy(t, testenv.HAProxyOptions{Port: lbPort, Backends: f.httpAddrs(), Mode: "tcp", Balance: "roundrobin"})

	start := time.Now()
	f.start(t)
	f.waitReady(t)
	t.Logf("%d names ready on all three edges %s after launch", len(names), time.Since(start).Round(time.Millisecond))

	_, sum := countChallenges(t, f.edges)
	st := peb.Stats()
	t.Logf("pebble: %d orders, %d issued, %d HTTP-01 requests", st.Orders, st.Issued, st.HTTPAttempts)
	if int(sum.orders) != 3*len(names) || st.Issued != 3*len(names) {
		t.Errorf("orders: edges %g, pebble issued %d; want %d (every edge orders every name: no shared store)", sum.orders, st.Issued, 3*len(names))
	}
	if sum.peer == 0 {
		t.Errorf("no validation request was answered by asking a peer")
	}
	if sum.unknown != 0 {
		t.Errorf("%g validation requests found no answer", sum.unknown)
	}
	if total := sum.local + sum.storage + sum.peer; int(total) != st.HTTPAttempts {
		t.Errorf("answered %g validation requests, pebble made %d", total, st.HTTPAttempts)
	}
	if total := sum.local + sum.peer; total > 0 {
		t.Logf("share of validation requests answered through a peer: %.0f%% (peer %g / (local %g + peer %g))",
			100*sum.peer/total, sum.peer, sum.local, sum.peer)
	}
	for _, e := range f.edges {
		checkCertificates(t, e, peb, names)
	}

	// Preflight with edge A's config places the probe in A's storage
	// only; B and C answer it by asking their peers.
	_, out, code := runPreflight(t, "-config", f.edges[0].ConfigPath, "-connect", testenv.Addr(lbPort), "-attempts", "3")
	t.Logf("edge preflight on the peers farm (exit %d):\n%s", code, out)
	if code != 0 {
		t.Errorf("edge preflight on a healthy peers farm exited %d, want 0", code)
	}
	for i, e := range f.edges {
		if err := e.Stop(); err != nil {
			t.Errorf("edge %c on SIGTERM: %v", 'A'+i, err)
		}
	}
}

// preflightResult is one name in `edge preflight -json`.
type preflightResult struct {
	Name     string `json:"name"`
	Attempts []struct {
		Node  string `json:"node"`
		OK    bool   `json:"ok"`
		Error string `json:"error"`
	} `json:"attempts"`
}

// runPreflight runs `edge preflight args...` and returns its stdout, its
// stdout followed by its stderr, and its exit code.
func runPreflight(t *testing.T, args ...string) (stdout, all string, code int) {
	t.Helper()
	cmd := exec.Command(testenv.BuildEdge(t), append([]string{"preflight"}, args...)...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return out.String(), out.String() + errOut.String(), testenv.ExitCode(err)
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("edge preflight %v did not finish in 60 s:\n%s%s", args, out.String(), errOut.String())
	}
	return "", "", -1
}

// TestPreflight: `edge preflight` through HAProxy passes on a healthy Redis
// farm and reports the answering nodes; an edge started with its own file
// storage, put in HAProxy's rotation, fails the probes that reach it and is
// named.
func TestPreflight(t *testing.T) {
	rds := testenv.StartRedis(t, testenv.RedisOptions{})
	cts := testenv.StartChallTestSrv(t)
	lbPort := testenv.FreePort(t)
	peb := testenv.StartPebble(t, testenv.PebbleOptions{HTTPPort: lbPort, DNSServer: cts.DNSAddr})
	b1 := testenv.NewBackend(t, 1, 0)
	sites := []site{{hosts: []string{"pre1.farm.test", "pre2.farm.test"}}}
	gate, ca := caGate(t, peb)
	confs := newFarmConfs(t, 4, ca, peb, []string{b1.URL}, sites, rds.Addr)
	// The fourth edge does not share the store.
	confs[3].redis = ""
	f := &farm{gate: gate, confs: confs[:3]}
	lb := testenv.StartHAProxy(t, testenv.HAProxyOptions{Port: lbPort, Backends: f.httpAddrs(), Mode: "tcp", Balance: "roundrobin"})
	f.start(t)
	f.waitReady(t)

	cfgPath := f.edges[0].ConfigPath
	_, out, code := runPreflight(t, "-config", cfgPath, "-connect", lb.Addr, "-attempts", "6")
	t.Logf("edge preflight on the healthy farm (exit %d):\n%s", code, out)
	if code != 0 {
		t.Errorf("edge preflight on a healthy farm exited %d, want 0", code)
	}
	for i, c := range f.confs {
		if n := nodeName(t, c.httpPort); !strings.Contains(out, n) {
			t.Errorf("preflight output does not name edge %c (%s)", 'A'+i, n)
		}
	}

	// The fourth edge joins HAProxy's rotation with its own file storage.
	bad := testenv.StartEdge(t, confs[3].yaml())
	badNode := nodeName(t, confs[3].httpPort)
	lb.Stop()
	f.confs = confs
	lb = testenv.StartHAProxy(t, testenv.HAProxyOptions{Port: lbPort, Backends: f.httpAddrs(), Mode: "tcp", Balance: "roundrobin"})

	_, out, code = runPreflight(t, "-config", cfgPath, "-connect", lb.Addr, "-attempts", "8")
	t.Logf("edge preflight with %s not sharing the store (exit %d):\n%s", badNode, code, out)
	if code != 1 {
		t.Errorf("edge preflight exited %d, want 1", code)
	}
	if !strings.Contains(out, badNode+": ") {
		t.Errorf("preflight output does not name the broken node %s among the failures", badNode)
	}

	jsonOut, _, code := runPreflight(t, "-config", cfgPath, "-connect", lb.Addr, "-attempts", "8", "-json")
	if code != 1 {
		t.Errorf("edge preflight -json exited %d, want 1", code)
	}
	var doc struct {
		Results []preflightResult `json:"results"`
	}
	if err := json.Unmarshal([]byte(jsonOut), &doc); err != nil {
		t.Fatalf("preflight -json: %v\n%s", err, jsonOut)
	}
	for _, r := range doc.Results {
		failedAt := map[string]int{}
		for _, a := range r.Attempts {
			if !a.OK {
				failedAt[a.Node]++
			}
		}
		if len(failedAt) != 1 || failedAt[badNode] == 0 {
			t.Errorf("%s: failed attempts by node %v, want only %s", r.Name, failedAt, badNode)
		}
	}
	if err := bad.Stop(); err != nil {
		t.Errorf("fourth edge on SIGTERM: %v", err)
	}
}
