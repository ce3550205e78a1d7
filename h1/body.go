package h1

import (
	"bufio"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
)

// maxChunkLine bounds a chunk-size line with its extensions, as net/http's
// chunked reader does.
const maxChunkLine = 4096

// maxDiscard is how much of a request body the handler left unread the
// connection reads and drops to keep the connection (net/http: 256 KiB);
// past it the connection is closed after the response.
const maxDiscard = 256 << 10

var (
	errBodyClosed   = errors.New("h1: read on a closed request body")
	errChunkLine    = errors.New("h1: malformed chunked encoding")
	errTrailer      = errors.New("h1: malformed trailer")
	errBodyTooShort = io.ErrUnexpectedEOF
)

// body is a request body framed by Content-Length (n bytes) or chunked.
// It is read by the handler's goroutine; Close and the connection's
// discard run after the handler returns. It sends the 100 Continue an
// Expect: 100-continue request waits for on the first read.
type body struct {
	mu      sync.Mutex
	c       *conn
	br      *bufio.Reader
	chunked bool
	left    int64 // Content-Length: bytes left; chunked: left in this chunk
	sawEOF  bool
	// done is sawEOF for the disconnect watch, which must not wait for
	// mu while the handler blocks in a read.
	done      atomic.Bool
	err       error // sticky: a framing error or a read error
	closed    bool
	continue_ bool // send 100 Continue before the first read
	req       *http.Request
}

// Read implements io.Reader.
func (b *body) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, errBodyClosed
	}
	return b.readLocked(p)
}

func (b *body) readLocked(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.sawEOF {
		return 0, io.EOF
	}
	if b.continue_ {
		b.continue_ = false
		if err := b.c.writeContinue(); err != nil {
			b.err = err
			return 0, err
		}
	}
	if len(p) == 0 {
		return 0, nil
	}
	if b.chunked {
		return b.readChunked(p)
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.br.Read(p)
	b.left -= int64(n)
	if b.left == 0 {
		b.sawEOF = true
		b.done.Store(true)
		return n, io.EOF
	}
	if err == io.EOF {
		err = errBodyTooShort
	}
	if err != nil {
		b.err = err
	}
	return n, err
}

func (b *body) readChunked(p []byte) (int, error) {
	if b.left == 0 {
		size, err := b.chunkHeader()
		if err != nil {
			b.err = err
			return 0, err
		}
		if size == 0 {
			if err := b.readTrailer(); err != nil {
				b.err = err
				return 0, err
			}
			b.sawEOF = true
			b.done.Store(true)
			return 0, io.EOF
		}
		b.left = size
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.br.Read(p)
	b.left -= int64(n)
	if err == io.EOF {
		err = errBodyTooShort
	}
	if err != nil {
		b.err = err
		return n, err
	}
	if b.left == 0 {
		if err := b.crlf(); err != nil {
			b.err = err
			return n, err
		}
	}
	return n, nil
}

// chunkHeader reads a chunk-size line (RFC 9112, section 7.1): hex digits,
// optional extensions after ';', CRLF. No sign, no leading space, no
// overflow.
func (b *body) chunkHeader() (int64, error) {
	line, err := b.line()
	if err != nil {
		return 0, err
	}
	ext := strings.IndexByte(line, ';')
	digits := line
	if ext >= 0 {
		digits = strings.TrimRight(line[:ext], " \t") // BWS before ';' (RFC 9112, 7.1.1)
		if !validValue(line[ext:]) {
			return 0, errChunkLine
		}
	}
	if digits == "" || len(digits) > 15 {
		return 0, errChunkLine
	}
	var n int64
	for i := 0; i < len(digits); i++ {
		c := digits[i]
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, errChunkLine
		}
		n = n<<4 | int64(c)
	}
	return n, nil
}

// crlf reads the CRLF after a chunk's data.
func (b *body) crlf() error {
	var two [2]byte
	if _, err := io.ReadFull(b.br, two[:]); err != nil {
		if err == io.EOF {
			err = errBodyTooShort
		}
		return err
	}
	if two != [2]byte{'\r', '\n'} {
		return errChunkLine
	}
	return nil
}

// line reads one CRLF-terminated line of at most maxChunkLine bytes.
func (b *body) line() (string, error) {
	frag, err := b.br.ReadSlice('\n')
	if err == bufio.ErrBufferFull || len(frag) > maxChunkLine {
		return "", errChunkLine
	}
	if err != nil {
		if err == io.EOF {
			err = errBodyTooShort
		}
		return "", err
	}
	if len(frag) < 2 || frag[len(frag)-2] != '\r' {
		return "", errChunkLine
	}
	s := frag[:len(frag)-2]
	for _, c := range s {
		if c == '\r' {
			return "", errChunkLine
		}
	}
	return string(s), nil
}

// readTrailer reads the trailer section after the last chunk, strictly as
// a header block, into the request's Trailer: the fields it announced and
// any other, as net/http merges them.
func (b *body) readTrailer() error {
	var block []byte
	for {
		frag, err := b.br.ReadSlice('\n')
		if err == bufio.ErrBufferFull || len(block)+len(frag) > maxChunkLine*4 {
			return errTrailer
		}
		if err != nil {
			if err == io.EOF {
				err = errBodyTooShort
			}
			return err
		}
		if len(frag) == 2 && frag[0] == '\r' {
			break
		}
		if len(frag) == 1 {
			return errTrailer
		}
		block = append(block, frag...)
	}
	if len(block) == 0 {
		return nil
	}
	h, err := parseFields(string(block) + "\r\n")
	if err != nil {
		return errTrailer
	}
	if b.req.Trailer == nil {
		b.req.Trailer = http.Header{}
	}
	for k, vv := range h {
		b.req.Trailer[k] = vv
	}
	return nil
}

// Close implements io.Closer. Reads after Close fail; the connection
// decides later whether to read the rest.
func (b *body) Close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	return nil
}

// finish, after the handler, reads what is left of the body (up to
// maxDiscard) so that the connection can carry the next request. It
// reports whether the connection is still in sync: the body read to its
// end without error.
func (b *body) finish() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return false
	}
	if b.sawEOF {
		return true
	}
	if b.continue_ {
		// The handler answered without reading: the client never sent
		// the body (RFC 9110, section 10.1.1); nothing can follow safely.
		return false
	}
	buf := make([]byte, 4096)
	var read int64
	for read < maxDiscard {
		n, err := b.readLocked(buf)
		read += int64(n)
		if err == io.EOF {
			return true
		}
		if err != nil {
			return false
		}
	}
	return false
}
