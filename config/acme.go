package config

import (
	"fmt"
	"maps"
	"math"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"time"
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

// MinARIRefresh is the shortest acme.ari_refresh accepted.
const MinARIRefresh = time.Second

// acmeRenewal checks renew_at against renewal_window_ratio, and
// ari_refresh.
func (v *validator) acmeRenewal() {
	a := v.c.ACME
	if a.ARIRefresh != 0 && a.ARIRefresh < MinARIRefresh {
		v.errorf("acme.ari_refresh", "ari_refresh %v must be 0 (follow the CA's Retry-After) or at least %v", a.ARIRefresh, MinARIRefresh)
	}
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

// CA is one certificate authority of acme.ca's list form, written as its
// name or URL alone or as a mapping. Certificates are ordered from the
// first; when it fails to issue, the next is tried.
type CA struct {
	// URL is a CA name (letsencrypt, letsencrypt-staging, zerossl) or an
	// https ACME directory URL; Directory is the URL it resolves to.
	URL       string `yaml:"url,shorthand"`
	Directory string `yaml:"-"`
	// EAB is this CA's external account binding (ZeroSSL: eab.key_id and
	// eab.hmac_key_file from its dashboard). Unset: acme.eab.
	EAB EAB `yaml:"eab"`
	// Profile is the ACME profile asked for at this CA by sites without a
	// profile of their own ("": acme.profile).
	Profile string `yaml:"profile"`
	// CARootFile: PEM roots for this CA's own HTTPS API. "": acme.ca_root_file.
	CARootFile string `yaml:"ca_root_file"`
	// CAA is the CA's issuer domain in CAA records (RFC 8659 section 4.2),
	// which preflight looks for: default letsencrypt.org for Let's Encrypt,
	// sectigo.com for ZeroSSL; a CA given by URL has none unless set here.
	CAA string `yaml:"caa"`
}

// DefaultCAAIdentity is the CAA issuer domain of each named CA.
func DefaultCAAIdentity(name string) string {
	switch name {
	case "letsencrypt", "letsencrypt-staging", LetsEncryptDirectory, LetsEncryptStagingDirectory:
		return "letsencrypt.org"
	case "zerossl", ZeroSSLDirectory:
		return "sectigo.com"
	}
	return ""
}

// applyCADefaults resolves acme.ca: the first CA of the list form becomes
// CA and CADirectory (as the single form sets them), each CA's Directory
// and CAA identity are filled in.
func (a *ACME) applyCADefaults() {
	if len(a.CAs) > 0 && a.CAs[0].URL != "" {
		a.CA = a.CAs[0].URL
	}
	setStr(&a.CA, DefaultCA)
	a.CADirectory = caDirectory(a.CA)
	for i := range a.CAs {
		c := &a.CAs[i]
		c.Directory = caDirectory(c.URL)
		setStr(&c.CAA, DefaultCAAIdentity(c.URL))
	}
}

func caDirectory(ca string) string {
	if dir, ok := CADirectories()[ca]; ok {
		return dir
	}
	return ca
}

// CAList returns the CAs to order from, in order: acme.ca's list form
// with acme.eab and acme.ca_root_file filled in where a CA sets none of
// its own, or the one CA of the single form. Call after ApplyDefaults.
func (a ACME) CAList() []CA {
	if len(a.CAs) == 0 {
		return []CA{{URL: a.CA, Directory: a.CADirectory, EAB: a.EAB, CARootFile: a.CARootFile, CAA: DefaultCAAIdentity(a.CA)}}
	}
	out := slices.Clone(a.CAs)
	for i := range out {
		if out[i].EAB.KeyID == "" && out[i].EAB.HMACKey == "" {
			out[i].EAB = a.EAB
		}
		if out[i].CARootFile == "" {
			out[i].CARootFile = a.CARootFile
		}
	}
	return out
}

// CAPath is the config path of the i-th CA of CAList, for errors:
// "acme.ca" in the single forms, "acme.ca[i]" in a list.
func (c *Config) CAPath(i int) string {
	if p := fmt.Sprintf("acme.ca[%d]", i); c.vals != nil {
		if _, ok := c.vals[p]; ok {
			return p
		}
	}
	return "acme.ca"
}

// acmeCAs checks acme.ca, in either form, and the EAB of each CA.
func (v *validator) acmeCAs() {
	a := v.c.ACME
	v.eab("acme.eab", a.EAB)
	if len(a.CAs) == 0 {
		v.caURL("acme.ca", a.CA)
		return
	}
	seen := map[string]string{}
	for i, ca := range a.CAs {
		p := v.c.CAPath(i)
		up := p
		if _, ok := v.c.vals[p+".url"]; ok {
			up = p + ".url"
		}
		if ca.URL == "" {
			v.errorf(p, "a CA needs url: a name (%s) or an https directory URL", strings.Join(slices.Sorted(maps.Keys(CADirectories())), ", "))
			continue
		}
		v.caURL(up, ca.URL)
		if first, dup := seen[ca.Directory]; dup {
			v.errorf(up, "CA %q is listed twice (first at %s)", ca.URL, v.where(first))
		}
		seen[ca.Directory] = up
		v.eab(p+".eab", ca.EAB)
		if ca.Profile != "" {
			v.profileName(p+".profile", ca.Profile)
		}
		v.secretsIn(reflect.ValueOf(ca), p)
	}
	for i, ca := range a.CAList() {
		if ca.Directory == ZeroSSLDirectory && ca.EAB.KeyID == "" && a.Email == "" {
			v.errorf(v.c.CAPath(i), "zerossl needs external account binding: set eab.key_id and eab.hmac_key_file (from ZeroSSL's developer page), or acme.email to have one generated")
		}
	}
}

func (v *validator) caURL(path, ca string) {
	if _, known := CADirectories()[ca]; known {
		return
	}
	if u, msg := checkURL(ca, "https"); u == nil && strings.Contains(msg, "port") {
		v.errorf(path, "invalid CA directory URL %q: %s", ca, msg)
	} else if u == nil {
		names := slices.Sorted(maps.Keys(CADirectories()))
		v.errorf(path, "unknown CA %q: expected %s or an https directory URL%s",
			ca, strings.Join(names, ", "), suggest(ca, names))
	}
}

func (v *validator) eab(path string, e EAB) {
	switch {
	case e.KeyID != "" && e.HMACKey == "":
		v.errorf(path+".hmac_key", "eab.key_id needs hmac_key or hmac_key_file")
	case e.KeyID == "" && e.HMACKey != "":
		v.errorf(path+".key_id", "eab.hmac_key needs key_id")
	}
}
