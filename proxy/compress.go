package proxy

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// Compression compresses a site's responses that the backend did not
// compress, with zstd or gzip as the client's Accept-Encoding prefers
// (RFC 9110, section 12.5.3). A response passes as it is when it already
// has a Content-Encoding, says Cache-Control: no-transform (RFC 9111,
// section 5.2.2.6), is 204, 206 or 304, answers HEAD or an Upgrade, has a
// media type outside Types, or declares a Content-Length below MinSize.
// A compressed response loses its Content-Length and Accept-Ranges, gets
// Vary: Accept-Encoding, and a strong ETag becomes weak (W/), as nginx
// does. Flushes pass through (the encoder's pending output goes out
// first), so streams such as server-sent events are not held back.
//
// The zero value compresses every size of DefaultCompressTypes with zstd
// or gzip.
type Compression struct {
	// MinSize is the smallest declared Content-Length compressed; a
	// response of unknown length is compressed whatever its size, as
	// nginx does. 0 compresses every size.
	MinSize int64
	// Types are the media types compressed: "application/json", or
	// "text/*" for every subtype of text. nil means DefaultCompressTypes.
	Types []string
	// Algorithms are the codings offered, "zstd" and "gzip", in the order
	// preferred when the client weighs them equally. nil means zstd, then
	// gzip.
	Algorithms []string
}

// DefaultCompressTypes returns the media types compressed when
// Compression.Types is nil: text, and the textual application, image and
// font types (a new slice).
func DefaultCompressTypes() []string {
	return []string{
		"text/*",
		"application/json", "application/ld+json", "application/manifest+json", "application/problem+json",
		"application/geo+json", "application/javascript", "application/x-javascript", "application/ecmascript",
		"application/xml", "application/xhtml+xml", "application/rss+xml", "application/atom+xml",
		"application/problem+xml", "application/soap+xml", "application/x-ndjson", "application/wasm",
		"application/graphql-response+json", "application/vnd.api+json", "application/x-yaml", "application/yaml",
		"application/vnd.ms-fontobject", "font/ttf", "font/otf", "application/x-font-ttf",
		"image/svg+xml", "image/x-icon", "image/vnd.microsoft.icon", "image/bmp",
	}
}

// CompressAlgorithms returns the codings Compression.Algorithms accepts, in
// the default order of preference (a new slice).
func CompressAlgorithms() []string { return []string{"zstd", "gzip"} }

// Check reports what is wrong with c: a negative MinSize, a type that is
// not TYPE/SUBTYPE or TYPE/*, an unknown or repeated algorithm.
func (c Compression) Check() error {
	_, err := c.resolve()
	return err
}

// coding is a content coding edge produces.
type coding uint8

const (
	codingNone coding = iota
	codingZstd
	codingGzip
)

// String returns the coding's name as in Content-Encoding.
func (c coding) String() string {
	switch c {
	case codingZstd:
		return "zstd"
	case codingGzip:
		return "gzip"
	}
	return "identity"
}

// Levels: zstd's default (about level 3) and gzip 5, as Caddy uses; both
// cost a few times less CPU than their best compression for most of the
// gain on text.
const (
	gzipLevel = 5
	// zstdWindow bounds the encoder's memory and the window a client must
	// keep; RFC 8878 section 3.1.1.1.2 asks decoders for 8 MiB at most.
	zstdWindow = 128 << 10
)

// compressor is Compression resolved, with the site's pools of writers and
// encoders. It is safe for concurrent use.
type compressor struct {
	minSize  int64
	exact    map[string]bool
	prefixes []string // "text/" for "text/*"
	prefer   []coding // in order of preference on equal q-values

	writers sync.Pool // *compressWriter
	gzips   sync.Pool // *gzip.Writer
	zstds   sync.Pool // *zstd.Encoder
}

// resolve checks c and builds its compressor.
func (c Compression) resolve() (*compressor, error) {
	if c.MinSize < 0 {
		return nil, fmt.Errorf("compression: negative minimum size %d", c.MinSize)
	}
	cp := &compressor{minSize: c.MinSize, exact: map[string]bool{}}
	types := c.Types
	if types == nil {
		types = DefaultCompressTypes()
	}
	for _, t := range types {
		mt := strings.ToLower(strings.TrimSpace(t))
		main, sub, ok := strings.Cut(mt, "/")
		if !ok || main == "*" || !isToken(main) || (sub != "*" && !isToken(sub)) {
			return nil, fmt.Errorf("compression: type %q: want TYPE/SUBTYPE or TYPE/* (such as application/json or text/*)", t)
		}
		if sub == "*" {
			cp.prefixes = append(cp.prefixes, main+"/")
		} else {
			cp.exact[mt] = true
		}
	}
	algs := c.Algorithms
	if algs == nil {
		algs = CompressAlgorithms()
	}
	if len(algs) == 0 {
		return nil, errors.New("compression: no algorithms: list zstd, gzip or both")
	}
	for _, a := range algs {
		var cd coding
		switch strings.ToLower(a) {
		case "zstd":
			cd = codingZstd
		case "gzip":
			cd = codingGzip
		default:
			return nil, fmt.Errorf("compression: unknown algorithm %q: expected zstd or gzip", a)
		}
		if slices.Contains(cp.prefer, cd) {
			return nil, fmt.Errorf("compression: algorithm %s listed twice", cd)
		}
		cp.prefer = append(cp.prefer, cd)
	}
	cp.writers.New = func() any { return new(compressWriter) }
	cp.gzips.New = func() any {
		w, _ := gzip.NewWriterLevel(io.Discard, gzipLevel) // the level is valid
		return w
	}
	cp.zstds.New = func() any {
		e, _ := zstd.NewWriter(nil, // the options are valid
			zstd.WithEncoderConcurrency(1), // encode in the writer's goroutine
			zstd.WithWindowSize(zstdWindow),
			zstd.WithEncoderLevel(zstd.SpeedDefault),
			zstd.WithZeroFrames(true)) // an empty body is still a zstd frame
		return e
	}
	return cp, nil
}

// isToken reports whether s is a non-empty token (RFC 9110, section 5.6.2).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTokenByte(s[i]) {
			return false
		}
	}
	return true
}

// wrap returns the writer that compresses the response to r on w when the
// client accepts a coding of c, or nil (and allocates nothing) when
// compression cannot apply: a HEAD, an Upgrade, no acceptable coding.
// Whether the response itself is compressed is decided when its header
// goes out. The caller must call close after the response is complete.
func (c *compressor) wrap(w http.ResponseWriter, r *http.Request) *compressWriter {
	if c == nil || r.Method == http.MethodHead || len(r.Header["Upgrade"]) > 0 {
		return nil
	}
	ae := r.Header["Accept-Encoding"]
	if len(ae) == 0 {
		return nil
	}
	cd := c.negotiate(ae)
	if cd == codingNone {
		return nil
	}
	cw := c.writers.Get().(*compressWriter)
	cw.ResponseWriter, cw.c, cw.coding = w, c, cd
	return cw
}

// negotiate picks the coding of c with the highest q-value in the
// Accept-Encoding field values ae (a coding not named takes the q-value
// of "*", if any); equal q-values go to c's order of preference. It
// returns codingNone when none is acceptable. It does not allocate.
func (c *compressor) negotiate(ae []string) coding {
	qZstd, qGzip, qAny := -1, -1, -1 // thousandths; -1: not named
	for _, v := range ae {
		for v != "" {
			var elem string
			if i := strings.IndexByte(v, ','); i >= 0 {
				elem, v = v[:i], v[i+1:]
			} else {
				elem, v = v, ""
			}
			name, params, _ := strings.Cut(elem, ";")
			name = strings.TrimSpace(name)
			q := 1000
			if params != "" {
				if q = parseQ(params); q < 0 {
					continue // a malformed weight: ignore the element
				}
			}
			switch {
			case strings.EqualFold(name, "zstd"):
				qZstd = max(qZstd, q)
			case strings.EqualFold(name, "gzip"), strings.EqualFold(name, "x-gzip"):
				qGzip = max(qGzip, q)
			case name == "*":
				qAny = max(qAny, q)
			}
		}
	}
	if qZstd < 0 {
		qZstd = qAny
	}
	if qGzip < 0 {
		qGzip = qAny
	}
	best, bestQ := codingNone, 0
	for _, cd := range c.prefer {
		q := qGzip
		if cd == codingZstd {
			q = qZstd
		}
		if q > bestQ {
			best, bestQ = cd, q
		}
	}
	return best
}

// parseQ returns the weight of the parameters of an Accept-Encoding
// element ("q=0.5", RFC 9110 section 12.4.2) in thousandths, 1000 when
// there is no q parameter, -1 when it is malformed.
func parseQ(params string) int {
	for params != "" {
		var p string
		if i := strings.IndexByte(params, ';'); i >= 0 {
			p, params = params[:i], params[i+1:]
		} else {
			p, params = params, ""
		}
		k, val, ok := strings.Cut(strings.TrimSpace(p), "=")
		if !ok || !strings.EqualFold(strings.TrimSpace(k), "q") {
			continue
		}
		val = strings.TrimSpace(val)
		if val == "" || (val[0] != '0' && val[0] != '1') {
			return -1
		}
		q := int(val[0]-'0') * 1000
		rest := val[1:]
		if rest == "" {
			return q
		}
		if rest[0] != '.' || len(rest) > 4 {
			return -1
		}
		scale := 100
		for i := 1; i < len(rest); i++ {
			d := rest[i]
			if d < '0' || d > '9' {
				return -1
			}
			q += int(d-'0') * scale
			scale /= 10
		}
		if q > 1000 {
			return -1
		}
		return q
	}
	return 1000
}

// compressible reports whether the media type of the Content-Type value ct
// is one c compresses.
func (c *compressor) compressible(ct string) bool {
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	mt := asciiLower(strings.TrimSpace(ct))
	if c.exact[mt] {
		return true
	}
	for _, p := range c.prefixes {
		if strings.HasPrefix(mt, p) && len(mt) > len(p) {
			return true
		}
	}
	return false
}

// encoder is what compressWriter needs of *gzip.Writer and *zstd.Encoder.
type encoder interface {
	io.WriteCloser
	Flush() error
}

var (
	_ encoder = (*gzip.Writer)(nil)
	_ encoder = (*zstd.Encoder)(nil)
)

// compressWriter sits between the recorder and the client's
// ResponseWriter. When the response's header goes out it decides, from the
// final header, whether to compress; then it passes the body through, or
// into a pooled encoder whose output goes to the client. It is pooled by
// its compressor and serves one response at a time.
type compressWriter struct {
	http.ResponseWriter
	c       *compressor
	coding  coding // what the client accepts best
	decided bool   // the final status went out
	enc     encoder
}

var (
	_ http.ResponseWriter = (*compressWriter)(nil)
	_ http.Flusher        = (*compressWriter)(nil)
)

// WriteHeader implements http.ResponseWriter: informational statuses pass;
// the first final one decides the compression.
func (cw *compressWriter) WriteHeader(code int) {
	if code >= 100 && code < 200 {
		cw.ResponseWriter.WriteHeader(code)
		return
	}
	if !cw.decided {
		cw.decided = true
		cw.start(code)
	}
	cw.ResponseWriter.WriteHeader(code)
}

// Write implements http.ResponseWriter.
func (cw *compressWriter) Write(b []byte) (int, error) {
	if !cw.decided {
		cw.WriteHeader(http.StatusOK)
	}
	if cw.enc != nil {
		return cw.enc.Write(b)
	}
	return cw.ResponseWriter.Write(b)
}

// FlushError sends what the encoder holds, then flushes the connection,
// for http.ResponseController (ReverseProxy flushes streamed responses).
func (cw *compressWriter) FlushError() error {
	if cw.enc != nil {
		if err := cw.enc.Flush(); err != nil {
			return err
		}
	}
	return flushWriter(cw.ResponseWriter)
}

// Flush implements http.Flusher.
func (cw *compressWriter) Flush() { _ = cw.FlushError() }

// Unwrap lets http.ResponseController reach the client's writer (Hijack,
// deadlines).
func (cw *compressWriter) Unwrap() http.ResponseWriter { return cw.ResponseWriter }

// start decides whether the response of status code, whose header is
// final, is compressed; if so it rewrites the header and takes an encoder.
func (cw *compressWriter) start(code int) {
	switch code {
	case http.StatusNoContent, http.StatusPartialContent, http.StatusNotModified, http.StatusSwitchingProtocols:
		return
	}
	h := cw.ResponseWriter.Header()
	if ce := h["Content-Encoding"]; len(ce) > 0 && !(len(ce) == 1 && (ce[0] == "" || strings.EqualFold(ce[0], "identity"))) {
		return // the backend's own coding
	}
	if len(h["Content-Range"]) > 0 || hasToken(h["Cache-Control"], "no-transform") {
		return
	}
	ct := h["Content-Type"]
	if len(ct) == 0 || !cw.c.compressible(ct[0]) {
		return
	}
	if cl := h["Content-Length"]; len(cl) > 0 {
		if n, err := strconv.ParseInt(cl[0], 10, 64); err == nil && n < max(cw.c.minSize, 1) {
			return
		}
	}
	h["Content-Encoding"] = []string{cw.coding.String()}
	delete(h, "Content-Length")
	delete(h, "Accept-Ranges")
	if et := h["Etag"]; len(et) == 1 && strings.HasPrefix(et[0], `"`) {
		h["Etag"] = []string{"W/" + et[0]}
	}
	if !hasToken(h["Vary"], "accept-encoding") && !hasToken(h["Vary"], "*") {
		h["Vary"] = append(h["Vary"], "Accept-Encoding")
	}
	switch cw.coding {
	case codingZstd:
		e := cw.c.zstds.Get().(*zstd.Encoder)
		e.Reset(cw.ResponseWriter)
		cw.enc = e
	case codingGzip:
		g := cw.c.gzips.Get().(*gzip.Writer)
		g.Reset(cw.ResponseWriter)
		cw.enc = g
	}
}

// close ends the compressed stream, if any, and gives the writer and its
// encoder back to their pools. cw must not be used afterwards.
func (cw *compressWriter) close() {
	c := cw.c
	switch e := cw.enc.(type) {
	case *zstd.Encoder:
		_ = e.Close() // the client may be gone
		e.Reset(nil)
		c.zstds.Put(e)
	case *gzip.Writer:
		_ = e.Close()
		e.Reset(io.Discard)
		c.gzips.Put(e)
	}
	*cw = compressWriter{}
	c.writers.Put(cw)
}

// hasToken reports whether the comma-separated field values vs list token,
// ignoring case and parameters ("no-transform", "max-age=60").
func hasToken(vs []string, token string) bool {
	for _, v := range vs {
		for v != "" {
			var elem string
			if i := strings.IndexByte(v, ','); i >= 0 {
				elem, v = v[:i], v[i+1:]
			} else {
				elem, v = v, ""
			}
			if i := strings.IndexAny(elem, "=;"); i >= 0 {
				elem = elem[:i]
			}
			if strings.EqualFold(strings.TrimSpace(elem), token) {
				return true
			}
		}
	}
	return false
}

// flushWriter flushes w as http.ResponseController does, without
// allocating: through FlushError, Flush or Unwrap. A writer that cannot
// flush reports http.ErrNotSupported.
func flushWriter(w http.ResponseWriter) error {
	for {
		switch x := w.(type) {
		case interface{ FlushError() error }:
			return x.FlushError()
		case http.Flusher:
			x.Flush()
			return nil
		case interface{ Unwrap() http.ResponseWriter }:
			w = x.Unwrap()
		default:
			return fmt.Errorf("flushing %T: %w", w, http.ErrNotSupported)
		}
	}
}
