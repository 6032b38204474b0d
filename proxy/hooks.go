package proxy

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/keygate/keygate/auth"
)

// KeyLimiter is the RateLimiter over auth's token buckets: a key's own
// limit, or Default for keys without one.
type KeyLimiter struct {
	// Limiter holds the buckets. Required.
	Limiter *auth.Limiter
	// Default applies to keys without their own limit. A zero RPS means
	// unlimited (no bucket is kept).
	Default auth.RateLimit
}

var _ RateLimiter = KeyLimiter{}

// Allow implements RateLimiter.
func (l KeyLimiter) Allow(k *auth.Key, now time.Time) (bool, time.Duration) {
	rl := l.Default
	if k.RateLimit != nil {
		rl = *k.RateLimit
	}
	return l.Limiter.Allow(k.ID, rl, now)
}

// SignedSessions is the Sessions hook over auth's signed cookies
// (CONTRACT §4.6). Use it by pointer.
type SignedSessions struct {
	// Signer mints and verifies cookie values. Required.
	Signer *auth.SessionSigner
	// Cookie is the cookie's name. Empty means "keygate_session".
	Cookie string
	// TTL is a session's lifetime. Zero means one hour.
	TTL time.Duration
	// Secure adds the Secure attribute.
	Secure bool
	// SameSite is "lax", "strict" or "none" (any case). Empty means lax.
	SameSite string
}

var _ Sessions = (*SignedSessions)(nil)

// CookieName implements Sessions.
func (s *SignedSessions) CookieName() string {
	if s.Cookie == "" {
		return "keygate_session"
	}
	return s.Cookie
}

// Verify implements Sessions without allocating (auth's VerifyAppend).
func (s *SignedSessions) Verify(dst, value []byte, now time.Time) ([]byte, int64, error) {
	id, sess, err := s.Signer.VerifyAppend(dst, value, now)
	if err != nil {
		return dst, 0, err
	}
	return id, sess.Epoch, nil
}

// Issue implements Sessions: an HttpOnly cookie for the whole site that
// lasts TTL and names only the key id and its session epoch, signed.
func (s *SignedSessions) Issue(k *auth.Key, now time.Time) (string, error) {
	ttl := s.TTL
	if ttl <= 0 {
		ttl = time.Hour
	}
	b := make([]byte, 0, 256)
	b = append(b, s.CookieName()...)
	b = append(b, '=')
	b, err := s.Signer.AppendCookieValue(b, k.ID, k.SessionEpoch, now, now.Add(ttl))
	if err != nil {
		return "", err
	}
	b = append(b, "; Path=/; Max-Age="...)
	b = strconv.AppendInt(b, int64(ttl/time.Second), 10)
	return s.attributes(b), nil
}

// Clear implements Sessions.
func (s *SignedSessions) Clear() string {
	return s.attributes([]byte(s.CookieName() + "=; Path=/; Max-Age=0"))
}

func (s *SignedSessions) attributes(b []byte) string {
	b = append(b, "; HttpOnly"...)
	if s.Secure {
		b = append(b, "; Secure"...)
	}
	switch strings.ToLower(s.SameSite) {
	case "strict":
		b = append(b, "; SameSite=Strict"...)
	case "none":
		b = append(b, "; SameSite=None"...)
	default:
		b = append(b, "; SameSite=Lax"...)
	}
	return string(b)
}

// timedKeyStore is an auth.KeyStore that can take the time of the request
// instead of reading the clock again (cache.Cache): with the real clock,
// the answer is the same and the hot path saves a clock read.
type timedKeyStore interface {
	LookupKeyAt(ctx context.Context, digest [32]byte, now time.Time) (*auth.Key, error)
}
