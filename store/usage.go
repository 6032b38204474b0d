package store

import (
	"context"
	"hash/maphash"
	"log/slog"
	"sync"
	"time"

	"github.com/keygate/keygate/auth"
)

// UsageOptions configure a UsageRecorder. Zero values are documented.
type UsageOptions struct {
	// Interval is how often recorded usage is written. Zero means 5s.
	Interval time.Duration
	// Timeout bounds each write. Zero means 5s.
	Timeout time.Duration
	// Logger receives failed writes. Nil discards them.
	Logger *slog.Logger
}

// UsageRecorder keeps last_used_at current without a store write per
// request: the proxy records each authentication in memory (Record), and
// every Interval one Backend.RecordUsage call writes the latest use of
// every key used since (one statement however many requests there were).
// A failed write is kept and retried with the next batch.
type UsageRecorder struct {
	b      Backend
	opts   UsageOptions
	log    *slog.Logger
	seed   maphash.Seed
	shards [usageShards]usageShard

	// flushMu serializes flushes, so the final Flush at shutdown waits for
	// a periodic one in progress (which either wrote its batch or put it
	// back) instead of finding nothing and returning.
	flushMu sync.Mutex
}

const usageShards = 32

type usageShard struct {
	mu sync.Mutex
	m  map[usageKey]time.Time
	_  [40]byte // keep shards on separate cache lines
}

type usageKey struct {
	id       string
	previous bool
}

// NewUsageRecorder returns a recorder writing to b.
func NewUsageRecorder(b Backend, o UsageOptions) *UsageRecorder {
	if o.Interval <= 0 {
		o.Interval = 5 * time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &UsageRecorder{b: b, opts: o, log: log, seed: maphash.MakeSeed()}
	for i := range r.shards {
		r.shards[i].m = make(map[usageKey]time.Time)
	}
	return r
}

// Record notes that k was used at now (with its previous, rotated-out
// secret when previous is set). It is safe for concurrent use, takes one
// of several shard locks, and allocates only for the first use of a key
// in an interval.
func (r *UsageRecorder) Record(k *auth.Key, previous bool, now time.Time) {
	sh := &r.shards[maphash.String(r.seed, k.ID)%usageShards]
	uk := usageKey{id: k.ID, previous: previous}
	sh.mu.Lock()
	if at, ok := sh.m[uk]; !ok || now.After(at) {
		sh.m[uk] = now
	}
	sh.mu.Unlock()
}

// Run flushes every Interval until ctx ends. It does not flush at the end:
// call Flush after the listeners have drained.
func (r *UsageRecorder) Run(ctx context.Context) {
	t := time.NewTicker(r.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
			if err := r.Flush(fctx); err != nil {
				r.log.Warn("recording key usage failed; will retry", "err", err)
			}
			cancel()
		}
	}
}

// Flush writes everything recorded so far in one RecordUsage call. On
// failure the batch is put back (keeping any later use recorded meanwhile).
func (r *UsageRecorder) Flush(ctx context.Context) error {
	r.flushMu.Lock()
	defer r.flushMu.Unlock()
	var batch []Usage
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.Lock()
		if len(sh.m) == 0 {
			sh.mu.Unlock()
			continue
		}
		m := sh.m
		sh.m = make(map[usageKey]time.Time, len(m))
		sh.mu.Unlock()
		for uk, at := range m {
			// Microseconds, like every other time the store keeps.
			batch = append(batch, Usage{KeyID: uk.id, At: at.UTC().Truncate(time.Microsecond), Previous: uk.previous})
		}
	}
	if len(batch) == 0 {
		return nil
	}
	if err := r.b.RecordUsage(ctx, batch); err != nil {
		for _, u := range batch {
			sh := &r.shards[maphash.String(r.seed, u.KeyID)%usageShards]
			uk := usageKey{id: u.KeyID, previous: u.Previous}
			sh.mu.Lock()
			if at, ok := sh.m[uk]; !ok || u.At.After(at) {
				sh.m[uk] = u.At
			}
			sh.mu.Unlock()
		}
		return err
	}
	return nil
}
