package testenv

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"time"
)

// HTTPSClient returns a client that sends every request to dialAddr
// (edge's https listener), whatever the URL's host, so that
// https://a.test/ is sent with SNI and Host a.test without DNS. It trusts
// only roots, offers h2 and http/1.1, and does not follow redirects.
func HTTPSClient(roots *x509.CertPool, dialAddr string) *http.Client {
	return &http.Client{
		Timeout:       10 * time.Second,
		Transport:     fixedTransport(dialAddr, &tls.Config{RootCAs: roots}),
		CheckRedirect: noRedirect,
	}
}

// HTTPS1Client is HTTPSClient limited to HTTP/1.1 (no h2 in ALPN).
func HTTPS1Client(roots *x509.CertPool, dialAddr string) *http.Client {
	t := fixedTransport(dialAddr, &tls.Config{RootCAs: roots, NextProtos: []string{"http/1.1"}})
	t.ForceAttemptHTTP2 = false
	t.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	return &http.Client{Timeout: 10 * time.Second, Transport: t, CheckRedirect: noRedirect}
}

// HTTPClient returns a plain-HTTP client that sends every request to
// dialAddr and does not follow redirects.
func HTTPClient(dialAddr string) *http.Client {
	return &http.Client{
		Timeout:       10 * time.Second,
		Transport:     fixedTransport(dialAddr, nil),
		CheckRedirect: noRedirect,
	}
}

func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

func fixedTransport(dialAddr string, tlsConf *tls.Config) *http.Transport {
	d := &net.Dialer{Timeout: 5 * time.Second}
	return &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, dialAddr)
		},
		TLSClientConfig:     tlsConf,
		ForceAttemptHTTP2:   true,
		TLSHandshakeTimeout: 5 * time.Second,
		MaxIdleConnsPerHost: 4,
	}
}

// Handshake makes a TLS connection to dialAddr with SNI serverName, verifies
// the presented chain against roots for serverName, and returns the
// connection state (PeerCertificates[0] is the leaf, VerifiedChains the
// chains that verified).
func Handshake(dialAddr, serverName string, roots *x509.CertPool) (tls.ConnectionState, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", dialAddr, &tls.Config{
		ServerName: serverName,
		RootCAs:    roots,
		NextProtos: []string{"h2", "http/1.1"},
	})
	if err != nil {
		return tls.ConnectionState{}, fmt.Errorf("TLS handshake with %s for %s: %w", dialAddr, serverName, err)
	}
	defer conn.Close()
	return conn.ConnectionState(), nil
}

// PeerCertificate returns the leaf edge presents for serverName without
// verifying it.
func PeerCertificate(dialAddr, serverName string) (*x509.Certificate, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", dialAddr, &tls.Config{ServerName: serverName, InsecureSkipVerify: true})
	if err != nil {
		return nil, fmt.Errorf("TLS handshake with %s for %s: %w", dialAddr, serverName, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0], nil
}
