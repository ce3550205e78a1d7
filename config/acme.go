package config

import (
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strings"
)

// DefaultIPProfiles are the ACME profiles whose certificates may name IP
// addresses when acme.ip_profiles is not set: Let's Encrypt issues IP
// certificates under shortlived only.
var DefaultIPProfiles = []string{"shortlived"}

// RenewalRatio is the share of a certificate's lifetime left when renewal
// starts, as certmagic's RenewalWindowRatio takes it: 1-renew_at when
// renew_at is set, else renewal_window_ratio (0: certmagic's 1/3).
func (a ACME) RenewalRatio() float64 {
	if a.RenewAt > 0 && a.RenewAt < 1 {
		return 1 - a.RenewAt
	}
	return a.RenewalWindowRatio
}

// SiteProfile is the ACME profile the names of site s ask for: its own,
// else acme.profile ("" for the CA's default).
func (c *Config) SiteProfile(s Site) string {
	if s.Profile != "" {
		return s.Profile
	}
	return c.ACME.Profile
}

// acmeRenewal checks renew_at against renewal_window_ratio.
func (v *validator) acmeRenewal() {
	a := v.c.ACME
	if a.RenewAt != 0 && !(a.RenewAt > 0 && a.RenewAt < 1) { // NaN too
		v.errorf("acme.renew_at", "renew_at %v must be between 0 and 1 (a share of the lifetime: 0.66 renews a 90-day certificate after about 59 days)", a.RenewAt)
		return
	}
	if a.RenewAt != 0 && a.RenewalWindowRatio != 0 && math.Abs(1-a.RenewAt-a.RenewalWindowRatio) > 1e-9 {
		v.errorf("acme.renew_at", "renew_at %v and renewal_window_ratio %v disagree (renew_at is 1 - renewal_window_ratio): set only one", a.RenewAt, a.RenewalWindowRatio)
	}
}

// acmeProfiles checks acme.profile, acme.ip_profiles and every site's
// profile: a profile name is a token the CA's directory lists.
func (v *validator) acmeProfiles() {
	a := v.c.ACME
	if a.Profile != "" {
		v.profileName("acme.profile", a.Profile)
	}
	for i, p := range a.IPProfiles {
		v.profileName(fmt.Sprintf("acme.ip_profiles[%d]", i), p)
	}
	for i, s := range v.c.Sites {
		if s.Profile != "" {
			v.profileName(fmt.Sprintf("sites[%d].profile", i), s.Profile)
		}
	}
}

func (v *validator) profileName(path, p string) {
	for _, r := range p {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || strings.ContainsRune("-_.", r)) {
			v.errorf(path, "invalid profile name %q: letters, digits, - _ and . only (classic, tlsserver, shortlived...)", p)
			return
		}
	}
}

// ipSiteHost checks h at hp when it is an IP address and reports whether
// it was one. An IP host is written bare and in canonical form (::1, not
// [::1] or 0:0::1), takes its certificate by http-01 or tls-alpn-01
// (RFC 8738: no dns-01 for IP identifiers), and its site must ask for a
// profile listed in acme.ip_profiles, since CAs issue IP certificates
// under such profiles only.
func (v *validator) ipSiteHost(hp, h string, s Site) bool {
	bare := strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	addr, err := netip.ParseAddr(bare)
	if err != nil {
		return false
	}
	switch {
	case bare != h || addr.String() != h || addr.Zone() != "":
		v.errorf(hp, "IP address host %q: write it as %s", h, addr.WithZone("").String())
	case s.DNS != "":
		v.errorf(hp, "IP address host %q cannot use dns: (DNS-01 validates names only, RFC 8738): remove dns from this site", h)
	}
	site, _, _ := strings.Cut(hp, ".hosts")
	profile := v.c.SiteProfile(s)
	ips := v.c.ACME.IPProfiles
	if !slices.Contains(ips, profile) {
		asked := fmt.Sprintf("profile %q", profile)
		if profile == "" {
			asked = "no profile (the CA's default)"
		}
		v.errorf(hp, "IP address host %q needs an IP certificate, which CAs issue only under the profiles in acme.ip_profiles %v; site %s asks for %s: set %s.profile (or acme.profile) to one of them",
			h, ips, siteName(s, site), asked, site)
	}
	return true
}
