package main

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

func TestConfigureHTTP2KeepsOptions(t *testing.T) {
	orig := &http.HTTP2Config{MaxConcurrentStreams: 7}
	srv := &http.Server{HTTP2: orig}
	configureHTTP2(srv)
	if srv.HTTP2 == orig {
		t.Fatal("configureHTTP2 wrote into the caller's HTTP2Config")
	}
	if orig.MaxReadFrameSize != 0 {
		t.Errorf("caller's MaxReadFrameSize changed to %d", orig.MaxReadFrameSize)
	}
	if got := srv.HTTP2; got.MaxConcurrentStreams != 7 || got.MaxReadFrameSize != h2MaxReadFrameSize {
		t.Errorf("HTTP2 = %+v, want MaxConcurrentStreams 7 and MaxReadFrameSize %d", *got, h2MaxReadFrameSize)
	}

	srv = &http.Server{}
	configureHTTP2(srv)
	if srv.HTTP2 == nil || srv.HTTP2.MaxReadFrameSize != h2MaxReadFrameSize {
		t.Errorf("from nil: HTTP2 = %+v", srv.HTTP2)
	}
}

// TestHTTP2Frames speaks HTTP/2 frame by frame to a server set up by
// configureHTTP2, as h2spec does. The first cases are what configureHTTP2
// fixes; the "Go:" cases pin behaviour of Go's HTTP/2 server that h2spec
// counts as failures (e2e/audit_test.go, h2specKnownFailures), so that a
// Go release that changes it fails here and the allow-list is revisited.
func TestHTTP2Frames(t *testing.T) {
	var served atomic.Int64
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		io.WriteString(w, "ok\n")
	}))
	ts.EnableHTTP2 = true
	ts.Config.ErrorLog = log.New(io.Discard, "", 0) // the connection errors are the point
	configureHTTP2(ts.Config)
	ts.StartTLS()
	t.Cleanup(ts.Close)
	addr := ts.Listener.Addr().String()

	big := strings.Repeat("x", 4000) // h2spec's --max-header-length default

	tests := []struct {
		name string
		// send writes to a fresh connection whose preface and empty
		// SETTINGS are already sent.
		send func(p *h2Peer)
		want string
		// handler: whether the request may reach the handler (for the
		// proxy: be forwarded).
		handler bool
	}{
		{
			name: "a plain GET is served",
			send: func(p *h2Peer) { p.headers(1) },
			want: "status 200", handler: true,
		},
		{
			// h2spec http2/4.2/3: five 4000-byte fields in one 20 KB
			// HEADERS frame, over the advertised 16 KiB.
			name: "HEADERS over SETTINGS_MAX_FRAME_SIZE: FRAME_SIZE_ERROR",
			send: func(p *h2Peer) {
				p.headers(1, "x-dummy0", big, "x-dummy1", big, "x-dummy2", big, "x-dummy3", big, "x-dummy4", big)
			},
			want: "GOAWAY FRAME_SIZE_ERROR",
		},
		{
			// The same header block split into CONTINUATION frames of
			// 16 KiB is a legal request and still served.
			name: "20 KB of headers in CONTINUATION frames is served",
			send: func(p *h2Peer) {
				p.headersSplit(1, h2MaxReadFrameSize, "x-dummy0", big, "x-dummy1", big, "x-dummy2", big, "x-dummy3", big, "x-dummy4", big)
			},
			want: "status 200", handler: true,
		},
		{
			// h2spec http2/6.5.3/1 expects a SETTINGS ACK: RFC 9113 allows
			// a parameter twice in one frame, processed in order. Go hangs
			// up on duplicates: h2_bundle.go:5754
			// `if f.NumSettings() > 100 || f.HasDuplicates() {`.
			name: "Go: duplicate SETTINGS_INITIAL_WINDOW_SIZE is a connection PROTOCOL_ERROR",
			send: func(p *h2Peer) {
				p.check(p.fr.WriteSettings(
					http2.Setting{ID: http2.SettingInitialWindowSize, Val: 100},
					http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1}))
				p.headers(1)
			},
			want: "GOAWAY PROTOCOL_ERROR",
		},
		{
			// h2spec http2/8.1.2.2/1 expects RST_STREAM PROTOCOL_ERROR (a
			// malformed request, RFC 9113 section 8.2.2). Go answers 400
			// instead, without calling the handler: h2_bundle.go:6089
			// `handler = http2new400Handler(err)` after the check at
			// h2_bundle.go:7272. The request is not forwarded.
			name: "Go: connection-specific field is answered 400, not reset",
			send: func(p *h2Peer) { p.headers(1, "connection", "keep-alive") },
			want: "status 400",
		},
		{
			// h2spec http2/8.1.2.2/2: the same, for TE other than
			// "trailers" (h2_bundle.go:7277).
			name: "Go: TE other than trailers is answered 400, not reset",
			send: func(p *h2Peer) { p.headers(1, "trailers", "test", "te", "trailers, deflate") },
			want: "status 400",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := served.Load()
			p := dialH2(t, addr)
			if got := p.serverSettings[http2.SettingMaxFrameSize]; got != h2MaxReadFrameSize {
				t.Errorf("server's SETTINGS_MAX_FRAME_SIZE = %d, want %d", got, h2MaxReadFrameSize)
			}
			tc.send(p)
			if got := p.outcome(); got != tc.want {
				t.Errorf("outcome %q, want %q", got, tc.want)
			}
			if reached := served.Load() > before; reached != tc.handler {
				t.Errorf("handler reached: %v, want %v", reached, tc.handler)
			}
		})
	}
}

// h2Peer is a raw HTTP/2 client connection.
type h2Peer struct {
	t              *testing.T
	conn           *tls.Conn
	fr             *http2.Framer
	enc            *hpack.Encoder
	buf            bytes.Buffer
	serverSettings map[http2.SettingID]uint32
}

// dialH2 connects, sends the preface and an empty SETTINGS frame and reads
// the server's SETTINGS.
func dialH2(t *testing.T, addr string) *h2Peer {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if p := conn.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("ALPN %q, want h2", p)
	}
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	p := &h2Peer{t: t, conn: conn, fr: http2.NewFramer(conn, conn), serverSettings: map[http2.SettingID]uint32{}}
	p.fr.AllowIllegalWrites = true
	p.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	p.enc = hpack.NewEncoder(&p.buf)
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	p.check(p.fr.WriteSettings())
	f, err := p.fr.ReadFrame()
	if err != nil {
		t.Fatalf("reading the server's SETTINGS: %v", err)
	}
	sf, ok := f.(*http2.SettingsFrame)
	if !ok || sf.IsAck() {
		t.Fatalf("first frame %v, want the server's SETTINGS", f)
	}
	_ = sf.ForeachSetting(func(s http2.Setting) error { p.serverSettings[s.ID] = s.Val; return nil })
	p.check(p.fr.WriteSettingsAck())
	return p
}

func (p *h2Peer) check(err error) {
	p.t.Helper()
	if err != nil {
		p.t.Fatal(err)
	}
}

// block encodes a GET / header block with the extra name, value pairs.
func (p *h2Peer) block(extra ...string) []byte {
	p.buf.Reset()
	fields := append([]string{":method", "GET", ":scheme", "https", ":path", "/", ":authority", "localhost"}, extra...)
	for i := 0; i+1 < len(fields); i += 2 {
		p.check(p.enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]}))
	}
	return bytes.Clone(p.buf.Bytes())
}

// headers sends one HEADERS frame (END_STREAM, END_HEADERS).
func (p *h2Peer) headers(stream uint32, extra ...string) {
	p.check(p.fr.WriteHeaders(http2.HeadersFrameParam{
		StreamID: stream, BlockFragment: p.block(extra...), EndStream: true, EndHeaders: true,
	}))
}

// headersSplit sends the header block in a HEADERS frame and CONTINUATION
// frames of at most size bytes.
func (p *h2Peer) headersSplit(stream uint32, size int, extra ...string) {
	b := p.block(extra...)
	first := b[:min(size, len(b))]
	b = b[len(first):]
	p.check(p.fr.WriteHeaders(http2.HeadersFrameParam{
		StreamID: stream, BlockFragment: first, EndStream: true, EndHeaders: len(b) == 0,
	}))
	for len(b) > 0 {
		n := min(size, len(b))
		p.check(p.fr.WriteContinuation(stream, n == len(b), b[:n]))
		b = b[n:]
	}
}

// outcome reads until the server answers: "status N" (response HEADERS),
// "RST_STREAM CODE", "GOAWAY CODE" or "closed".
func (p *h2Peer) outcome() string {
	for {
		f, err := p.fr.ReadFrame()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return "closed"
			}
			return fmt.Sprintf("read error: %v", err)
		}
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			return "status " + f.PseudoValue("status")
		case *http2.RSTStreamFrame:
			return "RST_STREAM " + f.ErrCode.String()
		case *http2.GoAwayFrame:
			return "GOAWAY " + f.ErrCode.String()
		}
	}
}
