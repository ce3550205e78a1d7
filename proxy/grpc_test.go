package proxy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http/httptest"
	"net/url"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// rawCodec sends gRPC messages as they are: *[]byte both ways, so that the
// test service needs no generated code.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *v.(*[]byte), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*v.(*[]byte) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "raw" }

// echoService is edge.test.Echo, registered by hand: Echo answers
// "NAME: MESSAGE" with the trailer x-backend: NAME, or NotFound for
// "missing"; Count streams the numbers below its message, then the trailer
// x-count.
func echoService(name string) *grpc.ServiceDesc {
	return &grpc.ServiceDesc{
		ServiceName: "edge.test.Echo",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{
			MethodName: "Echo",
			Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
				var in []byte
				if err := dec(&in); err != nil {
					return nil, err
				}
				if string(in) == "missing" {
					return nil, status.Error(codes.NotFound, "no thing called missing")
				}
				grpc.SetTrailer(ctx, metadata.Pairs("x-backend", name))
				out := []byte(name + ": " + string(in))
				return &out, nil
			},
		}},
		Streams: []grpc.StreamDesc{{
			StreamName:    "Count",
			ServerStreams: true,
			Handler: func(_ any, stream grpc.ServerStream) error {
				var in []byte
				if err := stream.RecvMsg(&in); err != nil {
					return err
				}
				n, err := strconv.Atoi(string(in))
				if err != nil {
					return status.Error(codes.InvalidArgument, "not a number")
				}
				for i := range n {
					b := []byte(strconv.Itoa(i))
					if err := stream.SendMsg(&b); err != nil {
						return err
					}
				}
				stream.SetTrailer(metadata.Pairs("x-count", strconv.Itoa(n)))
				return nil
			},
		}},
	}
}

// grpcBackend serves echoService on a loopback port, with TLS when cert is
// set (else h2c, gRPC's plain HTTP/2), and returns its URL.
func grpcBackend(t *testing.T, name string, cert *tls.Certificate) *url.URL {
	t.Helper()
	opts := []grpc.ServerOption{grpc.ForceServerCodec(rawCodec{})}
	scheme := "http"
	if cert != nil {
		opts = append(opts, grpc.Creds(credentials.NewServerTLSFromCert(cert)))
		scheme = "https"
	}
	s := grpc.NewServer(opts...)
	s.RegisterService(echoService(name), struct{}{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	t.Cleanup(s.Stop)
	return mustURL(t, scheme+"://"+ln.Addr().String())
}

// serverCertificate is a self-signed certificate for 127.0.0.1 and the
// pool that verifies it.
func serverCertificate(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "grpc backend"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:   time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// TestGRPC: a gRPC client speaking HTTP/2 over TLS to edge reaches gRPC
// backends over h2c and over TLS: unary and server-streaming calls,
// trailers and status codes (NotFound with its message) pass through.
func TestGRPC(t *testing.T) {
	cert, roots := serverCertificate(t)
	for _, tc := range []struct {
		name    string
		backend *url.URL
		pool    func(*PoolConfig)
	}{
		{"h2c", grpcBackend(t, "h2c-backend", nil), func(p *PoolConfig) { p.H2C = true }},
		{"tls", grpcBackend(t, "tls-backend", &cert), func(p *PoolConfig) { p.TLS = &tls.Config{RootCAs: roots} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := simpleConfig(tc.backend)
			tc.pool(&cfg.Pools[0])
			cfg.Sites[0].Compress = &Compression{} // grpc's type is not compressed
			front := httptest.NewUnstartedServer(newHandler(t, cfg))
			front.EnableHTTP2 = true
			front.StartTLS()
			t.Cleanup(front.Close)
			clientRoots := x509.NewCertPool()
			clientRoots.AddCert(front.Certificate())
			conn, err := grpc.NewClient(front.Listener.Addr().String(),
				grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: clientRoots, ServerName: "example.com"})),
				grpc.WithAuthority("example.com"),
				grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			want := tc.name + "-backend"

			in, out := []byte("hello"), []byte(nil)
			var trailer metadata.MD
			if err := conn.Invoke(ctx, "/edge.test.Echo/Echo", &in, &out, grpc.Trailer(&trailer)); err != nil {
				t.Fatalf("unary call: %v", err)
			}
			if string(out) != want+": hello" || len(trailer["x-backend"]) != 1 || trailer["x-backend"][0] != want {
				t.Errorf("unary: %q, trailer %v", out, trailer)
			}

			missing := []byte("missing")
			err = conn.Invoke(ctx, "/edge.test.Echo/Echo", &missing, &out)
			if st, _ := status.FromError(err); st.Code() != codes.NotFound || st.Message() != "no thing called missing" {
				t.Errorf("a NotFound call: %v, want NotFound \"no thing called missing\"", err)
			}

			stream, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, "/edge.test.Echo/Count")
			if err != nil {
				t.Fatal(err)
			}
			n := []byte("50")
			if err := stream.SendMsg(&n); err != nil {
				t.Fatal(err)
			}
			if err := stream.CloseSend(); err != nil {
				t.Fatal(err)
			}
			got := 0
			for {
				var m []byte
				err := stream.RecvMsg(&m)
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatalf("stream message %d: %v", got, err)
				}
				if string(m) != strconv.Itoa(got) {
					t.Fatalf("stream message %d is %q", got, m)
				}
				got++
			}
			if got != 50 || stream.Trailer().Get("x-count")[0] != "50" {
				t.Errorf("stream: %d messages, trailer %v; want 50 and x-count 50", got, stream.Trailer())
			}

			bad := []byte("many")
			stream, err = conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, "/edge.test.Echo/Count")
			if err == nil {
				stream.SendMsg(&bad)
				stream.CloseSend()
				var m []byte
				err = stream.RecvMsg(&m)
			}
			if st, _ := status.FromError(err); st.Code() != codes.InvalidArgument {
				t.Errorf("a failing stream: %v, want InvalidArgument", err)
			}
		})
	}
}
