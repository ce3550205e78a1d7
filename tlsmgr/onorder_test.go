package tlsmgr

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

// TestOnOrder: certmagic's events reach Options.OnOrder as obtained,
// renewed or failed (with the error); an order cancelled by a reload or
// shutdown is not reported.
func TestOnOrder(t *testing.T) {
	m := New(nil, nil)
	t.Cleanup(m.Stop)
	var got []string
	on := m.onEvent(Options{OnOrder: func(name string, renewal bool, err error) {
		got = append(got, fmt.Sprintf("%s renewal=%v err=%v", name, renewal, err))
	}})
	ctx := context.Background()
	for _, ev := range []struct {
		event string
		data  map[string]any
	}{
		{"cert_obtaining", map[string]any{"identifier": "a.test", "renewal": false}},
		{"cert_obtained", map[string]any{"identifier": "a.test", "renewal": false}},
		{"cert_obtained", map[string]any{"identifier": "a.test", "renewal": true}},
		{"cert_failed", map[string]any{"identifier": "b.test", "renewal": true, "error": errors.New("rate limited")}},
		{"cert_failed", map[string]any{"identifier": "c.test", "renewal": false, "error": fmt.Errorf("stopping: %w", context.Canceled)}},
	} {
		if err := on(ctx, ev.event, ev.data); err != nil {
			t.Fatalf("%s: %v", ev.event, err)
		}
	}
	want := []string{
		"a.test renewal=false err=<nil>",
		"a.test renewal=true err=<nil>",
		"b.test renewal=true err=rate limited",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("OnOrder calls:\n%q\nwant\n%q", got, want)
	}
}
