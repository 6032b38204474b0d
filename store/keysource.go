package store

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/keygate/keygate/auth"
)

// KeySource answers the hot path's lookups (auth.KeyStore) from a Backend.
// The cache decorates it; it keeps nothing itself.
type KeySource struct{ b Backend }

var _ auth.KeyStore = (*KeySource)(nil)

// NewKeySource returns a KeySource over b.
func NewKeySource(b Backend) *KeySource { return &KeySource{b: b} }

// LookupKey returns the key whose current or previous secret has digest.
func (s *KeySource) LookupKey(ctx context.Context, digest [32]byte) (*auth.Key, error) {
	k, err := s.b.LookupDigest(ctx, digest)
	if err != nil {
		return nil, authError(err)
	}
	if !k.answersTo(digest) { // never trust a damaged index: fail closed
		return nil, auth.ErrKeyNotFound
	}
	return ToAuthKey(k, digest), nil
}

// answersTo reports whether d is the key's current or previous secret.
func (k *Key) answersTo(d [32]byte) bool {
	return d == k.Digest || (k.HasPrevious() && d == k.PreviousDigest)
}

// LookupKeyID returns the key with id, as looked up by its current secret.
func (s *KeySource) LookupKeyID(ctx context.Context, id string) (*auth.Key, error) {
	var k *Key
	err := s.b.View(ctx, func(tx Tx) (err error) {
		k, err = tx.GetKey(id)
		return err
	})
	if err != nil {
		return nil, authError(err)
	}
	return ToAuthKey(k, k.Digest), nil
}

// authError maps store errors to auth's: a missing key is
// auth.ErrKeyNotFound; any other failure means the store could not answer.
func authError(err error) error {
	if errors.Is(err, ErrNotFound) {
		return auth.ErrKeyNotFound
	}
	return fmt.Errorf("%w: %w", auth.ErrStoreUnavailable, err)
}

// ToAuthKey converts a stored key into the hot path's immutable view, as
// found by digest: Previous is set when digest is the key's previous
// (rotated-out) secret rather than its current one. Allowlist entries are
// parsed here once; an entry that does not parse becomes a prefix that
// matches nothing, so a damaged allowlist fails closed rather than open.
func ToAuthKey(k *Key, digest [32]byte) *auth.Key {
	a := &auth.Key{
		ID:              k.ID,
		Name:            k.Name,
		User:            k.User,
		Application:     k.Application,
		Tenant:          k.Tenant,
		Scopes:          append([]string(nil), k.Scopes...),
		ScopesHeader:    strings.Join(k.Scopes, ","),
		Enabled:         k.Enabled,
		SessionsAllowed: k.SessionsAllowed,
		SessionEpoch:    k.SessionEpoch,
	}
	if k.ExpiresAt != nil {
		a.ExpiresAt = *k.ExpiresAt
	}
	if digest != k.Digest && k.HasPrevious() && digest == k.PreviousDigest {
		a.Previous = true
		// A previous secret without an end is over: the zero time is
		// before every now.
		if k.PreviousSecretExpiresAt != nil {
			a.PreviousExpiresAt = *k.PreviousSecretExpiresAt
		}
	}
	if len(k.IPAllowlist) > 0 {
		a.IPAllowlist = make([]netip.Prefix, 0, len(k.IPAllowlist))
		for _, e := range k.IPAllowlist {
			p, _ := parseAllowEntry(e) // zero Prefix on failure: contains nothing
			a.IPAllowlist = append(a.IPAllowlist, p)
		}
	}
	if k.RateLimit != nil {
		a.RateLimit = &auth.RateLimit{RPS: k.RateLimit.RPS, Burst: k.RateLimit.Burst}
	}
	return a
}
