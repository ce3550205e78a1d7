package proxy

import (
	"bufio"
	"bytes"
	"net/http"
	"net/textproto"
	"strings"
	"sync"

	"golang.org/x/net/http/httpguts"
)

// readFields reads the header fields of a backend's answer, up to and
// including the blank line, as textproto.Reader.ReadMIMEHeader does (the
// same fields, values and errors), with fewer allocations: when the whole
// field section is already in br's buffer, as it nearly always is, it
// becomes one string, names already in canonical form and every value are
// slices of it, and the values share one backing array. A section that is
// not all buffered, or has a folded line (obs-fold, which textproto joins),
// goes to textproto.
func readFields(br *bufio.Reader) (http.Header, error) { // the map may come from fieldMaps
	buf, _ := br.Peek(br.Buffered())
	end, lines := fieldsEnd(buf)
	if end < 0 {
		mh, err := (&textproto.Reader{R: br}).ReadMIMEHeader()
		return http.Header(mh), err
	}
	s := string(buf[:end])
	var h http.Header
	if lines <= maxPooledFields {
		h = fieldMaps.Get().(http.Header)
	} else {
		h = make(http.Header, lines)
	}
	vals := make([]string, lines)
	for {
		i := strings.IndexByte(s, '\n')
		line := s[:i]
		s = s[i+1:]
		line = strings.TrimSuffix(line, "\r")
		if line == "" {
			break
		}
		name, value, ok := strings.Cut(line, ":")
		key, ok := fieldKey(name, ok)
		if !ok {
			return nil, textproto.ProtocolError("malformed MIME header line: " + line)
		}
		value = trimSpaceTab(value)
		for i := 0; i < len(value); i++ {
			if c := value[i]; c < ' ' && c != '\t' || c == 0x7f {
				return nil, textproto.ProtocolError("malformed MIME header line: " + line)
			}
		}
		if vv := h[key]; vv != nil {
			h[key] = append(vv, value)
		} else {
			vals[0] = value
			h[key], vals = vals[:1:1], vals[1:]
		}
	}
	br.Discard(end)
	return h, nil
}

// fieldMaps lends readFields the maps of answers' headers, which
// releaseFields gives back once nothing refers to the map any more (the
// direct path, once the answer is relayed: the client's header took the
// value slices, which stay the client's).
var fieldMaps = sync.Pool{New: func() any { return make(http.Header, 8) }}

// maxPooledFields bounds the maps fieldMaps keeps, in fields.
const maxPooledFields = 16

// releaseFields clears h, an answer's header no one will read again, and
// lends it to the next readFields.
func releaseFields(h http.Header) {
	if len(h) > maxPooledFields {
		return
	}
	clear(h)
	fieldMaps.Put(h)
}

// fieldKey is the map key of a field name, as textproto makes it: the
// canonical form (name itself when it already is), or name unchanged when
// it has a space (textproto accepts "Name : value", golang/go#34540); ok
// is false for an empty name or one with a byte that is neither a token
// character nor a space, or when colon (the line had one) is false.
func fieldKey(name string, colon bool) (key string, ok bool) {
	if !colon || name == "" {
		return "", false
	}
	if httpguts.ValidHeaderFieldName(name) {
		return textproto.CanonicalMIMEHeaderKey(name), true
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c != ' ' && !httpguts.IsTokenRune(rune(c)) {
			return "", false
		}
	}
	return name, true
}

// fieldsEnd returns the length of the field section at the start of buf,
// blank line included, and its number of field lines; -1 when buf does
// not hold all of it or a line is folded.
func fieldsEnd(buf []byte) (end, lines int) {
	for i := 0; ; lines++ {
		j := bytes.IndexByte(buf[i:], '\n')
		if j < 0 {
			return -1, 0
		}
		line := buf[i : i+j]
		i += j + 1
		if len(line) == 0 || len(line) == 1 && line[0] == '\r' {
			return i, lines
		}
		if line[0] == ' ' || line[0] == '\t' {
			return -1, 0
		}
	}
}

// trimSpaceTab is strings.Trim(s, " \t") without building its cutset.
func trimSpaceTab(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}
