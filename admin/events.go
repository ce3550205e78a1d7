package admin

import (
	"sync"
	"time"
)

// Event kinds recorded in Events and shown on the status page.
const (
	EventObtained     = "obtained"      // a first certificate for a name
	EventRenewed      = "renewed"       // a certificate replaced before it expired
	EventFailed       = "failed"        // an order (obtain or renewal) failed
	EventExported     = "exported"      // a certificate delivered to an export target
	EventExportFailed = "export_failed" // a delivery to an export target failed
	EventReloaded     = "reloaded"      // a new configuration applied
	EventReloadFailed = "reload_failed" // a configuration refused; the running one kept
)

// DefaultEventCapacity is how many events an Events keeps when made with a
// capacity of 0 (or used at its zero value).
const DefaultEventCapacity = 200

// Event is one entry of the recent-events ring, as GET /api/events shows it.
// Detail is an error message or a summary; no secret may go in it.
type Event struct {
	Time   time.Time `json:"time"`
	Kind   string    `json:"kind"`
	Name   string    `json:"name,omitempty"`   // the certificate's name
	Target string    `json:"target,omitempty"` // the export target
	Detail string    `json:"detail,omitempty"`
}

// Events is a bounded ring of the most recent events: when full, adding
// drops the oldest. It is owned by the process (it outlives reloads) and fed
// by whatever makes the events: certificate orders, exports, reloads.
//
// The zero value keeps DefaultEventCapacity events. A nil *Events records
// nothing and lists nothing. Safe for concurrent use.
type Events struct {
	mu   sync.Mutex
	cap  int
	buf  []Event // ring once len(buf) == cap
	next int     // where the next event goes once the ring is full
}

// NewEvents returns an Events that keeps the last n events (n <= 0:
// DefaultEventCapacity).
func NewEvents(n int) *Events {
	return &Events{cap: n}
}

func (e *Events) capacity() int {
	if e.cap <= 0 {
		return DefaultEventCapacity
	}
	return e.cap
}

// Add records ev; a zero Time is set to now.
func (e *Events) Add(ev Event) {
	if e == nil {
		return
	}
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if n := e.capacity(); len(e.buf) < n {
		e.buf = append(e.buf, ev)
		return
	}
	e.buf[e.next] = ev
	e.next = (e.next + 1) % len(e.buf)
}

// List returns the events kept, newest first.
func (e *Events) List() []Event {
	if e == nil {
		return []Event{}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]Event, 0, len(e.buf))
	// Oldest is at next once the ring has wrapped (next is 0 before).
	for i := len(e.buf) - 1; i >= 0; i-- {
		out = append(out, e.buf[(e.next+i)%len(e.buf)])
	}
	return out
}
