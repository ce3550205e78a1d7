package h1

import (
	"bufio"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"
)

// bufferBeforeChunking is how much body a response without Content-Length
// holds before it commits to chunked framing: a handler that finishes
// within it gets a Content-Length instead (net/http: 2048).
const bufferBeforeChunking = 2048

// response is the http.ResponseWriter of one request. It is reused by its
// connection for the next request and is not safe for concurrent use (as
// net/http's, the handler's goroutine alone writes).
type response struct {
	c      *conn
	req    *http.Request
	header http.Header

	status        int
	wroteHeader   bool  // the final status is decided
	headerSent    bool  // the head is in the connection's writer
	contentLength int64 // declared by the handler, or -1
	written       int64 // body bytes the handler wrote
	chunked       bool
	closeAfter    bool
	bodyAllowed   bool
	handlerDone   bool
	hijacked      bool
	expectCont    bool     // the request waits for 100 Continue (see begin)
	trailers      []string // keys the handler declared in Trailer
	pend          []byte   // body held until the framing is decided
}

var (
	_ http.ResponseWriter = (*response)(nil)
	_ http.Flusher        = (*response)(nil)
	_ http.Hijacker       = (*response)(nil)
)

// Header implements http.ResponseWriter.
func (w *response) Header() http.Header { return w.header }

// WriteHeader implements http.ResponseWriter. Informational statuses go
// out at once with the header as it stands (103 Early Hints); 100 only to
// a request that waits for it, once.
func (w *response) WriteHeader(code int) {
	if w.hijacked || w.wroteHeader {
		return
	}
	if code < 100 || code > 999 {
		panic("h1: invalid WriteHeader code " + strconv.Itoa(code))
	}
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		if code == http.StatusContinue {
			if b, ok := w.req.Body.(*body); ok && b.takeContinue() {
				_ = w.c.writeContinue()
			}
			return
		}
		w.begin()
		bw := w.c.bw
		bw.WriteString(statusLine(code))
		writeFields(bw, w.header)
		bw.WriteString("\r\n")
		_ = bw.Flush()
		return
	}
	w.wroteHeader = true
	w.status = code
	w.contentLength = -1
	if cl := w.header["Content-Length"]; len(cl) > 0 {
		if n, ok := parseContentLength(strings.TrimSpace(cl[0])); ok {
			w.contentLength = n
		} else {
			delete(w.header, "Content-Length")
		}
	}
	w.bodyAllowed = bodyAllowed(code) && w.req.Method != http.MethodHead
	if tr := w.header["Trailer"]; len(tr) > 0 {
		for _, v := range tr {
			for k := range strings.SplitSeq(v, ",") {
				if k = strings.TrimSpace(k); k != "" {
					w.trailers = append(w.trailers, http.CanonicalHeaderKey(k))
				}
			}
		}
	}
}

func bodyAllowed(code int) bool {
	return !(code >= 100 && code < 200 || code == http.StatusNoContent || code == http.StatusNotModified)
}

// Write implements http.ResponseWriter.
func (w *response) Write(p []byte) (int, error) {
	if w.hijacked {
		return 0, http.ErrHijacked
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if len(p) == 0 {
		return 0, nil
	}
	if !w.bodyAllowed {
		if w.req.Method == http.MethodHead {
			w.written += int64(len(p))
			return len(p), nil
		}
		return 0, http.ErrBodyNotAllowed
	}
	if w.contentLength >= 0 && w.written+int64(len(p)) > w.contentLength {
		return 0, http.ErrContentLength
	}
	w.written += int64(len(p))
	if !w.headerSent {
		if w.contentLength < 0 && len(w.pend)+len(p) <= bufferBeforeChunking {
			w.pend = append(w.pend, p...)
			return len(p), nil
		}
		w.sendHead(p)
	}
	return len(p), w.writeBody(p)
}

// writeBody writes p to the connection in the response's framing.
func (w *response) writeBody(p []byte) error {
	bw := w.c.bw
	if w.chunked {
		var hex [16]byte
		bw.Write(strconv.AppendInt(hex[:0], int64(len(p)), 16))
		bw.WriteString("\r\n")
		bw.Write(p)
		_, err := bw.WriteString("\r\n")
		return err
	}
	_, err := bw.Write(p)
	return err
}

// sendHead writes the status line and header, deciding the framing: the
// declared Content-Length, the whole body's length when the handler has
// finished, else chunked (HTTP/1.1) or close-delimited (HTTP/1.0). more is
// the body about to be written (for Content-Type sniffing); what is
// pending goes out after the head.
func (w *response) sendHead(more []byte) {
	w.begin()
	w.headerSent = true
	h := w.header
	c := w.c
	if _, ok := h["Connection"]; ok && httpguts.HeaderValuesContainsToken(h["Connection"], "close") {
		w.closeAfter = true
	}
	if w.req.Close || c.srv.shuttingDown() {
		w.closeAfter = true
	}
	delete(h, "Transfer-Encoding")
	if w.bodyAllowed {
		switch {
		case w.contentLength >= 0:
		case w.handlerDone:
			w.contentLength = int64(len(w.pend))
			h["Content-Length"] = []string{strconv.Itoa(len(w.pend))}
		case w.req.ProtoMinor >= 1:
			w.chunked = true
		default:
			w.closeAfter = true
		}
		if _, ok := h["Content-Type"]; !ok {
			sniff := w.pend
			if len(sniff) == 0 {
				sniff = more
			}
			if len(sniff) > 0 {
				h["Content-Type"] = []string{http.DetectContentType(sniff)}
			}
		}
	} else if w.req.Method != http.MethodHead {
		delete(h, "Content-Length")
	}
	bw := c.bw
	bw.WriteString(statusLine(w.status))
	writeFields(bw, h)
	if _, ok := h["Date"]; !ok {
		bw.WriteString("Date: ")
		bw.WriteString(c.srv.date())
		bw.WriteString("\r\n")
	}
	if w.chunked {
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	if w.closeAfter {
		if !httpguts.HeaderValuesContainsToken(h["Connection"], "close") {
			bw.WriteString("Connection: close\r\n")
		}
	} else if w.req.ProtoMinor == 0 {
		bw.WriteString("Connection: keep-alive\r\n")
	}
	bw.WriteString("\r\n")
	if len(w.pend) > 0 {
		p := w.pend
		w.pend = w.pend[:0]
		_ = w.writeBody(p)
	}
}

// begin marks, before the response's first byte, that no 100 Continue
// may follow (conn.writeContinue).
func (w *response) begin() {
	if w.expectCont {
		w.c.contMu.Lock()
		w.c.begun = true
		w.c.contMu.Unlock()
	}
}

// writeFields writes h as header fields, skipping invalid names and
// turning CR and LF in values into spaces, as net/http does, so that a
// backend's header cannot split the response.
func writeFields(bw *bufio.Writer, h http.Header) {
	for k, vv := range h {
		if !isToken(k) {
			continue
		}
		for _, v := range vv {
			bw.WriteString(k)
			bw.WriteString(": ")
			if strings.ContainsAny(v, "\r\n") {
				v = strings.NewReplacer("\r", " ", "\n", " ").Replace(v)
			}
			bw.WriteString(trimOWS(v))
			bw.WriteString("\r\n")
		}
	}
}

// finish completes the response after the handler returned.
func (w *response) finish() error {
	w.handlerDone = true
	if w.hijacked {
		return nil
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.headerSent {
		w.sendHead(nil)
	}
	bw := w.c.bw
	if w.chunked {
		bw.WriteString("0\r\n")
		w.writeTrailers(bw)
		bw.WriteString("\r\n")
	}
	if w.bodyAllowed && w.contentLength >= 0 && w.written != w.contentLength {
		w.closeAfter = true // the client waits for bytes that will not come
	}
	return bw.Flush()
}

// writeTrailers writes the trailer fields of a chunked response: the
// values of the keys the handler announced in Trailer, and of keys with
// http.TrailerPrefix.
func (w *response) writeTrailers(bw *bufio.Writer) {
	h := w.header
	for _, k := range w.trailers {
		for _, v := range h[k] {
			if isToken(k) && validValue(v) {
				bw.WriteString(k + ": " + v + "\r\n")
			}
		}
	}
	for k, vv := range h {
		if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok && isToken(name) {
			for _, v := range vv {
				if validValue(v) {
					bw.WriteString(name + ": " + v + "\r\n")
				}
			}
		}
	}
}

// Flush implements http.Flusher: the head (committing to chunked framing
// when no length is known) and what is buffered go to the client.
func (w *response) Flush() {
	_ = w.FlushError()
}

// FlushError is Flush with its error, for http.ResponseController.
func (w *response) FlushError() error {
	if w.hijacked {
		return http.ErrHijacked
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.headerSent {
		w.sendHead(nil)
	}
	return w.c.bw.Flush()
}

// SetReadDeadline is for http.ResponseController.
func (w *response) SetReadDeadline(t time.Time) error { return w.c.rwc.SetReadDeadline(t) }

// SetWriteDeadline is for http.ResponseController; a small move later is
// not applied (setWriteDeadline).
func (w *response) SetWriteDeadline(t time.Time) error { return w.c.setWriteDeadline(t) }

// EnableFullDuplex is for http.ResponseController: the body may be read
// after the response has started, which this server always allows.
func (w *response) EnableFullDuplex() error { return nil }

// Hijack implements http.Hijacker: the connection leaves the server, with
// what the client already sent in the returned reader.
func (w *response) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.hijacked {
		return nil, nil, http.ErrHijacked
	}
	if w.headerSent {
		return nil, nil, errHijackAfterWrite
	}
	c := w.c
	c.disarmWatch()
	if c.cr.pending {
		_, _ = c.br.Peek(1) // the byte the background read took, into the reader returned
	}
	w.hijacked = true
	c.hijacked = true
	_ = c.rwc.SetDeadline(time.Time{})
	c.wdl = time.Time{}
	c.srv.setState(c, http.StateHijacked)
	c.srv.forget(c) // as with net/http, Shutdown neither waits for it nor closes it
	brw := bufio.NewReadWriter(c.br, c.bw)
	return c.rwc, brw, nil
}
