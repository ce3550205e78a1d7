//go:build !linux

package main

// monotonicUsec is 0 off Linux, where there is no systemd to tell.
func monotonicUsec() int64 { return 0 }
