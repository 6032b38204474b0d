// Package cache keeps recently used keys in memory in front of an
// auth.KeyStore, so the request path rarely waits for the store (CONTRACT
// §2 cache, §4 step 4, §5).
//
// A Cache is itself an auth.KeyStore. It remembers keys for PositiveTTL and
// unknown digests for NegativeTTL, makes concurrent misses for one digest
// share one store query, serves a remembered key for StaleIfError past its
// TTL while the store cannot answer, and forgets keys when told to
// (Invalidate). Its correctness rests only on the expiry and epoch fields
// of its own immutable entries, checked on every lookup: the underlying
// ristretto cache may drop, delay or reorder writes without a stale key
// ever being returned.
package cache

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/ristretto/v2"
	"github.com/keygate/keygate/auth"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"
)

// Defaults for zero Options fields.
const (
	DefaultMaxKeys              = 1_000_000
	DefaultMaxConcurrentLookups = 64
	DefaultLookupTimeout        = 2 * time.Second
)

// Options configure a Cache. The zero value is valid: it caches nothing
// (both TTLs zero) but still makes concurrent lookups of one key share a
// store query and caps concurrent store queries.
type Options struct {
	// MaxKeys caps the entries by digest: keys and unknown digests
	// together. Entries by id (LookupKeyID, for sessions) come on top,
	// at most one per key a session is signed for. Zero means
	// DefaultMaxKeys (1,000,000).
	MaxKeys int64
	// PositiveTTL is how long a key found in the store is returned without
	// asking the store again. Zero means found keys are not reused (but
	// are still kept for StaleIfError).
	PositiveTTL time.Duration
	// NegativeTTL is how long a digest the store did not know is answered
	// with auth.ErrKeyNotFound without asking again. Zero means unknown
	// digests are not remembered.
	NegativeTTL time.Duration
	// StaleIfError is how long past PositiveTTL a key is still returned
	// while the store cannot answer. After a failed query such a key
	// answers alone for a second before the store is tried again. Zero
	// means never: a store error is returned once PositiveTTL has passed.
	StaleIfError time.Duration
	// MaxConcurrentLookups caps store queries in flight at once (one per
	// distinct key, however many callers wait on it). A miss past the cap
	// fails at once with auth.ErrStoreUnavailable (or is served stale)
	// instead of queueing. Zero means DefaultMaxConcurrentLookups (64).
	MaxConcurrentLookups int
	// LookupTimeout bounds each store query. A query runs under the
	// cache's own context, not the request's: other requests may be
	// waiting on it, and a request's context may end (or, for fasthttp,
	// be reused) first; request-scoped values do not reach the store.
	// Zero means DefaultLookupTimeout (2s).
	LookupTimeout time.Duration
	// Now is the clock entries are stamped and checked with. Nil means
	// time.Now.
	Now func() time.Time
	// Registerer receives the cache's metrics (keygate_cache_lookups_total,
	// keygate_cache_entries, keygate_invalidations_total). Nil means the
	// metrics are kept but not exported.
	Registerer prometheus.Registerer
}

// Cache is an auth.KeyStore that caches another one. Its methods are safe
// for concurrent use, except Close (see there).
type Cache struct {
	next          auth.KeyStore
	rc            *ristretto.Cache[uint64, *entry]
	now           func() time.Time
	realClock     bool // now is time.Now: LookupKeyAt may use its caller's reading
	positiveTTL   time.Duration
	negativeTTL   time.Duration
	staleIfError  time.Duration
	lookupTimeout time.Duration
	// maxLife is the longest an entry can be returned after the moment
	// it was stamped with; tombstones older than that protect nothing.
	maxLife time.Duration
	seed    maphash.Seed

	// base parents every store query: not a request's context, which may
	// be done (or, for fasthttp, reused) before the shared query ends.
	base   context.Context
	cancel context.CancelFunc
	sem    chan struct{}
	flight singleflight.Group

	// epoch counts invalidations; entries carry the value it had when
	// their lookup started. allEpoch is the epoch of the last
	// InvalidateAll: entries older than it are never returned.
	epoch    atomic.Uint64
	allEpoch atomic.Uint64
	tombs    [shards]tombShard
	index    [shards]indexShard

	// life keeps writes away from a closed ristretto cache, whose Set,
	// Del and Wait panic when they race its Close. Writers (store queries
	// finishing in the background, invalidations, Warm) hold it shared.
	life   sync.RWMutex
	closed bool
	shut   atomic.Bool // closed, for the lock-free front path

	m metrics

	// front holds, by digest, entries recently returned from ristretto,
	// for lock-free hits: a hit in ristretto takes a read lock on the
	// key's shard and queues the access for its admission policy, and on
	// a busy key every CPU contends for both. An entry here is checked
	// exactly as one from ristretto (digest, current, expires), so it
	// answers only when ristretto's copy would; it may outlive that copy
	// until its slot is reused, which bounds what front keeps alive.
	front [frontSlots]atomic.Pointer[entry]
}

// frontSlots is the size of Cache.front.
const frontSlots = 4096

// Compile-time check that a Cache decorates the interface it consumes.
var _ auth.KeyStore = (*Cache)(nil)

// entry is one cached answer. Entries are never modified after they are
// handed to ristretto; a new answer is a new entry.
type entry struct {
	// key is the answer; nil means the store did not know the digest or id.
	key *auth.Key
	// byID tells which of digest or id this entry answers for. Both are
	// compared on every read, so a colliding ristretto hash is a miss.
	byID   bool
	digest [32]byte
	id     string
	// epoch is Cache.epoch when the lookup that produced the entry began.
	epoch uint64
	// expires ends its use as an answer; staleUntil (>= expires) ends its
	// use as a fallback while the store is failing.
	expires    time.Time
	staleUntil time.Time
	// stale marks a copy of an expired entry that answers for a short
	// while after the store failed (see holdStale).
	stale bool
}

// New returns a Cache in front of next.
func New(next auth.KeyStore, o Options) (*Cache, error) {
	var errs []error
	if next == nil {
		errs = append(errs, errors.New("cache: next KeyStore is nil"))
	}
	if o.MaxKeys < 0 {
		errs = append(errs, fmt.Errorf("cache: MaxKeys %d is negative", o.MaxKeys))
	}
	if o.MaxConcurrentLookups < 0 {
		errs = append(errs, fmt.Errorf("cache: MaxConcurrentLookups %d is negative", o.MaxConcurrentLookups))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"PositiveTTL", o.PositiveTTL},
		{"NegativeTTL", o.NegativeTTL},
		{"StaleIfError", o.StaleIfError},
		{"LookupTimeout", o.LookupTimeout},
	} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("cache: %s %v is negative", d.name, d.v))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if o.MaxKeys == 0 {
		o.MaxKeys = DefaultMaxKeys
	}
	if o.MaxConcurrentLookups == 0 {
		o.MaxConcurrentLookups = DefaultMaxConcurrentLookups
	}
	if o.LookupTimeout == 0 {
		o.LookupTimeout = DefaultLookupTimeout
	}
	realClock := o.Now == nil
	if realClock {
		o.Now = time.Now
	}

	c := &Cache{
		next:          next,
		now:           o.Now,
		realClock:     realClock,
		positiveTTL:   o.PositiveTTL,
		negativeTTL:   o.NegativeTTL,
		staleIfError:  o.StaleIfError,
		lookupTimeout: o.LookupTimeout,
		maxLife:       max(o.PositiveTTL+o.StaleIfError, o.NegativeTTL),
		seed:          maphash.MakeSeed(),
		sem:           make(chan struct{}, o.MaxConcurrentLookups),
	}
	for i := range c.tombs {
		c.tombs[i].digests = make(map[[32]byte]tomb)
		c.tombs[i].ids = make(map[string]tomb)
		c.index[i].ids = make(map[string][][32]byte)
	}
	rc, err := ristretto.NewCache(&ristretto.Config[uint64, *entry]{
		// Ristretto's advice: ten counters per entry kept.
		NumCounters: 10 * o.MaxKeys,
		MaxCost:     o.MaxKeys,
		BufferItems: 64,
		// Our keys are already uniform: the first 8 bytes of a SHA-256
		// digest, or a maphash of an id. Entries hold the full digest or
		// id and are compared on every read, which is stricter than a
		// 64-bit conflict hash.
		KeyToHash:          func(k uint64) (uint64, uint64) { return k, 0 },
		IgnoreInternalCost: true,
		OnEvict:            c.unindex,
		OnReject:           c.unindex,
	})
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	c.rc = rc
	m, err := newMetrics(o.Registerer, c.Len)
	if err != nil {
		rc.Close()
		return nil, err
	}
	c.m = m
	c.base, c.cancel = context.WithCancel(context.Background())
	return c, nil
}

// Close cancels store queries in flight, waits for them to stop writing,
// and stops the cache's background goroutines. Call it once nothing looks
// keys up any more (after the servers have stopped): lookups racing Close
// may panic inside ristretto, and lookups after it fail with
// auth.ErrStoreUnavailable.
func (c *Cache) Close() {
	c.cancel()
	c.shut.Store(true)
	c.life.Lock()
	closed := c.closed
	c.closed = true
	c.life.Unlock()
	if !closed {
		c.rc.Close()
	}
}

// writing reports whether the cache may be written to, and if so holds it
// open until the caller calls c.life.RUnlock.
func (c *Cache) writing() bool {
	c.life.RLock()
	if c.closed {
		c.life.RUnlock()
		return false
	}
	return true
}

// Wait blocks until every write made so far has reached the cache. Tests
// and Warm use it; the request path never needs to.
func (c *Cache) Wait() {
	if !c.writing() {
		return
	}
	defer c.life.RUnlock()
	c.rc.Wait()
}

// Len returns the number of entries by digest held (what MaxKeys caps),
// including ones that are expired or invalidated but not yet removed.
func (c *Cache) Len() int {
	return int(c.rc.MaxCost() - c.rc.RemainingCost())
}

func digestHash(d *[32]byte) uint64 { return binary.LittleEndian.Uint64(d[:8]) }

func (c *Cache) idHash(id string) uint64 { return maphash.String(c.seed, id) }

// LookupKey returns the key whose secret has the given SHA-256 digest,
// from memory when it can. It returns auth.ErrKeyNotFound for a digest the
// store does not know and an error matching auth.ErrStoreUnavailable when
// the store cannot answer and no stale key may stand in.
func (c *Cache) LookupKey(ctx context.Context, digest [32]byte) (*auth.Key, error) {
	return c.lookupKey(ctx, digest, time.Time{})
}

// LookupKeyAt is LookupKey for a caller that has just read the clock (the
// proxy, once per request): now stands in for a reading of the cache's
// own, unless the cache was given a clock other than time.Now. now must be
// recent: it is compared with entries' expiry, and invalidation records
// are kept at least pruneEvery past the point where an entry could still
// need them (see tombShard), which a reading microseconds old is well
// within.
func (c *Cache) LookupKeyAt(ctx context.Context, digest [32]byte, now time.Time) (*auth.Key, error) {
	if !c.realClock {
		now = time.Time{}
	}
	return c.lookupKey(ctx, digest, now)
}

func (c *Cache) lookupKey(ctx context.Context, digest [32]byte, now time.Time) (*auth.Key, error) {
	h := digestHash(&digest)
	slot := &c.front[(h>>32)%frontSlots]
	if e := slot.Load(); e != nil && !e.byID && e.digest == digest && !c.shut.Load() && c.current(e) {
		if now.IsZero() {
			now = c.now()
		}
		if now.Before(e.expires) {
			// About one front hit in 32 (by the clock's low bits) is
			// also a ristretto read, so its admission policy still
			// sees the key as used.
			if now.UnixNano()&31 == 0 {
				c.rc.Get(h)
			}
			return c.answer(e)
		}
	}
	e, ok := c.rc.Get(h)
	if ok && (e.byID || e.digest != digest || !c.current(e)) {
		e = nil
	}
	if e != nil && now.IsZero() {
		now = c.now()
	}
	if e != nil && now.Before(e.expires) {
		if slot.Load() != e {
			slot.Store(e)
		}
		return c.answer(e)
	}
	return c.miss(ctx, target{digest: digest}, e)
}

// answer is the reply of a fresh entry: its key, or ErrKeyNotFound.
func (c *Cache) answer(e *entry) (*auth.Key, error) {
	if e.key == nil {
		c.m.negativeHit.Inc()
		return nil, auth.ErrKeyNotFound
	}
	c.countHit(e)
	return e.key, nil
}

// LookupKeyID returns the key with the given id (for sessions), cached and
// invalidated like LookupKey.
func (c *Cache) LookupKeyID(ctx context.Context, id string) (*auth.Key, error) {
	e, ok := c.rc.Get(c.idHash(id))
	if ok && (!e.byID || e.id != id || !c.current(e)) {
		e = nil
	}
	if e != nil && c.now().Before(e.expires) {
		if e.key == nil {
			c.m.negativeHit.Inc()
			return nil, auth.ErrKeyNotFound
		}
		c.countHit(e)
		return e.key, nil
	}
	// id may be a view of a request buffer (auth.KeyStore): the miss keeps
	// it (singleflight key, entry, index), so it gets its own copy.
	return c.miss(ctx, target{byID: true, id: strings.Clone(id)}, e)
}

func (c *Cache) countHit(e *entry) {
	if e.stale {
		c.m.staleHit.Inc()
		return
	}
	c.m.hit.Inc()
}

// fresh returns t's entry if it may answer now, or nil.
func (c *Cache) fresh(t *target) *entry {
	e, ok := c.rc.Get(t.hash(c))
	if !ok || e.byID != t.byID || e.digest != t.digest || e.id != t.id || !c.current(e) {
		return nil
	}
	if !c.now().Before(e.expires) {
		return nil
	}
	return e
}

// target names what a miss looks up: a digest, or an id when byID.
type target struct {
	byID   bool
	digest [32]byte
	id     string
}

func (t *target) hash(c *Cache) uint64 {
	if t.byID {
		return c.idHash(t.id)
	}
	return digestHash(&t.digest)
}

// flightKey separates digests from ids and one epoch from the next, so a
// caller that arrives after an invalidation never shares a query that
// began before it.
func (t *target) flightKey(epoch uint64) string {
	if t.byID {
		var b [9]byte
		b[0] = 'i'
		binary.LittleEndian.PutUint64(b[1:], epoch)
		return string(b[:]) + t.id
	}
	var b [41]byte
	b[0] = 'd'
	binary.LittleEndian.PutUint64(b[1:9], epoch)
	copy(b[9:], t.digest[:])
	return string(b[:])
}

// mark is the epoch and time a lookup or warm-up began at. Entries are
// stamped with it rather than with the time the answer arrived, so an
// entry from before an invalidation can never outlive that
// invalidation's tombstone (see tombShard).
type mark struct {
	epoch uint64
	at    time.Time
}

func (c *Cache) mark() mark {
	at := c.now() // read before the epoch: see mark
	return mark{epoch: c.epoch.Load(), at: at}
}

// miss asks the store, sharing the query with concurrent callers for the
// same target, and falls back to old (an expired entry, or nil) when the
// store cannot answer.
func (c *Cache) miss(ctx context.Context, t target, old *entry) (*auth.Key, error) {
	mk := c.mark()
	ch := c.flight.DoChan(t.flightKey(mk.epoch), func() (any, error) {
		return c.fetch(t, mk)
	})
	var key *auth.Key
	var err error
	select {
	case r := <-ch:
		key, _ = r.Val.(*auth.Key)
		err = r.Err
	case <-ctx.Done():
		// This caller gives up; the query goes on for the others.
		err = fmt.Errorf("%w: %w", auth.ErrStoreUnavailable, ctx.Err())
	}
	// current before now: see tombShard.
	if err != nil && errors.Is(err, auth.ErrStoreUnavailable) &&
		old != nil && old.key != nil && c.current(old) && c.now().Before(old.staleUntil) {
		c.m.staleHit.Inc()
		return old.key, nil
	}
	c.m.miss.Inc()
	return key, err
}

// errBusy is returned without asking the store when MaxConcurrentLookups
// queries are already in flight.
var errBusy = fmt.Errorf("%w: too many concurrent store lookups", auth.ErrStoreUnavailable)

// errClosed is returned by lookups after Close.
var errClosed = fmt.Errorf("%w: cache closed", auth.ErrStoreUnavailable)

// fetch runs one store query for t and caches its answer. Every error it
// returns matches either auth.ErrKeyNotFound or auth.ErrStoreUnavailable.
func (c *Cache) fetch(t target, mk mark) (key *auth.Key, err error) {
	// A query that finished between this caller's miss and its joining
	// the flight has already cached its answer (put waits for that).
	if c.writing() {
		e := c.fresh(&t)
		c.life.RUnlock()
		if e != nil {
			if e.key == nil {
				return nil, auth.ErrKeyNotFound
			}
			return e.key, nil
		}
	}
	if c.base.Err() != nil {
		return nil, errClosed
	}
	select {
	case c.sem <- struct{}{}:
	default:
		return nil, errBusy
	}
	defer func() { <-c.sem }()
	defer func() {
		// A panicking store must not take the process down from a
		// singleflight goroutine; the callers get a 503 instead.
		if r := recover(); r != nil {
			key, err = nil, fmt.Errorf("%w: store panicked: %v", auth.ErrStoreUnavailable, r)
		}
	}()

	ctx, cancel := context.WithTimeout(c.base, c.lookupTimeout)
	defer cancel()
	if t.byID {
		key, err = c.next.LookupKeyID(ctx, t.id)
	} else {
		key, err = c.next.LookupKey(ctx, t.digest)
	}
	switch {
	case err == nil && key != nil:
		if c.positiveTTL+c.staleIfError > 0 {
			c.put(t, key, mk, c.positiveTTL, c.staleIfError)
		}
		return key, nil
	case errors.Is(err, auth.ErrKeyNotFound):
		if c.negativeTTL > 0 {
			c.put(t, nil, mk, c.negativeTTL, 0)
		}
		return nil, auth.ErrKeyNotFound
	case err == nil:
		return nil, fmt.Errorf("%w: store returned no key and no error", auth.ErrStoreUnavailable)
	case errors.Is(err, auth.ErrStoreUnavailable):
		c.holdStale(t)
		return nil, err
	default:
		c.holdStale(t)
		return nil, fmt.Errorf("%w: %w", auth.ErrStoreUnavailable, err)
	}
}

// staleRetry is how long a stale key answers on its own after a failed
// store query before the next query is tried.
const staleRetry = time.Second

// holdStale lets t's expired entry, if it may still be served stale,
// answer by itself for staleRetry. Without it, while the store hangs,
// every request for the key would wait up to LookupTimeout before getting
// the stale answer. Callers sharing the failed query serve it stale
// themselves (miss).
func (c *Cache) holdStale(t target) {
	if !c.writing() {
		return
	}
	defer c.life.RUnlock()
	old, ok := c.rc.Get(t.hash(c))
	if !ok || old.key == nil || old.byID != t.byID || old.digest != t.digest || old.id != t.id || !c.current(old) {
		return
	}
	now := c.now()
	if !now.Before(old.staleUntil) || now.Before(old.expires) {
		return
	}
	e := *old
	e.stale = true
	e.expires = now.Add(staleRetry)
	if e.expires.After(old.staleUntil) {
		e.expires = old.staleUntil
	}
	cost := int64(1)
	if t.byID {
		cost = 0
	}
	c.rc.SetWithTTL(t.hash(c), &e, cost, memoryTTL(t, e.key, old.staleUntil.Sub(now)))
	c.rc.Wait() // as in put: the next request should find it
}

// put caches an answer for t unless an invalidation happened since mk.
// Should one happen right after the check, the entry's epoch makes reads
// reject it (current), so the check only saves work.
func (c *Cache) put(t target, key *auth.Key, mk mark, ttl, stale time.Duration) {
	if c.epoch.Load() != mk.epoch || !c.writing() {
		return
	}
	defer c.life.RUnlock()
	c.set(t, key, mk, ttl, stale)
	// Let callers that arrive right after this query see its answer
	// instead of starting another one.
	c.rc.Wait()
}

// set writes an entry; the caller holds c.life (writing).
func (c *Cache) set(t target, key *auth.Key, mk mark, ttl, stale time.Duration) bool {
	e := &entry{
		key:        key,
		byID:       t.byID,
		digest:     t.digest,
		id:         t.id,
		epoch:      mk.epoch,
		expires:    mk.at.Add(ttl),
		staleUntil: mk.at.Add(ttl + stale),
	}
	if key != nil && !t.byID {
		c.indexAdd(key.ID, t.digest)
	}
	// Entries by id cost nothing, so that Warm, which caches every key
	// by id as well, fits MaxKeys keys. They are still evicted with the
	// rest, and only signed sessions name ids.
	cost := int64(1)
	if t.byID {
		cost = 0
	}
	return c.rc.SetWithTTL(t.hash(c), e, cost, memoryTTL(t, key, ttl+stale))
}

// memoryTTL is the ristretto TTL for an entry that is of no use after
// life: it only frees memory, since an entry's expires and staleUntil
// decide whether it answers. Keys found by digest get none (0: kept until
// evicted, replaced or invalidated): ristretto reads the clock on every
// hit of an entry with a TTL, which is the proxy's hot path, and MaxKeys
// bounds them. Negative entries keep theirs, so a spray of unknown keys
// leaves the cache once it stops, instead of crowding out valid keys at
// admission; entries by id cost nothing, so a TTL is what frees them.
func memoryTTL(t target, key *auth.Key, life time.Duration) time.Duration {
	if !t.byID && key != nil {
		return 0
	}
	return life
}

// WarmEntry is one key to preload: the digest of one of its live secrets
// and the key as LookupKey would return it for that digest.
type WarmEntry struct {
	Digest [32]byte
	Key    *auth.Key
}

// Epoch marks a moment for Warm: take it before reading the keys from the
// store, so that an invalidation between that read and Warm is not undone.
type Epoch struct{ m mark }

// Epoch returns the current invalidation epoch (see Warm).
func (c *Cache) Epoch() Epoch { return Epoch{c.mark()} }

// Warm preloads keys read from the store since e (CONTRACT §5: a replica
// loads active keys before it reports ready), as if each had just been
// looked up at e; keys with Previous false are also cached by id. A key
// invalidated after e is not returned. Warm returns once the entries are
// in the cache, and reports how many were accepted (ristretto's admission
// policy may still turn some away once the cache is full).
func (c *Cache) Warm(e Epoch, keys []WarmEntry) int {
	if c.positiveTTL+c.staleIfError <= 0 || !c.writing() {
		return 0
	}
	defer c.life.RUnlock()
	n := 0
	for _, w := range keys {
		if w.Key == nil {
			continue
		}
		ok := c.warmSet(target{digest: w.Digest}, w.Key, e.m)
		if ok && !w.Key.Previous {
			c.warmSet(target{byID: true, id: w.Key.ID}, w.Key, e.m)
		}
		if ok {
			n++
		}
	}
	c.rc.Wait()
	return n
}

// warmSet sets like a lookup would, but waits for ristretto's write buffer
// to drain rather than letting a bulk load be dropped.
func (c *Cache) warmSet(t target, key *auth.Key, mk mark) bool {
	if c.set(t, key, mk, c.positiveTTL, c.staleIfError) {
		return true
	}
	c.rc.Wait()
	return c.set(t, key, mk, c.positiveTTL, c.staleIfError)
}
