package main

import (
	"syscall"
	"unsafe"
)

// monotonicUsec is CLOCK_MONOTONIC in microseconds, the clock systemd
// compares MONOTONIC_USEC with (time.Now's monotonic reading is not
// exposed). 0 if the call fails.
func monotonicUsec() int64 {
	const clockMonotonic = 1 // CLOCK_MONOTONIC, <linux/time.h>
	var ts syscall.Timespec
	if _, _, errno := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockMonotonic, uintptr(unsafe.Pointer(&ts)), 0); errno != 0 {
		return 0
	}
	return ts.Sec*1_000_000 + ts.Nsec/1_000
}
