package postgres

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keygate/keygate/store"
)

// selectKeys reads whole keys: the key's row, its current secret (c) and
// its previous one (p). Append a WHERE clause on k.
const selectKeys = `SELECT k.id, k.name, k.description, k."user", k.application, k.tenant,
	k.tags, k.scopes, k.ip_allowlist, k.client_name, k.notes, k.metadata,
	k.enabled, k.sessions_allowed, k.expires_at, k.created_at, k.updated_at,
	k.last_used_at, k.rate_limit_rps, k.rate_limit_burst, k.hint,
	k.secret_rotated_at, k.session_epoch, k.sealed_secret,
	c.digest, p.digest, p.expires_at, p.last_used_at
FROM keys k
LEFT JOIN key_secrets c ON c.key_id = k.id AND NOT c.previous
LEFT JOIN key_secrets p ON p.key_id = k.id AND p.previous
`

// scanKey reads one row of selectKeys.
func scanKey(row pgx.Row) (*store.Key, error) {
	var (
		k                           store.Key
		metadata, cur, prev         []byte
		rps                         *float64
		burst                       *int32
		expires, lastUsed, rotated  *time.Time
		prevExpires, prevLastUsed   *time.Time
		created, updated            time.Time
		tags, scopes, ipAllowlist   []string
		id, name, description, user string
		application, tenant         string
		clientName, notes, hint     string
		enabled, sessionsAllowed    bool
		sessionEpoch                int64
		sealed                      []byte
	)
	err := row.Scan(&id, &name, &description, &user, &application, &tenant,
		&tags, &scopes, &ipAllowlist, &clientName, &notes, &metadata,
		&enabled, &sessionsAllowed, &expires, &created, &updated,
		&lastUsed, &rps, &burst, &hint,
		&rotated, &sessionEpoch, &sealed,
		&cur, &prev, &prevExpires, &prevLastUsed)
	if err != nil {
		return nil, err
	}
	k = store.Key{
		ID: id, Name: name, Description: description, User: user,
		Application: application, Tenant: tenant,
		Tags: tags, Scopes: scopes, IPAllowlist: ipAllowlist,
		ClientName: clientName, Notes: notes,
		Enabled: enabled, SessionsAllowed: sessionsAllowed,
		ExpiresAt: utc(expires), CreatedAt: created.UTC(), UpdatedAt: updated.UTC(),
		LastUsedAt: utc(lastUsed), Hint: hint, SecretRotatedAt: utc(rotated),
		SessionEpoch: sessionEpoch, SealedSecret: sealed,
	}
	if metadata != nil {
		if err := json.Unmarshal(metadata, &k.Metadata); err != nil {
			return nil, fmt.Errorf("postgres: key metadata: %w", err)
		}
	}
	if rps != nil {
		k.RateLimit = &store.RateLimit{RPS: *rps}
		if burst != nil {
			k.RateLimit.Burst = int(*burst)
		}
	}
	if err := digestFrom(&k.Digest, cur); err != nil {
		return nil, err
	}
	if prev != nil {
		if err := digestFrom(&k.PreviousDigest, prev); err != nil {
			return nil, err
		}
		k.PreviousSecretExpiresAt = utc(prevExpires)
		k.PreviousSecretLastUsedAt = utc(prevLastUsed)
	}
	return &k, nil
}

func digestFrom(dst *[32]byte, b []byte) error {
	switch len(b) {
	case 0:
		*dst = [32]byte{}
	case 32:
		copy(dst[:], b)
	default:
		return fmt.Errorf("postgres: stored digest has %d bytes, want 32", len(b))
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

// keyArgs are the values of keys' columns in insertKey's order.
func keyArgs(k *store.Key) ([]any, error) {
	var metadata []byte
	if k.Metadata != nil {
		var err error
		if metadata, err = json.Marshal(k.Metadata); err != nil {
			return nil, fmt.Errorf("postgres: key metadata: %w", err)
		}
	}
	var rps *float64
	var burst *int32
	if k.RateLimit != nil {
		r, b := k.RateLimit.RPS, int32(k.RateLimit.Burst)
		rps, burst = &r, &b
	}
	return []any{k.ID, k.Name, k.Description, k.User, k.Application, k.Tenant,
		k.Tags, k.Scopes, k.IPAllowlist, k.ClientName, k.Notes, metadata,
		k.Enabled, k.SessionsAllowed, k.ExpiresAt, k.CreatedAt, k.UpdatedAt,
		k.LastUsedAt, rps, burst, k.Hint,
		k.SecretRotatedAt, k.SessionEpoch, k.SealedSecret}, nil
}

const insertKey = `INSERT INTO keys (id, name, description, "user", application, tenant,
	tags, scopes, ip_allowlist, client_name, notes, metadata,
	enabled, sessions_allowed, expires_at, created_at, updated_at,
	last_used_at, rate_limit_rps, rate_limit_burst, hint,
	secret_rotated_at, session_epoch, sealed_secret)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
	$17, $18, $19, $20, $21, $22, $23, $24)`

// updateKey replaces every column but id. last_used_at keeps the later
// time, so a RecordUsage that ran after the caller read the key survives.
const updateKey = `UPDATE keys SET name = $2, description = $3, "user" = $4,
	application = $5, tenant = $6, tags = $7, scopes = $8, ip_allowlist = $9,
	client_name = $10, notes = $11, metadata = $12, enabled = $13,
	sessions_allowed = $14, expires_at = $15, created_at = $16, updated_at = $17,
	last_used_at = GREATEST(last_used_at, $18), rate_limit_rps = $19,
	rate_limit_burst = $20, hint = $21, secret_rotated_at = $22,
	session_epoch = $23, sealed_secret = $24
WHERE id = $1`

// secret is one row of key_secrets.
type secret struct {
	digest   []byte
	previous bool
	expires  *time.Time
	lastUsed *time.Time
}

// secretsOf lists the secrets a key answers to, previous first. A zero
// digest is no secret; a previous digest equal to the current one is
// ignored.
func secretsOf(k *store.Key) []secret {
	var out []secret
	if k.HasPrevious() && k.PreviousDigest != k.Digest {
		out = append(out, secret{digest: clone(k.PreviousDigest), previous: true,
			expires: k.PreviousSecretExpiresAt, lastUsed: k.PreviousSecretLastUsedAt})
	}
	if k.Digest != ([32]byte{}) {
		out = append(out, secret{digest: clone(k.Digest)})
	}
	return out
}

func clone(d [32]byte) []byte { return append([]byte(nil), d[:]...) }
