package store

// SKELETON: the signatures below are the agreed API between the key service
// (store) and its callers (admin, cmd). The service helper replaces every
// body; nothing here may remain "not implemented" when the work lands.

import (
	"context"
	"errors"
	"net/url"
	"time"
)

var errNotImplemented = errors.New("store: not implemented yet")

// Options configure a Service. Zero values are documented per field.
type Options struct {
	// KeyPrefix is the prefix of generated keys; "kg" when empty.
	KeyPrefix string
	// AcceptForeignKeys allows importing secrets not in keygate's format
	// (at least 24 characters).
	AcceptForeignKeys bool
	// DefaultLifetime is the expiry given to keys created without one.
	// Zero means such keys never expire.
	DefaultLifetime time.Duration
	// MaxLifetime caps expiry; zero means no cap. With a cap, keys that
	// would never expire are refused.
	MaxLifetime time.Duration
	// MaxPerApplication caps keys per application; zero means no cap.
	MaxPerApplication int
	// Sealer, when non-nil, keeps each new secret encrypted so admins can
	// retrieve it (keys.retrievable).
	Sealer *Sealer
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// OnChange is called after each committed change, for local cache
	// invalidation. Nil means no call.
	OnChange func(Change)
}

// Actor is who makes a change: an admin key's id (empty for the system,
// recorded as "system") and the client IP.
type Actor struct {
	KeyID string
	IP    string
}

// Created is the result of a create, import or bootstrap: the key, its
// secret (shown once) and warnings for the caller.
type Created struct {
	Key      *Key
	Secret   string
	Warnings []string
}

// Rotated is the result of a rotation.
type Rotated struct {
	Key               *Key
	Secret            string
	PreviousExpiresAt *time.Time
}

// BulkResult is one id's outcome of a bulk action.
type BulkResult struct {
	ID    string `json:"id"`
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

// Service enforces keygate's key rules over a Backend.
type Service struct {
	b    Backend
	opts Options
}

// NewService returns a Service over b.
func NewService(b Backend, o Options) *Service { return &Service{b: b, opts: o} }

// Create creates a key from a JSON object (CONTRACT §3 fields, plus
// "expires_in" and, to import, "secret").
func (s *Service) Create(ctx context.Context, a Actor, body []byte) (*Created, error) {
	return nil, errNotImplemented
}

// Get returns one key.
func (s *Service) Get(ctx context.Context, id string) (*Key, error) { return nil, errNotImplemented }

// List lists keys by the admin API's query parameters (q, status, user,
// application, tenant, tag, expires_before, limit, cursor).
func (s *Service) List(ctx context.Context, q url.Values) (keys []*Key, nextCursor string, err error) {
	return nil, "", errNotImplemented
}

// Lookup returns the key a secret belongs to.
func (s *Service) Lookup(ctx context.Context, secret string) (*Key, error) {
	return nil, errNotImplemented
}

// Update applies a JSON merge patch of mutable fields.
func (s *Service) Update(ctx context.Context, a Actor, id string, patch []byte) (*Key, error) {
	return nil, errNotImplemented
}

// SetEnabled enables or disables a key.
func (s *Service) SetEnabled(ctx context.Context, a Actor, id string, enabled bool) (*Key, error) {
	return nil, errNotImplemented
}

// Rotate issues a new secret; the previous one works for grace.
func (s *Service) Rotate(ctx context.Context, a Actor, id string, grace time.Duration) (*Rotated, error) {
	return nil, errNotImplemented
}

// Secret returns a retrievable key's secret (audited).
func (s *Service) Secret(ctx context.Context, a Actor, id string) (string, error) {
	return "", errNotImplemented
}

// RevokeSessions ends every session minted from the key.
func (s *Service) RevokeSessions(ctx context.Context, a Actor, id string) (*Key, error) {
	return nil, errNotImplemented
}

// Delete deletes a key.
func (s *Service) Delete(ctx context.Context, a Actor, id string) error { return errNotImplemented }

// Bulk applies "delete", "enable" or "disable" to each id.
func (s *Service) Bulk(ctx context.Context, a Actor, action string, ids []string) ([]BulkResult, error) {
	return nil, errNotImplemented
}

// PurgeExpired deletes keys expired for at least expiredFor.
func (s *Service) PurgeExpired(ctx context.Context, a Actor, expiredFor time.Duration, dryRun bool) (int, error) {
	return 0, errNotImplemented
}

// Audit lists audit events by query parameters (key_id, actor, since,
// limit, cursor).
func (s *Service) Audit(ctx context.Context, q url.Values) ([]*AuditEvent, string, error) {
	return nil, "", errNotImplemented
}

// Counts returns the number of keys per status.
func (s *Service) Counts(ctx context.Context) (map[string]int, error) {
	return nil, errNotImplemented
}

// AdminKeyExists reports whether any admin key exists.
func (s *Service) AdminKeyExists(ctx context.Context) (bool, error) {
	return false, errNotImplemented
}

// Bootstrap creates an admin key, importing secret when non-empty.
// ErrAdminExists when one exists and force is false.
func (s *Service) Bootstrap(ctx context.Context, secret string, force bool) (*Created, error) {
	return nil, errNotImplemented
}

// SessionSecrets returns the session signing secrets: configured when
// non-empty, else one generated once and kept in the store's settings so
// every replica shares it.
func (s *Service) SessionSecrets(ctx context.Context, configured [][]byte) ([][]byte, error) {
	return nil, errNotImplemented
}

// Sealer encrypts retrievable secrets with AES-256-GCM under a key file.
type Sealer struct{ key [32]byte }
