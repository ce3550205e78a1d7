package listener

import "errors"

var (
	// ErrProxyHeaderUntrusted is what Read on a Conn wraps (in a
	// *net.OpError with Op "read", which net/http closes silently) once it
	// has found a PROXY header from a source not in Options.ProxyFrom. The
	// connection is closed by then.
	ErrProxyHeaderUntrusted = errors.New("PROXY header from a source not allowed to send one")

	errNoHeader             = errors.New("no PROXY header")
	errUnsupportedTransport = errors.New("PROXY header for a transport other than TCP")
)
