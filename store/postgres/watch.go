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
// ResyncInterval it rereads recent key_changes and reports each change
// neither a previous resync nor a notification has reported, with resync
// true. (A notification arriving after a resync reported its change is
// still reported: notifications are never held back.) fn is never called
// concurrently.
func (p *Postgres) Watch(ctx context.Context, fn func(c store.Change, resync bool)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(p.closed, cancel)
	defer stop()

	w := newWatcher(fn)
	kick := make(chan struct{}, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		p.resyncLoop(ctx, kick, w)
	}()
	p.listenLoop(ctx, kick, w)
	wg.Wait()
	return ctx.Err()
}

// watcher is one Watch's state, shared by its listening and its resyncing
// goroutine. Both record the changes they report in seen, so that a resync
// does not report again a change a notification already reported: every
// report makes the caller drop cached keys, and a key dropped twice costs
// a second store query, or a 503 if the store went down in between.
type watcher struct {
	fn func(store.Change, bool)

	mu sync.Mutex // serializes fn; guards seen
	// seen holds the changes reported, by seq, with their key_changes
	// time; the zero time for a notified change no resync has read yet.
	// A change leaves it once it is older than every resync's window.
	seen map[int64]time.Time

	// Only the resyncing goroutine uses these.
	last   time.Time // server time at the start of the last successful resync
	pruned time.Time // local time of the last pruning of key_changes
}

func newWatcher(fn func(store.Change, bool)) *watcher {
	return &watcher{fn: fn, seen: map[int64]time.Time{}}
}

// notified reports a change that arrived by notification. seq is its
// key_changes seq, 0 when the sender did not say (an older replica): a
// later resync then reports it again.
func (w *watcher) notified(c store.Change, seq int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.seen[seq]; seq > 0 && !ok {
		w.seen[seq] = time.Time{}
	}
	w.fn(c, false)
}

func (p *Postgres) listenLoop(ctx context.Context, kick chan<- struct{}, w *watcher) {
	backoff := minBackoff
	for {
		err := p.listen(ctx, func() {
			backoff = minBackoff
			select {
			case kick <- struct{}{}:
			default:
			}
		}, w)
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
func (p *Postgres) listen(ctx context.Context, connected func(), w *watcher) error {
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
		c, seq, ok := parsePayload(n.Payload)
		if !ok {
			p.log.Warn("ignoring a malformed key change notification")
			continue
		}
		w.notified(c, seq)
	}
}

// parsePayload decodes a notification: the change and its key_changes seq
// (0 when the payload has none, as from an older replica).
func parsePayload(s string) (store.Change, int64, bool) {
	var pl changePayload
	if err := json.Unmarshal([]byte(s), &pl); err != nil || pl.ID == "" || pl.Seq < 0 {
		return store.Change{}, 0, false
	}
	c := store.Change{KeyID: pl.ID, Digests: make([][32]byte, 0, len(pl.Digests))}
	for _, h := range pl.Digests {
		var d [32]byte
		if len(h) != hex.EncodedLen(len(d)) {
			return store.Change{}, 0, false
		}
		if _, err := hex.Decode(d[:], []byte(h)); err != nil {
			return store.Change{}, 0, false
		}
		c.Digests = append(c.Digests, d)
	}
	return c, pl.Seq, true
}

func (p *Postgres) resyncLoop(ctx context.Context, kick <-chan struct{}, w *watcher) {
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
		if err := p.resyncOnce(ctx, w); err != nil {
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
// previous resync (since shortly before now, the first time) that neither
// a resync nor a notification has reported yet.
func (p *Postgres) resyncOnce(ctx context.Context, w *watcher) error {
	qctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	var now time.Time
	if err := p.pool.QueryRow(qctx, "SELECT now()").Scan(&now); err != nil {
		return p.wrap(ctx, err)
	}
	from := w.last
	if from.IsZero() {
		from = now
	}
	from = from.Add(-resyncOverlap)
	rows, err := p.pool.Query(qctx, "SELECT seq, key_id, digests, at FROM key_changes WHERE at > $1 ORDER BY seq", from)
	if err != nil {
		return p.wrap(ctx, err)
	}
	var changes []changeRow
	for rows.Next() {
		var r changeRow
		if err := rows.Scan(&r.seq, &r.id, &r.digests, &r.at); err != nil {
			rows.Close()
			return p.wrap(ctx, err)
		}
		changes = append(changes, r)
	}
	if err := rows.Err(); err != nil {
		return p.wrap(ctx, err)
	}
	w.resynced(changes, from, now)
	w.last = now
	if time.Since(w.pruned) >= pruneEvery {
		w.pruned = time.Now()
		if _, err := p.pool.Exec(qctx, "DELETE FROM key_changes WHERE at < now() - interval '24 hours'"); err != nil {
			return p.wrap(ctx, err)
		}
	}
	if p.onResync != nil {
		p.onResync(from)
	}
	return nil
}

// changeRow is a key_changes row.
type changeRow struct {
	seq     int64
	id      string
	digests [][]byte
	at      time.Time
}

// resynced reports the changes a resync read from key_changes rows after
// from, starting at server time now, that were not reported yet, and
// forgets the changes no later resync can read.
func (w *watcher) resynced(changes []changeRow, from, now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, r := range changes {
		if _, dup := w.seen[r.seq]; dup {
			w.seen[r.seq] = r.at // a notified change gets its time
			continue
		}
		w.seen[r.seq] = r.at
		c := store.Change{KeyID: r.id, Digests: make([][32]byte, 0, len(r.digests))}
		for _, d := range r.digests {
			var a [32]byte
			if copy(a[:], d) == len(a) {
				c.Digests = append(c.Digests, a)
			}
		}
		w.fn(c, true)
	}
	// Rows at or before from are no later resync's business, so neither
	// are their seqs. A notified change this resync did not read (it
	// committed after the query began, or long after it was recorded)
	// is timed now: its row, if at all in a later window, is read by the
	// next resync, which gives it its own time before from can pass now.
	for seq, at := range w.seen {
		switch {
		case at.IsZero():
			w.seen[seq] = now
		case !at.After(from):
			delete(w.seen, seq)
		}
	}
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
