// Package listener is what edge does to a public connection at accept,
// before TLS or HTTP see it: it reads the PROXY protocol header (v1 and v2,
// https://www.haproxy.org/download/2.3/doc/proxy-protocol.txt) from the
// balancers allowed to send one, refuses the header from anyone else, and
// caps the open connections per client address.
//
// Wrap a public net.Listener (before tls.NewListener) and hand the result
// to http.Server.Serve:
//
//	limiter := listener.NewConnLimiter(cfg.Limits.MaxConnsPerIP) // one for :80 and :443
//	ln = listener.Wrap(ln, listener.Options{ProxyFrom: from, Limiter: limiter, Name: "https", ...})
//	ln = tls.NewListener(ln, tlsConfig)
//
// # Design
//
// One goroutine per wrapped listener runs the accept loop of the listener
// underneath (started by the first Accept, stopped by Close) and hands
// admitted connections to Accept through an unbuffered channel. It never
// reads from a connection:
//
//   - A connection whose TCP peer is not in Options.ProxyFrom is counted
//     against the peer address right there: over the cap it is closed
//     before anything reads it, otherwise it is handed to Accept at once.
//     When ProxyFrom is not empty its first Read checks that it does not
//     start with a PROXY signature; one that does is closed and the Read
//     fails (reason proxy_header_untrusted). That check runs in whatever
//     goroutine reads first (the TLS handshake, net/http's per-connection
//     goroutine), never in the accept loop, and under the reader's own
//     deadlines.
//   - A connection from a source in ProxyFrom gets a goroutine of its own
//     that reads the header under Options.HeaderTimeout, counts the
//     connection against the address the header carries, and only then
//     hands it to Accept; a connection refused at that point (no header,
//     bad header, timeout, over the cap) never reaches TLS or net/http, so
//     it costs no handshake and no log line there. At most
//     Options.MaxPending such goroutines run at once; beyond that a new
//     connection from a balancer is refused (proxy_pending_full) rather
//     than blocking the accept loop. Close closes their connections and
//     waits for them.
//
// A refused connection is closed with nothing written to it (with
// SO_LINGER 0, so the kernel answers with a reset and keeps no TIME_WAIT
// state), counted in edge_connections_refused_total and logged at Debug.
// Accept never returns an error for a refused connection.
//
// go-proxyproto's parser (proxyproto.Read) does the parsing; its Conn and
// Listener are not used, because their RemoteAddr blocks on reading the
// header and their REJECT policy fails only the first Read.
package listener
