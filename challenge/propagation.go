package challenge

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/libdns/libdns"
	"github.com/miekg/dns"
)

// Propagation configures WithPropagationCheck.
type Propagation struct {
	// Resolvers are asked ("host:port", port 53 if missing). Required.
	Resolvers []string
	// Timeout bounds the wait and Interval spaces the checks; both must be
	// positive (the config holds their defaults). Delay waits before the
	// first check; 0 means none.
	Timeout, Interval, Delay time.Duration
}

// WithPropagationCheck wraps p so that AppendRecords returns only once every
// resolver answers each appended TXT record with its value. On timeout it
// deletes what it appended (so no record is left behind) and returns an
// error saying what each resolver saw, e.g.
//
//	TXT _acme-challenge.app.test. not visible after 30s: 127.0.0.1:53 saw ["old"]; 10.0.0.53:53: i/o timeout
//
// It replaces certmagic's own check, whose timeout error does not say which
// resolver saw what.
func WithPropagationCheck(p DNSProvider, o Propagation) DNSProvider {
	return &propagating{DNSProvider: p, o: o}
}

type propagating struct {
	DNSProvider
	o Propagation
}

// String names the wrapped provider.
func (p *propagating) String() string {
	if s, ok := p.DNSProvider.(fmt.Stringer); ok {
		return s.String()
	}
	return "dns provider"
}

func (p *propagating) AppendRecords(ctx context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	out, err := p.DNSProvider.AppendRecords(ctx, zone, recs)
	if err != nil {
		return out, err
	}
	for _, rec := range recs {
		rr := rec.RR()
		if rr.Type != "TXT" {
			continue
		}
		fqdn := dns.Fqdn(libdns.AbsoluteName(rr.Name, zone))
		if err := p.wait(ctx, fqdn, rr.Data); err != nil {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			_, derr := p.DNSProvider.DeleteRecords(cctx, zone, out)
			cancel()
			return nil, errors.Join(err, derr)
		}
	}
	return out, nil
}

func (p *propagating) wait(ctx context.Context, fqdn, want string) error {
	timeout, interval := p.o.Timeout, p.o.Interval
	if timeout <= 0 || interval <= 0 {
		return fmt.Errorf("checking propagation: timeout %v and interval %v must be positive", timeout, interval)
	}
	if len(p.o.Resolvers) == 0 {
		return errors.New("checking propagation: no resolvers configured (acme.dns_resolvers)")
	}
	if p.o.Delay > 0 {
		if err := sleep(ctx, p.o.Delay); err != nil {
			return err
		}
	}
	deadline := time.Now().Add(timeout)
	var seen []string
	for {
		seen = seen[:0]
		all := true
		for _, r := range p.o.Resolvers {
			got, err := lookupTXT(ctx, r, fqdn)
			switch {
			case err != nil:
				all = false
				seen = append(seen, fmt.Sprintf("%s: %v", r, err))
			case !slices.Contains(got, want):
				all = false
				seen = append(seen, fmt.Sprintf("%s saw %q", r, got))
			}
		}
		if all {
			return nil
		}
		if time.Now().Add(interval).After(deadline) {
			return fmt.Errorf("TXT %s not visible after %s (want %q): %s", fqdn, timeout, want, strings.Join(seen, "; "))
		}
		if err := sleep(ctx, interval); err != nil {
			return fmt.Errorf("TXT %s: %w (last: %s)", fqdn, err, strings.Join(seen, "; "))
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// lookupTXT asks resolver for the TXT records at fqdn, following the
// answer's CNAME chain as a recursive resolver returns it. NXDOMAIN and an
// empty answer give no values and no error.
func lookupTXT(ctx context.Context, resolver, fqdn string) ([]string, error) {
	server, err := withPort(resolver, "53")
	if err != nil {
		return nil, err
	}
	in, err := query(ctx, server, fqdn, dns.TypeTXT, 3*time.Second)
	if err != nil {
		return nil, err
	}
	if in.Rcode != dns.RcodeSuccess && in.Rcode != dns.RcodeNameError {
		return nil, fmt.Errorf("answered %s", dns.RcodeToString[in.Rcode])
	}
	var vals []string
	for _, rr := range in.Answer {
		if t, ok := rr.(*dns.TXT); ok {
			vals = append(vals, strings.Join(t.Txt, ""))
		}
	}
	return vals, nil
}
