package cache

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/ristretto/v2"
)

// shards splits tombstones and the id index so that invalidations and the
// reads that consult them rarely meet on one mutex.
const shards = 64

// maxIndexed bounds the digests remembered per key id: a key has at most
// two live secrets, so more means old rotations nobody invalidated.
const maxIndexed = 8

// pruneEvery is how often a tombstone shard is swept at most.
const pruneEvery = time.Minute

// Source says where an invalidation came from; it is the source label of
// keygate_invalidations_total.
type Source string

// The sources CONTRACT §7 names.
const (
	SourceLocal  Source = "local"  // a change made through this replica
	SourceNotify Source = "notify" // a store notification from another replica
	SourceResync Source = "resync" // the periodic resync after lost notifications
)

// tomb records that a digest or id was invalidated at epoch, at time at.
type tomb struct {
	epoch uint64
	at    time.Time
}

// tombShard holds tombstones: an entry for a digest or key id with an epoch
// below the tombstone's is never returned, whatever ristretto still holds
// or applies late (a Set racing a Del, ristretto#52).
//
// A tombstone is needed only while an entry it rejects could still be
// returned. Such an entry's lookup began before the invalidation, and
// entries are stamped with the time their lookup began (mark), so it is
// dead by tomb.at + maxLife. Readers check tombstones before reading the
// clock, so a reader that finds one pruned also reads a clock past that.
type tombShard struct {
	// latest is the highest epoch ever recorded here: entries at or past
	// it skip the lock, so an invalidation slows hits only on its own
	// shards, not on every entry older than it.
	latest    atomic.Uint64
	mu        sync.RWMutex
	digests   map[[32]byte]tomb
	ids       map[string]tomb
	nextPrune time.Time
}

// indexShard maps key ids to the digests cached for them, so invalidating
// an id frees every secret's entry (tombstones already hide them).
type indexShard struct {
	mu  sync.Mutex
	ids map[string][][32]byte
}

func (c *Cache) idShard(id string) uint64 { return c.idHash(id) % shards }

func digestShard(d *[32]byte) uint64 { return uint64(d[31]) % shards }

// current reports whether no invalidation since e's lookup began covers e.
func (c *Cache) current(e *entry) bool {
	if e.epoch == c.epoch.Load() {
		return true // no invalidation at all since
	}
	if e.epoch < c.allEpoch.Load() {
		return false
	}
	if e.byID {
		return !c.revokedID(e.id, e.epoch)
	}
	if c.revokedDigest(&e.digest, e.epoch) {
		return false
	}
	return e.key == nil || !c.revokedID(e.key.ID, e.epoch)
}

func (c *Cache) revokedID(id string, epoch uint64) bool {
	s := &c.tombs[c.idShard(id)]
	if epoch >= s.latest.Load() {
		return false
	}
	s.mu.RLock()
	t, ok := s.ids[id]
	s.mu.RUnlock()
	return ok && t.epoch > epoch
}

func (c *Cache) revokedDigest(d *[32]byte, epoch uint64) bool {
	s := &c.tombs[digestShard(d)]
	if epoch >= s.latest.Load() {
		return false
	}
	s.mu.RLock()
	t, ok := s.digests[*d]
	s.mu.RUnlock()
	return ok && t.epoch > epoch
}

// Invalidate drops everything cached for the key keyID (by id, and for
// every digest looked up for it, current and previous secret) and for the
// given digests, counting it as SourceLocal. Call it after the change is
// in the store: a lookup that began earlier may still return the old key
// to its callers, but never caches it, and every lookup that begins later
// asks the store. keyID may be empty to drop digests only (a new key whose
// digest was remembered as unknown).
func (c *Cache) Invalidate(keyID string, digests ...[32]byte) {
	c.InvalidateFrom(SourceLocal, keyID, digests...)
}

// InvalidateFrom is Invalidate counted under the given source.
func (c *Cache) InvalidateFrom(src Source, keyID string, digests ...[32]byte) {
	n := c.epoch.Add(1)
	t := tomb{epoch: n, at: c.now()}
	if keyID != "" {
		s := &c.tombs[c.idShard(keyID)]
		s.mu.Lock()
		if old, ok := s.ids[keyID]; !ok || old.epoch < n {
			s.ids[keyID] = t
		}
		if s.latest.Load() < n {
			s.latest.Store(n)
		}
		c.pruneLocked(s, t.at)
		s.mu.Unlock()
	}
	for i := range digests {
		d := &digests[i]
		s := &c.tombs[digestShard(d)]
		s.mu.Lock()
		if old, ok := s.digests[*d]; !ok || old.epoch < n {
			s.digests[*d] = t
		}
		if s.latest.Load() < n {
			s.latest.Store(n)
		}
		c.pruneLocked(s, t.at)
		s.mu.Unlock()
	}

	// The tombstones above decide; deleting only frees memory. No shard
	// lock is held here: ristretto's Del may wait for its goroutine,
	// which calls unindex.
	c.m.invalidation(src).Inc()
	if !c.writing() {
		return
	}
	defer c.life.RUnlock()
	if keyID != "" {
		c.rc.Del(c.idHash(keyID))
		for _, d := range c.indexTake(keyID) {
			c.rc.Del(digestHash(&d))
		}
	}
	for i := range digests {
		c.rc.Del(digestHash(&digests[i]))
	}
}

// InvalidateAll drops every entry, counting it as SourceLocal.
func (c *Cache) InvalidateAll() { c.InvalidateAllFrom(SourceLocal) }

// InvalidateAllFrom is InvalidateAll counted under the given source. The
// entries stop being returned at once; ristretto frees them as they are
// replaced or evicted, or reach their TTL when they have one (memoryTTL).
func (c *Cache) InvalidateAllFrom(src Source) {
	n := c.epoch.Add(1)
	for {
		old := c.allEpoch.Load()
		if old >= n || c.allEpoch.CompareAndSwap(old, n) {
			break
		}
	}
	// allEpoch now covers every tombstone up to n, and every index
	// entry points at an entry it hides.
	for i := range c.tombs {
		s := &c.tombs[i]
		s.mu.Lock()
		for k, t := range s.digests {
			if t.epoch <= n {
				delete(s.digests, k)
			}
		}
		for k, t := range s.ids {
			if t.epoch <= n {
				delete(s.ids, k)
			}
		}
		s.mu.Unlock()
		x := &c.index[i]
		x.mu.Lock()
		clear(x.ids)
		x.mu.Unlock()
	}
	c.m.invalidation(src).Inc()
}

// pruneLocked drops the shard's tombstones that can no longer reject
// anything (see tombShard), at most once per pruneEvery. The extra
// pruneEvery of margin absorbs goroutines reading the clock in a slightly
// different order than they take the lock.
func (c *Cache) pruneLocked(s *tombShard, now time.Time) {
	if now.Before(s.nextPrune) {
		return
	}
	s.nextPrune = now.Add(pruneEvery)
	keep := c.maxLife + pruneEvery
	for k, t := range s.digests {
		if now.Sub(t.at) > keep {
			delete(s.digests, k)
		}
	}
	for k, t := range s.ids {
		if now.Sub(t.at) > keep {
			delete(s.ids, k)
		}
	}
}

func (c *Cache) indexAdd(id string, d [32]byte) {
	x := &c.index[c.idShard(id)]
	x.mu.Lock()
	ds := x.ids[id]
	for _, have := range ds {
		if have == d {
			x.mu.Unlock()
			return
		}
	}
	if len(ds) >= maxIndexed {
		ds = append(ds[:0], ds[1:]...)
	}
	x.ids[id] = append(ds, d)
	x.mu.Unlock()
}

func (c *Cache) indexTake(id string) [][32]byte {
	x := &c.index[c.idShard(id)]
	x.mu.Lock()
	ds := x.ids[id]
	delete(x.ids, id)
	x.mu.Unlock()
	return ds
}

// unindex forgets an entry ristretto evicted or refused. It runs on
// ristretto's goroutine and must not call back into ristretto.
func (c *Cache) unindex(it *ristretto.Item[*entry]) {
	e := it.Value
	if e == nil || e.byID || e.key == nil {
		return
	}
	x := &c.index[c.idShard(e.key.ID)]
	x.mu.Lock()
	ds := x.ids[e.key.ID]
	for i, d := range ds {
		if d == e.digest {
			ds = append(ds[:i], ds[i+1:]...)
			break
		}
	}
	if len(ds) == 0 {
		delete(x.ids, e.key.ID)
	} else {
		x.ids[e.key.ID] = ds
	}
	x.mu.Unlock()
}
