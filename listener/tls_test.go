package listener

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"testing"
	"time"
)

// selfSigned returns a server config with a certificate for 127.0.0.1 and
// a client config that trusts it.
func selfSigned(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "edge test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	server = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}}}
	client = &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
	return server, client
}

func TestTLSOverWrappedListener(t *testing.T) {
	srvConf, cliConf := selfSigned(t)
	ln, _ := wrap(t, Options{ProxyFrom: trusted, Limiter: NewConnLimiter(4)})
	tl := tls.NewListener(ln, srvConf)
	s := &server{ln: ln}

	tests := []struct {
		name, src string
		header    []byte
		want      string // "" = the TCP peer
	}{
		{"through the balancer", balancer, headerV2(t, "203.0.113.20:5555", "192.0.2.1:443"), "203.0.113.20:5555"},
		{"direct", direct, nil, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			raw := s.dial(t, tc.src, tc.header)
			cl := tls.Client(raw, cliConf)
			errc := make(chan error, 1)
			go func() {
				if err := cl.HandshakeContext(t.Context()); err != nil {
					errc <- err
					return
				}
				_, err := cl.Write([]byte("ping"))
				errc <- err
			}()
			nc, err := tl.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			sc := nc.(*tls.Conn)
			sc.SetDeadline(time.Now().Add(3 * time.Second))
			if err := sc.HandshakeContext(t.Context()); err != nil {
				t.Fatalf("server handshake: %v", err)
			}
			if got := readN(t, sc, 4); got != "ping" {
				t.Errorf("read %q", got)
			}
			if err := <-errc; err != nil {
				t.Fatalf("client: %v", err)
			}
			want := tc.want
			if want == "" {
				want = raw.LocalAddr().String()
			}
			if got := sc.RemoteAddr().String(); got != want {
				t.Errorf("RemoteAddr = %s, want %s", got, want)
			}
			if _, ok := sc.NetConn().(*Conn); !ok {
				t.Errorf("NetConn is %T, want *Conn", sc.NetConn())
			}
		})
	}
}

func TestHTTPSServer(t *testing.T) {
	srvConf, cliConf := selfSigned(t)
	ln, m := wrap(t, Options{ProxyFrom: trusted})
	s := &server{ln: ln, m: m}
	hs := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprint(w, r.RemoteAddr)
		}),
		ReadHeaderTimeout: 3 * time.Second,
	}
	go hs.Serve(tls.NewListener(ln, srvConf))
	t.Cleanup(func() { hs.Close() })

	header := headerV1(t, "198.51.100.30:6000", "192.0.2.1:443")
	cl := &http.Client{Transport: &http.Transport{
		TLSClientConfig: cliConf,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(balancer)}}
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			if _, err := c.Write(header); err != nil {
				c.Close()
				return nil, err
			}
			return c, nil
		},
	}}
	defer cl.CloseIdleConnections()
	resp, err := cl.Get("https://" + s.ln.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if string(b) != "198.51.100.30:6000" {
		t.Errorf("r.RemoteAddr = %q", b)
	}

	// A balancer's connection without a header never reaches the server.
	plain := &http.Client{Transport: &http.Transport{TLSClientConfig: cliConf}}
	defer plain.CloseIdleConnections()
	if _, err := plain.Get("https://" + s.ln.Addr().String() + "/"); err == nil {
		t.Error("request without a PROXY header from the balancer succeeded")
	} else if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		t.Logf("refused: %v", err)
	}
	if got := s.refused(reasonMissing); got < 1 {
		t.Errorf("refused{proxy_header_missing} = %v", got)
	}
}

func TestHTTPServerRefusesUntrustedHeaderSilently(t *testing.T) {
	ln, m := wrap(t, Options{ProxyFrom: trusted})
	s := &server{ln: ln, m: m}
	hs := &http.Server{Handler: http.NotFoundHandler(), ReadHeaderTimeout: 3 * time.Second}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })

	// net/http would answer 400 to these bytes; the refusal comes first.
	cl := s.dial(t, direct, []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	s.waitRefused(t, cl, reasonUntrusted)
}
