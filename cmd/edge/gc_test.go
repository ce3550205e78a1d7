package main

import (
	"runtime/debug"
	"testing"
)

func TestGCDefaults(t *testing.T) {
	old := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(old) })
	applyGCDefaults(func(string) string { return "" })
	if got := debug.SetGCPercent(100); got != defaultGCPercent {
		t.Fatalf("GOGC %d without the variable, want %d", got, defaultGCPercent)
	}
	applyGCDefaults(func(k string) string {
		if k == "GOGC" {
			return "50"
		}
		return ""
	})
	if got := debug.SetGCPercent(100); got != 100 {
		t.Fatalf("GOGC changed to %d although the user set GOGC", got)
	}
}
