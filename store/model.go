package store

import (
	"context"
	"errors"
	"time"
)

// Key statuses (derived, never stored).
const (
	StatusActive   = "active"
	StatusDisabled = "disabled"
	StatusExpired  = "expired"
)

// RateLimit is a key's own limit. A zero RPS means unlimited.
type RateLimit struct {
	RPS   float64 `json:"rps"`
	Burst int     `json:"burst"`
}

// Key is one key as stored. The JSON form is the admin API's (CONTRACT §3);
// digests, the sealed secret and the session epoch never leave the process.
type Key struct {
	ID                       string            `json:"id"`
	Name                     string            `json:"name"`
	Description              string            `json:"description"`
	User                     string            `json:"user"`
	Application              string            `json:"application"`
	Tenant                   string            `json:"tenant"`
	Tags                     []string          `json:"tags"`
	Scopes                   []string          `json:"scopes"`
	IPAllowlist              []string          `json:"ip_allowlist"`
	ClientName               string            `json:"client_name"`
	Notes                    string            `json:"notes"`
	Metadata                 map[string]string `json:"metadata"`
	Enabled                  bool              `json:"enabled"`
	SessionsAllowed          bool              `json:"sessions_allowed"`
	Status                   string            `json:"status"`
	ExpiresAt                *time.Time        `json:"expires_at"`
	CreatedAt                time.Time         `json:"created_at"`
	UpdatedAt                time.Time         `json:"updated_at"`
	LastUsedAt               *time.Time        `json:"last_used_at"`
	RateLimit                *RateLimit        `json:"rate_limit"`
	Hint                     string            `json:"hint"`
	SecretRotatedAt          *time.Time        `json:"secret_rotated_at"`
	PreviousSecretExpiresAt  *time.Time        `json:"previous_secret_expires_at"`
	PreviousSecretLastUsedAt *time.Time        `json:"previous_secret_last_used_at"`

	// SessionEpoch is bumped to end every session minted from the key.
	SessionEpoch int64 `json:"-"`
	// Digest is SHA-256 of the current secret.
	Digest [32]byte `json:"-"`
	// PreviousDigest is SHA-256 of the rotated-out secret, valid until
	// PreviousSecretExpiresAt. Zero (all bytes 0) means none.
	PreviousDigest [32]byte `json:"-"`
	// SealedSecret is the secret encrypted under the keystore key when
	// keys.retrievable is on; nil otherwise.
	SealedSecret []byte `json:"-"`
}

// HasPrevious reports whether a previous secret is recorded.
func (k *Key) HasPrevious() bool { return k.PreviousDigest != [32]byte{} }

// StatusAt derives the key's status at now.
func (k *Key) StatusAt(now time.Time) string {
	switch {
	case !k.Enabled:
		return StatusDisabled
	case k.ExpiresAt != nil && !now.Before(*k.ExpiresAt):
		return StatusExpired
	default:
		return StatusActive
	}
}

// Clone returns a deep copy, so callers may modify it freely.
func (k *Key) Clone() *Key {
	c := *k
	c.Tags = cloneStrings(k.Tags)
	c.Scopes = cloneStrings(k.Scopes)
	c.IPAllowlist = cloneStrings(k.IPAllowlist)
	if k.Metadata != nil {
		c.Metadata = make(map[string]string, len(k.Metadata))
		for n, v := range k.Metadata {
			c.Metadata[n] = v
		}
	}
	c.ExpiresAt = cloneTime(k.ExpiresAt)
	c.LastUsedAt = cloneTime(k.LastUsedAt)
	c.SecretRotatedAt = cloneTime(k.SecretRotatedAt)
	c.PreviousSecretExpiresAt = cloneTime(k.PreviousSecretExpiresAt)
	c.PreviousSecretLastUsedAt = cloneTime(k.PreviousSecretLastUsedAt)
	if k.RateLimit != nil {
		rl := *k.RateLimit
		c.RateLimit = &rl
	}
	if k.SealedSecret != nil {
		c.SealedSecret = append([]byte(nil), k.SealedSecret...)
	}
	return &c
}

func cloneStrings(s []string) []string {
	if s == nil {
		return nil
	}
	return append([]string{}, s...)
}

func cloneTime(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	c := *t
	return &c
}

// AuditEvent records one change made through the key service. Changes never
// hold a secret or a digest.
type AuditEvent struct {
	ID      string                 `json:"id"`
	At      time.Time              `json:"at"`
	Actor   string                 `json:"actor"`
	Action  string                 `json:"action"`
	KeyID   string                 `json:"key_id"`
	IP      string                 `json:"ip"`
	Changes map[string]FieldChange `json:"changes"`
}

// FieldChange is one field's value before and after a change.
type FieldChange struct {
	Before any `json:"before"`
	After  any `json:"after"`
}

// ListFilter selects keys. Zero fields do not filter. Results are ordered
// by ID ascending (IDs sort by creation time), starting after AfterID.
type ListFilter struct {
	// Q matches name, description or hint: substring, case-insensitive.
	Q             string
	Status        string // active | disabled | expired, derived at Now
	User          string
	Application   string
	Tenant        string
	Tag           string
	ExpiresBefore *time.Time
	// ExpiredBefore selects keys whose expires_at is before this time
	// (used by purge-expired).
	ExpiredBefore *time.Time
	AfterID       string
	// Limit is the most keys returned; zero means no limit.
	Limit int
	// Now is the clock used for Status.
	Now time.Time
}

// AuditFilter selects audit events, ordered by ID ascending, after AfterID.
type AuditFilter struct {
	KeyID   string
	Actor   string
	Since   *time.Time
	AfterID string
	Limit   int
}

// Change tells caches which entries a committed write made stale: every
// entry of KeyID and, for negative entries, each digest the key now answers
// to.
type Change struct {
	KeyID   string
	Digests [][32]byte
}

// Usage is one key's last use, recorded in memory by the proxy and written
// in batches.
type Usage struct {
	KeyID    string
	At       time.Time
	Previous bool // the previous (rotated-out) secret was used
}

// Backend is what a key store implementation provides. Every write happens
// inside Update, so a change and its audit event commit together or not at
// all.
type Backend interface {
	// Update runs fn in a read-write transaction. When fn returns an error,
	// or the commit fails, nothing fn did is kept. Changes to keys are
	// published (see Watch) when the transaction commits.
	Update(ctx context.Context, fn func(Tx) error) error
	// View runs fn in a read-only transaction.
	View(ctx context.Context, fn func(Tx) error) error
	// LookupDigest returns the key whose current or previous secret has
	// this digest, outside any transaction (the hot path's store query).
	LookupDigest(ctx context.Context, digest [32]byte) (*Key, error)
	// ScanKeys calls fn for every key, in no particular order, until fn
	// returns an error.
	ScanKeys(ctx context.Context, fn func(*Key) error) error
	// RecordUsage sets last_used_at (or previous_secret_last_used_at) for
	// each entry, keeping the later time, in one statement or transaction,
	// without an audit event and without publishing a Change.
	RecordUsage(ctx context.Context, usage []Usage) error
	// Watch calls fn for each Change committed by any process sharing the
	// store, until ctx ends; it returns ctx's error then. Embedded stores
	// are single-process and report their own commits. Postgres listens
	// for notifications and resyncs periodically to cover lost ones;
	// resync reports fn with Resync set.
	Watch(ctx context.Context, fn func(c Change, resync bool)) error
	// Ping reports whether the store can answer.
	Ping(ctx context.Context) error
	Close() error
}

// Tx is a transaction. Methods return ErrNotFound for missing rows and
// ErrUnavailable (wrapped) when the store cannot answer.
type Tx interface {
	// GetKey returns the key; in Update it also locks it until commit.
	GetKey(id string) (*Key, error)
	KeyByName(application, name string) (*Key, error)
	KeyByDigest(digest [32]byte) (*Key, error)
	// CountApplicationKeys counts the application's keys. In Update it
	// also serializes concurrent creates in that application until commit,
	// so a max_per_application check cannot be raced.
	CountApplicationKeys(application string) (int, error)
	// AdminKeyExists reports whether any key has the keygate:admin scope.
	AdminKeyExists() (bool, error)
	// InsertKey stores a new key; ErrNameTaken when (application, name) is
	// taken, ErrSecretTaken when a digest is already in use.
	InsertKey(k *Key) error
	// UpdateKey replaces a key's stored fields and digests; ErrNotFound,
	// ErrNameTaken or ErrSecretTaken.
	UpdateKey(k *Key) error
	// DeleteKey removes a key and its secrets; ErrNotFound.
	DeleteKey(id string) error
	ListKeys(f ListFilter) ([]*Key, error)
	// CountByStatus counts keys per derived status at now.
	CountByStatus(now time.Time) (map[string]int, error)
	AppendAudit(ev *AuditEvent) error
	ListAudit(f AuditFilter) ([]*AuditEvent, error)
	// Setting returns a shared setting; ErrNotFound when unset.
	Setting(name string) ([]byte, error)
	// PutSetting sets a shared setting, replacing any value.
	PutSetting(name string, value []byte) error
}

// Errors of the store and the key service.
var (
	ErrNotFound         = errors.New("not found")
	ErrNameTaken        = errors.New("a key with this name already exists in the application")
	ErrSecretTaken      = errors.New("this secret is already in use")
	ErrApplicationLimit = errors.New("the application already has the most keys allowed")
	ErrUnavailable      = errors.New("the key store is unavailable")
	ErrNotRetrievable   = errors.New("the secret of this key cannot be retrieved")
	ErrAdminExists      = errors.New("an admin key already exists")
)

// FieldError is a validation failure of one input field, named by its JSON
// path (for example "ip_allowlist[0]").
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// BadRequestError is input that is not valid JSON or not an object.
type BadRequestError struct{ Msg string }

func (e *BadRequestError) Error() string { return e.Msg }
