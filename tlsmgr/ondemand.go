package tlsmgr

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"golang.org/x/time/rate"
)

// OnDemand configures on-demand TLS: a certificate is obtained at the first
// handshake for a name that no Group lists, when the decision allows it.
// The decision asks, in this order: Allow, then Ask, then the rate limit;
// only then may an order start. A refused name fails its handshake at once
// and costs no order.
//
// The zero value allows nothing: give Allow, Ask or both.
type OnDemand struct {
	// Allow lists names, or wildcards of one leftmost label
	// ("*.customers.example.com"), allowed without asking. Lower case.
	Allow []string
	// Ask is asked GET Ask?domain=NAME for a name Allow does not list: 200
	// allows; any other status, an error or no answer within AskTimeout
	// refuses. "" refuses every name Allow does not list.
	Ask string
	// AskTimeout bounds one ask; 0 leaves only the handshake's own bound.
	AskTimeout time.Duration
	// AskCache is how long an answer of Ask, yes or no, is kept; 0 or less
	// asks every time. Errors are never kept.
	AskCache time.Duration
	// RateEvents per RateInterval caps the names allowed through, in any
	// window of RateInterval (a sliding window, so "5/m" never lets a sixth
	// order start within a minute of the first). 0 means no cap.
	RateEvents   int
	RateInterval time.Duration
	// Burst, when below RateEvents, also spreads those names out: at most
	// Burst at once, then one every RateInterval/RateEvents. 0 or
	// RateEvents and above: no spreading.
	Burst int
	// Profile is the ACME profile asked for in on-demand orders; "" the
	// CA's default.
	Profile string
	// Client makes the asks; nil uses a client of its own (no proxy from the
	// environment, no redirects followed).
	Client *http.Client
}

// equal reports whether o and p decide the same way (Client excluded).
func (o *OnDemand) equal(p *OnDemand) bool {
	if o == nil || p == nil {
		return o == p
	}
	a, b := *o, *p
	a.Client, b.Client = nil, nil
	return reflect.DeepEqual(a, b)
}

// Errors of the on-demand decision; the handshake fails with one of them.
var (
	ErrOnDemandRefused     = errors.New("on-demand certificate refused")
	ErrOnDemandRateLimited = errors.New("on-demand certificate rate limit reached")
)

// Decision results, the result label of edge_on_demand_decisions_total.
const (
	decisionAllowed     = "allowed"      // listed in Allow
	decisionAskYes      = "ask_yes"      // Ask said 200 (or its cached answer)
	decisionRefused     = "refused"      // neither Allow nor Ask allowed it
	decisionAskFailed   = "ask_failed"   // Ask could not be reached in time
	decisionRateLimited = "rate_limited" // allowed, but over the rate
)

// maxDecisionCache bounds the names the decider remembers (ask answers and
// recent grants); beyond it, expired entries are swept, then arbitrary ones
// dropped: a flood of random names costs memory up to this bound only.
const maxDecisionCache = 10000

// decider is the on-demand decision of one OnDemand. Safe for concurrent
// use.
type decider struct {
	opts    OnDemand
	client  *http.Client
	metrics *Metrics
	bucket  *rate.Limiter // nil without Burst spreading

	mu      sync.Mutex
	answers map[string]answer    // Ask's answers by name
	granted map[string]time.Time // names let through the rate limit, and when
	window  []time.Time          // grants within the last RateInterval, oldest first
	now     func() time.Time
}

type answer struct {
	yes   bool
	until time.Time
}

func newDecider(o OnDemand, m *Metrics) *decider {
	d := &decider{opts: o, client: o.Client, metrics: m, answers: map[string]answer{}, granted: map[string]time.Time{}, now: time.Now}
	if d.client == nil {
		d.client = &http.Client{
			Transport:     &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 4, IdleConnTimeout: time.Minute},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	if o.RateEvents > 0 && o.Burst > 0 && o.Burst < o.RateEvents {
		d.bucket = rate.NewLimiter(rate.Every(o.RateInterval/time.Duration(o.RateEvents)), o.Burst)
	}
	return d
}

// decide is certmagic's DecisionFunc: nil lets an order for name start.
func (d *decider) decide(ctx context.Context, name string) error {
	result, err := d.check(ctx, name)
	if err == nil {
		if !d.admit(name) {
			result, err = decisionRateLimited, fmt.Errorf("%s: %w", name, ErrOnDemandRateLimited)
		}
	}
	d.metrics.decision(result)
	return err
}

// allowed reports whether Allow or Ask lets name have a certificate,
// without charging the rate limit or counting a decision: for the peers
// of a farm deciding whether a challenge for name is worth asking about.
func (d *decider) allowed(ctx context.Context, name string) bool {
	_, err := d.check(ctx, name)
	return err == nil
}

// check runs Allow, then Ask.
func (d *decider) check(ctx context.Context, name string) (string, error) {
	for _, p := range d.opts.Allow {
		if p == name || certmagic.MatchWildcard(name, p) {
			return decisionAllowed, nil
		}
	}
	if d.opts.Ask == "" {
		return decisionRefused, fmt.Errorf("%s: not in on_demand.allow: %w", name, ErrOnDemandRefused)
	}
	if yes, ok := d.cached(name); ok {
		if yes {
			return decisionAskYes, nil
		}
		return decisionRefused, fmt.Errorf("%s: refused by the ask endpoint (cached): %w", name, ErrOnDemandRefused)
	}
	yes, err := d.ask(ctx, name)
	if err != nil {
		return decisionAskFailed, fmt.Errorf("%s: asking %s: %w (%w)", name, d.opts.Ask, err, ErrOnDemandRefused)
	}
	d.remember(name, yes)
	if !yes {
		return decisionRefused, fmt.Errorf("%s: refused by the ask endpoint: %w", name, ErrOnDemandRefused)
	}
	return decisionAskYes, nil
}

// ask asks the endpoint about name: true for 200, false for another status.
func (d *decider) ask(ctx context.Context, name string) (bool, error) {
	if d.opts.AskTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d.opts.AskTimeout)
		defer cancel()
	}
	u, err := url.Parse(d.opts.Ask)
	if err != nil {
		return false, err
	}
	q := u.Query()
	q.Set("domain", name)
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return false, err
	}
	req.Header.Set("User-Agent", "edge (on-demand TLS ask)")
	resp, err := d.client.Do(req)
	if err != nil {
		return false, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096)) // lets the connection be reused
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK, nil
}

func (d *decider) cached(name string) (yes, ok bool) {
	if d.opts.AskCache <= 0 {
		return false, false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	a, ok := d.answers[name]
	if !ok || d.now().After(a.until) {
		return false, false
	}
	return a.yes, true
}

func (d *decider) remember(name string, yes bool) {
	if d.opts.AskCache <= 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.now()
	if len(d.answers) >= maxDecisionCache {
		for n, a := range d.answers {
			if now.After(a.until) {
				delete(d.answers, n)
			}
		}
		for n := range d.answers { // map order is random
			if len(d.answers) < maxDecisionCache*3/4 {
				break
			}
			delete(d.answers, n)
		}
	}
	d.answers[name] = answer{yes: yes, until: now.Add(d.opts.AskCache)}
}

// admit charges the rate limit for name, once per RateInterval for the
// same name (several handshakes for one name are one order), and reports
// whether it is within the limit.
func (d *decider) admit(name string) bool {
	if d.opts.RateEvents <= 0 {
		return true
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.now()
	if at, ok := d.granted[name]; ok && now.Sub(at) < d.opts.RateInterval {
		return true
	}
	cut := 0
	for cut < len(d.window) && now.Sub(d.window[cut]) >= d.opts.RateInterval {
		cut++
	}
	d.window = d.window[cut:]
	if len(d.window) >= d.opts.RateEvents {
		return false
	}
	if d.bucket != nil && !d.bucket.AllowN(now, 1) {
		return false
	}
	d.window = append(d.window, now)
	if len(d.granted) >= maxDecisionCache {
		for n, at := range d.granted {
			if now.Sub(at) >= d.opts.RateInterval {
				delete(d.granted, n)
			}
		}
	}
	if len(d.granted) < maxDecisionCache {
		d.granted[name] = now
	}
	return true
}

// OnDemandAllowed reports whether on-demand TLS is on and its Allow or Ask
// lets name have a certificate (no rate limit charged, no decision
// counted). Safe for concurrent use.
func (m *Manager) OnDemandAllowed(ctx context.Context, name string) bool {
	d := m.decider.Load()
	return d != nil && d.allowed(ctx, normalise(strings.TrimSuffix(name, ".")))
}

// decide is the DecisionFunc of the on-demand config: it asks the current
// decider, so a reload that changes only the decision keeps the config.
func (m *Manager) decide(ctx context.Context, name string) error {
	d := m.decider.Load()
	if d == nil {
		return fmt.Errorf("%s: on-demand TLS is off: %w", name, ErrOnDemandRefused)
	}
	return d.decide(ctx, name)
}
