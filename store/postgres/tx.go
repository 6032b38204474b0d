package postgres

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keygate/keygate/store"
)

// notifyChannel carries key changes between replicas. The payload is
// {"id": key id, "d": [hex digests], "s": key_changes seq}; replicas from
// before "s" neither send nor read it (a payload without it is a change
// that resyncs report again).
const notifyChannel = "keygate_changes"

// maxNotifyPayload is the longest payload NOTIFY accepts (it must be
// shorter than 8000 bytes).
const maxNotifyPayload = 7999

type changePayload struct {
	ID      string   `json:"id"`
	Digests []string `json:"d"`
	Seq     int64    `json:"s,omitempty"`
}

var errReadOnly = errors.New("postgres: write in a read-only transaction")

// Update runs fn in a READ COMMITTED transaction. GetKey locks the key's
// row and CountApplicationKeys the application until commit; every key
// write is recorded in key_changes and notified, delivered on commit.
func (p *Postgres) Update(ctx context.Context, fn func(store.Tx) error) error {
	return p.run(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, true, fn)
}

// View runs fn in a read-only REPEATABLE READ transaction, so every read
// in fn sees one snapshot.
func (p *Postgres) View(ctx context.Context, fn func(store.Tx) error) error {
	return p.run(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, false, fn)
}

func (p *Postgres) run(ctx context.Context, opts pgx.TxOptions, write bool, fn func(store.Tx) error) error {
	bctx, cancel := context.WithTimeout(ctx, p.timeout)
	ptx, err := p.pool.BeginTx(bctx, opts)
	cancel()
	if err != nil {
		return p.wrap(ctx, err)
	}
	committed := false
	defer func() {
		if !committed {
			// Also on panic. A rollback that fails leaves a broken
			// connection, which the pool discards.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.timeout)
			ptx.Rollback(rctx)
			cancel()
		}
	}()
	if err := fn(&tx{ctx: ctx, p: p, tx: ptx, write: write}); err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	committed = true
	if err := ptx.Commit(cctx); err != nil {
		return p.wrap(ctx, err)
	}
	return nil
}

// tx implements store.Tx. Each statement runs under the store's query
// timeout, derived from the context given to Update or View.
type tx struct {
	ctx   context.Context
	p     *Postgres
	tx    pgx.Tx
	write bool
}

var _ store.Tx = (*tx)(nil)

func (t *tx) timeout() (context.Context, context.CancelFunc) {
	return context.WithTimeout(t.ctx, t.p.timeout)
}

func (t *tx) wrap(err error) error { return t.p.wrap(t.ctx, err) }

func (t *tx) exec(sql string, args ...any) (int64, error) {
	ctx, cancel := t.timeout()
	defer cancel()
	tag, err := t.tx.Exec(ctx, sql, args...)
	return tag.RowsAffected(), err
}

func (t *tx) oneKey(where string, args ...any) (*store.Key, error) {
	ctx, cancel := t.timeout()
	defer cancel()
	k, err := scanKey(t.tx.QueryRow(ctx, selectKeys+where, args...))
	return k, t.wrap(err)
}

// atomically runs fn in a savepoint: when fn fails its statements are
// undone and the transaction stays usable, so a caller may go on after,
// say, ErrNameTaken as it could with the embedded store.
func (t *tx) atomically(fn func() error) error {
	ctx, cancel := t.timeout()
	sp, err := t.tx.Begin(ctx)
	cancel()
	if err != nil {
		return t.wrap(err)
	}
	if err := fn(); err != nil {
		ctx, cancel := t.timeout()
		sp.Rollback(ctx)
		cancel()
		return t.wrap(err)
	}
	ctx, cancel = t.timeout()
	defer cancel()
	return t.wrap(sp.Commit(ctx))
}

func (t *tx) GetKey(id string) (*store.Key, error) {
	if t.write {
		return t.oneKey("WHERE k.id = $1 FOR UPDATE OF k", id)
	}
	return t.oneKey("WHERE k.id = $1", id)
}

func (t *tx) KeyByName(application, name string) (*store.Key, error) {
	return t.oneKey("WHERE k.application = $1 AND k.name = $2", application, name)
}

func (t *tx) KeyByDigest(digest [32]byte) (*store.Key, error) {
	return t.oneKey("WHERE k.id = (SELECT key_id FROM key_secrets WHERE digest = $1)", digest[:])
}

// CountApplicationKeys, in Update, first takes a transaction-scoped
// advisory lock on the application, so concurrent creates in it count and
// insert one after the other.
func (t *tx) CountApplicationKeys(application string) (int, error) {
	ctx, cancel := t.timeout()
	defer cancel()
	if t.write {
		if _, err := t.tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtextextended('app:' || $1, 0))", application); err != nil {
			return 0, t.wrap(err)
		}
	}
	var n int
	err := t.tx.QueryRow(ctx, "SELECT count(*) FROM keys WHERE application = $1", application).Scan(&n)
	return n, t.wrap(err)
}

func (t *tx) AdminKeyExists() (bool, error) {
	ctx, cancel := t.timeout()
	defer cancel()
	var ok bool
	err := t.tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM keys WHERE scopes @> ARRAY['keygate:admin'])").Scan(&ok)
	return ok, t.wrap(err)
}

func (t *tx) InsertKey(k *store.Key) error {
	if !t.write {
		return errReadOnly
	}
	args, err := keyArgs(k)
	if err != nil {
		return err
	}
	return t.atomically(func() error {
		if _, err := t.exec(insertKey, args...); err != nil {
			return err
		}
		var digests [][]byte
		for _, s := range secretsOf(k) {
			if err := t.insertSecret(k.ID, s); err != nil {
				return err
			}
			digests = append(digests, s.digest)
		}
		return t.changed(k.ID, digests)
	})
}

func (t *tx) insertSecret(id string, s secret) error {
	_, err := t.exec(`INSERT INTO key_secrets (key_id, digest, previous, expires_at, last_used_at)
		VALUES ($1, $2, $3, $4, $5)`, id, s.digest, s.previous, s.expires, s.lastUsed)
	return err
}

// UpdateKey rewrites the key's row and its secrets: secrets it no longer
// has are deleted, those it keeps are updated in place (a last use keeps
// the later time while the secret stays in its slot), new ones inserted.
// The change names old and new digests alike.
func (t *tx) UpdateKey(k *store.Key) error {
	if !t.write {
		return errReadOnly
	}
	args, err := keyArgs(k)
	if err != nil {
		return err
	}
	return t.atomically(func() error {
		n, err := t.exec(updateKey, args...)
		if err != nil {
			return err
		}
		if n == 0 {
			return store.ErrNotFound
		}
		secrets := secretsOf(k)
		keep := make([][]byte, 0, len(secrets))
		for _, s := range secrets {
			keep = append(keep, s.digest)
		}
		ctx, cancel := t.timeout()
		rows, err := t.tx.Query(ctx, "DELETE FROM key_secrets WHERE key_id = $1 AND NOT digest = ANY($2) RETURNING digest", k.ID, keep)
		var gone [][]byte
		if err == nil {
			gone, err = pgx.CollectRows(rows, pgx.RowTo[[]byte])
		}
		cancel()
		if err != nil {
			return err
		}
		for _, s := range secrets {
			n, err := t.exec(`UPDATE key_secrets SET previous = $3, expires_at = $4,
				last_used_at = CASE WHEN previous = $3 THEN GREATEST(last_used_at, $5) ELSE $5 END
				WHERE key_id = $1 AND digest = $2`, k.ID, s.digest, s.previous, s.expires, s.lastUsed)
			if err != nil {
				return err
			}
			if n == 0 {
				if err := t.insertSecret(k.ID, s); err != nil {
					return err
				}
			}
		}
		return t.changed(k.ID, append(keep, gone...))
	})
}

func (t *tx) DeleteKey(id string) error {
	if !t.write {
		return errReadOnly
	}
	return t.atomically(func() error {
		// Both parts of the statement see the secrets before the
		// cascade removes them.
		ctx, cancel := t.timeout()
		var deleted bool
		var digests [][]byte
		err := t.tx.QueryRow(ctx, `WITH s AS (SELECT digest FROM key_secrets WHERE key_id = $1),
			d AS (DELETE FROM keys WHERE id = $1 RETURNING id)
			SELECT EXISTS (SELECT 1 FROM d), ARRAY(SELECT digest FROM s)`, id).Scan(&deleted, &digests)
		cancel()
		if err != nil {
			return err
		}
		if !deleted {
			return store.ErrNotFound
		}
		return t.changed(id, digests)
	})
}

// changed records a key change for resyncs and notifies it; the
// notification is delivered when the transaction commits. It carries the
// change's seq, so that watchers' resyncs skip what it reported.
func (t *tx) changed(id string, digests [][]byte) error {
	prefix, ok := payloadPrefix(id, digests)
	if digests == nil {
		digests = [][]byte{}
	}
	if !ok {
		// Too long to notify (not with ids and digests as keygate makes
		// them): watchers learn of it from their next resync.
		_, err := t.exec(`INSERT INTO key_changes (key_id, digests) VALUES ($1, $2)`, id, digests)
		return err
	}
	_, err := t.exec(`WITH c AS (INSERT INTO key_changes (key_id, digests) VALUES ($1, $2) RETURNING seq)
		SELECT pg_notify($3, $4::text || c.seq::text || '}') FROM c`, id, digests, notifyChannel, prefix)
	return err
}

// payloadPrefix is the notification payload of a change up to its seq,
// which the INSERT that records the change appends with the closing brace;
// false when the whole might not fit in a notification.
func payloadPrefix(id string, digests [][]byte) (string, bool) {
	pl := changePayload{ID: id, Digests: make([]string, len(digests))}
	for i, d := range digests {
		pl.Digests[i] = hex.EncodeToString(d)
	}
	b, err := json.Marshal(pl) // {"id":…,"d":[…]}, without "s"
	if err != nil {
		return "", false
	}
	prefix := string(b[:len(b)-1]) + `,"s":`
	const maxSeq = len("9223372036854775807}")
	return prefix, len(prefix)+maxSeq <= maxNotifyPayload
}

func (t *tx) ListKeys(f store.ListFilter) ([]*store.Key, error) {
	now := f.Now
	if now.IsZero() {
		now = time.Now()
	}
	var q query
	if f.Q != "" {
		p := q.arg("%" + escapeLike(f.Q) + "%")
		q.where(`(k.name ILIKE ` + p + ` ESCAPE '\' OR k.description ILIKE ` + p + ` ESCAPE '\' OR k.hint ILIKE ` + p + ` ESCAPE '\')`)
	}
	switch f.Status {
	case "":
	case store.StatusActive:
		q.where("k.enabled AND (k.expires_at IS NULL OR k.expires_at > " + q.arg(now) + ")")
	case store.StatusDisabled:
		q.where("NOT k.enabled")
	case store.StatusExpired:
		q.where("k.enabled AND k.expires_at <= " + q.arg(now))
	default:
		return nil, fmt.Errorf("postgres: unknown key status %q", f.Status)
	}
	if f.User != "" {
		q.where(`k."user" = ` + q.arg(f.User))
	}
	if f.Application != "" {
		q.where("k.application = " + q.arg(f.Application))
	}
	if f.Tenant != "" {
		q.where("k.tenant = " + q.arg(f.Tenant))
	}
	if f.Tag != "" {
		q.where("k.tags @> ARRAY[" + q.arg(f.Tag) + "::text]")
	}
	if f.ExpiresBefore != nil {
		q.where("k.expires_at < " + q.arg(*f.ExpiresBefore))
	}
	if f.ExpiredBefore != nil {
		q.where("k.expires_at < " + q.arg(*f.ExpiredBefore))
	}
	if f.AfterID != "" {
		q.where("k.id > " + q.arg(f.AfterID))
	}
	sql := selectKeys + q.clause() + " ORDER BY k.id"
	if f.Limit > 0 {
		sql += " LIMIT " + q.arg(f.Limit)
	}
	ctx, cancel := t.timeout()
	defer cancel()
	rows, err := t.tx.Query(ctx, sql, q.args...)
	if err != nil {
		return nil, t.wrap(err)
	}
	keys := []*store.Key{}
	for rows.Next() {
		k, err := scanKey(rows)
		if err != nil {
			rows.Close()
			return nil, t.wrap(err)
		}
		k.Status = k.StatusAt(now)
		keys = append(keys, k)
	}
	if err := rows.Err(); err != nil {
		return nil, t.wrap(err)
	}
	return keys, nil
}

// CountByStatus counts keys per status at now; every status is present.
func (t *tx) CountByStatus(now time.Time) (map[string]int, error) {
	ctx, cancel := t.timeout()
	defer cancel()
	var active, disabled, expired int
	err := t.tx.QueryRow(ctx, `SELECT
		count(*) FILTER (WHERE enabled AND (expires_at IS NULL OR expires_at > $1)),
		count(*) FILTER (WHERE NOT enabled),
		count(*) FILTER (WHERE enabled AND expires_at <= $1)
		FROM keys`, now).Scan(&active, &disabled, &expired)
	if err != nil {
		return nil, t.wrap(err)
	}
	return map[string]int{store.StatusActive: active, store.StatusDisabled: disabled, store.StatusExpired: expired}, nil
}

func (t *tx) AppendAudit(ev *store.AuditEvent) error {
	if !t.write {
		return errReadOnly
	}
	changes, err := json.Marshal(ev.Changes)
	if err != nil {
		return fmt.Errorf("postgres: audit changes: %w", err)
	}
	if ev.Changes == nil {
		changes = nil
	}
	// The lock is held until commit, so events get seq in commit order and
	// a reader paging by seq never skips one committed later (see migration
	// 0002). The service appends the event last in each transaction, so no
	// other lock is waited for while holding it.
	if _, err := t.exec(`SELECT pg_advisory_xact_lock(hashtextextended('keygate:audit', 0))`); err != nil {
		return t.wrap(err)
	}
	_, err = t.exec(`INSERT INTO audit_events (id, at, actor, action, key_id, ip, changes)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`, ev.ID, ev.At, ev.Actor, ev.Action, ev.KeyID, ev.IP, changes)
	return t.wrap(err)
}

func (t *tx) ListAudit(f store.AuditFilter) ([]*store.AuditEvent, error) {
	var q query
	if f.KeyID != "" {
		q.where("key_id = " + q.arg(f.KeyID))
	}
	if f.Actor != "" {
		q.where("actor = " + q.arg(f.Actor))
	}
	if f.Since != nil {
		q.where("at >= " + q.arg(*f.Since))
	}
	if f.AfterID != "" {
		q.where("seq > (SELECT seq FROM audit_events WHERE id = " + q.arg(f.AfterID) + ")")
	}
	sql := "SELECT id, at, actor, action, key_id, ip, changes FROM audit_events" + q.clause() + " ORDER BY seq"
	if f.Limit > 0 {
		sql += " LIMIT " + q.arg(f.Limit)
	}
	ctx, cancel := t.timeout()
	defer cancel()
	rows, err := t.tx.Query(ctx, sql, q.args...)
	if err != nil {
		return nil, t.wrap(err)
	}
	events := []*store.AuditEvent{}
	for rows.Next() {
		var ev store.AuditEvent
		var changes []byte
		if err := rows.Scan(&ev.ID, &ev.At, &ev.Actor, &ev.Action, &ev.KeyID, &ev.IP, &changes); err != nil {
			rows.Close()
			return nil, t.wrap(err)
		}
		ev.At = ev.At.UTC()
		if changes != nil {
			if err := json.Unmarshal(changes, &ev.Changes); err != nil {
				rows.Close()
				return nil, fmt.Errorf("postgres: audit changes: %w", err)
			}
		}
		events = append(events, &ev)
	}
	if err := rows.Err(); err != nil {
		return nil, t.wrap(err)
	}
	return events, nil
}

func (t *tx) Setting(name string) ([]byte, error) {
	ctx, cancel := t.timeout()
	defer cancel()
	var v []byte
	err := t.tx.QueryRow(ctx, "SELECT value FROM settings WHERE name = $1", name).Scan(&v)
	if err != nil {
		return nil, t.wrap(err)
	}
	if v == nil {
		v = []byte{}
	}
	return v, nil
}

func (t *tx) PutSetting(name string, value []byte) error {
	if !t.write {
		return errReadOnly
	}
	if value == nil {
		value = []byte{}
	}
	_, err := t.exec(`INSERT INTO settings (name, value) VALUES ($1, $2)
		ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value`, name, value)
	return t.wrap(err)
}

// query collects a WHERE clause and its arguments.
type query struct {
	conds []string
	args  []any
}

// arg adds an argument and returns its placeholder.
func (q *query) arg(v any) string {
	q.args = append(q.args, v)
	return "$" + strconv.Itoa(len(q.args))
}

func (q *query) where(cond string) { q.conds = append(q.conds, cond) }

func (q *query) clause() string {
	if len(q.conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(q.conds, " AND ")
}

// escapeLike makes s match itself literally in a LIKE pattern with the
// escape character '\'.
func escapeLike(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}
