package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/farmedge/edge/admin"
	"github.com/farmedge/edge/config"
	"github.com/farmedge/edge/export"
	"github.com/farmedge/edge/tlsmgr"
)

func cmdValidate(args []string, stdout io.Writer) error {
	fs := newFlagSet("validate")
	path := fs.String("config", defaultConfigPath(), "config file")
	checkDNS := fs.Bool("check-dns", false, "also check that every delegate: CNAME is in place")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	if _, err := buildPlan(cfg); err != nil {
		return err
	}
	for _, w := range cfg.Warnings() {
		fmt.Fprintf(stdout, "warning: %v\n", w)
	}
	fmt.Fprintf(stdout, "%s: ok: %s\n", *path, cfg.Summary())
	if *checkDNS {
		lines, failed := checkDelegations(context.Background(), cfg)
		for _, l := range lines {
			fmt.Fprintln(stdout, l)
		}
		if failed > 0 {
			return fmt.Errorf("%d delegated names lack their _acme-challenge CNAME", failed)
		}
	}
	return nil
}

// adminClient talks to a running edge's admin API.
type adminClient struct {
	base  string
	token string
	hc    *http.Client
}

func newAdminClient(fs *flag.FlagSet) (func() *adminClient, *string) {
	addr := fs.String("admin", envOr("EDGE_ADMIN", "http://127.0.0.1:9180"), "admin API base URL")
	tokenFile := fs.String("token-file", os.Getenv("EDGE_ADMIN_TOKEN_FILE"), "file with the admin bearer token")
	return func() *adminClient {
		c := &adminClient{base: strings.TrimRight(*addr, "/"), hc: &http.Client{Timeout: 30 * time.Second}}
		if *tokenFile != "" {
			if b, err := os.ReadFile(*tokenFile); err == nil {
				c.token = strings.TrimSpace(string(b))
			}
		}
		return c
	}, addr
}

func (c *adminClient) do(ctx context.Context, method, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, nil)
	if err != nil {
		return err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	req.Header.Set(admin.RequestHeader, "1")
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("asking edge's admin API: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		_ = json.NewDecoder(resp.Body).Decode(&e)
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, e.Error)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func cmdCerts(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("certs")
	client, _ := newAdminClient(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	var raw json.RawMessage
	if err := client().do(ctx, http.MethodGet, "/api/certificates", &raw); err != nil {
		return err
	}
	if *asJSON {
		_, err := fmt.Fprintf(stdout, "%s\n", raw)
		return err
	}
	var rows []certificate
	if err := json.Unmarshal(raw, &rows); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tISSUER\tNOT AFTER\tRENEWAL AT\tSTATE\tLAST ERROR\tEXPORTS")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, dash(r.Issuer), when(r.NotAfter), when(r.RenewalAt), r.State, dash(r.LastError), exportsCell(r.Exports))
	}
	return tw.Flush()
}

func cmdRenew(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("renew")
	client, _ := newAdminClient(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%w renew takes one NAME, got %q\n\n%s", errUsage, fs.Args(), commandHelp(fs))
	}
	name := fs.Arg(0)
	var out map[string]any
	if err := client().do(ctx, http.MethodPost, "/api/renew?name="+url.QueryEscape(name), &out); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "renewal of %s started\n", name)
	return nil
}

// cmdRevoke is edge revoke NAME [-reason R]: through the admin API, the CA
// revokes the certificate and edge obtains and serves a replacement.
func cmdRevoke(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("revoke")
	client, _ := newAdminClient(fs)
	reason := fs.String("reason", "unspecified", "RFC 5280 reason: unspecified, keyCompromise, affiliationChanged, superseded, cessationOfOperation")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%w revoke takes one NAME, got %q\n\n%s", errUsage, fs.Args(), commandHelp(fs))
	}
	if _, err := tlsmgr.RevocationReason(*reason); err != nil {
		return fmt.Errorf("%w %v", errUsage, err)
	}
	name := fs.Arg(0)
	var out map[string]string
	if err := client().do(ctx, http.MethodPost, "/api/revoke?name="+url.QueryEscape(name)+"&reason="+url.QueryEscape(*reason), &out); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "revoked %s (serial %s, reason %s); obtaining a replacement\n", name, out["serial"], *reason)
	return nil
}

// cmdDrain is edge drain and edge undrain: POOL BACKEND out of new
// traffic, or back in.
func cmdDrain(ctx context.Context, name string, args []string, stdout io.Writer) error {
	fs := newFlagSet(name)
	client, _ := newAdminClient(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		return fmt.Errorf("%w %s takes POOL BACKEND (the backend's URL as edge certs/api/pools show it), got %q\n\n%s", errUsage, name, fs.Args(), commandHelp(fs))
	}
	// POST /api/pools/POOL/backends/BACKEND/drain (or undrain): BACKEND a
	// URL, escaped into one path segment, or a host:port.
	path := "/api/pools/" + url.PathEscape(fs.Arg(0)) + "/backends/" + url.PathEscape(fs.Arg(1)) + "/" + name
	var out map[string]any
	if err := client().do(ctx, http.MethodPost, path, &out); err != nil {
		return err
	}
	if name == "undrain" {
		fmt.Fprintf(stdout, "%s in pool %s takes new requests again\n", fs.Arg(1), fs.Arg(0))
	} else {
		fmt.Fprintf(stdout, "%s in pool %s takes no new requests; those in flight finish\n", fs.Arg(1), fs.Arg(0))
	}
	return nil
}

// exportAttempt is one target's outcome as /api/export returns it.
type exportAttempt struct {
	Name   string `json:"name"`
	Target string `json:"target"`
	Hosts  []struct {
		Host   string `json:"host"`
		OK     bool   `json:"ok"`
		Error  string `json:"error"`
		Output string `json:"output"`
		TookMS int64  `json:"took_ms"`
	} `json:"hosts"`
}

// cmdExport delivers now (or, with -dry-run, tests every target: connect,
// authenticate, write and remove a probe) and prints a table; exit 1 when a
// target fails.
func cmdExport(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("export")
	client, _ := newAdminClient(fs)
	dry := fs.Bool("dry-run", false, "test every target without changing a certificate")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	q := url.Values{}
	if *dry {
		q.Set("dry_run", "1")
	}
	for _, n := range fs.Args() {
		q.Add("name", n)
	}
	var raw json.RawMessage
	if err := client().do(ctx, http.MethodPost, "/api/export?"+q.Encode(), &raw); err != nil {
		return err
	}
	var rows []exportAttempt
	if err := json.Unmarshal(raw, &rows); err != nil {
		return err
	}
	failed := 0
	for _, r := range rows {
		for _, h := range r.Hosts {
			if !h.OK {
				failed++
			}
		}
	}
	if *asJSON {
		fmt.Fprintf(stdout, "%s\n", raw)
	} else {
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		if *dry {
			fmt.Fprintln(tw, "TARGET\tHOST\tRESULT\tTOOK")
		} else {
			fmt.Fprintln(tw, "TARGET\tNAME\tHOST\tRESULT\tTOOK")
		}
		for _, r := range rows {
			for _, h := range r.Hosts {
				res := "ok"
				if !h.OK {
					res = "FAILED: " + h.Error
				}
				if *dry {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%dms\n", r.Target, h.Host, res, h.TookMS)
				} else {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%dms\n", r.Target, r.Name, h.Host, res, h.TookMS)
				}
			}
		}
		tw.Flush()
	}
	if failed > 0 {
		return fmt.Errorf("%d export targets failed", failed)
	}
	return nil
}

// exportsCell sums up the delivery state per target: "pem:ok ccs:pending".
func exportsCell(st []export.Status) string {
	var parts []string
	for _, e := range st {
		state := "ok"
		switch {
		case e.LastError != "":
			state = "failing"
		case e.Pending:
			state = "pending"
		}
		parts = append(parts, e.Target+":"+state)
	}
	return dash(strings.Join(parts, " "))
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}
