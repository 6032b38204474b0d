package embedded

import (
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/keygate/keygate/store"
)

// record is a key as stored in the keys bucket. store.Key's JSON form is
// the admin API's and hides the digests, the sealed secret and the session
// epoch, so the stored form has its own type. Status is derived and not
// stored. Times are kept in UTC.
type record struct {
	ID                       string            `json:"id"`
	Name                     string            `json:"name"`
	Description              string            `json:"description,omitempty"`
	User                     string            `json:"user"`
	Application              string            `json:"application,omitempty"`
	Tenant                   string            `json:"tenant,omitempty"`
	Tags                     []string          `json:"tags"`
	Scopes                   []string          `json:"scopes"`
	IPAllowlist              []string          `json:"ip_allowlist"`
	ClientName               string            `json:"client_name,omitempty"`
	Notes                    string            `json:"notes,omitempty"`
	Metadata                 map[string]string `json:"metadata"`
	Enabled                  bool              `json:"enabled"`
	SessionsAllowed          bool              `json:"sessions_allowed"`
	ExpiresAt                *time.Time        `json:"expires_at"`
	CreatedAt                time.Time         `json:"created_at"`
	UpdatedAt                time.Time         `json:"updated_at"`
	LastUsedAt               *time.Time        `json:"last_used_at"`
	RateLimit                *store.RateLimit  `json:"rate_limit"`
	Hint                     string            `json:"hint,omitempty"`
	SecretRotatedAt          *time.Time        `json:"secret_rotated_at"`
	PreviousSecretExpiresAt  *time.Time        `json:"previous_secret_expires_at"`
	PreviousSecretLastUsedAt *time.Time        `json:"previous_secret_last_used_at"`
	SessionEpoch             int64             `json:"session_epoch"`
	Digest                   []byte            `json:"digest"`
	// PreviousDigest is absent when there is no previous secret.
	PreviousDigest []byte `json:"previous_digest,omitempty"`
	SealedSecret   []byte `json:"sealed_secret"`
}

func toRecord(k *store.Key) *record {
	c := k.Clone() // the record must not share slices or maps with the caller
	r := &record{
		ID:                       c.ID,
		Name:                     c.Name,
		Description:              c.Description,
		User:                     c.User,
		Application:              c.Application,
		Tenant:                   c.Tenant,
		Tags:                     c.Tags,
		Scopes:                   c.Scopes,
		IPAllowlist:              c.IPAllowlist,
		ClientName:               c.ClientName,
		Notes:                    c.Notes,
		Metadata:                 c.Metadata,
		Enabled:                  c.Enabled,
		SessionsAllowed:          c.SessionsAllowed,
		ExpiresAt:                utc(c.ExpiresAt),
		CreatedAt:                c.CreatedAt.UTC(),
		UpdatedAt:                c.UpdatedAt.UTC(),
		LastUsedAt:               utc(c.LastUsedAt),
		RateLimit:                c.RateLimit,
		Hint:                     c.Hint,
		SecretRotatedAt:          utc(c.SecretRotatedAt),
		PreviousSecretExpiresAt:  utc(c.PreviousSecretExpiresAt),
		PreviousSecretLastUsedAt: utc(c.PreviousSecretLastUsedAt),
		SessionEpoch:             c.SessionEpoch,
		Digest:                   c.Digest[:],
		SealedSecret:             c.SealedSecret,
	}
	if c.HasPrevious() {
		r.PreviousDigest = c.PreviousDigest[:]
	}
	return r
}

func (r *record) key() (*store.Key, error) {
	k := &store.Key{
		ID:                       r.ID,
		Name:                     r.Name,
		Description:              r.Description,
		User:                     r.User,
		Application:              r.Application,
		Tenant:                   r.Tenant,
		Tags:                     r.Tags,
		Scopes:                   r.Scopes,
		IPAllowlist:              r.IPAllowlist,
		ClientName:               r.ClientName,
		Notes:                    r.Notes,
		Metadata:                 r.Metadata,
		Enabled:                  r.Enabled,
		SessionsAllowed:          r.SessionsAllowed,
		ExpiresAt:                r.ExpiresAt,
		CreatedAt:                r.CreatedAt,
		UpdatedAt:                r.UpdatedAt,
		LastUsedAt:               r.LastUsedAt,
		RateLimit:                r.RateLimit,
		Hint:                     r.Hint,
		SecretRotatedAt:          r.SecretRotatedAt,
		PreviousSecretExpiresAt:  r.PreviousSecretExpiresAt,
		PreviousSecretLastUsedAt: r.PreviousSecretLastUsedAt,
		SessionEpoch:             r.SessionEpoch,
		SealedSecret:             r.SealedSecret,
	}
	if err := copyDigest(&k.Digest, r.Digest); err != nil {
		return nil, fmt.Errorf("embedded: key %s: digest: %w", r.ID, err)
	}
	if err := copyDigest(&k.PreviousDigest, r.PreviousDigest); err != nil {
		return nil, fmt.Errorf("embedded: key %s: previous digest: %w", r.ID, err)
	}
	return k, nil
}

func copyDigest(dst *[32]byte, b []byte) error {
	switch len(b) {
	case 0:
		*dst = [32]byte{}
	case 32:
		copy(dst[:], b)
	default:
		return fmt.Errorf("%d bytes, want 32", len(b))
	}
	return nil
}

func utc(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// digests lists the digests a key answers to: its current one and, when
// set, its previous one. A zero digest is no secret and is never indexed.
func digests(k *store.Key) [][32]byte {
	var ds [][32]byte
	if k.Digest != ([32]byte{}) {
		ds = append(ds, k.Digest)
	}
	if k.HasPrevious() && k.PreviousDigest != k.Digest {
		ds = append(ds, k.PreviousDigest)
	}
	return ds
}

// nameKey is the names index key of (application, name).
func nameKey(application, name string) []byte {
	b := make([]byte, 0, len(application)+1+len(name))
	b = append(b, application...)
	b = append(b, 0)
	return append(b, name...)
}

// getRecord reads the stored record of id; store.ErrNotFound when absent.
// The decoded record owns its memory: bbolt's value is only valid inside
// the transaction.
func getRecord(keys *bolt.Bucket, id string) (*record, error) {
	v := keys.Get([]byte(id))
	if v == nil {
		return nil, store.ErrNotFound
	}
	return decodeRecord(id, v)
}

func decodeRecord(id string, v []byte) (*record, error) {
	var r record
	if err := json.Unmarshal(v, &r); err != nil {
		return nil, fmt.Errorf("embedded: key %s: %w", id, err)
	}
	return &r, nil
}

func putRecord(keys *bolt.Bucket, r *record) error {
	v, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("embedded: key %s: %w", r.ID, err)
	}
	return keys.Put([]byte(r.ID), v)
}
