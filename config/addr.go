package config

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// Port ranges: a listener may ask for any free port (0), a dial address
// or a URL must name a real one.
const (
	listenPort = 0
	dialPort   = 1
)

// checkAddr checks a host:port address whose port is minPort..65535
// (listenPort for listeners, dialPort for addresses edge dials).
func checkAddr(s string, minPort int) error {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("expected host:port")
	}
	return checkPort(port, minPort)
}

func checkPort(port string, minPort int) error {
	n, err := strconv.ParseUint(port, 10, 32)
	if err != nil || n < uint64(minPort) || n > 65535 {
		return fmt.Errorf("invalid port %q: expected %d to 65535", port, minPort)
	}
	return nil
}

// checkURL parses s as an absolute URL of one of schemes with a host, and
// an explicit port (if any) of 1..65535. It returns the URL, or what is
// wrong with s.
func checkURL(s string, schemes ...string) (*url.URL, string) {
	u, err := url.Parse(s)
	if err != nil || !slices.Contains(schemes, u.Scheme) || u.Host == "" {
		return nil, fmt.Sprintf("expected an %s URL with a host", strings.Join(schemes, " or "))
	}
	if p := u.Port(); p != "" {
		if err := checkPort(p, dialPort); err != nil {
			return nil, err.Error()
		}
	}
	return u, ""
}

func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}
