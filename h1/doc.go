// Package h1 is edge's HTTP/1.1 server for the HTTPS listener: its own
// strict request parser (RFC 9112) and response writer in front of the same
// http.Handler chain as every other path, with net/http's server kept for
// HTTP/2 (handed over by ALPN) and for the plain-HTTP and admin listeners.
//
// It exists because net/http's HTTP/1 server was a fifth of edge's CPU per
// keep-alive request (bench/README.md): a header map and strings per field,
// a background read goroutine per request, and buffers held by every idle
// connection. Here a request head is one string that every value slices,
// the disconnect watch starts only for requests that take long, and an idle
// connection holds no buffer, and past a quarter second no goroutine
// either: its socket waits in an epoll instance of the server's (Linux).
package h1
