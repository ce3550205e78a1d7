package proxy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
	"strings"
	"sync"

	"golang.org/x/net/http/httpguts"
)

// The direct path sends a request to a plain-http backend through the
// pool's h1Transport without httputil.ReverseProxy. ReverseProxy clones
// every request (Request.Clone: the request, its URL and its header map,
// about a fifth of the allocations of a keep-alive request) and copies
// every response header value into the client's header one Add at a time;
// the direct path writes the client's request to the backend from the
// client's own header, skipping the hop-by-hop fields as it goes, and hands
// the backend's header values to the client's header as they are. What it
// does is ReverseProxy's, step for step (the comments say which), for the
// requests it takes: those h1Transport sends itself (no upgrade, no
// Expect, a body of known length up to maxBufferedBody) to a backend URL
// without a path or query, outside the retry-on-status and try-timeout
// configuration (whose hooks live in ReverseProxy's ModifyResponse). The
// rest goes through ReverseProxy as before.

// directOK reports whether u's pool may send r by the direct path.
func (u *Upstream) directOK(r *http.Request) bool {
	return u.direct && sendable(r) && r.URL.Opaque == "" && strings.HasPrefix(r.URL.Path, "/")
}

// directEligible reports whether requests to the backend at target may take
// the direct path: plain http through an h1Transport, and a URL whose path
// and query ReverseProxy would not join to the request's.
func directEligible(p *pool, target *url.URL) bool {
	return p.h1 != nil && target.Scheme == "http" && (target.Path == "" || target.Path == "/") &&
		target.RawPath == "" && target.RawQuery == "" && !target.ForceQuery
}

// outHeaders lends the header maps of requests sent by the direct path.
var outHeaders = sync.Pool{New: func() any { return make(http.Header, 16) }}

// serveDirect proxies r to u by the direct path. As ReverseProxy's
// ErrorHandler does, a failure before the answer's header goes to rec.err
// and nothing is written; a failure while copying the body aborts the
// response (http.ErrAbortHandler), so that the client cannot take a cut
// body for a whole one.
func (h *Handler) serveDirect(rec *recorder, r *http.Request, u *Upstream) {
	p := u.pool
	out := outHeaders.Get().(http.Header)
	// ReverseProxy: Request.Clone, then removeHopByHopHeaders, then the
	// client's Forwarded and X-Forwarded-* removed before Rewrite; and
	// setForwarded's removal of the client-IP headers an untrusted peer
	// sent, done here as the header is copied.
	trusted := h.trustedPeer(r.RemoteAddr)
	for k, vs := range r.Header {
		switch k {
		case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
			"Te", "Trailer", "Transfer-Encoding", "Upgrade",
			"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto":
			continue
		}
		if !trusted && isClientIPHeader(k) {
			continue
		}
		out[k] = vs // shared with r.Header: nothing here appends to it
	}
	for _, f := range r.Header["Connection"] {
		for tok := range strings.SplitSeq(f, ",") {
			if tok = textproto.TrimString(tok); tok != "" {
				delete(out, textproto.CanonicalMIMEHeaderKey(tok))
			}
		}
	}
	if httpguts.HeaderValuesContainsToken(r.Header["Te"], "trailers") {
		out["Te"] = teTrailers
	}
	// Rewrite (newReverseProxy): the backend sees the name the client
	// asked for, or the pool's host_header; then the forwarding headers.
	host := r.Host
	if p.hostHeader != "" {
		host = p.hostHeader
	} else if host == "" {
		host = u.url.Host
	}
	h.setForwardedFrom(r, out, trusted)
	uri := r.URL.RequestURI()
	if q := cleanQuery(r.URL.RawQuery); q != r.URL.RawQuery {
		// Rare: a copy, so that a query cleaned to nothing loses its "?"
		// as with ReverseProxy.
		cu := *r.URL
		cu.RawQuery = q
		uri = cu.RequestURI()
	}
	body, err := readBody(r)
	var res *http.Response
	if err == nil {
		res, err = p.h1.send(r, u.addr, uri, host, out, body, rec)
	}
	putBody(body)
	clear(out)
	outHeaders.Put(out)
	if err != nil {
		rec.err = err // as the ErrorHandler of newReverseProxy
		return
	}
	// ModifyResponse of newReverseProxy, the part that applies here.
	if u.stats != nil {
		u.stats.codes.counter(res.StatusCode).Inc()
	}
	dst := rec.Header()
	copyEndToEnd(dst, res.Header)
	announced := len(res.Trailer)
	if announced > 0 {
		keys := make([]string, 0, announced)
		for k := range res.Trailer {
			keys = append(keys, k)
		}
		dst.Add("Trailer", strings.Join(keys, ", "))
	}
	rec.WriteHeader(res.StatusCode)
	if err := h.copyBody(rec, res, streams(res)); err != nil {
		res.Body.Close()
		panic(http.ErrAbortHandler)
	}
	res.Body.Close()
	if len(res.Trailer) > 0 {
		// As ReverseProxy: chunked, so that the trailer can follow.
		http.NewResponseController(rec).Flush()
	}
	if len(res.Trailer) == announced {
		copyHeaderValues(dst, res.Trailer)
	} else {
		for k, vv := range res.Trailer {
			k = http.TrailerPrefix + k
			for _, v := range vv {
				dst.Add(k, v)
			}
		}
	}
	// Nothing refers to the answer's header map any more: dst took its
	// value slices, and res and its body end here.
	releaseFields(res.Header)
}

var teTrailers = []string{"trailers"}

// got1xx implements informer for the direct path as ReverseProxy's
// Got1xxResponse does: the 1xx goes to the client with its header, which
// is then cleared for the final answer.
func (r *recorder) got1xx(code int, header http.Header) error {
	hdr := r.Header()
	copyHeaderValues(hdr, header)
	r.WriteHeader(code)
	clear(hdr)
	return nil
}

// copyHeaderValues adds src's values to dst. A key dst lacks takes src's
// slice itself: src is a backend's answer, read for this request alone,
// and its slices have no room to grow into (an append copies).
func copyHeaderValues(dst, src http.Header) {
	for k, vv := range src {
		addValues(dst, k, vv)
	}
}

// addValues adds vv to dst's values of k, as copyHeaderValues.
func addValues(dst http.Header, k string, vv []string) {
	if len(vv) == 0 {
		return // as copyHeader's Add: a trailer announced, not sent
	}
	if old, ok := dst[k]; ok {
		dst[k] = append(old, vv...)
	} else {
		dst[k] = vv
	}
}

// copyEndToEnd is removeHopByHop(src) then copyHeaderValues(dst, src).
// Without a Connection field in src (the usual answer) the hop-by-hop
// fields are skipped as the values are handed over, not deleted from src
// one by one; src then keeps them.
func copyEndToEnd(dst, src http.Header) {
	if _, ok := src["Connection"]; ok {
		removeHopByHop(src) // also the fields it names
	}
	for k, vv := range src {
		if k != "Upgrade" && !slices.Contains(upgradeHopHeaders[:], k) {
			addValues(dst, k, vv)
		}
	}
}

// removeHopByHop removes from an answer's header the hop-by-hop fields
// (RFC 9110, section 7.6.1) and those its Connection names, as
// ReverseProxy does.
func removeHopByHop(h http.Header) {
	for _, f := range h["Connection"] {
		for tok := range strings.SplitSeq(f, ",") {
			if tok = textproto.TrimString(tok); tok != "" {
				delete(h, textproto.CanonicalMIMEHeaderKey(tok))
			}
		}
	}
	delete(h, "Connection")
	delete(h, "Upgrade")
	for _, k := range upgradeHopHeaders {
		delete(h, k)
	}
}

// streams reports whether the answer's body is flushed to the client as it
// comes (ReverseProxy's flushInterval, edge's FlushInterval being 0):
// server-sent events, and a body of unknown length.
func streams(res *http.Response) bool {
	if res.ContentLength == -1 {
		return true
	}
	ct := res.Header.Get("Content-Type")
	const sse = "text/event-stream"
	if len(ct) < len(sse) || !strings.EqualFold(ct[:len(sse)], sse) {
		return false
	}
	rest := strings.TrimLeft(ct[len(sse):], " \t")
	return rest == "" || rest[0] == ';'
}

// copyBody copies res's body to rec with a pooled buffer, flushing after
// each write when flush is set (and the header at once). Its error is the
// first read error other than the end, or write error (ReverseProxy's
// copyBuffer); a read error is logged as ReverseProxy logs it.
func (h *Handler) copyBody(rec *recorder, res *http.Response, flush bool) error {
	var rc *http.ResponseController
	if flush {
		rc = http.NewResponseController(rec)
		rc.Flush()
	}
	buf := h.buffers.Get()
	defer h.buffers.Put(buf)
	for {
		nr, rerr := res.Body.Read(buf)
		if rerr != nil && rerr != io.EOF && !errors.Is(rerr, context.Canceled) {
			h.errorLog.Printf("httputil: ReverseProxy read error during body copy: %v", rerr)
		}
		if nr > 0 {
			nw, werr := rec.Write(buf[:nr])
			if werr != nil {
				return werr
			}
			if nw != nr {
				return io.ErrShortWrite
			}
			if rc != nil {
				rc.Flush()
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// cleanQuery is ReverseProxy's cleanQueryParams: a query that
// url.ParseQuery would refuse (a semicolon, a bad %-escape) is re-encoded
// from what it can parse, so that edge and the backend cannot read it
// differently; any other query is left as it is.
func cleanQuery(s string) string {
	for i := 0; i < len(s); {
		switch s[i] {
		case ';':
			return reencodeQuery(s)
		case '%':
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return reencodeQuery(s)
			}
			i += 3
		default:
			i++
		}
	}
	return s
}

func reencodeQuery(s string) string {
	v, _ := url.ParseQuery(s)
	return v.Encode()
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}
