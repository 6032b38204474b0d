package auth

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"time"
)

// AdminScope is the scope that makes a key an admin key.
const AdminScope = "keygate:admin"

// RateLimit is a token bucket: RPS tokens a second, at most Burst at once.
// A zero RPS means unlimited.
type RateLimit struct {
	RPS   float64
	Burst int
}

// Key is an immutable snapshot of one key as the hot path needs it. Values
// are shared between goroutines through the cache: never modify one after
// it has been returned by a KeyStore.
type Key struct {
	ID          string
	Name        string
	User        string
	Application string
	Tenant      string
	// Scopes are route names the key may use; empty means every route.
	Scopes []string
	// ScopesHeader is Scopes joined with "," (precomputed for the
	// identity header).
	ScopesHeader string
	Enabled      bool
	// ExpiresAt is when the key stops working. Zero means never.
	ExpiresAt time.Time
	// Previous is true when the digest this Key was looked up by is the
	// key's previous (rotated-out) secret; PreviousExpiresAt is the end of
	// its grace period.
	Previous          bool
	PreviousExpiresAt time.Time
	// IPAllowlist restricts client addresses. Empty means any address.
	IPAllowlist []netip.Prefix
	// RateLimit is the key's own limit; nil means the configured default.
	RateLimit       *RateLimit
	SessionsAllowed bool
	// SessionEpoch is bumped to end every session minted from the key.
	SessionEpoch int64
}

// KeyStore finds keys. Implementations return ErrKeyNotFound when no key
// matches and ErrStoreUnavailable (possibly wrapped) when they cannot answer.
type KeyStore interface {
	// LookupKey returns the key whose current or previous secret has the
	// given SHA-256 digest.
	LookupKey(ctx context.Context, digest [32]byte) (*Key, error)
	// LookupKeyID returns the key with the given id (used for sessions,
	// which carry an id, not a secret). Previous is always false. id is
	// valid only during the call (the proxy passes a view of a request
	// buffer): an implementation that keeps it must copy it.
	LookupKeyID(ctx context.Context, id string) (*Key, error)
}

// Errors a request's credential can fail with. The proxy maps each to one
// status and one JSON error code (CONTRACT §4).
var (
	ErrKeyNotFound      = errors.New("auth: key not found")
	ErrStoreUnavailable = errors.New("auth: key store unavailable")
	ErrMissingKey       = errors.New("auth: no credential")
	ErrInvalidKey       = errors.New("auth: invalid key")
	ErrAmbiguous        = errors.New("auth: ambiguous credentials")
	ErrKeyDisabled      = errors.New("auth: key disabled")
	ErrKeyExpired       = errors.New("auth: key expired")
	ErrIPNotAllowed     = errors.New("auth: client IP not allowed")
	ErrRouteNotAllowed  = errors.New("auth: route not allowed")
	ErrRateLimited      = errors.New("auth: rate limited")
	ErrSessionInvalid   = errors.New("auth: session invalid")
)

// IsAdmin reports whether the key carries the admin scope.
func (k *Key) IsAdmin() bool {
	for _, s := range k.Scopes {
		if s == AdminScope {
			return true
		}
	}
	return false
}

// AllowsRoute reports whether the key may use the named route: every route
// when it has no scopes, none when its only scope is the admin scope.
func (k *Key) AllowsRoute(route string) bool {
	if len(k.Scopes) == 0 {
		return true
	}
	for _, s := range k.Scopes {
		if s == route && s != AdminScope {
			return true
		}
	}
	return false
}

// AllowsIP reports whether addr is inside the allowlist. An invalid addr
// (an unparsable client IP) is refused whenever there is an allowlist, so a
// bad X-Forwarded-For chain fails closed. An IPv4-mapped IPv6 addr is
// matched as IPv4, and an IPv6 zone is ignored (netip.Prefix.Contains
// would otherwise never match a zoned address).
func (k *Key) AllowsIP(addr netip.Addr) bool {
	if len(k.IPAllowlist) == 0 {
		return true
	}
	if !addr.IsValid() {
		return false
	}
	addr = addr.Unmap().WithZone("")
	for _, p := range k.IPAllowlist {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// CheckState returns ErrKeyDisabled or ErrKeyExpired when the key may not be
// used at now, nil otherwise. Expiry is checked against the clock on every
// call, whatever a cache holds.
func (k *Key) CheckState(now time.Time) error {
	if !k.Enabled {
		return ErrKeyDisabled
	}
	if !k.ExpiresAt.IsZero() && !now.Before(k.ExpiresAt) {
		return ErrKeyExpired
	}
	if k.Previous && !now.Before(k.PreviousExpiresAt) {
		return ErrKeyExpired
	}
	return nil
}

// LogValue keeps log lines to the key's id; a Key never holds a secret, but
// the allowlist and scopes need not fill every log line either.
func (k *Key) LogValue() slog.Value {
	if k == nil {
		return slog.StringValue("<nil>")
	}
	return slog.StringValue(k.ID)
}
