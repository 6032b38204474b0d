package postgres

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/keygate/keygate/store"
)

const (
	// resyncOverlap is how far before the previous resync the next one
	// reads, to catch changes whose transaction committed a little after
	// it recorded them.
	resyncOverlap = 2 * time.Second
	// pruneEvery is how often a watcher deletes key_changes rows older
	// than a day.
	pruneEvery = time.Hour

	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second
)

// Watch reports every committed key change until ctx ends (or Close is
// called), then returns ctx's error. It LISTENs on a connection of its own,
// checks it after each quiet ResyncInterval, and reconnects with backoff
// when it fails; after each (re)connect and every
// ResyncInterval it rereads recent key_changes and reports each change not
// reported by a previous resync with resync true. fn is never called
// concurrently.
func (p *Postgres) Watch(ctx context.Context, fn func(c store.Change, resync bool)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(p.closed, cancel)
	defer stop()

	var mu sync.Mutex
	deliver := func(c store.Change, resync bool) {
		mu.Lock()
		defer mu.Unlock()
		fn(c, resync)
	}
	kick := make(chan struct{}, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		p.resyncLoop(ctx, kick, deliver)
	}()
	p.listenLoop(ctx, kick, deliver)
	wg.Wait()
	return ctx.Err()
}

func (p *Postgres) listenLoop(ctx context.Context, kick chan<- struct{}, deliver func(store.Change, bool)) {
	backoff := minBackoff
	for {
		err := p.listen(ctx, func() {
			backoff = minBackoff
			select {
			case kick <- struct{}{}:
			default:
			}
		}, deliver)
		if ctx.Err() != nil {
			return
		}
		p.log.Warn("listening for key changes failed; reconnecting", "err", err, "backoff", backoff)
		if !sleep(ctx, backoff) {
			return
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// listen connects, LISTENs and delivers notifications until an error.
// connected runs once the LISTEN is in place.
func (p *Postgres) listen(ctx context.Context, connected func(), deliver func(store.Change, bool)) error {
	cctx, cancel := context.WithTimeout(ctx, p.timeout)
	conn, err := pgx.ConnectConfig(cctx, p.pool.Config().ConnConfig.Copy())
	if err == nil {
		if _, err = conn.Exec(cctx, "LISTEN "+notifyChannel); err != nil {
			conn.Close(cctx)
		}
	}
	cancel()
	if err != nil {
		return p.wrap(ctx, err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.timeout)
		conn.Close(cctx)
		cancel()
	}()
	connected()
	if p.onListen != nil {
		p.onListen()
	}
	for {
		// A connection that died silently (a partition, a failover that
		// sent no reset) would keep us waiting for ever: after each quiet
		// ResyncInterval, check that the server still answers.
		wctx, cancel := context.WithTimeout(ctx, p.resync)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		if err != nil && ctx.Err() == nil && pgconn.Timeout(err) {
			pctx, cancel := context.WithTimeout(ctx, p.timeout)
			err = conn.Ping(pctx)
			cancel()
			if err == nil {
				continue
			}
		}
		if err != nil {
			return p.wrap(ctx, err)
		}
		c, ok := parsePayload(n.Payload)
		if !ok {
			p.log.Warn("ignoring a malformed key change notification")
			continue
		}
		deliver(c, false)
	}
}

func parsePayload(s string) (store.Change, bool) {
	var pl changePayload
	if err := json.Unmarshal([]byte(s), &pl); err != nil || pl.ID == "" {
		return store.Change{}, false
	}
	c := store.Change{KeyID: pl.ID, Digests: make([][32]byte, 0, len(pl.Digests))}
	for _, h := range pl.Digests {
		var d [32]byte
		if len(h) != hex.EncodedLen(len(d)) {
			return store.Change{}, false
		}
		if _, err := hex.Decode(d[:], []byte(h)); err != nil {
			return store.Change{}, false
		}
		c.Digests = append(c.Digests, d)
	}
	return c, true
}

// resyncState is what one Watch remembers between resyncs.
type resyncState struct {
	last   time.Time           // server time at the start of the last successful resync
	seen   map[int64]time.Time // changes reported by resyncs, by seq, with their time
	pruned time.Time           // local time of the last pruning
}

func (p *Postgres) resyncLoop(ctx context.Context, kick <-chan struct{}, deliver func(store.Change, bool)) {
	st := &resyncState{seen: map[int64]time.Time{}}
	t := time.NewTicker(p.resync)
	defer t.Stop()
	listened := false // a kick comes only once LISTEN is in place
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-kick:
			listened = true
		}
		if err := p.resyncOnce(ctx, st, deliver); err != nil {
			if ctx.Err() == nil {
				p.log.Warn("key change resync failed", "err", err)
			}
			continue
		}
		if listened {
			p.syncedOnce.Do(func() { close(p.synced) })
		}
	}
}

// resyncOnce reports the changes recorded since shortly before the
// previous resync (since shortly before now, the first time) that no
// resync has reported yet.
func (p *Postgres) resyncOnce(ctx context.Context, st *resyncState, deliver func(store.Change, bool)) error {
	qctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	var now time.Time
	if err := p.pool.QueryRow(qctx, "SELECT now()").Scan(&now); err != nil {
		return p.wrap(ctx, err)
	}
	from := st.last
	if from.IsZero() {
		from = now
	}
	from = from.Add(-resyncOverlap)
	rows, err := p.pool.Query(qctx, "SELECT seq, key_id, digests, at FROM key_changes WHERE at > $1 ORDER BY seq", from)
	if err != nil {
		return p.wrap(ctx, err)
	}
	type row struct {
		seq     int64
		id      string
		digests [][]byte
		at      time.Time
	}
	var changes []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.seq, &r.id, &r.digests, &r.at); err != nil {
			rows.Close()
			return p.wrap(ctx, err)
		}
		changes = append(changes, r)
	}
	if err := rows.Err(); err != nil {
		return p.wrap(ctx, err)
	}
	for seq, at := range st.seen {
		if !at.After(from) {
			delete(st.seen, seq)
		}
	}
	for _, r := range changes {
		if _, dup := st.seen[r.seq]; dup {
			continue
		}
		st.seen[r.seq] = r.at
		c := store.Change{KeyID: r.id, Digests: make([][32]byte, 0, len(r.digests))}
		for _, d := range r.digests {
			var a [32]byte
			if copy(a[:], d) == len(a) {
				c.Digests = append(c.Digests, a)
			}
		}
		deliver(c, true)
	}
	st.last = now
	if time.Since(st.pruned) >= pruneEvery {
		st.pruned = time.Now()
		if _, err := p.pool.Exec(qctx, "DELETE FROM key_changes WHERE at < now() - interval '24 hours'"); err != nil {
			return p.wrap(ctx, err)
		}
	}
	return nil
}

// sleep waits d or until ctx ends; false when ctx ended.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
