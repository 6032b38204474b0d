package auth

import (
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// allowAt calls Allow and fails the test unless the outcome is want (and,
// for a denial, retryAfter is wantRetry).
func allowAt(t *testing.T, l *Limiter, key string, rl RateLimit, now time.Time, want bool, wantRetry time.Duration) {
	t.Helper()
	ok, retry := l.Allow(key, rl, now)
	if ok != want || retry != wantRetry {
		t.Fatalf("Allow(%q, %+v, t0%+v) = %v, %v; want %v, %v", key, rl, now.Sub(t0), ok, retry, want, wantRetry)
	}
}

func TestLimiterBurstThenDeny(t *testing.T) {
	l := NewLimiter(100, time.Minute)
	rl := RateLimit{RPS: 1, Burst: 3}
	for range 3 {
		allowAt(t, l, "key_a", rl, t0, true, 0)
	}
	allowAt(t, l, "key_a", rl, t0, false, time.Second)
	allowAt(t, l, "key_a", rl, t0, false, time.Second)
	// Another key has its own bucket.
	allowAt(t, l, "key_b", rl, t0, true, 0)
}

func TestLimiterRefill(t *testing.T) {
	l := NewLimiter(100, time.Minute)
	rl := RateLimit{RPS: 2, Burst: 2}
	allowAt(t, l, "k", rl, t0, true, 0)
	allowAt(t, l, "k", rl, t0, true, 0)
	allowAt(t, l, "k", rl, t0, false, 500*time.Millisecond)
	// A quarter second earns half a token: half the wait is left.
	allowAt(t, l, "k", rl, t0.Add(250*time.Millisecond), false, 250*time.Millisecond)
	allowAt(t, l, "k", rl, t0.Add(500*time.Millisecond), true, 0)
	allowAt(t, l, "k", rl, t0.Add(500*time.Millisecond), false, 500*time.Millisecond)
	// A long pause refills only up to the burst.
	later := t0.Add(time.Hour)
	allowAt(t, l, "k", rl, later, true, 0)
	allowAt(t, l, "k", rl, later, true, 0)
	allowAt(t, l, "k", rl, later, false, 500*time.Millisecond)

	// Slow rates: one token every 2 seconds.
	slow := RateLimit{RPS: 0.5, Burst: 1}
	allowAt(t, l, "slow", slow, t0, true, 0)
	allowAt(t, l, "slow", slow, t0, false, 2*time.Second)
	allowAt(t, l, "slow", slow, t0.Add(1999*time.Millisecond), false, time.Millisecond)
	allowAt(t, l, "slow", slow, t0.Add(2*time.Second), true, 0)
}

func TestLimiterUnlimited(t *testing.T) {
	l := NewLimiter(100, time.Minute)
	for _, rl := range []RateLimit{
		{RPS: 0, Burst: 0},
		{RPS: 0, Burst: 5},
		{RPS: -1, Burst: 5},
		{RPS: math.NaN(), Burst: 5},
		{RPS: math.Inf(1), Burst: 5},
	} {
		for range 100 {
			allowAt(t, l, "k", rl, t0, true, 0)
		}
	}
	if n := l.Len(); n != 0 {
		t.Errorf("unlimited requests created %d buckets, want 0", n)
	}
}

func TestLimiterBurstBelowOne(t *testing.T) {
	l := NewLimiter(100, time.Minute)
	rl := RateLimit{RPS: 10, Burst: 0}
	allowAt(t, l, "k", rl, t0, true, 0)
	allowAt(t, l, "k", rl, t0, false, 100*time.Millisecond)
}

func TestLimiterReparameterized(t *testing.T) {
	l := NewLimiter(100, time.Minute)
	wide := RateLimit{RPS: 1, Burst: 10}
	allowAt(t, l, "k", wide, t0, true, 0) // 9 left
	// The burst is lowered: the bucket is capped at the new burst.
	narrow := RateLimit{RPS: 1, Burst: 2}
	allowAt(t, l, "k", narrow, t0, true, 0)
	allowAt(t, l, "k", narrow, t0, true, 0)
	allowAt(t, l, "k", narrow, t0, false, time.Second)
	// The rate is raised: the wait follows the new rate.
	fast := RateLimit{RPS: 100, Burst: 2}
	allowAt(t, l, "k", fast, t0, false, 10*time.Millisecond)
	allowAt(t, l, "k", fast, t0.Add(10*time.Millisecond), true, 0)
	// Raising the burst grants no tokens at once; they are earned at the rate.
	big := RateLimit{RPS: 100, Burst: 1000}
	allowAt(t, l, "k", big, t0.Add(10*time.Millisecond), false, 10*time.Millisecond)
	for range 5 {
		allowAt(t, l, "k", big, t0.Add(60*time.Millisecond), true, 0)
	}
	allowAt(t, l, "k", big, t0.Add(60*time.Millisecond), false, 10*time.Millisecond)
}

func TestLimiterRetryAfterSaturates(t *testing.T) {
	l := NewLimiter(100, time.Minute)
	rl := RateLimit{RPS: 1e-12, Burst: 1}
	allowAt(t, l, "k", rl, t0, true, 0)
	allowAt(t, l, "k", rl, t0, false, time.Duration(math.MaxInt64))
}

func TestLimiterClockSteps(t *testing.T) {
	l := NewLimiter(100, time.Minute)
	rl := RateLimit{RPS: 1, Burst: 1}
	allowAt(t, l, "k", rl, t0, true, 0)
	// Requests a little out of order earn nothing and do not move the
	// bucket back.
	allowAt(t, l, "k", rl, t0.Add(-500*time.Millisecond), false, time.Second)
	allowAt(t, l, "k", rl, t0.Add(500*time.Millisecond), false, 500*time.Millisecond)
	allowAt(t, l, "k", rl, t0.Add(time.Second), true, 0)
	// A wall-clock step back of an hour does not freeze the bucket for
	// an hour: it refills from the new time.
	back := t0.Add(-time.Hour)
	allowAt(t, l, "k", rl, back, false, time.Second)
	allowAt(t, l, "k", rl, back.Add(time.Second), true, 0)
}

func TestLimiterMemoryBound(t *testing.T) {
	for _, max := range []int{1, 10, 64, 100, 1000} {
		t.Run(fmt.Sprint(max), func(t *testing.T) {
			l := NewLimiter(max, time.Minute)
			rl := RateLimit{RPS: 1, Burst: 1}
			for i := range 20 * max {
				now := t0.Add(time.Duration(i) * time.Millisecond)
				// Every new key gets its first request, whatever is evicted.
				allowAt(t, l, fmt.Sprint("key_", i), rl, now, true, 0)
				if n := l.Len(); n > max {
					t.Fatalf("after %d keys: %d buckets, want at most %d", i+1, n, max)
				}
			}
			if n := l.Len(); n < max/2 {
				t.Errorf("%d buckets held of %d allowed: shards are not used", n, max)
			}
		})
	}
}

// TestLimiterSmallKeepsFewKeys checks that a small limiter holding far
// fewer keys than its bound evicts none of them, whatever the hash seed.
func TestLimiterSmallKeepsFewKeys(t *testing.T) {
	rl := RateLimit{RPS: 1, Burst: 1}
	for range 20 {
		l := NewLimiter(100, time.Minute)
		for i := range 16 {
			allowAt(t, l, fmt.Sprint("key_", i), rl, t0, true, 0)
		}
		for i := range 16 {
			// Still the same bucket: empty, so refused.
			allowAt(t, l, fmt.Sprint("key_", i), rl, t0, false, time.Second)
		}
	}
}

func TestLimiterEvictsOldest(t *testing.T) {
	// One bucket: a second key evicts the first, which then starts over
	// with a full burst.
	l := NewLimiter(1, time.Minute)
	rl := RateLimit{RPS: 1, Burst: 2}
	allowAt(t, l, "a", rl, t0, true, 0)
	allowAt(t, l, "a", rl, t0, true, 0)
	allowAt(t, l, "a", rl, t0, false, time.Second)
	allowAt(t, l, "b", rl, t0, true, 0)
	if n := l.Len(); n != 1 {
		t.Fatalf("Len = %d, want 1", n)
	}
	allowAt(t, l, "a", rl, t0, true, 0)
	allowAt(t, l, "a", rl, t0, true, 0)

	// A shard compares sampled buckets by last use: with two buckets
	// and 8 samples, the older one is evicted unless every sample missed
	// it, so over 50 rounds the recent key keeps its bucket most times.
	kept := 0
	for round := range 50 {
		l := NewLimiter(2, time.Minute) // one shard of two
		old, recent := fmt.Sprint("old", round), fmt.Sprint("recent", round)
		allowAt(t, l, old, rl, t0, true, 0)
		allowAt(t, l, recent, rl, t0.Add(time.Second), true, 0)
		allowAt(t, l, recent, rl, t0.Add(time.Second), true, 0) // recent now empty
		allowAt(t, l, "new", rl, t0.Add(2*time.Second), true, 0)
		if _, found := l.shards[0].index[recent]; found {
			kept++
		}
	}
	// P(the older is never sampled) = 2^-8 per round.
	if kept < 40 {
		t.Errorf("the recent bucket survived eviction %d of 50 times, want nearly all", kept)
	}
}

func TestLimiterSweep(t *testing.T) {
	l := NewLimiter(100, time.Minute)
	rl := RateLimit{RPS: 1, Burst: 5}
	allowAt(t, l, "idle", rl, t0, true, 0)
	allowAt(t, l, "busy", rl, t0, true, 0)
	allowAt(t, l, "busy", rl, t0.Add(50*time.Second), true, 0)
	// Slow to refill: idle for longer than the idle time but still owing
	// tokens, so dropping it would hand out a fresh burst.
	slow := RateLimit{RPS: 0.001, Burst: 5}
	for range 5 {
		allowAt(t, l, "owing", slow, t0, true, 0)
	}
	if n := l.Sweep(t0.Add(59 * time.Second)); n != 0 {
		t.Errorf("Sweep before the idle time dropped %d, want 0", n)
	}
	if n := l.Sweep(t0.Add(time.Minute)); n != 1 {
		t.Errorf("Sweep at the idle time dropped %d, want 1", n)
	}
	if n := l.Len(); n != 2 {
		t.Errorf("Len after Sweep = %d, want 2 (busy, owing)", n)
	}
	// It kept its debt: 0.06 tokens earned, 940s until the next.
	if ok, retry := l.Allow("owing", slow, t0.Add(time.Minute)); ok || retry < 939*time.Second || retry > 941*time.Second {
		t.Errorf("Allow(owing) after Sweep = %v, %v; want a refusal for about 940s", ok, retry)
	}
	// Much later everything is idle and refilled.
	if n := l.Sweep(t0.Add(3 * time.Hour)); n != 2 {
		t.Errorf("late Sweep dropped %d, want 2", n)
	}
	if n := l.Len(); n != 0 {
		t.Errorf("Len after late Sweep = %d, want 0", n)
	}
	// The limiter still works after shards were emptied.
	allowAt(t, l, "busy", rl, t0.Add(3*time.Hour), true, 0)
}

func TestLimiterZeroValue(t *testing.T) {
	var l Limiter
	if ok, retry := l.Allow("k", RateLimit{RPS: 1, Burst: 1}, t0); ok || retry <= 0 {
		t.Errorf("zero Limiter Allow = %v, %v; want a refusal", ok, retry)
	}
	if ok, _ := l.Allow("k", RateLimit{}, t0); !ok {
		t.Errorf("zero Limiter refused an unlimited key")
	}
	if n := l.Sweep(t0); n != 0 || l.Len() != 0 {
		t.Errorf("zero Limiter Sweep/Len = %d/%d", n, l.Len())
	}
}

func TestNewLimiterDefaults(t *testing.T) {
	l := NewLimiter(0, 0)
	if l.idle != DefaultBucketIdle || l.perShard*len(l.shards) != DefaultMaxBuckets-DefaultMaxBuckets%limiterShards {
		t.Errorf("NewLimiter(0, 0): idle %v, %d shards of %d", l.idle, len(l.shards), l.perShard)
	}
}

// TestLimiterConcurrent hammers a few keys from many goroutines at one
// instant: exactly Burst requests per key may pass, whatever the
// interleaving.
func TestLimiterConcurrent(t *testing.T) {
	l := NewLimiter(1000, time.Minute)
	rl := RateLimit{RPS: 1, Burst: 50}
	keys := []string{"a", "b", "c", "d"}
	var passed [4]atomic.Int64
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := range 200 {
				k := (g + i) % len(keys)
				if ok, _ := l.Allow(keys[k], rl, t0); ok {
					passed[k].Add(1)
				}
			}
		})
	}
	wg.Wait()
	for k := range keys {
		if n := passed[k].Load(); n != 50 {
			t.Errorf("key %s: %d requests passed, want 50", keys[k], n)
		}
	}
}

func BenchmarkLimiterAllow(b *testing.B) {
	const nkeys = 4096
	keys := make([]string, nkeys)
	for i := range keys {
		keys[i] = fmt.Sprintf("key_%026d", i)
	}
	rl := RateLimit{RPS: 1e6, Burst: 1e6}
	l := NewLimiter(0, 0)
	for _, k := range keys {
		l.Allow(k, rl, t0)
	}
	var seq atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := int(seq.Add(1)) * 7919
		for pb.Next() {
			i++
			l.Allow(keys[i%nkeys], rl, t0.Add(time.Duration(i)))
		}
	})
}
