package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/farmedge/edge/challenge"
	"github.com/farmedge/edge/config"
	"github.com/farmedge/edge/tlsmgr"
)

// cmdPreflight checks, for every name that uses HTTP-01, that requests for
// /.well-known/acme-challenge/ reach an edge that can answer them, through
// the real path (DNS and load balancer), before the CA is asked.
func cmdPreflight(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("preflight")
	path := fs.String("config", defaultConfigPath(), "config file")
	attempts := fs.Int("attempts", 6, "requests per name (each on a new connection)")
	connect := fs.String("connect", "", "dial HOST:PORT instead of NAME:80 (like curl --connect-to)")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	storage, err := buildStorage(cfg.Storage, storageDeps{node: "preflight", logger: zap.NewNop()})
	if err != nil {
		return err
	}
	if m, ok := storage.(*tlsmgr.Mirror); ok {
		defer m.Storage.(interface{ Close() error }).Close()
	}
	var names, skipped []string
	for _, s := range cfg.Sites {
		for _, h := range s.Hosts {
			if s.DNS != "" || strings.HasPrefix(h, "*.") || h == config.CatchAll {
				skipped = append(skipped, h)
				continue
			}
			names = append(names, strings.ToLower(h))
		}
	}
	probe := challenge.NewProbe()
	key := challenge.ProbeKey(probe.Token)
	if err := storage.Store(ctx, key, []byte(probe.Value)); err != nil {
		return fmt.Errorf("placing the probe token in storage: %w", err)
	}
	defer func() { _ = storage.Delete(context.WithoutCancel(ctx), key) }()

	results := challenge.Preflight{Attempts: *attempts, ConnectTo: *connect}.Check(ctx, names, probe)
	dnsLines, failed := checkDelegations(ctx, cfg)
	caaLines, caaFailed := checkCAA(ctx, cfg, storage)
	dnsLines, failed = append(dnsLines, caaLines...), failed+caaFailed
	for _, r := range results {
		if r.Failed() > 0 {
			failed++
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(map[string]any{"results": results, "dns01": skipped, "delegations": dnsLines}); err != nil {
			return err
		}
	} else {
		printPreflight(stdout, results, skipped)
		for _, l := range dnsLines {
			fmt.Fprintln(stdout, l)
		}
	}
	if failed > 0 {
		return fmt.Errorf("preflight: %d checks failed: HTTP-01 requests that no edge could answer, missing delegations, or CAA records that refuse the CA", failed)
	}
	return nil
}

func printPreflight(w io.Writer, results []challenge.Result, skipped []string) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tOK\tANSWERED BY\tFAILURES")
	for _, r := range results {
		ok := len(r.Attempts) - r.Failed()
		nodes := map[string]int{}
		var order []string
		var fails []string
		for _, a := range r.Attempts {
			n := a.Node
			if n == "" {
				n = "?"
			}
			if nodes[n] == 0 {
				order = append(order, n)
			}
			nodes[n]++
			if !a.OK {
				fails = append(fails, fmt.Sprintf("%s: %s", n, a.Error))
			}
		}
		var by []string
		for _, n := range order {
			by = append(by, fmt.Sprintf("%s×%d", n, nodes[n]))
		}
		fmt.Fprintf(tw, "%s\t%d/%d\t%s\t%s\n", r.Name, ok, len(r.Attempts), strings.Join(by, " "), dash(strings.Join(uniq(fails), "; ")))
	}
	_ = tw.Flush()
	for _, s := range skipped {
		fmt.Fprintf(w, "%s: uses DNS-01, not probed over HTTP\n", s)
	}
}

func uniq(ss []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range ss {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// checkDelegations verifies, for every site with delegate:, that
// _acme-challenge.HOST is a CNAME to the delegated name, as the first
// configured resolver sees it. It returns one line per host.
func checkDelegations(ctx context.Context, cfg *config.Config) (lines []string, failed int) {
	resolver := "1.1.1.1:53"
	if len(cfg.ACME.DNSResolvers) > 0 {
		resolver = cfg.ACME.DNSResolvers[0]
	}
	for _, s := range cfg.Sites {
		if s.Delegate == "" {
			continue
		}
		for _, h := range s.Hosts {
			if err := challenge.CheckDelegation(ctx, resolver, h, s.Delegate); err != nil {
				failed++
				lines = append(lines, fmt.Sprintf("%s: FAIL: %v", h, err))
				continue
			}
			lines = append(lines, fmt.Sprintf("%s: ok: _acme-challenge delegated to %s", h, s.Delegate))
		}
	}
	return lines, failed
}

// checkCAA checks, for every managed name and every CA of acme.ca, that
// the name's CAA records (RFC 8659, RFC 8657) allow the CA and the
// account edge has there, as the first configured resolver sees them. It
// returns one line per name and CA.
func checkCAA(ctx context.Context, cfg *config.Config, st certmagic.Storage) (lines []string, failed int) {
	resolver := "1.1.1.1:53"
	if len(cfg.ACME.DNSResolvers) > 0 {
		resolver = cfg.ACME.DNSResolvers[0]
	}
	for i, ca := range cfg.ACME.CAList() {
		acct, err := tlsmgr.AccountURI(ctx, st, ca.Directory, cfg.ACME.Email)
		if err != nil && !errors.Is(err, tlsmgr.ErrNoAccount) {
			lines = append(lines, fmt.Sprintf("CAA: %s: WARN: reading edge's account: %v", cfg.CAPath(i), err))
		}
		for _, s := range cfg.Sites {
			methods := slices.Clone(cfg.ACME.Challenges)
			if s.DNS != "" {
				methods = []string{"dns-01"}
			}
			for _, h := range s.Hosts {
				if h == config.CatchAll || net.ParseIP(h) != nil {
					continue // no CAA for IP addresses (RFC 8738 section 6)
				}
				r := challenge.CheckCAA(ctx, resolver, strings.ToLower(h), challenge.CAACA{Domain: ca.CAA, AccountURI: acct, Methods: methods})
				switch {
				case !r.OK:
					failed++
					lines = append(lines, fmt.Sprintf("%s: FAIL: CAA for %s: %s", h, ca.URL, r.Detail))
				case r.Warning != "":
					lines = append(lines, fmt.Sprintf("%s: WARN: CAA for %s: %s", h, ca.URL, r.Warning))
				default:
					lines = append(lines, fmt.Sprintf("%s: ok: CAA for %s: %s", h, ca.URL, r.Detail))
				}
			}
		}
	}
	return lines, failed
}
