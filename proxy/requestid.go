package proxy

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
)

// RequestIDHeader carries a request's id to the backend (and in the access
// log): the client's or the proxy in front's when it sent a usable one,
// else one edge makes.
const RequestIDHeader = "X-Request-Id"

// maxRequestID bounds a request id taken from the client.
const maxRequestID = 128

// ensureRequestID keeps r's X-Request-Id when it is one value of visible
// ASCII without spaces, at most maxRequestID bytes, and otherwise sets a
// new random one (32 hex digits).
func ensureRequestID(r *http.Request) {
	if v := r.Header[RequestIDHeader]; len(v) == 1 && validRequestID(v[0]) {
		return
	}
	var b [16]byte
	var x [32]byte
	_, _ = rand.Read(b[:])
	hex.Encode(x[:], b[:])
	r.Header[RequestIDHeader] = []string{string(x[:])} // two allocations, not EncodeToString's three
}

func validRequestID(s string) bool {
	if s == "" || len(s) > maxRequestID {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}
