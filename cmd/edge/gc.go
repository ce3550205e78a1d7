package main

import "runtime/debug"

// defaultGCPercent is edge's GOGC when the environment sets none. Go's 100
// has the collector run each time the heap doubles; edge's live heap is
// small (tens of MiB) and its garbage is per request, so 200 halves the
// collections for a few MiB more: in the keep-alive profile the collector
// (mark assists, background marking, sweeping) took about 8 % of the CPU
// at 100 (bench/README.md).
const defaultGCPercent = 200

// applyGCDefaults sets edge's GOGC unless the user set GOGC; GOMEMLIMIT,
// when set, is honoured by the runtime as always (edge sets none: a limit
// depends on the machine).
func applyGCDefaults(getenv func(string) string) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
}
