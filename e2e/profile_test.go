package e2e

// profile_test.go: certificates as CAs issue them now: ACME profiles
// (draft-aaron-acme-profiles) asked of Pebble and honoured, short-lived
// certificates renewed at the planned point cycle after cycle, and IP
// address certificates (IPv4 and IPv6) served to handshakes without SNI.

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/farmedge/edge/internal/testenv"
)

// apiCert is one entry of /api/certificates, with the renewal plan.
type apiCert struct {
	Name          string    `json:"name"`
	Names         []string  `json:"names"`
	NotBefore     time.Time `json:"not_before"`
	NotAfter      time.Time `json:"not_after"`
	RenewalAt     time.Time `json:"renewal_at"`
	RenewalSource string    `json:"renewal_source"`
	ARIWindow     *struct {
		Start time.Time `json:"start"`
		End   time.Time `json:"end"`
	} `json:"ari_window"`
	Profile   string `json:"profile"`
	State     string `json:"state"`
	LastError string `json:"last_error"`
}

func apiCerts(t *testing.T, e *testenv.Edge) map[string]apiCert {
	t.Helper()
	resp, err := http.Get(e.AdminURL + "/api/certificates")
	if err != nil {
		t.Fatalf("/api/certificates: %v", err)
	}
	defer resp.Body.Close()
	var list []apiCert
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		t.Fatalf("/api/certificates: %v", err)
	}
	out := map[string]apiCert{}
	for _, c := range list {
		out[c.Name] = c
	}
	return out
}

// profSite is one site of profConf.
type profSite struct {
	hosts   []string
	profile string // "" leaves the key out
}

// profConf renders an edge config against peb: listen addresses as given
// (host:port), acmeExtra added under acme: verbatim (indented lines).
func profConf(peb *testenv.Pebble, httpAddr, httpsAddr, adminAddr, storage, acmeExtra, backend string, sites ...profSite) string {
	var b strings.Builder
	fmt.Fprintf(&b, "listen: {http: %q, https: %q}\nadmin: {listen: %q}\n", httpAddr, httpsAddr, adminAddr)
	fmt.Fprintf(&b, "acme:\n  email: test@example.com\n  ca: %q\n  ca_root_file: %q\n  challenges: [http-01]\n%s",
		peb.DirectoryURL, peb.MinicaRootFile, acmeExtra)
	fmt.Fprintf(&b, "storage: {type: file, path: %q}\nlog: {level: info, format: json, access: false}\nsites:\n", storage)
	for _, s := range sites {
		q := make([]string, len(s.hosts))
		for i, h := range s.hosts {
			q[i] = fmt.Sprintf("%q", h)
		}
		fmt.Fprintf(&b, "  - hosts: [%s]\n", strings.Join(q, ", "))
		if s.profile != "" {
			fmt.Fprintf(&b, "    profile: %s\n", s.profile)
		}
		b.WriteString("    routes: [{path: /, pool: web}]\n")
	}
	fmt.Fprintf(&b, "pools:\n  web: {backends: [%q]}\n", backend)
	return b.String()
}

// TestProfiles: each site's certificate comes under the profile it asks
// for: Pebble offers default (90 days) and shortlived (2 minutes), and
// picks one at random for an order that names none, so only the profile
// sent makes the lifetimes come out right every time.
func TestProfiles(t *testing.T) {
	ports := testenv.FreePorts(t, 3)
	cts := testenv.StartChallTestSrv(t)
	peb := testenv.StartPebble(t, testenv.PebbleOptions{HTTPPort: ports[0], DNSServer: cts.DNSAddr,
		Profiles: map[string]time.Duration{"shortlived": 2 * time.Minute}})
	b := testenv.NewBackend(t, 1, 0)
	cfg := profConf(peb, testenv.Addr(ports[0]), testenv.Addr(ports[1]), testenv.Addr(ports[2]),
		filepath.Join(t.TempDir(), "storage"), "  profile: default\n", b.URL,
		profSite{hosts: []string{"long.test", "www.long.test"}},
		profSite{hosts: []string{"short.test"}, profile: "shortlived"})
	e, roots := startServing(t, peb, cfg)
	want := map[string]time.Duration{"long.test": 90 * 24 * time.Hour, "www.long.test": 90 * 24 * time.Hour, "short.test": 2 * time.Minute}
	api := apiCerts(t, e)
	for name, life := range want {
		st, err := testenv.Handshake(e.HTTPSAddr, name, roots)
		if err != nil {
			t.Fatal(err)
		}
		leaf := st.PeerCertificates[0]
		got := leaf.NotAfter.Sub(leaf.NotBefore) + time.Second // NotAfter is inclusive
		t.Logf("%s: %s..%s, lifetime %s, profile %q in /api/certificates", name, leaf.NotBefore.Format(time.TimeOnly), leaf.NotAfter.Format(time.DateTime), got, api[name].Profile)
		if got != life {
			t.Errorf("%s: lifetime %s, want %s", name, got, life)
		}
	}
	if p := api["short.test"].Profile; p != "shortlived" {
		t.Errorf("/api/certificates short.test profile %q, want shortlived", p)
	}
	if p := api["long.test"].Profile; p != "default" {
		t.Errorf("/api/certificates long.test profile %q, want default (acme.profile)", p)
	}
}

// TestShortLivedRenewalTimeline: a scaled-down six-day certificate (one
// minute, Pebble's shortlived profile, with ARI) is renewed at the time
// /api/certificates planned, cycle after cycle; every handshake meanwhile
// gets a certificate valid at that moment; the state is never "renewal
// overdue"; and each metric has exactly one series for the name. The
// timeline (issued, planned renewal and its source, renewed) is logged.
func TestShortLivedRenewalTimeline(t *testing.T) {
	const life = time.Minute
	const cycles = 3 // renewals watched
	ports := testenv.FreePorts(t, 3)
	cts := testenv.StartChallTestSrv(t)
	peb := testenv.StartPebble(t, testenv.PebbleOptions{HTTPPort: ports[0], DNSServer: cts.DNSAddr,
		Profiles: map[string]time.Duration{"shortlived": life}})
	b := testenv.NewBackend(t, 1, 0)
	cfg := profConf(peb, testenv.Addr(ports[0]), testenv.Addr(ports[1]), testenv.Addr(ports[2]),
		filepath.Join(t.TempDir(), "storage"), "  profile: shortlived\n  renew_at: 0.66\n", b.URL,
		profSite{hosts: []string{"six.test"}})
	e, roots := startServing(t, peb, cfg)

	type cycle struct {
		serial            string
		issued, firstSeen time.Time
		planned           time.Time
		source            string
		window            string
	}
	var timeline []*cycle
	var cur *cycle
	handshakes := 0
	// Renewal checks run every lifetime/20; a renewal may start one check
	// before ARI's selected time (certmagic's cutoff, already in the plan)
	// and should be done within two checks and the order's own time.
	interval := life / 20
	start := time.Now()
	deadline := start.Add(time.Duration(cycles+1) * life)
	for len(timeline) <= cycles {
		if time.Now().After(deadline) {
			t.Fatalf("%d renewals in %s of %s certificates", len(timeline)-1, time.Since(start).Round(time.Second), life)
		}
		st, err := testenv.Handshake(e.HTTPSAddr, "six.test", roots) // verifies validity now
		if err != nil {
			t.Fatalf("handshake %d, %s after the start: %v", handshakes, time.Since(start).Round(time.Second), err)
		}
		handshakes++
		leaf := st.PeerCertificates[0]
		serial := fmt.Sprintf("%x", leaf.SerialNumber)
		if cur == nil || cur.serial != serial {
			cur = &cycle{serial: serial, issued: leaf.NotBefore, firstSeen: time.Now()}
			timeline = append(timeline, cur)
		}
		api := apiCerts(t, e)["six.test"]
		if api.State == "renewal overdue" || api.State == "expired" {
			t.Fatalf("state %q at %s (planned %s)", api.State, time.Now().Format(time.TimeOnly), api.RenewalAt.Format(time.TimeOnly))
		}
		if api.NotBefore.Equal(leaf.NotBefore) && !api.RenewalAt.IsZero() {
			cur.planned, cur.source = api.RenewalAt, api.RenewalSource
			if w := api.ARIWindow; w != nil {
				cur.window = w.Start.Format(time.TimeOnly) + ".." + w.End.Format(time.TimeOnly)
			}
		}
		m, err := e.Metrics()
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"edge_certificate_renewal_timestamp_seconds", "edge_certificate_not_after_timestamp_seconds", "edge_certificate_ready"} {
			if n := len(m.Find(name, "name", "six.test")); n != 1 {
				t.Fatalf("%s{name=six.test}: %d series, want 1:\n%s", name, n, m.Dump(name))
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	var lines []string
	for i, c := range timeline {
		line := fmt.Sprintf("cycle %d: serial %.8s issued %s, planned renewal %s (%s, ARI window %s)",
			i, c.serial, c.issued.Format(time.TimeOnly), c.planned.Format(time.TimeOnly), c.source, c.window)
		if i+1 < len(timeline) {
			renewed := timeline[i+1].firstSeen
			line += fmt.Sprintf(", renewed: new certificate served at %s (%+.1fs from the plan)", renewed.Format("15:04:05.0"), renewed.Sub(c.planned).Seconds())
			if c.planned.IsZero() {
				t.Errorf("cycle %d: no planned renewal seen", i)
			} else if early, late := c.planned.Add(-interval-time.Second), c.planned.Add(2*interval+10*time.Second); renewed.Before(early) || renewed.After(late) {
				t.Errorf("cycle %d: renewed at %s, outside the plan %s (allowed %s..%s)", i, renewed.Format(time.TimeOnly), c.planned.Format(time.TimeOnly),
					early.Format(time.TimeOnly), late.Format(time.TimeOnly))
			}
		}
		lines = append(lines, line)
	}
	t.Logf("%d handshakes, all valid; %s certificates, renew_at 0.66, checks every %s:\n  %s", handshakes, life, interval, strings.Join(lines, "\n  "))
}

// TestIPCertificates: sites with the IP hosts 127.0.0.1 and ::1 under the
// shortlived profile get IP certificates by HTTP-01 (Pebble dials the
// address itself); a handshake without SNI is served the certificate of
// the address it reached; /api/certificates lists the IPs as names. The
// two addresses are two edges (edge has one http listener), each on its
// own loopback address with the same port, which Pebble dials.
func TestIPCertificates(t *testing.T) {
	if ln, err := net.Listen("tcp", "[::1]:0"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("no IPv6 loopback: %v", err)
		}
		t.Skipf("no IPv6 loopback: %v", err)
	} else {
		ln.Close()
	}
	ports := testenv.FreePorts(t, 6) // http port shared by both addresses; https, admin per edge
	cts := testenv.StartChallTestSrv(t)
	peb := testenv.StartPebble(t, testenv.PebbleOptions{HTTPPort: ports[0], DNSServer: cts.DNSAddr,
		// Let's Encrypt's shortlived lifetime. Pebble puts the ARI window
		// at two thirds of the lifetime, 24 h either side, clamped to the
		// lifetime: with 10 minutes it began at issuance, and one order in
		// twenty drew a renewal time within the next check (30 s), so the
		// certificate was rightly "renewal due" at once.
		Profiles: map[string]time.Duration{"shortlived": 160 * time.Hour}})
	b := testenv.NewBackend(t, 1, 0)
	for i, ip := range []string{"127.0.0.1", "::1"} {
		t.Run(ip, func(t *testing.T) {
			hp := func(p int) string { return net.JoinHostPort(ip, fmt.Sprint(p)) }
			cfg := profConf(peb, hp(ports[0]), hp(ports[1+2*i]), testenv.Addr(ports[2+2*i]),
				filepath.Join(t.TempDir(), "storage"), "", b.URL,
				profSite{hosts: []string{ip}, profile: "shortlived"})
			e, roots := startServing(t, peb, cfg)
			// No SNI: Go's client sends none for an IP ServerName, and
			// verifies the IP SAN.
			conn, err := tls.Dial("tcp", hp(ports[1+2*i]), &tls.Config{ServerName: ip, RootCAs: roots})
			if err != nil {
				t.Fatalf("handshake without SNI to %s: %v", ip, err)
			}
			leaf := conn.ConnectionState().PeerCertificates[0]
			conn.Close()
			if len(leaf.IPAddresses) != 1 || !leaf.IPAddresses[0].Equal(net.ParseIP(ip)) || len(leaf.DNSNames) != 0 {
				t.Errorf("certificate names DNS %q IP %v, want the IP %s only", leaf.DNSNames, leaf.IPAddresses, ip)
			}
			c := apiCerts(t, e)[ip]
			t.Logf("%s: served %v (serial %x), /api/certificates names %q state %s profile %s", ip, leaf.IPAddresses, leaf.SerialNumber, c.Names, c.State, c.Profile)
			if len(c.Names) != 1 || c.Names[0] != ip || c.State != "valid" {
				t.Errorf("/api/certificates %s: names %q state %q, want [%s] valid", ip, c.Names, c.State, ip)
			}
			// A request through it reaches the backend.
			client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
			resp, err := client.Get("https://" + hp(ports[1+2*i]) + "/")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("GET https://%s/: %s", hp(ports[1+2*i]), resp.Status)
			}
		})
	}
}
