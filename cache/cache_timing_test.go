package cache

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/keygate/keygate/auth"
)

// benchCache returns a cache holding n keys, each looked up once, with
// their digests.
func benchCache(b *testing.B, n int) (*Cache, [][32]byte) {
	st := newFakeStore()
	c := newTestCache(b, st, Options{
		MaxKeys:      int64(2 * n),
		PositiveTTL:  time.Hour,
		NegativeTTL:  time.Minute,
		StaleIfError: time.Hour,
	})
	ds := make([][32]byte, n)
	for i := range ds {
		ds[i] = digestOf(fmt.Sprint("kg_bench_", i))
		st.add(ds[i], &auth.Key{ID: fmt.Sprint("key_", i), Enabled: true})
		if _, err := c.LookupKey(context.Background(), ds[i]); err != nil {
			b.Fatal(err)
		}
		if _, err := c.LookupKeyID(context.Background(), fmt.Sprint("key_", i)); err != nil {
			b.Fatal(err)
		}
	}
	c.Wait()
	return c, ds
}

func BenchmarkLookupHit(b *testing.B) {
	c, ds := benchCache(b, 1024)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := c.LookupKey(ctx, ds[i%len(ds)]); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
}

// BenchmarkLookupHitAfterInvalidation measures hits on entries older than
// an invalidation of another key: they check the epoch of their tombstone
// shards, and the few on the invalidated shards take the shard's lock.
func BenchmarkLookupHitAfterInvalidation(b *testing.B) {
	c, ds := benchCache(b, 1024)
	c.Invalidate("key_unrelated", digestOf("unrelated"))
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := c.LookupKey(ctx, ds[i%len(ds)]); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
}

func BenchmarkLookupKeyIDHit(b *testing.B) {
	c, ds := benchCache(b, 1024)
	ids := make([]string, len(ds))
	for i := range ids {
		ids[i] = fmt.Sprint("key_", i)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := c.LookupKeyID(ctx, ids[i%len(ids)]); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
}

// BenchmarkLookupHotKey is one key looked up from every CPU at once with
// the caller's clock reading, as the proxy does when one client is busy.
func BenchmarkLookupHotKey(b *testing.B) {
	c, ds := benchCache(b, 1)
	ctx := context.Background()
	now := time.Now()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.LookupKeyAt(ctx, ds[0], now); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
