package main

import (
	"errors"
	"fmt"
	"testing"

	"github.com/farmedge/edge/admin"
)

// TestRecentEvents: orders and export attempts become the status page's
// events with the right kind.
func TestRecentEvents(t *testing.T) {
	s := &server{events: admin.NewEvents(0)}
	s.orderEnded("a.test", false, nil)
	s.orderEnded("a.test", true, nil)
	s.orderEnded("b.test", true, errors.New("rate limited"))
	s.exportResult("a.test", "pem", nil)
	s.exportResult("a.test", "ccs", errors.New("share unreachable"))
	var got []string
	for _, e := range s.events.List() {
		got = append(got, fmt.Sprintf("%s %s %s %s", e.Kind, e.Name, e.Target, e.Detail))
	}
	want := []string{
		"export_failed a.test ccs share unreachable",
		"exported a.test pem ",
		"failed b.test  renewal: rate limited",
		"renewed a.test  ",
		"obtained a.test  ",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("events\n%q\nwant\n%q", got, want)
	}
}
