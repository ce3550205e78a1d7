package proxy

import (
	"bufio"
	"io"
	"net/textproto"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

// fieldSeeds are field sections (after the status line) that readFields
// must read as textproto does: canonical and not, repeated, empty values,
// spaces, bare LF, folded lines, bad names and values, a missing end.
var fieldSeeds = []string{
	"\r\n",
	"\n",
	"Content-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello",
	"content-length: 5\r\nx-backend: b1\r\nX-BACKEND: b2\r\n\r\n",
	"Set-Cookie: a=1\r\nSet-Cookie: b=2\r\nVary: A\r\nVary: B\r\n\r\n",
	"X-Empty:\r\nX-Spaces:   v  \t\r\n\r\n",
	"X-Bare: lf\nX-Next: 1\n\n",
	"X-Fold: a\r\n b\r\n\r\n",
	" X-Lead: 1\r\n\r\n",
	"X Bad: 1\r\n\r\n",
	"X-Bad : 1\r\n\r\n",
	":empty\r\n\r\n",
	"NoColon\r\n\r\n",
	"X-Ctl: a\x01b\r\n\r\n",
	"X-Del: a\x7fb\r\n\r\n",
	"X-Cr: a\rb\r\n\r\n",
	"X-Cr2: ab\r\r\n\r\n",
	"X-Nul: a\x00\r\n\r\n",
	"X-Utf8: caf\xc3\xa9\r\n\r\n",
	"X_Under_Score: 1\r\n\r\n",
	"x-a-b-c: 1\r\n\r\n",
	"X-Unended: 1\r\n",
	"X-Colon: a:b:c\r\n\r\n",
	"\xff: 1\r\n\r\n",
}

func TestReadFieldsAsTextproto(t *testing.T) {
	for _, in := range fieldSeeds {
		checkReadFields(t, in)
	}
}

func FuzzReadFields(f *testing.F) {
	for _, in := range fieldSeeds {
		f.Add(in)
	}
	f.Fuzz(checkReadFields)
}

// checkReadFields reads in with readFields (whole in the buffer, and a byte
// at a time, which takes textproto's path) and with textproto: both fail,
// or both give the same header and leave the same rest.
func checkReadFields(t *testing.T, in string) {
	want, wantErr := textproto.NewReader(bufio.NewReader(strings.NewReader(in))).ReadMIMEHeader()
	wbr := bufio.NewReader(strings.NewReader(in))
	textproto.NewReader(wbr).ReadMIMEHeader()
	for _, oneByte := range []bool{false, true} {
		var br *bufio.Reader
		if oneByte {
			br = bufio.NewReaderSize(iotest.OneByteReader(strings.NewReader(in)), 16)
		} else {
			br = bufio.NewReaderSize(strings.NewReader(in), 64<<10)
		}
		br.Peek(1)
		got, err := readFields(br)
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("%q (one byte %v): error %v, textproto's %v", in, oneByte, err, wantErr)
		}
		if err != nil {
			continue
		}
		if len(got) != len(want) || (len(got) > 0 && !reflect.DeepEqual(map[string][]string(got), map[string][]string(want))) {
			t.Fatalf("%q (one byte %v): %q, textproto's %q", in, oneByte, got, want)
		}
		rest, _ := io.ReadAll(br)
		wantRest, _ := io.ReadAll(wbr)
		if string(rest) != string(wantRest) {
			t.Fatalf("%q (one byte %v): left %q, textproto %q", in, oneByte, rest, wantRest)
		}
		wbr = bufio.NewReader(strings.NewReader(in))
		textproto.NewReader(wbr).ReadMIMEHeader()
	}
}
