package tlsmgr

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/mholt/acmez/v3/acme"
	"go.uber.org/zap"
)

// The reasons an explained ACME failure is filed under (the "reason" key
// of the "certificate order failed" log line), and that line's keys.
const (
	reasonCAUnreachable   = "ca_unreachable"
	reasonRateLimited     = "rate_limited"
	reasonChallenge       = "challenge_failed"
	reasonAccount         = "account"
	reasonCAA             = "caa"
	reasonRejected        = "rejected_identifier"
	reasonNoChallenge     = "no_challenge"
	reasonDNSProvider     = "dns_provider"
	reasonStorage         = "storage"
	reasonCAError         = "ca_error"
	reasonOther           = "other"
	logKeyReason          = "reason"
	logKeyExplanation     = "explanation"
	logKeyNextAttempt     = "next_attempt"
	msgOrderFailedExplain = "certificate order failed"
)

// explanation is an ACME failure in edge's own words: what went wrong,
// with the CA's detail, and what a person can check.
type explanation struct {
	reason string // one of the reason constants
	text   string // "CA unreachable: ...: check ..."
}

// explainFailure classifies err, the error certmagic's cert_failed event
// carries for name, from the ACME problem it wraps (RFC 8555 section 6.7,
// as acmez v3 decodes it: an acme.Problem whose Resource is the
// acme.Authorization when a challenge failed) or, without one, from the
// network, TLS and storage errors underneath. It never returns an empty
// text.
func explainFailure(name string, err error) explanation {
	if err == nil {
		return explanation{reasonOther, "order failed for an unknown reason"}
	}
	var prob acme.Problem
	if errors.As(err, &prob) {
		if authz, ok := prob.Resource.(acme.Authorization); ok {
			return explainChallenge(name, authz, prob)
		}
		return explainProblem(name, err, prob)
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "no solvers available"):
		return explanation{reasonNoChallenge, fmt.Sprintf("no challenge type can be used for %s (%s): list http-01 or tls-alpn-01 in acme.challenges, or give the site dns: (a wildcard needs dns-01)", name, innermost(err))}
	case strings.Contains(msg, "failed storage check"), strings.Contains(msg, "unable to acquire lock"), strings.Contains(msg, "unable to renew lock lease"), strings.Contains(msg, "saving assets"):
		return explanation{reasonStorage, fmt.Sprintf("storage failed: %s: check that the storage (the directory at storage.path, or Redis) is reachable and writable", innermost(err))}
	case strings.Contains(msg, "presenting for challenge"), strings.Contains(msg, "waiting for record to fully propagate"), strings.Contains(msg, "timed out waiting for record"):
		return explainDNSProvider(name, err, msg)
	}
	if cause, why, ok := caUnreachable(err); ok {
		return explanation{reasonCAUnreachable, fmt.Sprintf("CA unreachable: %s: %s", cause, why)}
	}
	// acmez wraps problems it could not decode as "HTTP 429: ..." text.
	if strings.Contains(msg, acme.ProblemTypeRateLimited) || strings.Contains(msg, "HTTP 429") {
		return explanation{reasonRateLimited, fmt.Sprintf("rate limited by the CA: %s: %s", innermost(err), rateLimitHint)}
	}
	return explanation{reasonOther, "order failed: " + innermost(err)}
}

const rateLimitHint = "orders for these names wait until the CA's window passes (its detail says when); try configuration changes against acme.ca: letsencrypt-staging, and share one storage between edges so that a farm orders each name once"

// explainProblem covers the problems the CA returns outside a challenge:
// at newAccount, newOrder, finalize or while fetching the certificate.
func explainProblem(name string, err error, p acme.Problem) explanation {
	detail := problemDetail(p)
	account := strings.Contains(err.Error(), "registering account")
	switch p.Type {
	case acme.ProblemTypeRateLimited:
		return explanation{reasonRateLimited, fmt.Sprintf("rate limited by the CA: %s: %s", detail, rateLimitHint)}
	case acme.ProblemTypeCAA:
		return explanation{reasonCAA, fmt.Sprintf("CAA forbids this CA to issue for %s: %s: add a CAA record such as `0 issue \"letsencrypt.org\"` (this CA's domain) at %s or its parent, or remove the record that excludes it (edge preflight checks CAA)", name, detail, name)}
	case acme.ProblemTypeExternalAccountRequired:
		return explanation{reasonAccount, fmt.Sprintf("account refused: the CA requires external account binding (%s): set acme.eab.key_id and acme.eab.hmac_key_file from the CA's account page", detail)}
	case acme.ProblemTypeAccountDoesNotExist:
		return explanation{reasonAccount, fmt.Sprintf("account refused: the CA does not know the stored ACME account (%s): it was deactivated or the CA's state was reset; certmagic registers a new one on the next attempt", detail)}
	case acme.ProblemTypeInvalidContact, acme.ProblemTypeUnsupportedContact:
		return explanation{reasonAccount, fmt.Sprintf("account refused: the CA does not accept the contact (%s): set acme.email to a deliverable address on a public domain", detail)}
	case acme.ProblemTypeUserActionRequired:
		return explanation{reasonAccount, fmt.Sprintf("account: the CA asks for an action (%s): usually new terms of service; open the URL in its detail", detail)}
	case acme.ProblemTypeRejectedIdentifier, acme.ProblemTypeUnsupportedIdentifier:
		return explanation{reasonRejected, fmt.Sprintf("the CA will not issue for %s: %s: remove the name from the site, or (an IP address) ask for a profile that allows IP certificates", name, detail)}
	case acme.ProblemTypeUnauthorized, acme.ProblemTypeMalformed, acme.ProblemTypeBadPublicKey:
		if account {
			return explanation{reasonAccount, fmt.Sprintf("account refused: %s: check acme.email and, if the CA uses them, acme.eab.key_id and hmac_key (a wrong or reused EAB key is refused this way)", detail)}
		}
	case acme.ProblemTypeServerInternal, acme.ProblemTypeBadNonce:
		return explanation{reasonCAError, fmt.Sprintf("the CA failed (%s): usually temporary; the CA's status page says more", detail)}
	}
	if account {
		return explanation{reasonAccount, fmt.Sprintf("account refused: %s", detail)}
	}
	if p.Status == 429 {
		return explanation{reasonRateLimited, fmt.Sprintf("rate limited by the CA: %s: %s", detail, rateLimitHint)}
	}
	if p.Status >= 500 {
		return explanation{reasonCAError, fmt.Sprintf("the CA failed (%s): usually temporary; the CA's status page says more", detail)}
	}
	return explanation{reasonCAError, fmt.Sprintf("the CA refused the order for %s: %s", name, detail)}
}

// explainChallenge covers a failed authorization: which challenge, what
// the CA saw, and where to look.
func explainChallenge(name string, authz acme.Authorization, p acme.Problem) explanation {
	ident := authz.IdentifierValue()
	if ident == "" {
		ident = name
	}
	typ := ""
	for _, ch := range authz.Challenges {
		if ch.Error != nil || ch.Status == acme.StatusInvalid {
			typ = ch.Type
			break
		}
	}
	detail := problemDetail(p)
	lower := strings.ToLower(detail)
	unreach := p.Type == acme.ProblemTypeConnection ||
		containsAny(lower, "connection refused", "timeout", "timed out", "no route to host", "network is unreachable", "connection reset")
	var hint string
	switch {
	case p.Type == acme.ProblemTypeCAA:
		return explanation{reasonCAA, fmt.Sprintf("CAA forbids this CA to issue for %s: %s: add a CAA record such as `0 issue \"letsencrypt.org\"` (this CA's domain), or remove the record that excludes it (edge preflight checks CAA)", ident, detail)}
	case p.Type == acme.ProblemTypeRateLimited:
		return explanation{reasonRateLimited, fmt.Sprintf("rate limited by the CA: %s: %s", detail, rateLimitHint)}
	case p.Type == acme.ProblemTypeDNS && typ != acme.ChallengeTypeDNS01:
		hint = fmt.Sprintf("the CA could not resolve %s: its A/AAAA records must point at edge (or at the load balancer in front of it)", ident)
	case typ == acme.ChallengeTypeHTTP01 && unreach:
		hint = fmt.Sprintf("the CA could not reach http://%s/.well-known/acme-challenge/: is port 80 forwarded to edge (listen.http), and does %s resolve to it?", ident, ident)
	case typ == acme.ChallengeTypeHTTP01:
		hint = fmt.Sprintf("something other than this edge answered http://%s/.well-known/acme-challenge/: check that %s points at edge and that nothing in front (a load balancer, a CDN, a redirect) answers that path; in a farm, share storage (storage: redis) or list the other edges in cluster.peers; edge preflight tries every path", ident, ident)
	case typ == acme.ChallengeTypeTLSALPN01 && unreach:
		hint = fmt.Sprintf("the CA could not reach %s:443: is port 443 forwarded to edge (listen.https)?", ident)
	case typ == acme.ChallengeTypeTLSALPN01:
		hint = "something before edge answered TLS on port 443 (a balancer or CDN terminating TLS): pass TCP through to edge, or leave tls-alpn-01 out of acme.challenges"
	case typ == acme.ChallengeTypeDNS01:
		hint = fmt.Sprintf("the CA did not find the right TXT record at _acme-challenge.%s: check the site's dns provider and, with delegate:, the CNAME (edge validate -check-dns)", strings.TrimPrefix(ident, "*."))
	default:
		hint = "edge preflight checks the HTTP-01 paths"
	}
	if typ == "" {
		typ = "the challenge"
	}
	return explanation{reasonChallenge, fmt.Sprintf("challenge failed: %s for %s: the CA says %q: %s", typ, ident, detail, hint)}
}

func explainDNSProvider(name string, err error, msg string) explanation {
	if strings.Contains(msg, "propagate") {
		return explanation{reasonDNSProvider, fmt.Sprintf("DNS-01 for %s: the TXT record did not show at acme.dns_resolvers within acme.dns_propagation_timeout (%s): check that the provider's zone is the one those resolvers ask, or raise the timeout", name, innermost(err))}
	}
	cause := innermost(err)
	// The provider's own words (its name, the zone, a hint) follow
	// acmez's "presenting for challenge: "; certmagic adds " (order=...)".
	if _, after, ok := strings.Cut(msg, "presenting for challenge: "); ok {
		cause, _, _ = strings.Cut(after, " (order=")
		cause, _, _ = strings.Cut(cause, " (ca=")
	}
	return explanation{reasonDNSProvider, fmt.Sprintf("DNS-01 for %s: the DNS provider did not take the TXT record (%s): check its token or TSIG key and that it may edit the zone", name, cause)}
}

// caUnreachable reports whether err is a failure to talk to the CA at all:
// DNS, TCP, TLS (an untrusted certificate names acme.ca_root_file), a
// timeout. cause is the most telling error's text.
func caUnreachable(err error) (cause, why string, ok bool) {
	var (
		uerr  *url.Error
		dns   *net.DNSError
		op    *net.OpError
		unk   x509.UnknownAuthorityError
		host  x509.HostnameError
		inval x509.CertificateInvalidError
		verr  *tls.CertificateVerificationError
		rec   tls.RecordHeaderError
	)
	const check = "check that this host reaches the CA's directory (acme.ca) over HTTPS: outbound 443, DNS, a proxy in between"
	switch {
	case errors.As(err, &unk), errors.As(err, &host), errors.As(err, &inval), errors.As(err, &verr):
		c := err.Error()
		if errors.As(err, &uerr) {
			c = uerr.Error()
		}
		return c, "the CA's HTTPS certificate is not trusted: for a private CA set acme.ca_root_file; else something intercepts TLS", true
	case errors.As(err, &rec):
		return err.Error(), "what answered is not TLS: check the scheme and port of acme.ca", true
	case errors.As(err, &dns):
		return dns.Error(), check, true
	case errors.As(err, &uerr):
		return uerr.Error(), check, true
	case errors.As(err, &op), errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded):
		return innermost(err), check, true
	}
	return "", "", false
}

// problemDetail is the CA's own words: the detail (or, without one, the
// type), then each subproblem's.
func problemDetail(p acme.Problem) string {
	d := p.Detail
	if d == "" {
		d = strings.TrimPrefix(p.Type, acme.ProblemTypeNamespace)
	}
	for _, sp := range p.Subproblems {
		d += "; " + sp.Detail
		if sp.Identifier.Value != "" {
			d += " (" + sp.Identifier.Value + ")"
		}
	}
	return d
}

// innermost drops certmagic's and acmez's prefixes ("[a.test] Obtain:
// [a.test] creating new order: attempt 3: https://...: ") down to the
// deepest wrapped error that still says something.
func innermost(err error) string {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err.Error()
		}
		var uerr *url.Error
		if errors.As(err, &uerr) && err == error(uerr) {
			return uerr.Error() // "Get "https://ca/dir": dial tcp ...": keeps the URL
		}
		err = next
	}
}

func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// logFailure writes one warn line in edge's words beside certmagic's own
// error for a failed order of name, with when certmagic tries again:
// retrySchedule after the failures in a row the status book counted (a
// renewal waits for the first renewal check after that; an on-demand
// name waits for its next handshake).
func (m *Manager) logFailure(name string, err error) {
	ex := explainFailure(name, err)
	ns, configured := m.status.get(name)
	fields := []zap.Field{zap.String("identifier", name), zap.String(logKeyReason, ex.reason)}
	text := ex.text
	onDemand := true
	for _, n := range configured {
		if n == name {
			onDemand = false
			break
		}
	}
	switch next := nextRetry(ns.failures, ns.at); {
	case onDemand:
		text += "; next attempt at the next handshake for the name"
	case !next.IsZero():
		text += "; next attempt in " + roundRetry(time.Until(next))
		fields = append(fields, zap.Time(logKeyNextAttempt, next))
	default:
		text += "; certmagic retries with back-off"
	}
	fields = append(fields, zap.String(logKeyExplanation, text))
	m.logger.Warn(msgOrderFailedExplain, fields...)
}

// roundRetry writes d as "45s", "2m" or "1h30m".
func roundRetry(d time.Duration) string {
	d = max(d, 0).Round(time.Second)
	if d < time.Minute {
		return d.String()
	}
	s := strings.TrimSuffix(d.Round(time.Minute).String(), "0s") // "2m", "1h0m", "1h30m"
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
