package e2e

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/farmedge/edge/internal/testenv"
)

// sentinelConf is an edgeConf whose storage is Redis found through Sentinel.
type sentinelConf struct {
	edgeConf
	sen *testenv.Sentinel
}

func (c sentinelConf) yaml() string {
	var b strings.Builder
	for _, line := range strings.SplitAfter(c.edgeConf.yaml(), "\n") {
		if strings.HasPrefix(line, "storage:") {
			fmt.Fprintf(&b, "storage:\n  type: redis\n  prefix: edge\n  path: %q\n  sentinel:\n    master: %s\n    addresses: [%s]\n",
				c.storage, c.sen.Master, `"`+strings.Join(c.sen.Addrs, `", "`)+`"`)
			continue
		}
		b.WriteString(line)
	}
	return b.String()
}

// storedSerial finds name's certificate in the Redis at addr (any issuer
// directory, through the store's index) and returns its serial.
func storedSerial(addr, name string) (string, error) {
	v, err := testenv.RedisDo(addr, "ZRANGEBYLEX", "{edge}:idx", "[certificates/", "(certificates0")
	if err != nil {
		return "", err
	}
	keys, _ := v.([]any)
	for _, k := range keys {
		key := fmt.Sprint(k)
		if !strings.HasSuffix(key, "/"+name+"/"+name+".crt") {
			continue
		}
		v, err := testenv.RedisDo(addr, "HGET", "{edge}:v:"+key, "d")
		if err != nil {
			return "", err
		}
		blk, _ := pem.Decode([]byte(fmt.Sprint(v)))
		if blk == nil {
			return "", fmt.Errorf("%s on %s holds no PEM", key, addr)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%x", c.SerialNumber), nil
	}
	return "", fmt.Errorf("no certificate for %s in %s's index (%d certificate keys)", name, addr, len(keys))
}

// TestSentinelFailover: two edges share a Redis found through three
// sentinels (a master and one replica, quorum 2). Edge A orders the
// certificates, edge B loads them from Redis. Under a load of HTTPS
// requests through both edges, half on new TLS connections, the master is
// killed (SIGKILL); the sentinels promote the replica. No request fails
// while Redis has no master or after, both edges find the new master (their
// /readyz lists no storage problem), a renewal forced on A after the
// failover stores the new certificate in the new master, and edge B,
// restarted, serves it.
func TestSentinelFailover(t *testing.T) {
	sen := testenv.StartSentinel(t, testenv.SentinelOptions{})
	ports := testenv.FreePorts(t, 6)
	peb := startPebbleHTTP01(t, ports[0]) // validates on edge A's :80
	backend := testenv.NewBackend(t, 1, 0)
	names := []string{"a.sentinel.test", "b.sentinel.test"}
	conf := func(i int) sentinelConf {
		return sentinelConf{edgeConf: edgeConf{
			httpPort: ports[3*i], httpsPort: ports[3*i+1], adminPort: ports[3*i+2],
			ca: peb.DirectoryURL, caRoot: peb.MinicaRootFile, challenges: []string{"http-01"},
			storage: filepath.Join(t.TempDir(), fmt.Sprintf("edge%d", i)),
			sites:   []site{{hosts: names}}, backends: []string{backend.URL},
		}, sen: sen}
	}
	confA, confB := conf(0), conf(1)
	a, roots := startServing(t, peb, confA.yaml())
	b, _ := startServing(t, peb, confB.yaml())
	if st := peb.Stats(); st.Issued != len(names) {
		t.Fatalf("pebble issued %d certificates for %d names: edge B did not take A's from Redis", st.Issued, len(names))
	}
	before := serials(t, a, names, peb)
	if got := serials(t, b, names, peb); got[names[0]] != before[names[0]] || got[names[1]] != before[names[1]] {
		t.Fatalf("edge B serves %v, edge A %v", got, before)
	}
	// What A wrote (account, certificates) is on the replica before the
	// master dies: replication is asynchronous.
	if err := sen.WaitReplicated(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	oldMaster, err := sen.MasterAddr()
	if err != nil {
		t.Fatal(err)
	}

	// Load: keep-alive clients and clients that make a new TLS connection
	// (a handshake) for every request, through both edges, both names.
	mk := func(i int) *http.Client {
		e := []*testenv.Edge{a, b}[i%2]
		c := testenv.HTTPSClient(roots, e.HTTPSAddr)
		if i%4 >= 2 {
			c.Transport.(*http.Transport).DisableKeepAlives = true
		}
		return c
	}
	lds := []*load{
		startLoad(t.Context(), 4, mk, "https://"+names[0]+"/", 200000, 90*time.Second),
		startLoad(t.Context(), 4, mk, "https://"+names[1]+"/", 200000, 90*time.Second),
	}
	stopLoad := func() (ok, failed int64, errs []string) {
		for _, l := range lds {
			r := l.Stop()
			ok, failed, errs = ok+r.ok, failed+r.failed, append(errs, r.errs...)
		}
		return ok, failed, errs
	}
	defer stopLoad()
	waitUntil(t, 10*time.Second, "load to be flowing", func() bool { return lds[0].ok.Load() > 20 && lds[1].ok.Load() > 20 })

	start := time.Now()
	sen.Server(oldMaster).Kill()
	newMaster, err := sen.WaitNewMaster(oldMaster, 40*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	promoted := time.Since(start)
	for _, e := range []*testenv.Edge{a, b} {
		waitUntil(t, 30*time.Second, e.Name+" to reach the new master", func() bool {
			r, err := getReadyz(e)
			return err == nil && r.Code == http.StatusOK && !r.storageProblem()
		})
	}
	reached := time.Since(start)
	t.Logf("master %s killed; sentinels promoted %s after %s; both edges reach it after %s",
		oldMaster, newMaster, promoted.Round(time.Millisecond), reached.Round(time.Millisecond))

	// A renewal after the failover: the lock, the order and the new
	// certificate go through the new master.
	renew(t, a, names[0])
	waitUntil(t, 40*time.Second, "edge A to serve a renewed "+names[0], func() bool {
		l, err := testenv.Handshake(a.HTTPSAddr, names[0], roots)
		return err == nil && fmt.Sprintf("%x", l.PeerCertificates[0].SerialNumber) != before[names[0]]
	})
	renewed := servedSerial(t, a.HTTPSAddr, names[0])
	ok, failed, errs := stopLoad()
	t.Logf("FIGURE requests through the failover and the renewal: %d ok, %d failed, over %s", ok, failed, time.Since(start).Round(time.Millisecond))
	if failed != 0 {
		t.Errorf("%d of %d requests failed during the failover; first errors: %q", failed, ok+failed, errs)
	}
	if ok < 100 {
		t.Errorf("only %d requests succeeded during the failover", ok)
	}
	waitUntil(t, 10*time.Second, "the renewed certificate in the new master", func() bool {
		s, err := storedSerial(newMaster, names[0])
		return err == nil && s == renewed
	})

	// Edge B, restarted, loads the renewed certificate from the new master.
	if err := b.Stop(); err != nil {
		t.Fatalf("stopping edge B: %v", err)
	}
	b2, _ := startServing(t, peb, confB.yaml())
	if got := servedSerial(t, b2.HTTPSAddr, names[0]); got != renewed {
		t.Errorf("edge B restarted serves %s for %s, want the renewed %s", got, names[0], renewed)
	}
	if got := servedSerial(t, b2.HTTPSAddr, names[1]); got != before[names[1]] {
		t.Errorf("edge B restarted serves %s for %s, want %s (not renewed)", got, names[1], before[names[1]])
	}
	if st := peb.Stats(); st.Issued != len(names)+1 {
		t.Errorf("pebble issued %d certificates, want %d (the names, then one renewal)", st.Issued, len(names)+1)
	}
}
