package admin

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"sync"
	"time"
)

// SessionCookie is the cookie POST /login sets: a random session id, never
// the token. It is HttpOnly, SameSite=Strict, Path=/ and, when the admin
// listener speaks TLS, Secure.
const SessionCookie = "edge_session"

// sessionTTL is how long a browser session lasts after its login.
const sessionTTL = 12 * time.Hour

// maxSessions bounds the sessions kept; a login beyond it drops the oldest.
const maxSessions = 1000

// session is one logged-in browser.
type session struct {
	expires time.Time
	// token is the SHA-256 of the admin token the login was made with: a
	// reload that rotates the token ends every session made with the old one.
	token [32]byte
}

// loginFailures is how many wrong tokens POST /login takes per
// loginWindow, from anyone, before it answers 429 until the window has
// room: a token cannot be guessed at network speed. The bearer token is
// not limited.
const (
	loginFailures = 10
	loginWindow   = time.Minute
)

// failedLogins remembers the times of the last loginFailures wrong tokens.
// The zero value is empty; safe for concurrent use.
type failedLogins struct {
	mu    sync.Mutex
	times []time.Time
}

// blocked reports whether loginFailures failures happened within
// loginWindow before now, and when the oldest of them leaves the window.
func (f *failedLogins) blocked(now time.Time) (bool, time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.times) < loginFailures {
		return false, time.Time{}
	}
	until := f.times[0].Add(loginWindow)
	return now.Before(until), until
}

func (f *failedLogins) add(now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.times = append(f.times, now)
	if len(f.times) > loginFailures {
		f.times = f.times[len(f.times)-loginFailures:]
	}
}

// sessions are the browser sessions made by POST /login. The zero value is
// empty and ready; safe for concurrent use.
type sessions struct {
	mu sync.Mutex
	m  map[string]session
}

// create makes a session for a login with token and returns its id: 32
// random bytes, base64url.
func (s *sessions) create(token string, now time.Time) (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	id := base64.RawURLEncoding.EncodeToString(b[:])
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]session{}
	}
	for k, v := range s.m {
		if now.After(v.expires) {
			delete(s.m, k)
		}
	}
	for len(s.m) >= maxSessions {
		oldest, at := "", time.Time{}
		for k, v := range s.m {
			if oldest == "" || v.expires.Before(at) {
				oldest, at = k, v.expires
			}
		}
		delete(s.m, oldest)
	}
	s.m[id] = session{expires: now.Add(sessionTTL), token: sha256.Sum256([]byte(token))}
	return id, nil
}

// valid reports whether r carries the cookie of a live session made with
// the current token.
func (s *sessions) valid(r *http.Request, token string, now time.Time) bool {
	c, err := r.Cookie(SessionCookie)
	if err != nil || c.Value == "" {
		return false
	}
	s.mu.Lock()
	v, ok := s.m[c.Value]
	s.mu.Unlock()
	if !ok || now.After(v.expires) {
		return false
	}
	want := sha256.Sum256([]byte(token))
	return subtle.ConstantTimeCompare(v.token[:], want[:]) == 1
}

// end forgets r's session, if any.
func (s *sessions) end(r *http.Request) {
	if c, err := r.Cookie(SessionCookie); err == nil {
		s.mu.Lock()
		delete(s.m, c.Value)
		s.mu.Unlock()
	}
}

// sessionCookie is the cookie for id; maxAge < 0 deletes it.
func sessionCookie(r *http.Request, id string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name:     SessionCookie,
		Value:    id,
		Path:     "/",
		MaxAge:   maxAge,
		HttpOnly: true,
		Secure:   r.TLS != nil,
		SameSite: http.SameSiteStrictMode,
	}
}

// tokenMatches compares a presented token with the configured one in
// constant time (their lengths aside).
func tokenMatches(got, want string) bool {
	return want != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}
