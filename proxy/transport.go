package proxy

import (
	"net"
	"net/http"
	"net/http/httputil"
	"sync"
	"time"
)

// Timeouts bound the talk with a pool's backends. The caller sets them (the
// config holds the defaults); a zero field means no limit, as in
// net.Dialer and http.Transport.
type Timeouts struct {
	// Connect bounds dialing a backend (and the TLS handshake with it).
	Connect time.Duration
	// ResponseHeader bounds the wait for the response headers once the
	// request is written.
	ResponseHeader time.Duration
	// Idle is how long an idle keep-alive connection is kept.
	Idle time.Duration
}

const (
	maxIdleConnsPerHost = 256
	copyBufferSize      = 32 << 10
)

// newTransport returns the tuned keep-alive transport of one pool. HTTP/2 is
// attempted only when the pool has https backends (upgrade requests still
// use HTTP/1.1: net/http sends them on HTTP/1.1 connections).
func newTransport(t Timeouts, https bool) *http.Transport {
	connect, idle := max(t.Connect, 0), max(t.Idle, 0)
	d := &net.Dialer{Timeout: connect, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:                 nil, // never the environment's proxy
		DialContext:           d.DialContext,
		TLSHandshakeTimeout:   connect,
		ResponseHeaderTimeout: t.ResponseHeader,
		IdleConnTimeout:       idle,
		ExpectContinueTimeout: time.Second,
		MaxIdleConns:          0, // no global limit; per host below
		MaxIdleConnsPerHost:   maxIdleConnsPerHost,
		ForceAttemptHTTP2:     https,
		// The client's Accept-Encoding goes through as sent; the transport
		// must not add gzip and decompress behind the client's back.
		DisableCompression: true,
	}
}

// bufferPool lends the 32 KiB buffers ReverseProxy copies response bodies
// through (without one it allocates a buffer per response). It stores array
// pointers so that neither Get nor Put allocates. Safe for concurrent use.
type bufferPool struct {
	p sync.Pool
}

var _ httputil.BufferPool = (*bufferPool)(nil)

func newBufferPool() *bufferPool {
	return &bufferPool{p: sync.Pool{New: func() any { return new([copyBufferSize]byte) }}}
}

// Get implements httputil.BufferPool.
func (b *bufferPool) Get() []byte { return b.p.Get().(*[copyBufferSize]byte)[:] }

// Put implements httputil.BufferPool.
func (b *bufferPool) Put(buf []byte) {
	if len(buf) == copyBufferSize {
		b.p.Put((*[copyBufferSize]byte)(buf))
	}
}
