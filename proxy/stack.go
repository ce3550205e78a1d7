package proxy

// growStack makes the calling goroutine's stack at least 8 KiB while the
// stack is still shallow. Go's HTTP/2 server runs every stream's handler
// on a new goroutine, which starts small (runtime's adaptive start, 4 KiB
// here) and grew once per request deep in the handler chain: the copy
// adjusts every frame, and runtime.copystack was 9 % of edge's CPU under
// the h2 benchmark. A 5 KiB frame here, a few frames from the
// goroutine's top, moves that one growth to where there is little to copy.
//
//go:noinline
func growStack() {
	var pad [5 << 10]byte
	touch(&pad[0])
}

//go:noinline
func touch(*byte) {}
