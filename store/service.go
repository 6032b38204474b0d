package store

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/keygate/keygate/auth"
)

// Options configure a Service. Zero values are documented per field.
type Options struct {
	// KeyPrefix is the prefix of generated keys; "kg" when empty.
	KeyPrefix string
	// AcceptForeignKeys allows importing secrets not in keygate's format
	// (at least 24 characters).
	AcceptForeignKeys bool
	// DefaultLifetime is the expiry given to keys created without one.
	// Zero means such keys never expire (or expire after MaxLifetime
	// when that is set).
	DefaultLifetime time.Duration
	// MaxLifetime caps expiry; zero means no cap. With a cap, keys that
	// would never expire are refused.
	MaxLifetime time.Duration
	// MaxPerApplication caps keys per application; zero means no cap.
	// Keys without an application are never counted.
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

// Service enforces keygate's key rules over a Backend: validation,
// lifetimes, per-application limits, and one audit event committed in the
// same transaction as each change.
type Service struct {
	b    Backend
	opts Options
	ids  *idGen
}

// Limits of the list endpoints and of bulk actions.
const (
	DefaultListLimit = 100
	MaxListLimit     = 1000
	MaxBulkIDs       = 1000
)

// AdminWarning is the warning given when a key gets the admin scope.
const AdminWarning = "this key has the keygate:admin scope and can change every key: give it only to administrators and use keys with route scopes for everything else (least privilege)"

// bootstrapName is the name of the key Bootstrap creates (suffixed when
// taken).
const bootstrapName = "bootstrap-admin"

// sessionSecretSetting is the shared setting holding the generated
// session signing secret.
const sessionSecretSetting = "session_secret"

// NewService returns a Service over b.
func NewService(b Backend, o Options) *Service {
	if o.KeyPrefix == "" {
		o.KeyPrefix = "kg"
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Service{b: b, opts: o, ids: &idGen{now: o.Now}}
}

func (s *Service) now() time.Time { return normTime(s.opts.Now()) }

// out is what callers get: a copy with Status derived at now and empty
// lists and maps rather than nil, so JSON shows [] and {}.
func (s *Service) out(k *Key, now time.Time) *Key {
	c := k.Clone()
	c.Status = c.StatusAt(now)
	c.Tags = nonNil(c.Tags)
	c.Scopes = nonNil(c.Scopes)
	c.IPAllowlist = nonNil(c.IPAllowlist)
	if c.Metadata == nil {
		c.Metadata = map[string]string{}
	}
	return c
}

// changed tells OnChange which key and digests a commit made stale.
func (s *Service) changed(id string, keys ...*Key) {
	if s.opts.OnChange == nil {
		return
	}
	c := Change{KeyID: id}
	add := func(d [32]byte) {
		if d == ([32]byte{}) {
			return
		}
		for _, have := range c.Digests {
			if have == d {
				return
			}
		}
		c.Digests = append(c.Digests, d)
	}
	for _, k := range keys {
		if k != nil {
			add(k.Digest)
			add(k.PreviousDigest)
		}
	}
	s.opts.OnChange(c)
}

func (s *Service) event(a Actor, action, keyID string, now time.Time, changes map[string]FieldChange) *AuditEvent {
	actor := a.KeyID
	if actor == "" {
		actor = SystemActor
	}
	if changes == nil {
		changes = map[string]FieldChange{}
	}
	return &AuditEvent{
		ID: s.ids.next("evt_"), At: now, Actor: actor, Action: action,
		KeyID: keyID, IP: a.IP, Changes: changes,
	}
}

// setSecret makes secret the key's current secret.
func (s *Service) setSecret(k *Key, secret string) {
	k.Digest = auth.Digest([]byte(secret))
	k.Hint = auth.Hint(secret)
	k.SealedSecret = nil
	if s.opts.Sealer != nil {
		k.SealedSecret = s.opts.Sealer.Seal(secret)
	}
}

func warnings(before, after *Key) []string {
	w := []string{}
	if hasScope(after.Scopes, auth.AdminScope) && (before == nil || !hasScope(before.Scopes, auth.AdminScope)) {
		w = append(w, AdminWarning)
	}
	return w
}

func hasScope(scopes []string, s string) bool {
	for _, sc := range scopes {
		if sc == s {
			return true
		}
	}
	return false
}

// checkApplicationLimit refuses one more key in app when it is full.
// CountApplicationKeys also serializes concurrent creates in app until
// the transaction ends, so two creates cannot both take the last place.
func (s *Service) checkApplicationLimit(tx Tx, app string) error {
	if s.opts.MaxPerApplication <= 0 || app == "" {
		return nil
	}
	n, err := tx.CountApplicationKeys(app)
	if err != nil {
		return err
	}
	if n >= s.opts.MaxPerApplication {
		return ErrApplicationLimit
	}
	return nil
}

// Create creates a key from a JSON object: the CONTRACT §3 fields, plus
// "expires_in" ("30d", or Go syntax) and, to import an existing key,
// "secret". Without expires_at or expires_in the key expires after
// DefaultLifetime; "expires_at": null means never (refused under a
// MaxLifetime). Malformed JSON is a *BadRequestError; an unknown,
// read-only, mistyped or invalid field is a *FieldError naming it
// ("ip_allowlist[2]", "rate_limit.rps"); a taken name is ErrNameTaken, a
// full application ErrApplicationLimit, an imported secret already in use
// ErrSecretTaken. Nothing is written unless the key and its audit event
// both are.
func (s *Service) Create(ctx context.Context, a Actor, body []byte) (*Created, error) {
	raw, err := decodeObject(body)
	if err != nil {
		return nil, err
	}
	now := s.now()
	k := &Key{Enabled: true, SessionsAllowed: true, Tags: []string{}, Scopes: []string{}, IPAllowlist: []string{}, Metadata: map[string]string{}}
	in, err := s.applyInput(k, raw, true, now)
	if err != nil {
		return nil, err
	}
	action, secret := ActionImport, in.secret
	if !in.hasSecret {
		action = ActionCreate
		if secret, err = auth.NewSecret(s.opts.KeyPrefix); err != nil {
			return nil, err
		}
	}
	k.ID = s.ids.next("key_")
	k.CreatedAt, k.UpdatedAt = now, now
	s.setSecret(k, secret)
	ev := s.event(a, action, k.ID, now, diffKeys(nil, k))
	err = s.b.Update(ctx, func(tx Tx) error {
		if err := s.checkApplicationLimit(tx, k.Application); err != nil {
			return err
		}
		if err := tx.InsertKey(k.Clone()); err != nil {
			return err
		}
		return tx.AppendAudit(ev)
	})
	if err != nil {
		return nil, err
	}
	s.changed(k.ID, k)
	return &Created{Key: s.out(k, now), Secret: secret, Warnings: warnings(nil, k)}, nil
}

// Get returns one key.
func (s *Service) Get(ctx context.Context, id string) (*Key, error) {
	var k *Key
	err := s.b.View(ctx, func(tx Tx) (err error) {
		k, err = tx.GetKey(id)
		return err
	})
	if err != nil {
		return nil, err
	}
	return s.out(k, s.now()), nil
}

// List lists keys by the admin API's query parameters (q, status, user,
// application, tenant, tag, expires_before, limit, cursor).
func (s *Service) List(ctx context.Context, q url.Values) (keys []*Key, nextCursor string, err error) {
	now := s.now()
	f := ListFilter{
		Q: q.Get("q"), User: q.Get("user"), Application: q.Get("application"),
		Tenant: q.Get("tenant"), Tag: q.Get("tag"), Now: now,
	}
	switch st := q.Get("status"); st {
	case "", StatusActive, StatusDisabled, StatusExpired:
		f.Status = st
	default:
		return nil, "", &FieldError{Field: "status", Msg: "must be active, disabled or expired"}
	}
	if v := q.Get("expires_before"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return nil, "", &FieldError{Field: "expires_before", Msg: "must be an RFC 3339 time"}
		}
		t = normTime(t)
		f.ExpiresBefore = &t
	}
	limit, err := parseLimit(q)
	if err != nil {
		return nil, "", err
	}
	if f.AfterID, err = decodeCursor(cursorKeys, q.Get("cursor")); err != nil {
		return nil, "", err
	}
	f.Limit = limit + 1
	err = s.b.View(ctx, func(tx Tx) (err error) {
		keys, err = tx.ListKeys(f)
		return err
	})
	if err != nil {
		return nil, "", err
	}
	if len(keys) > limit {
		keys = keys[:limit]
		nextCursor = encodeCursor(cursorKeys, keys[limit-1].ID)
	}
	for i, k := range keys {
		keys[i] = s.out(k, now)
	}
	if keys == nil {
		keys = []*Key{}
	}
	return keys, nextCursor, nil
}

func parseLimit(q url.Values) (int, error) {
	v := q.Get("limit")
	if v == "" {
		return DefaultListLimit, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > MaxListLimit {
		return 0, &FieldError{Field: "limit", Msg: fmt.Sprintf("must be a whole number from 1 to %d", MaxListLimit)}
	}
	return n, nil
}

// Lookup returns the key a secret belongs to: its current secret, or its
// previous one while the rotation's grace lasts. A string that cannot be a
// key is ErrNotFound without a store query.
func (s *Service) Lookup(ctx context.Context, secret string) (*Key, error) {
	if !s.acceptableSecret(secret) {
		return nil, ErrNotFound
	}
	d := auth.Digest([]byte(secret))
	k, err := s.b.LookupDigest(ctx, d)
	if err != nil {
		return nil, err
	}
	if !k.answersTo(d) {
		return nil, ErrNotFound
	}
	now := s.now()
	if d != k.Digest && (k.PreviousSecretExpiresAt == nil || !now.Before(*k.PreviousSecretExpiresAt)) {
		return nil, ErrNotFound // a rotated-out secret past its grace belongs to no key
	}
	return s.out(k, now), nil
}

// modify runs change on key id inside one transaction and records its
// audit event there. change edits next (a copy of the stored key) and
// returns the action, or "" to leave the key as it is (no write, no
// event).
func (s *Service) modify(ctx context.Context, a Actor, id string, change func(tx Tx, cur, next *Key, now time.Time) (string, error)) (before, after *Key, err error) {
	now := s.now()
	err = s.b.Update(ctx, func(tx Tx) error {
		cur, err := tx.GetKey(id)
		if err != nil {
			return err
		}
		next := cur.Clone()
		action, err := change(tx, cur, next, now)
		if err != nil {
			return err
		}
		before, after = cur, next
		if action == "" {
			before = nil
			return nil
		}
		if (cur.Enabled && !next.Enabled) || (cur.SessionsAllowed && !next.SessionsAllowed) {
			// Disabling a key (or its sessions) ends its sessions for good:
			// re-enabling a key disabled because it leaked must not bring
			// back the cookies minted from it.
			next.SessionEpoch++
		}
		next.UpdatedAt = now
		if err := tx.UpdateKey(next.Clone()); err != nil {
			return err
		}
		return tx.AppendAudit(s.event(a, action, id, now, diffKeys(cur, next)))
	})
	if err != nil {
		return nil, nil, err
	}
	if before != nil {
		s.changed(id, before, after)
	}
	return before, s.out(after, now), nil
}

// Update applies a JSON merge patch (RFC 7396) of mutable fields: null
// resets a field to its default ("expires_at": null means never), metadata
// and rate_limit objects merge into the current ones, and "expires_in" is
// accepted as on create. Fields are validated as on create, except that a
// past expires_at is allowed (it expires the key now). A patch that
// changes nothing writes nothing, not even an audit event.
func (s *Service) Update(ctx context.Context, a Actor, id string, patch []byte) (*Key, error) {
	raw, err := decodeObject(patch)
	if err != nil {
		return nil, err
	}
	if err := checkFieldNames(raw, false); err != nil {
		return nil, err
	}
	_, k, err := s.modify(ctx, a, id, func(tx Tx, cur, next *Key, now time.Time) (string, error) {
		if _, err := s.applyInput(next, raw, false, now); err != nil {
			return "", err
		}
		if len(diffKeys(cur, next)) == 0 {
			return "", nil
		}
		if next.Application != cur.Application {
			if err := s.checkApplicationLimit(tx, next.Application); err != nil {
				return "", err
			}
		}
		return ActionUpdate, nil
	})
	return k, err
}

// SetEnabled enables or disables a key. Setting the state a key already
// has changes nothing and records nothing.
func (s *Service) SetEnabled(ctx context.Context, a Actor, id string, enabled bool) (*Key, error) {
	_, k, err := s.modify(ctx, a, id, func(_ Tx, cur, next *Key, _ time.Time) (string, error) {
		if cur.Enabled == enabled {
			return "", nil
		}
		next.Enabled = enabled
		if enabled {
			return ActionEnable, nil
		}
		return ActionDisable, nil
	})
	return k, err
}

// Rotate issues a new secret; the previous one works for grace. With no
// grace the old secret stops at once and so does every session minted
// from the key. Only one previous secret is kept: rotating again during a
// grace period ends the older one.
func (s *Service) Rotate(ctx context.Context, a Actor, id string, grace time.Duration) (*Rotated, error) {
	if grace < 0 {
		return nil, &FieldError{Field: "grace", Msg: "must not be negative"}
	}
	secret, err := auth.NewSecret(s.opts.KeyPrefix)
	if err != nil {
		return nil, err
	}
	_, k, err := s.modify(ctx, a, id, func(_ Tx, cur, next *Key, now time.Time) (string, error) {
		// The old secret is kept as the previous one even without grace
		// (expiring now), so a client still using it is told key_expired
		// rather than invalid_key (CONTRACT §4: "a rotated-out secret past
		// its grace"). Only one previous secret is kept.
		until := normTime(now.Add(grace))
		next.PreviousDigest = cur.Digest
		next.PreviousSecretExpiresAt = &until
		next.PreviousSecretLastUsedAt = nil
		if grace == 0 {
			next.SessionEpoch++
		}
		rotated := now
		next.SecretRotatedAt = &rotated
		s.setSecret(next, secret)
		return ActionRotate, nil
	})
	if err != nil {
		return nil, err
	}
	return &Rotated{Key: k, Secret: secret, PreviousExpiresAt: cloneTime(k.PreviousSecretExpiresAt)}, nil
}

// Secret returns a retrievable key's secret and records who read it.
// ErrNotRetrievable when secrets are not kept, the key has none kept, or
// the keystore cannot open it.
func (s *Service) Secret(ctx context.Context, a Actor, id string) (string, error) {
	if s.opts.Sealer == nil {
		return "", ErrNotRetrievable
	}
	now := s.now()
	var secret string
	err := s.b.Update(ctx, func(tx Tx) error {
		k, err := tx.GetKey(id)
		if err != nil {
			return err
		}
		if len(k.SealedSecret) == 0 {
			return ErrNotRetrievable
		}
		secret, err = s.opts.Sealer.Open(k.SealedSecret)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrNotRetrievable, err)
		}
		if auth.Digest([]byte(secret)) != k.Digest {
			return fmt.Errorf("%w: the kept secret is not the key's current one", ErrNotRetrievable)
		}
		return tx.AppendAudit(s.event(a, ActionRevealSecret, id, now, nil))
	})
	if err != nil {
		return "", err
	}
	return secret, nil
}

// RevokeSessions ends every session minted from the key.
func (s *Service) RevokeSessions(ctx context.Context, a Actor, id string) (*Key, error) {
	_, k, err := s.modify(ctx, a, id, func(_ Tx, _, next *Key, _ time.Time) (string, error) {
		next.SessionEpoch++
		return ActionRevokeSessions, nil
	})
	return k, err
}

// Delete deletes a key.
func (s *Service) Delete(ctx context.Context, a Actor, id string) error {
	return s.remove(ctx, a, id, ActionDelete, nil)
}

// remove deletes key id with its audit event; when still is set, only if
// still(key) holds at the time of the transaction (ErrNotFound otherwise).
func (s *Service) remove(ctx context.Context, a Actor, id, action string, still func(*Key) bool) error {
	now := s.now()
	var gone *Key
	err := s.b.Update(ctx, func(tx Tx) error {
		k, err := tx.GetKey(id)
		if err != nil {
			return err
		}
		if still != nil && !still(k) {
			return ErrNotFound
		}
		if err := tx.DeleteKey(id); err != nil {
			return err
		}
		gone = k
		return tx.AppendAudit(s.event(a, action, id, now, diffKeys(k, nil)))
	})
	if err != nil {
		return err
	}
	s.changed(id, gone)
	return nil
}

// Bulk applies "delete", "enable" or "disable" to each id, each in its own
// transaction. A missing id is reported as "not_found" and the others are
// still applied. A store failure stops the run: if nothing was applied yet
// it is returned as the error; otherwise the results say which ids were
// applied and mark the rest "store_unavailable" (so the caller never loses
// track of what already happened).
func (s *Service) Bulk(ctx context.Context, a Actor, action string, ids []string) ([]BulkResult, error) {
	var op func(id string) error
	switch action {
	case "delete":
		op = func(id string) error { return s.Delete(ctx, a, id) }
	case "enable", "disable":
		op = func(id string) error {
			_, err := s.SetEnabled(ctx, a, id, action == "enable")
			return err
		}
	default:
		return nil, &FieldError{Field: "action", Msg: "must be delete, enable or disable"}
	}
	if len(ids) > MaxBulkIDs {
		return nil, &FieldError{Field: "ids", Msg: fmt.Sprintf("more than %d ids", MaxBulkIDs)}
	}
	results := make([]BulkResult, 0, len(ids))
	for i, id := range ids {
		err := op(id)
		switch {
		case err == nil:
			results = append(results, BulkResult{ID: id, OK: true})
		case errors.Is(err, ErrNotFound):
			results = append(results, BulkResult{ID: id, Error: "not_found"})
		case i == 0:
			return nil, err
		default:
			code := "internal_error"
			if errors.Is(err, ErrUnavailable) {
				code = "store_unavailable"
			}
			for _, rest := range ids[i:] {
				results = append(results, BulkResult{ID: rest, Error: code})
			}
			return results, nil
		}
	}
	return results, nil
}

// purgePage is how many expired keys PurgeExpired reads at a time.
const purgePage = 500

// PurgeExpired deletes keys whose expiry is more than expiredFor ago, each
// in its own transaction with its own audit event, and returns how many
// it deleted (with dryRun: would delete).
func (s *Service) PurgeExpired(ctx context.Context, a Actor, expiredFor time.Duration, dryRun bool) (int, error) {
	if expiredFor < 0 {
		return 0, &FieldError{Field: "expired_for", Msg: "must not be negative"}
	}
	now := s.now()
	cutoff := now.Add(-expiredFor)
	stillExpired := func(k *Key) bool { return k.ExpiresAt != nil && k.ExpiresAt.Before(cutoff) }
	n, after := 0, ""
	for {
		var page []*Key
		err := s.b.View(ctx, func(tx Tx) (err error) {
			page, err = tx.ListKeys(ListFilter{ExpiredBefore: &cutoff, AfterID: after, Limit: purgePage, Now: now})
			return err
		})
		if err != nil {
			return n, err
		}
		for _, k := range page {
			if dryRun {
				n++
				continue
			}
			// Rechecked in the deleting transaction: the key may have been
			// extended since it was listed.
			err := s.remove(ctx, a, k.ID, ActionPurge, stillExpired)
			switch {
			case err == nil:
				n++
			case !errors.Is(err, ErrNotFound):
				return n, err
			}
		}
		if len(page) < purgePage {
			return n, nil
		}
		after = page[len(page)-1].ID
	}
}

// Audit lists audit events by query parameters (key_id, actor, since,
// limit, cursor).
func (s *Service) Audit(ctx context.Context, q url.Values) ([]*AuditEvent, string, error) {
	f := AuditFilter{KeyID: q.Get("key_id"), Actor: q.Get("actor")}
	if v := q.Get("since"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return nil, "", &FieldError{Field: "since", Msg: "must be an RFC 3339 time"}
		}
		t = normTime(t)
		f.Since = &t
	}
	limit, err := parseLimit(q)
	if err != nil {
		return nil, "", err
	}
	if f.AfterID, err = decodeCursor(cursorAudit, q.Get("cursor")); err != nil {
		return nil, "", err
	}
	f.Limit = limit + 1
	var evs []*AuditEvent
	err = s.b.View(ctx, func(tx Tx) (err error) {
		evs, err = tx.ListAudit(f)
		return err
	})
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(evs) > limit {
		evs = evs[:limit]
		next = encodeCursor(cursorAudit, evs[limit-1].ID)
	}
	for _, ev := range evs {
		if ev.Changes == nil {
			ev.Changes = map[string]FieldChange{}
		}
	}
	if evs == nil {
		evs = []*AuditEvent{}
	}
	return evs, next, nil
}

// Counts returns the number of keys per status, every status present.
func (s *Service) Counts(ctx context.Context) (map[string]int, error) {
	now := s.now()
	out := map[string]int{StatusActive: 0, StatusDisabled: 0, StatusExpired: 0}
	err := s.b.View(ctx, func(tx Tx) error {
		m, err := tx.CountByStatus(now)
		for st, n := range m {
			out[st] = n
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// AdminKeyExists reports whether any admin key exists.
func (s *Service) AdminKeyExists(ctx context.Context) (bool, error) {
	var ok bool
	err := s.b.View(ctx, func(tx Tx) (err error) {
		ok, err = tx.AdminKeyExists()
		return err
	})
	return ok, err
}

// Bootstrap creates an admin key, importing secret when non-empty: name
// "bootstrap-admin" (with a number appended when taken), user "admin",
// scope keygate:admin, no expiry unless MaxLifetime caps it.
// ErrAdminExists when one exists and force is false.
func (s *Service) Bootstrap(ctx context.Context, secret string, force bool) (*Created, error) {
	action := ActionBootstrap
	if secret == "" {
		var err error
		if secret, err = auth.NewSecret(s.opts.KeyPrefix); err != nil {
			return nil, err
		}
	} else if !s.acceptableSecret(secret) {
		return nil, s.secretError()
	}
	now := s.now()
	k := &Key{
		ID: s.ids.next("key_"), User: "admin", Scopes: []string{auth.AdminScope},
		Tags: []string{}, IPAllowlist: []string{}, Metadata: map[string]string{},
		Enabled: true, SessionsAllowed: true, CreatedAt: now, UpdatedAt: now,
	}
	if s.opts.MaxLifetime > 0 {
		t := normTime(now.Add(s.opts.MaxLifetime))
		k.ExpiresAt = &t
	}
	s.setSecret(k, secret)
	evID := s.ids.next("evt_")
	err := s.b.Update(ctx, func(tx Tx) error {
		exists, err := tx.AdminKeyExists()
		if err != nil {
			return err
		}
		if exists && !force {
			return ErrAdminExists
		}
		k.Name = bootstrapName
		for i := 2; ; i++ {
			_, err := tx.KeyByName("", k.Name)
			if errors.Is(err, ErrNotFound) {
				break
			}
			if err != nil {
				return err
			}
			k.Name = bootstrapName + "-" + strconv.Itoa(i)
		}
		if err := tx.InsertKey(k.Clone()); err != nil {
			if errors.Is(err, ErrNameTaken) && !force {
				// Another process bootstrapped at the same moment.
				return ErrAdminExists
			}
			return err
		}
		ev := s.event(Actor{}, action, k.ID, now, diffKeys(nil, k))
		ev.ID = evID
		return tx.AppendAudit(ev)
	})
	if err != nil {
		return nil, err
	}
	s.changed(k.ID, k)
	return &Created{Key: s.out(k, now), Secret: secret, Warnings: warnings(nil, k)}, nil
}

// settingsLock is the application name whose CountApplicationKeys lock
// serializes writers of shared settings (no key uses it: the count is
// only for the lock).
const settingsLock = ":keygate:settings"

// SessionSecrets returns the session signing secrets: configured when
// non-empty, else one generated once and kept in the store's settings so
// every replica shares it.
func (s *Service) SessionSecrets(ctx context.Context, configured [][]byte) ([][]byte, error) {
	if len(configured) > 0 {
		return configured, nil
	}
	var secret []byte
	err := s.b.Update(ctx, func(tx Tx) error {
		// Serialize with other replicas doing the same, so the one that
		// comes second reads what the first inserted instead of writing
		// its own.
		if _, err := tx.CountApplicationKeys(settingsLock); err != nil {
			return err
		}
		v, err := tx.Setting(sessionSecretSetting)
		if err == nil && len(v) >= 32 {
			secret = v
			return nil
		}
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		v = make([]byte, 32)
		if _, err := rand.Read(v); err != nil {
			return err
		}
		secret = v
		return tx.PutSetting(sessionSecretSetting, v)
	})
	if err != nil {
		return nil, err
	}
	return [][]byte{secret}, nil
}
