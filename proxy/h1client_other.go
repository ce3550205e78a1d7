//go:build !linux

package proxy

// alive reports whether an idle connection still looks usable. Without a
// non-blocking peek it cannot tell: a request that may not be sent twice
// then fails if the backend had closed the connection.
func (pc *h1Conn) alive() bool { return true }
