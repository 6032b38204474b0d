package auth

import (
	"hash/maphash"
	"math"
	"math/rand/v2"
	"sync"
	"time"
)

const (
	// DefaultMaxBuckets is NewLimiter's bound when given zero (the
	// default cache.max_keys: one bucket per cacheable key).
	DefaultMaxBuckets = 1_000_000
	// DefaultBucketIdle is NewLimiter's idle time when given zero.
	DefaultBucketIdle = 10 * time.Minute

	// limiterShards spreads keys over this many locks so that no lock is
	// shared by all requests.
	limiterShards = 64
	// minShardBuckets is the fewest buckets a shard holds when maxBuckets
	// allows (a limiter smaller than that has one shard).
	minShardBuckets = 16
	// evictionSamples is how many random buckets a full shard compares
	// to find one to evict (approximate LRU, as Redis does it), so that
	// an insert into a full shard costs O(1), not a scan.
	evictionSamples = 8
	// maxClockStepBack is how far now may fall behind a bucket's last
	// refill and still be taken as concurrent requests arriving out of
	// order (no refill). A larger step back is a wall-clock step: the
	// bucket restarts its refill from now, so it is not frozen until the
	// clock catches up.
	maxClockStepBack = time.Second
)

// Limiter keeps a token bucket per key id. Its memory is bounded: at most
// maxBuckets buckets, spread over up to 64 shards with a lock each (at
// least 16 buckets a shard, so small limiters have fewer shards); a full
// shard evicts the least recently used of a few sampled buckets, and Sweep
// drops idle ones. Limiter is safe for concurrent use. The zero value
// refuses every rate-limited request; use NewLimiter.
type Limiter struct {
	seed     maphash.Seed
	idle     time.Duration
	perShard int
	shards   []limiterShard
}

// limiterShard is one lock and the buckets behind it. Buckets live in a
// slice indexed by a map, so a request does one map lookup, eviction can
// sample at random and removal is a swap with the last.
type limiterShard struct {
	mu      sync.Mutex
	index   map[string]int
	buckets []bucket
	// pad keeps neighbouring shards' locks off one cache line.
	_ [64]byte
}

// bucket is one key's token bucket, with the parameters it was last used
// with so a changed limit re-parameterizes it.
type bucket struct {
	key    string
	tokens float64
	rps    float64
	burst  float64
	// last is when tokens were last brought up to date.
	last time.Time
}

// NewLimiter returns a Limiter holding at most maxBuckets buckets (zero or
// less means DefaultMaxBuckets) whose Sweep drops buckets unused for idle
// (zero or less means DefaultBucketIdle).
func NewLimiter(maxBuckets int, idle time.Duration) *Limiter {
	if maxBuckets <= 0 {
		maxBuckets = DefaultMaxBuckets
	}
	if idle <= 0 {
		idle = DefaultBucketIdle
	}
	// At least minShardBuckets per shard, so that a few keys that hash to
	// one shard of a small limiter do not evict each other while the
	// limiter as a whole is nearly empty.
	n := min(limiterShards, max(1, maxBuckets/minShardBuckets))
	l := &Limiter{
		seed:     maphash.MakeSeed(),
		idle:     idle,
		perShard: maxBuckets / n,
		shards:   make([]limiterShard, n),
	}
	for i := range l.shards {
		l.shards[i].index = make(map[string]int)
	}
	return l
}

// Allow takes one token from keyID's bucket at now and reports whether
// there was one. When there was not, retryAfter is the time until one
// token will be available (callers round it up to whole seconds for
// Retry-After). A limit whose RPS is not a positive finite number means
// unlimited: no bucket is kept. A Burst below 1 is taken as 1. When rl
// differs from the limit the bucket was last used with (the key was
// edited), the bucket takes the new rate and is capped at the new burst.
//
// Allow does not allocate except to add a key's bucket.
func (l *Limiter) Allow(keyID string, rl RateLimit, now time.Time) (ok bool, retryAfter time.Duration) {
	if !(rl.RPS > 0) || math.IsInf(rl.RPS, 1) {
		return true, 0
	}
	if len(l.shards) == 0 {
		return false, time.Second
	}
	burst := float64(max(rl.Burst, 1))
	sh := &l.shards[maphash.String(l.seed, keyID)%uint64(len(l.shards))]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	i, found := sh.index[keyID]
	if !found {
		if len(sh.buckets) >= l.perShard {
			sh.evictOne()
		}
		sh.index[keyID] = len(sh.buckets)
		sh.buckets = append(sh.buckets, bucket{key: keyID, tokens: burst - 1, rps: rl.RPS, burst: burst, last: now})
		return true, 0
	}
	b := &sh.buckets[i]
	b.refill(now)
	if b.rps != rl.RPS || b.burst != burst {
		b.rps, b.burst = rl.RPS, burst
		b.tokens = min(b.tokens, burst)
	}
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, secondsToDuration((1 - b.tokens) / b.rps)
}

// refill adds the tokens earned since b.last at b's rate.
func (b *bucket) refill(now time.Time) {
	d := now.Sub(b.last)
	switch {
	case d > 0:
		b.tokens = min(b.burst, b.tokens+d.Seconds()*b.rps)
		b.last = now
	case d < -maxClockStepBack:
		b.last = now
	}
}

// full reports whether b would hold its whole burst at now, in which case
// forgetting it loses nothing: a new bucket starts full.
func (b *bucket) full(now time.Time) bool {
	return b.tokens+max(now.Sub(b.last).Seconds(), 0)*b.rps >= b.burst
}

// secondsToDuration rounds s seconds up to a Duration, saturating.
func secondsToDuration(s float64) time.Duration {
	ns := math.Ceil(s * 1e9)
	if ns >= math.MaxInt64 {
		return math.MaxInt64
	}
	return max(time.Duration(ns), 1)
}

// evictOne removes the least recently refilled of a few random buckets.
func (sh *limiterShard) evictOne() {
	n := len(sh.buckets)
	if n == 0 {
		return
	}
	victim := rand.IntN(n)
	for range evictionSamples - 1 {
		if j := rand.IntN(n); sh.buckets[j].last.Before(sh.buckets[victim].last) {
			victim = j
		}
	}
	sh.remove(victim)
}

// remove deletes bucket i by moving the last bucket into its place.
func (sh *limiterShard) remove(i int) {
	last := len(sh.buckets) - 1
	delete(sh.index, sh.buckets[i].key)
	if i != last {
		sh.buckets[i] = sh.buckets[last]
		sh.index[sh.buckets[i].key] = i
	}
	sh.buckets[last] = bucket{} // drop the key string for the GC
	sh.buckets = sh.buckets[:last]
}

// Sweep drops the buckets unused for the idle time given to NewLimiter
// that would be full again at now (so forgetting them changes no
// decision), and returns how many it dropped. The owner calls it
// periodically; it locks one shard at a time.
func (l *Limiter) Sweep(now time.Time) int {
	dropped := 0
	for s := range l.shards {
		sh := &l.shards[s]
		sh.mu.Lock()
		for i := len(sh.buckets) - 1; i >= 0; i-- {
			if b := &sh.buckets[i]; now.Sub(b.last) >= l.idle && b.full(now) {
				sh.remove(i)
				dropped++
			}
		}
		if len(sh.buckets) == 0 && cap(sh.buckets) > 0 {
			// Give back the memory of a shard that emptied out.
			sh.buckets = nil
			sh.index = make(map[string]int)
		}
		sh.mu.Unlock()
	}
	return dropped
}

// Len returns the number of buckets held.
func (l *Limiter) Len() int {
	n := 0
	for s := range l.shards {
		sh := &l.shards[s]
		sh.mu.Lock()
		n += len(sh.buckets)
		sh.mu.Unlock()
	}
	return n
}
