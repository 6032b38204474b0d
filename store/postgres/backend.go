package postgres

import (
	"context"
	"sort"
	"time"

	"github.com/keygate/keygate/store"
)

// LookupDigest is the hot path's query: one statement, one index probe
// on key_secrets.digest, then the key by primary key.
func (p *Postgres) LookupDigest(ctx context.Context, digest [32]byte) (*store.Key, error) {
	qctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	k, err := scanKey(p.pool.QueryRow(qctx, selectKeys+"WHERE k.id = (SELECT key_id FROM key_secrets WHERE digest = $1)", digest[:]))
	return k, p.wrap(ctx, err)
}

// defaultScanPage is how many keys ScanKeys reads per query. Paging keeps each
// query under the timeout and frees the connection while fn runs.
const defaultScanPage = 1000

// ScanKeys calls fn for every key, in id order, reading them a page at a
// time; keys written meanwhile may or may not be seen.
func (p *Postgres) ScanKeys(ctx context.Context, fn func(*store.Key) error) error {
	after := ""
	for {
		page, err := p.scanKeysPage(ctx, after)
		if err != nil {
			return err
		}
		for _, k := range page {
			if err := fn(k); err != nil {
				return err
			}
		}
		if len(page) < p.scanPage {
			return nil
		}
		after = page[len(page)-1].ID
	}
}

func (p *Postgres) scanKeysPage(ctx context.Context, after string) ([]*store.Key, error) {
	qctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	rows, err := p.pool.Query(qctx, selectKeys+"WHERE k.id > $1 ORDER BY k.id LIMIT $2", after, p.scanPage)
	if err != nil {
		return nil, p.wrap(ctx, err)
	}
	defer rows.Close()
	page := make([]*store.Key, 0, p.scanPage)
	for rows.Next() {
		k, err := scanKey(rows)
		if err != nil {
			return nil, p.wrap(ctx, err)
		}
		page = append(page, k)
	}
	return page, p.wrap(ctx, rows.Err())
}

// recordUsage sets each key's last use (keys.last_used_at for the current
// secret, the previous secret's row otherwise), keeping the later time, in
// one statement whatever the batch's size.
const recordUsage = `WITH u AS (
	SELECT id, previous, max(at) AS at
	FROM unnest($1::text[], $2::timestamptz[], $3::boolean[]) AS t(id, at, previous)
	GROUP BY id, previous
), cur AS (
	UPDATE keys k SET last_used_at = GREATEST(k.last_used_at, u.at)
	FROM u WHERE k.id = u.id AND NOT u.previous
), prev AS (
	UPDATE key_secrets s SET last_used_at = GREATEST(s.last_used_at, u.at)
	FROM u WHERE s.key_id = u.id AND s.previous AND u.previous
)
SELECT 1`

// RecordUsage writes a batch of last uses in one statement, without an
// audit event and without a Change. Two replicas flushing overlapping
// batches can deadlock on row locks; the statement is idempotent, so it
// is retried then.
func (p *Postgres) RecordUsage(ctx context.Context, usage []store.Usage) error {
	if len(usage) == 0 {
		return nil
	}
	// Rows are locked in the order given; a common order makes deadlocks
	// between replicas rarer.
	sorted := append([]store.Usage(nil), usage...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].KeyID < sorted[j].KeyID })
	ids := make([]string, len(sorted))
	ats := make([]time.Time, len(sorted))
	prev := make([]bool, len(sorted))
	for i, u := range sorted {
		ids[i], ats[i], prev[i] = u.KeyID, u.At, u.Previous
	}
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		qctx, cancel := context.WithTimeout(ctx, p.timeout)
		_, err = p.pool.Exec(qctx, recordUsage, ids, ats, prev)
		cancel()
		if !isDeadlock(err) {
			break
		}
	}
	return p.wrap(ctx, err)
}
