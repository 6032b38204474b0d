package store

import (
	"context"
	"hash/maphash"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

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
	recent [recentSlots]atomic.Pointer[recentUse]

	// flushMu serializes flushes, so the final Flush at shutdown waits for
	// a periodic one in progress (which either wrote its batch or put it
	// back) instead of finding nothing and returning.
	flushMu sync.Mutex
}

const usageShards = 32

// usageGranularity is how long a recorded use stands for later ones of the
// same key (Record): last_used_at is exact to within it.
const usageGranularity = int64(time.Millisecond)

// recentSlots is the size of Record's filter of recently noted keys.
const recentSlots = 1024

// recentUse is one entry of the filter: a note that key (by identity: the
// cache hands out one *auth.Key per key and secret until it changes) was
// last recorded at at (Unix ns). key and previous never change; a slot
// taken by another key gets a new entry.
type recentUse struct {
	key      *auth.Key
	previous bool
	at       atomic.Int64
}

// recentSlot places a key in the filter by its address.
func recentSlot(k *auth.Key, previous bool) uint64 {
	h := uint64(uintptr(unsafe.Pointer(k))) * 0x9e3779b97f4a7c15
	if previous {
		h ^= 0x5bd1e995
	}
	return (h >> 32) % recentSlots
}

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
// secret when previous is set). It is safe for concurrent use; a key seen
// again within usageGranularity costs one atomic load, otherwise Record
// takes one of several shard locks. It allocates a small filter entry when
// a key takes a slot of the filter (its first use, or after another key
// took the slot), and a map entry for the first use of a key in an
// interval.
func (r *UsageRecorder) Record(k *auth.Key, previous bool, now time.Time) {
	// A busy key is noted at most once per usageGranularity: the same
	// cached *auth.Key seen again that soon changes nothing worth a lock
	// (last_used_at may lag by that much). The filter entry is read
	// without writing, so CPUs serving one key do not fight over it.
	ns := now.UnixNano()
	slot := &r.recent[recentSlot(k, previous)]
	if e := slot.Load(); e != nil && e.key == k && e.previous == previous {
		if at := e.at.Load(); ns >= at && ns-at < usageGranularity {
			return
		}
		e.at.Store(ns)
	} else {
		e := &recentUse{key: k, previous: previous}
		e.at.Store(ns)
		slot.Store(e)
	}
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
