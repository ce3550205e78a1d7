package export

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"time"
)

// Target is one configured destination.
type Target struct {
	// Name is the target's name in the config (exports[].name), in metrics
	// and records.
	Name     string
	Exporter Exporter
	// Verify lists "host:port" addresses that must serve the new
	// certificate (its serial) after a delivery; until they do, the
	// delivery is not done and is retried. Empty: no proof asked.
	Verify []string
}

// Plan is what the Dispatcher delivers: the targets, and for every managed
// name the names of the targets it goes to.
type Plan struct {
	Targets []Target
	// Names maps a managed name to its targets' names, in config order.
	Names map[string][]string
}

// Source gives the newest certificate stored for a name.
type Source interface {
	// Certificate returns the certificate of name as stored (the one edge
	// serves, or a newer one another edge of the farm obtained);
	// fs.ErrNotExist when there is none yet.
	Certificate(ctx context.Context, name string) (*Cert, error)
}

// Store keeps the delivery records and the locks. certmagic.Storage
// satisfies it, so with storage: redis every edge of a farm shares them.
// It MUST be safe for concurrent use and return fs.ErrNotExist for a
// missing key.
type Store interface {
	Load(ctx context.Context, key string) ([]byte, error)
	Store(ctx context.Context, key string, value []byte) error
	Lock(ctx context.Context, name string) error
	Unlock(ctx context.Context, name string) error
}

// tryLocker is the optional non-blocking lock (certmagic.TryLocker).
type tryLocker interface {
	TryLock(ctx context.Context, name string) (bool, error)
}

// Record is what is known of one (certificate, target): the serial
// delivered last and the last attempt. It lives in the Store under
// RecordKey.
type Record struct {
	Serial      string    `json:"serial,omitempty"`
	NotAfter    time.Time `json:"not_after,omitzero"`
	DeliveredAt time.Time `json:"delivered_at,omitzero"`
	DeliveredBy string    `json:"delivered_by,omitempty"`
	// The last attempt, successful or not.
	LastAttempt time.Time    `json:"last_attempt,omitzero"`
	LastError   string       `json:"last_error,omitempty"`
	Failures    int          `json:"failures,omitempty"` // consecutive
	Hosts       []HostRecord `json:"hosts,omitempty"`
}

// HostRecord is the last result on one host of a target.
type HostRecord struct {
	Host  string `json:"host"`
	Error string `json:"error,omitempty"`
}

// RecordKey is where the record of (target, name) is stored.
func RecordKey(target, name string) string {
	return "edge/exports/" + target + "/" + FileName(name) + ".json"
}

func lockName(target, name string) string { return "export_" + target + "_" + FileName(name) }

// Backoff bounds: the first retry after Retry, doubling up to MaxRetry.
const (
	Retry    = 5 * time.Second
	MaxRetry = time.Hour
)

// Options configure a Dispatcher.
type Options struct {
	Source Source
	Store  Store
	// Node names this edge in records ("delivered_by").
	Node string
	// Interval is how often every (name, target) is compared with its
	// record, to catch up what was missed (an edge that crashed, a target
	// that was down). Required (the config holds the default).
	Interval time.Duration
	// Backoff is the wait before the first retry of a failed delivery; it
	// doubles per failure up to MaxRetry. Required (edge uses Retry).
	Backoff time.Duration
	// Logger receives one line per attempt; nil discards.
	Logger  *slog.Logger
	Metrics *Metrics
	// OnResult is called after each delivery attempt this edge made of
	// name to target: err nil when delivered, else why not (the retry is
	// scheduled). It must not block. Nil: nothing.
	OnResult func(name, target string, err error)
}

// Dispatcher delivers every certificate to its targets and keeps at it
// until each has the newest one. Build it with NewDispatcher, give it a
// Plan with Apply (again on every reload), start it with Run. Safe for
// concurrent use.
type Dispatcher struct {
	o   Options
	log *slog.Logger

	mu      sync.Mutex
	plan    Plan
	targets map[string]*Target
	next    map[jobKey]time.Time // no attempt before (backoff)
	busy    map[jobKey]bool
	status  map[jobKey]Status

	kick chan struct{}
	wg   sync.WaitGroup
}

type jobKey struct{ name, target string }

// Status is the last known delivery state of one (name, target), for the
// admin API.
type Status struct {
	Target      string       `json:"target"`
	Serial      string       `json:"serial,omitempty"` // delivered last
	DeliveredAt time.Time    `json:"delivered_at,omitzero"`
	Pending     bool         `json:"pending"` // the certificate held is not delivered yet
	LastError   string       `json:"last_error,omitempty"`
	NextAttempt time.Time    `json:"next_attempt,omitzero"`
	Hosts       []HostRecord `json:"hosts,omitempty"`

	failures int // consecutive, also those that never reached the record
}

// NewDispatcher returns a Dispatcher with an empty plan.
func NewDispatcher(o Options) (*Dispatcher, error) {
	if o.Source == nil || o.Store == nil {
		return nil, errors.New("export dispatcher: needs a source and a store")
	}
	if o.Interval <= 0 || o.Backoff <= 0 {
		return nil, errors.New("export dispatcher: interval and backoff must be positive")
	}
	d := &Dispatcher{
		o: o, log: o.Logger,
		targets: map[string]*Target{},
		next:    map[jobKey]time.Time{},
		busy:    map[jobKey]bool{},
		status:  map[jobKey]Status{},
		kick:    make(chan struct{}, 1),
	}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	return d, nil
}

// Apply replaces the plan and starts a round at once, so that a target
// added by a reload catches up; backoffs are forgotten (a reload is often
// the fix of a failing target). Records of targets removed stay in the
// store.
func (d *Dispatcher) Apply(p Plan) {
	d.mu.Lock()
	d.plan = p
	d.targets = map[string]*Target{}
	for i := range p.Targets {
		d.targets[p.Targets[i].Name] = &p.Targets[i]
	}
	for k := range d.status {
		if !slices.Contains(p.Names[k.name], k.target) {
			delete(d.status, k)
		}
	}
	clear(d.next)
	d.mu.Unlock()
	d.o.Metrics.targets(p)
	d.Kick()
}

// Notify says that name has a new certificate (obtained or renewed here):
// its targets are tried at once, whatever their backoff.
func (d *Dispatcher) Notify(name string) {
	d.mu.Lock()
	for _, t := range d.plan.Names[name] {
		delete(d.next, jobKey{name, t})
	}
	d.mu.Unlock()
	d.Kick()
}

// Kick starts a round now.
func (d *Dispatcher) Kick() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// Run delivers until ctx ends: a round at start, on every Kick and every
// Interval, and when a retry is due. It returns when ctx is done and every
// delivery it started has finished.
func (d *Dispatcher) Run(ctx context.Context) {
	defer d.wg.Wait()
	t := time.NewTicker(time.Second) // retries come due between rounds
	defer t.Stop()
	lastRound := time.Time{}
	for {
		full := time.Since(lastRound) >= d.o.Interval
		if full {
			lastRound = time.Now()
		}
		d.round(ctx, full)
		select {
		case <-ctx.Done():
			return
		case <-d.kick:
			lastRound = time.Time{}
		case <-t.C:
		}
	}
}

// round starts a delivery for every (name, target) that is due: all of them
// in a full round, else only those whose retry time has come.
func (d *Dispatcher) round(ctx context.Context, full bool) {
	now := time.Now()
	d.mu.Lock()
	var jobs []jobKey
	for _, name := range sortedKeys(d.plan.Names) {
		for _, t := range d.plan.Names[name] {
			k := jobKey{name, t}
			if d.busy[k] || d.targets[t] == nil {
				continue
			}
			next, backoff := d.next[k]
			if (backoff && now.Before(next)) || (!full && !backoff) {
				continue
			}
			d.busy[k] = true
			jobs = append(jobs, k)
		}
	}
	d.mu.Unlock()
	for _, k := range jobs {
		d.wg.Go(func() {
			defer func() {
				if v := recover(); v != nil {
					d.log.Error("panic in export", "target", k.target, "name", k.name, "panic", v)
				}
				d.mu.Lock()
				delete(d.busy, k)
				d.mu.Unlock()
			}()
			d.deliver(ctx, k)
		})
	}
}

func sortedKeys(m map[string][]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// deliver brings one (name, target) up to date, if it is not.
func (d *Dispatcher) deliver(ctx context.Context, k jobKey) {
	d.mu.Lock()
	tgt := d.targets[k.target]
	d.mu.Unlock()
	if tgt == nil {
		return
	}
	cert, err := d.o.Source.Certificate(ctx, k.name)
	if errors.Is(err, fs.ErrNotExist) {
		return // not obtained yet; cert_obtained will Notify
	}
	if err != nil {
		d.failed(k, nil, fmt.Errorf("loading the certificate: %w", err), nil)
		return
	}
	rec, err := d.record(ctx, k)
	if err != nil {
		d.failed(k, cert, err, nil)
		return
	}
	if current(rec, cert) {
		d.done(k, cert, rec, false)
		return
	}
	// One edge of the farm delivers each certificate to each target.
	lock := lockName(k.target, k.name)
	if tl, ok := d.o.Store.(tryLocker); ok {
		got, err := tl.TryLock(ctx, lock)
		if err != nil {
			d.failed(k, cert, fmt.Errorf("locking: %w", err), nil)
			return
		}
		if !got {
			d.retryAt(k, time.Now().Add(d.o.Backoff)) // another edge is on it; check its record then
			return
		}
	} else if err := d.o.Store.Lock(ctx, lock); err != nil {
		d.failed(k, cert, fmt.Errorf("locking: %w", err), nil)
		return
	}
	defer func() {
		if err := d.o.Store.Unlock(context.WithoutCancel(ctx), lock); err != nil {
			d.log.Warn("export: unlocking", "target", k.target, "name", k.name, "error", err)
		}
	}()
	if rec, err = d.record(ctx, k); err != nil {
		d.failed(k, cert, err, nil)
		return
	}
	if current(rec, cert) {
		d.done(k, cert, rec, false) // another edge delivered it meanwhile
		return
	}
	start := time.Now()
	results := tgt.Exporter.Deliver(ctx, cert)
	err = resultsErr(results)
	if err == nil && len(tgt.Verify) > 0 {
		err = verify(ctx, cert, tgt.Verify)
	}
	if ctx.Err() != nil {
		return // stopping: the next start finishes it
	}
	rec.LastAttempt = time.Now()
	rec.Hosts = hostRecords(results)
	if err != nil {
		rec.LastError = err.Error()
		rec.Failures++
		d.store(ctx, k, rec)
		d.failed(k, cert, err, rec)
		return
	}
	rec.Serial, rec.NotAfter, rec.DeliveredAt, rec.DeliveredBy = cert.Serial(), cert.Leaf().NotAfter, rec.LastAttempt, d.o.Node
	rec.LastError, rec.Failures = "", 0
	d.store(ctx, k, rec)
	d.log.Info("exported", "target", k.target, "name", k.name, "serial", rec.Serial, "took", time.Since(start).Round(time.Millisecond))
	d.done(k, cert, rec, true)
}

// current reports whether rec says the certificate held, or a newer one,
// was delivered: an edge still holding the old certificate never delivers
// it over the new one another edge delivered.
func current(rec *Record, c *Cert) bool {
	if rec.Serial == "" {
		return false
	}
	return rec.Serial == c.Serial() || rec.NotAfter.After(c.Leaf().NotAfter)
}

func (d *Dispatcher) record(ctx context.Context, k jobKey) (*Record, error) {
	data, err := d.o.Store.Load(ctx, RecordKey(k.target, k.name))
	if errors.Is(err, fs.ErrNotExist) {
		return &Record{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the delivery record: %w", err)
	}
	var rec Record
	if err := json.Unmarshal(data, &rec); err != nil {
		return &Record{}, nil // a damaged record: deliver again
	}
	return &rec, nil
}

func (d *Dispatcher) store(ctx context.Context, k jobKey, rec *Record) {
	data, _ := json.Marshal(rec)
	if err := d.o.Store.Store(context.WithoutCancel(ctx), RecordKey(k.target, k.name), data); err != nil {
		d.log.Warn("export: writing the delivery record", "target", k.target, "name", k.name, "error", err)
	}
}

func (d *Dispatcher) done(k jobKey, c *Cert, rec *Record, delivered bool) {
	d.mu.Lock()
	delete(d.next, k)
	d.status[k] = Status{Target: k.target, Serial: rec.Serial, DeliveredAt: rec.DeliveredAt, Hosts: rec.Hosts}
	d.mu.Unlock()
	if delivered {
		d.o.Metrics.result(k.target, "success")
		if d.o.OnResult != nil {
			d.o.OnResult(k.name, k.target, nil)
		}
	}
	d.o.Metrics.delivered(k.target, k.name, rec.DeliveredAt)
	d.updatePending()
}

// failed logs the attempt once and schedules the retry.
func (d *Dispatcher) failed(k jobKey, c *Cert, err error, rec *Record) {
	d.mu.Lock()
	st := d.status[k]
	st.Target, st.Pending, st.LastError = k.target, true, err.Error()
	st.failures++
	failures := st.failures
	if rec != nil {
		failures = max(rec.Failures, failures)
		st.Hosts = rec.Hosts
	}
	wait := min(d.o.Backoff<<min(failures-1, 20), MaxRetry)
	st.NextAttempt = time.Now().Add(wait)
	d.status[k] = st
	d.next[k] = st.NextAttempt
	d.mu.Unlock()
	d.o.Metrics.result(k.target, "failure")
	if d.o.OnResult != nil {
		d.o.OnResult(k.name, k.target, err)
	}
	d.updatePending()
	serial := ""
	if c != nil {
		serial = c.Serial()
	}
	d.log.Warn("export failed; will retry", "target", k.target, "name", k.name, "serial", serial,
		"error", err.Error(), "retry_in", wait)
}

func (d *Dispatcher) retryAt(k jobKey, at time.Time) {
	d.mu.Lock()
	d.next[k] = at
	d.mu.Unlock()
}

func (d *Dispatcher) updatePending() {
	d.mu.Lock()
	pending := map[string]int{}
	for _, t := range d.plan.Targets {
		pending[t.Name] = 0
	}
	for k, st := range d.status {
		if st.Pending {
			pending[k.target]++
		}
	}
	d.mu.Unlock()
	d.o.Metrics.pending(pending)
}

// Statuses returns the delivery state of every target of name, in plan
// order. Targets not tried yet are pending.
func (d *Dispatcher) Statuses(name string) []Status {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []Status
	for _, t := range d.plan.Names[name] {
		st, ok := d.status[jobKey{name, t}]
		if !ok {
			st = Status{Target: t, Pending: true}
		}
		out = append(out, st)
	}
	return out
}

// Now delivers the certificates of names (all when empty) to their targets
// at once, ignoring records and backoff, and returns each attempt's
// results: edge export.
func (d *Dispatcher) Now(ctx context.Context, names []string) []Attempt {
	d.mu.Lock()
	if len(names) == 0 {
		names = sortedKeys(d.plan.Names)
	}
	var jobs []jobKey
	for _, n := range names {
		for _, t := range d.plan.Names[n] {
			jobs = append(jobs, jobKey{n, t})
		}
	}
	d.mu.Unlock()
	var out []Attempt
	for _, k := range jobs {
		// Forget the record so deliver does the work; the lock still keeps
		// two edges from writing at once.
		d.mu.Lock()
		tgt := d.targets[k.target]
		d.mu.Unlock()
		a := Attempt{Name: k.name, Target: k.target}
		cert, err := d.o.Source.Certificate(ctx, k.name)
		if err != nil {
			a.Results = []Result{{Host: "-", Err: fmt.Errorf("loading the certificate: %w", err)}}
			out = append(out, a)
			continue
		}
		a.Results = tgt.Exporter.Deliver(ctx, cert)
		err = resultsErr(a.Results)
		if err == nil && len(tgt.Verify) > 0 {
			if err = verify(ctx, cert, tgt.Verify); err != nil {
				a.Results = append(a.Results, Result{Host: "verify", Err: err})
			}
		}
		rec, rerr := d.record(ctx, k)
		if rerr == nil {
			rec.LastAttempt, rec.Hosts = time.Now(), hostRecords(a.Results)
			if err == nil {
				rec.Serial, rec.NotAfter, rec.DeliveredAt, rec.DeliveredBy = cert.Serial(), cert.Leaf().NotAfter, rec.LastAttempt, d.o.Node
				rec.LastError, rec.Failures = "", 0
				d.store(ctx, k, rec)
				d.done(k, cert, rec, true)
			} else {
				rec.LastError = err.Error()
				rec.Failures++
				d.store(ctx, k, rec)
				d.failed(k, cert, err, rec)
			}
		}
		out = append(out, a)
	}
	return out
}

// Test runs every target's dry run (edge export -dry-run).
func (d *Dispatcher) Test(ctx context.Context) []Attempt {
	d.mu.Lock()
	targets := slices.Clone(d.plan.Targets)
	d.mu.Unlock()
	out := make([]Attempt, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Go(func() { out[i] = Attempt{Target: t.Name, Results: t.Exporter.Test(ctx)} })
	}
	wg.Wait()
	return out
}

// Attempt is the outcome of edge export (or its dry run) for one target.
type Attempt struct {
	Name    string   `json:"name,omitempty"`
	Target  string   `json:"target"`
	Results []Result `json:"-"`
}

// MarshalJSON writes the results with their errors as text.
func (a Attempt) MarshalJSON() ([]byte, error) {
	type host struct {
		Host   string `json:"host"`
		OK     bool   `json:"ok"`
		Error  string `json:"error,omitempty"`
		Output string `json:"output,omitempty"`
		TookMS int64  `json:"took_ms"`
	}
	hosts := make([]host, len(a.Results))
	for i, r := range a.Results {
		hosts[i] = host{Host: r.Host, OK: r.Err == nil, Output: r.Output, TookMS: r.Took.Milliseconds()}
		if r.Err != nil {
			hosts[i].Error = r.Err.Error()
		}
	}
	return json.Marshal(struct {
		Name   string `json:"name,omitempty"`
		Target string `json:"target"`
		Hosts  []host `json:"hosts"`
	}{a.Name, a.Target, hosts})
}

func resultsErr(rs []Result) error {
	var errs []error
	for _, r := range rs {
		if r.Err != nil {
			errs = append(errs, r.Err)
		}
	}
	if len(rs) == 0 {
		return errors.New("the target reported no result")
	}
	return errors.Join(errs...)
}

func hostRecords(rs []Result) []HostRecord {
	out := make([]HostRecord, len(rs))
	for i, r := range rs {
		out[i] = HostRecord{Host: r.Host}
		if r.Err != nil {
			out[i].Error = r.Err.Error()
		}
	}
	return out
}

// verifyWait bounds how long a verify address may take to serve the new
// certificate after a delivery (a reload of Apache or nginx by then:).
const verifyWait = 15 * time.Second

// verify checks that every address serves c (its serial) to a client asking
// for c's name, polling for up to verifyWait.
func verify(ctx context.Context, c *Cert, addrs []string) error {
	sni := strings.TrimPrefix(c.Name, "*.")
	if strings.HasPrefix(c.Name, "*.") {
		sni = "edge-verify." + sni
	}
	var errs []error
	for _, addr := range addrs {
		deadline := time.Now().Add(verifyWait)
		var last error
		for {
			got, err := servedSerial(ctx, addr, sni)
			if err == nil && got == c.Serial() {
				last = nil
				break
			}
			if err == nil {
				last = fmt.Errorf("verify %s: serves serial %s, want %s", addr, got, c.Serial())
			} else {
				last = fmt.Errorf("verify %s: %w", addr, err)
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				break
			}
			select {
			case <-ctx.Done():
			case <-time.After(500 * time.Millisecond):
			}
		}
		if last != nil {
			errs = append(errs, last)
		}
	}
	return errors.Join(errs...)
}

// servedSerial returns the serial of the leaf addr serves for sni. The
// chain is not verified: the point is which certificate is served, and the
// farm's servers are often reached by an internal name or address.
func servedSerial(ctx context.Context, addr, sni string) (string, error) {
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: &tls.Config{
		ServerName:         sni,
		InsecureSkipVerify: true, // only the serial is compared, see above
	}}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	certs := conn.(*tls.Conn).ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return "", errors.New("no certificate served")
	}
	return fmt.Sprintf("%x", certs[0].SerialNumber), nil
}
