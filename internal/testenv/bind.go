package testenv

// bind.go starts BIND 9 (named) as the DNS server of DNS-01 tests: the
// authoritative server of the test zones, updatable with a TSIG key, and a
// resolver for 127.0.0.1 that never sends a query off this machine.

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// BINDOptions configure StartBIND.
type BINDOptions struct {
	// Zones are the zones BIND is the primary of ("app.test"), each with an
	// SOA, an NS and "@ A 127.0.0.1", and updatable (RFC 2136) by the TSIG
	// key. At least one is required.
	Zones []string
	// Records are extra lines in zone-file syntax, by zone, such as a
	// delegation: {"deleg.test": {"_acme-challenge CNAME _acme-challenge.d.other.test."}}.
	Records map[string][]string
}

// BIND is a running named. It answers on Addr over UDP and TCP,
// authoritatively for its zones and the root zone ".", and recursively for
// 127.0.0.1 (so a CNAME from one test zone into another is followed in one
// answer). Being authoritative for "." and sending queries from 127.0.0.1
// only, it never sends a query off this machine.
type BIND struct {
	*Process
	// Addr is "127.0.0.1:port" (UDP and TCP).
	Addr string
	Port int
	// KeyName, KeyAlg and KeySecret are the TSIG key allowed to update the
	// zones: "edge", "hmac-sha256" and a random base64 secret.
	KeyName, KeyAlg, KeySecret string
	// Dir holds named.conf, the zone files and their journals.
	Dir string
}

const (
	bindKeyName = "edge"
	bindKeyAlg  = "hmac-sha256"
)

// StartBIND writes a named.conf and zone files into a temp dir and runs
// `named -g -4 -c FILE` on a free 127.0.0.1 port. It returns once every
// zone answers. Cleanup stops named (SIGTERM to its pid, then SIGKILL).
// Outside CI a missing named skips the test; with CI set it fails.
func StartBIND(tb TB, opts BINDOptions) *BIND {
	tb.Helper()
	bin := RequireTool(tb, "named")
	if len(opts.Zones) == 0 {
		tb.Fatalf("StartBIND: no zones")
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		tb.Fatalf("StartBIND: %v", err)
	}
	b := &BIND{
		KeyName:   bindKeyName,
		KeyAlg:    bindKeyAlg,
		KeySecret: base64.StdEncoding.EncodeToString(secret),
		Dir:       tb.TempDir(),
	}
	b.Port = freeUDPTCPPort(tb)
	b.Addr = Addr(b.Port)

	zones := append([]string{"."}, opts.Zones...)
	for _, z := range zones {
		name := strings.TrimSuffix(strings.ToLower(z), ".")
		var extra []string
		if name != "" {
			extra = opts.Records[name]
		}
		if err := os.WriteFile(filepath.Join(b.Dir, zoneFile(name)), []byte(zoneText(name, extra)), 0o644); err != nil {
			tb.Fatalf("StartBIND: %v", err)
		}
	}
	conf := filepath.Join(b.Dir, "named.conf")
	if err := os.WriteFile(conf, []byte(b.namedConf(opts.Zones)), 0o644); err != nil {
		tb.Fatalf("StartBIND: %v", err)
	}
	b.Process = Start(tb, Cmd{Name: "named", Path: bin, Args: []string{"-g", "-4", "-c", conf}, Dir: b.Dir})
	if err := b.Process.WaitLog("running", 20*time.Second); err != nil {
		tb.Fatalf("named: %v\n%s", err, b.Process.Tail(30))
	}
	for _, z := range opts.Zones {
		if err := b.waitZone(z, 10*time.Second); err != nil {
			tb.Fatalf("named: %v\n%s", err, b.Process.Tail(30))
		}
	}
	return b
}

func zoneFile(name string) string {
	if name == "" {
		return "root.zone"
	}
	return name + ".zone"
}

// zoneText is a zone with a short negative TTL, so a record added by an
// update is never hidden by a cached NXDOMAIN anywhere.
func zoneText(name string, extra []string) string {
	var b strings.Builder
	origin := name + "."
	if name == "" {
		origin = "."
	}
	fmt.Fprintf(&b, "$ORIGIN %s\n$TTL 60\n", origin)
	b.WriteString("@ IN SOA ns.localhost. hostmaster.localhost. 1 3600 600 86400 1\n")
	b.WriteString("@ IN NS ns.localhost.\n")
	if name == "" {
		// The root zone holds the address of the name server it names, so
		// nothing is ever looked up elsewhere.
		b.WriteString("ns.localhost. IN A 127.0.0.1\n")
	} else {
		b.WriteString("@ IN A 127.0.0.1\n")
	}
	for _, l := range extra {
		b.WriteString(l + "\n")
	}
	return b.String()
}

func (b *BIND) namedConf(zones []string) string {
	var c strings.Builder
	fmt.Fprintf(&c, `# written by testenv.StartBIND
controls { };
options {
	directory %q;
	pid-file none;
	session-keyfile none;
	listen-on port %d { 127.0.0.1; };
	listen-on-v6 { none; };
	# Queries BIND itself sends leave from loopback only; being the root
	# zone's primary, it has nowhere else to send them anyway.
	query-source address 127.0.0.1;
	recursion yes;
	allow-recursion { 127.0.0.1; };
	allow-query { 127.0.0.1; };
	allow-transfer { 127.0.0.1; };
	dnssec-validation no;
	empty-zones-enable no;
	notify no;
	minimal-responses no;
};
key %q {
	algorithm %s;
	secret %q;
};
zone "." {
	type primary;
	file %q;
};
`, b.Dir, b.Port, b.KeyName, b.KeyAlg, b.KeySecret, zoneFile(""))
	for _, z := range zones {
		name := strings.TrimSuffix(strings.ToLower(z), ".")
		fmt.Fprintf(&c, `zone %q {
	type primary;
	file %q;
	update-policy { grant %s zonesub ANY; };
};
`, name, zoneFile(name), b.KeyName)
	}
	return c.String()
}

func (b *BIND) waitZone(zone string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		in, err := b.Query(zone, dns.TypeSOA)
		if err == nil && in.Rcode == dns.RcodeSuccess && len(in.Answer) > 0 {
			return nil
		}
		if b.Process.Exited() {
			return fmt.Errorf("named exited before serving %s", zone)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("zone %s not served after %s (last: %v %v)", zone, timeout, in, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Query asks BIND (over TCP, recursion desired) for name's records of type
// qtype.
func (b *BIND) Query(name string, qtype uint16) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.RecursionDesired = true
	c := &dns.Client{Net: "tcp", Timeout: 3 * time.Second}
	in, _, err := c.Exchange(m, b.Addr)
	if err != nil {
		return nil, fmt.Errorf("querying %s %s at %s: %w", name, dns.TypeToString[qtype], b.Addr, err)
	}
	return in, nil
}

// TXT returns the TXT values BIND answers for name (following CNAMEs).
func (b *BIND) TXT(name string) ([]string, error) {
	in, err := b.Query(name, dns.TypeTXT)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, rr := range in.Answer {
		if t, ok := rr.(*dns.TXT); ok {
			out = append(out, strings.Join(t.Txt, ""))
		}
	}
	return out, nil
}

// Records transfers zone (AXFR) and returns its records, SOA excluded.
func (b *BIND) Records(zone string) ([]dns.RR, error) {
	m := new(dns.Msg)
	m.SetAxfr(dns.Fqdn(zone))
	tr := &dns.Transfer{DialTimeout: 3 * time.Second, ReadTimeout: 3 * time.Second}
	env, err := tr.In(m, b.Addr)
	if err != nil {
		return nil, fmt.Errorf("AXFR %s: %w", zone, err)
	}
	var out []dns.RR
	for e := range env {
		if e.Error != nil {
			return nil, fmt.Errorf("AXFR %s: %w", zone, e.Error)
		}
		for _, rr := range e.RR {
			if rr.Header().Rrtype != dns.TypeSOA {
				out = append(out, rr)
			}
		}
	}
	return out, nil
}

// ChallengeTXT returns every TXT record in zone whose owner name starts
// with "_acme-challenge", as "name value" lines, sorted.
func (b *BIND) ChallengeTXT(zone string) ([]string, error) {
	rrs, err := b.Records(zone)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, rr := range rrs {
		if t, ok := rr.(*dns.TXT); ok && strings.HasPrefix(strings.ToLower(t.Hdr.Name), "_acme-challenge") {
			out = append(out, t.Hdr.Name+" "+strings.Join(t.Txt, ""))
		}
	}
	sort.Strings(out)
	return out, nil
}

// freeUDPTCPPort returns a 127.0.0.1 port free for both TCP and UDP.
func freeUDPTCPPort(tb TB) int {
	tb.Helper()
	for range 20 {
		port := FreePort(tb) // below the ephemeral range, see FreePorts
		pc, err := net.ListenPacket("udp", Addr(port))
		if err != nil {
			continue
		}
		pc.Close()
		return port
	}
	tb.Fatalf("finding a port free for TCP and UDP: none in 20 tries")
	return 0
}
