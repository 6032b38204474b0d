package store_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/auth"
	"github.com/keygate/keygate/store"
)

func TestUsageRecorder(t *testing.T) {
	ctx := context.Background()
	fb := &flaky{Backend: openEmbedded(t)}
	svc := store.NewService(fb, store.Options{})
	ks := store.NewKeySource(fb)
	var ids []string
	for _, name := range []string{"a", "b"} {
		c, err := svc.Create(ctx, store.Actor{}, []byte(`{"name": "`+name+`", "user": "u"}`))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, c.Key.ID)
	}
	a, err := ks.LookupKeyID(ctx, ids[0])
	if err != nil {
		t.Fatal(err)
	}
	b, err := ks.LookupKeyID(ctx, ids[1])
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2030, 5, 6, 7, 8, 9, 0, time.UTC)
	r := store.NewUsageRecorder(fb, store.UsageOptions{})
	if err := r.Flush(ctx); err != nil {
		t.Errorf("Flush with nothing recorded: %v", err)
	}
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 100; j++ {
				r.Record(a, false, t0.Add(time.Duration(i*100+j)*time.Millisecond))
			}
		}()
	}
	wg.Wait()
	r.Record(b, true, t0)
	r.Record(b, true, t0.Add(-time.Hour)) // older: ignored

	// A failed write keeps the batch for the next one, merged with newer use.
	fb.down.Store(true)
	if err := r.Flush(ctx); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Flush with the store down = %v, want ErrUnavailable", err)
	}
	fb.down.Store(false)
	r.Record(b, false, t0.Add(time.Minute))
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	latest := t0.Add(799 * time.Millisecond)
	ka, _ := svc.Get(ctx, ids[0])
	if ka.LastUsedAt == nil || !ka.LastUsedAt.Equal(latest) {
		t.Errorf("a last_used_at = %v, want the latest recorded %v", ka.LastUsedAt, latest)
	}
	kb, _ := svc.Get(ctx, ids[1])
	if kb.PreviousSecretLastUsedAt == nil || !kb.PreviousSecretLastUsedAt.Equal(t0) {
		t.Errorf("b previous_secret_last_used_at = %v, want %v (kept through the failed write)", kb.PreviousSecretLastUsedAt, t0)
	}
	if kb.LastUsedAt == nil || !kb.LastUsedAt.Equal(t0.Add(time.Minute)) {
		t.Errorf("b last_used_at = %v, want %v", kb.LastUsedAt, t0.Add(time.Minute))
	}
	// Flushed usage is not written again.
	fb.down.Store(true)
	if err := r.Flush(ctx); err != nil {
		t.Errorf("Flush after a successful write tried to write again: %v", err)
	}
	fb.down.Store(false)

	// Run flushes on its ticker until its context ends.
	run := store.NewUsageRecorder(fb, store.UsageOptions{Interval: time.Millisecond})
	later := t0.Add(time.Hour)
	run.Record(a, false, later)
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { run.Run(rctx); close(done) }()
	for {
		k, err := svc.Get(ctx, ids[0])
		if err != nil {
			t.Fatal(err)
		}
		if k.LastUsedAt != nil && k.LastUsedAt.Equal(later) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
}

// counting is a Backend that counts the calls the recorder makes, so a
// test can see how many store statements a flush costs.
type counting struct {
	store.Backend
	mu      sync.Mutex
	calls   map[string]int
	batches [][]store.Usage
}

func (c *counting) count(op string) {
	c.mu.Lock()
	c.calls[op]++
	c.mu.Unlock()
}

func (c *counting) RecordUsage(ctx context.Context, u []store.Usage) error {
	c.mu.Lock()
	c.calls["RecordUsage"]++
	c.batches = append(c.batches, append([]store.Usage(nil), u...))
	c.mu.Unlock()
	return c.Backend.RecordUsage(ctx, u)
}

func (c *counting) Update(ctx context.Context, fn func(store.Tx) error) error {
	c.count("Update")
	return c.Backend.Update(ctx, fn)
}

func (c *counting) View(ctx context.Context, fn func(store.Tx) error) error {
	c.count("View")
	return c.Backend.View(ctx, fn)
}

func (c *counting) LookupDigest(ctx context.Context, d [32]byte) (*store.Key, error) {
	c.count("LookupDigest")
	return c.Backend.LookupDigest(ctx, d)
}

func (c *counting) ScanKeys(ctx context.Context, fn func(*store.Key) error) error {
	c.count("ScanKeys")
	return c.Backend.ScanKeys(ctx, fn)
}

// take returns the calls counted since the last take, and the batches.
func (c *counting) take() (map[string]int, [][]store.Usage) {
	c.mu.Lock()
	defer c.mu.Unlock()
	calls, batches := c.calls, c.batches
	c.calls, c.batches = map[string]int{}, nil
	return calls, batches
}

// TestUsageFlushCost: however many requests were recorded, a flush is one
// RecordUsage call (one statement) holding each key's latest use once, and
// no other store call.
func TestUsageFlushCost(t *testing.T) {
	ctx := context.Background()
	cb := &counting{Backend: openEmbedded(t), calls: map[string]int{}}
	svc := store.NewService(cb, store.Options{})
	ks := store.NewKeySource(cb)
	const nKeys, nRecords = 50, 1000
	keys := make([]*auth.Key, nKeys)
	for i := range keys {
		c, err := svc.Create(ctx, store.Actor{}, []byte(fmt.Sprintf(`{"name": "k%d", "user": "u"}`, i)))
		if err != nil {
			t.Fatal(err)
		}
		if keys[i], err = ks.LookupKeyID(ctx, c.Key.ID); err != nil {
			t.Fatal(err)
		}
	}
	r := store.NewUsageRecorder(cb, store.UsageOptions{})
	t0 := time.Date(2030, 5, 6, 7, 8, 9, 0, time.UTC)
	for round := range 2 {
		cb.take()
		var wg sync.WaitGroup
		for g := range 10 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := range nRecords / 10 {
					n := g*nRecords/10 + j
					r.Record(keys[n%nKeys], false, t0.Add(time.Duration(round*nRecords+n)*time.Millisecond))
				}
			}()
		}
		wg.Wait()
		if calls, _ := cb.take(); len(calls) != 0 {
			t.Fatalf("round %d: Record called the store: %v", round, calls)
		}
		if err := r.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		calls, batches := cb.take()
		if len(calls) != 1 || calls["RecordUsage"] != 1 {
			t.Fatalf("round %d: a flush of %d records for %d keys made store calls %v, want exactly one RecordUsage", round, nRecords, nKeys, calls)
		}
		if len(batches[0]) != nKeys {
			t.Errorf("round %d: the batch has %d entries, want one per key (%d)", round, len(batches[0]), nKeys)
		}
		// Key i's latest use is its last record: n = nRecords-nKeys+i.
		for i, k := range keys {
			got, err := svc.Get(ctx, k.ID)
			if err != nil {
				t.Fatal(err)
			}
			want := t0.Add(time.Duration(round*nRecords+nRecords-nKeys+i) * time.Millisecond)
			if got.LastUsedAt == nil || !got.LastUsedAt.Equal(want) {
				t.Errorf("round %d: key %d last_used_at = %v, want %v", round, i, got.LastUsedAt, want)
			}
		}
	}
	cb.take()
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if calls, _ := cb.take(); len(calls) != 0 {
		t.Errorf("a flush with nothing recorded made store calls %v, want none", calls)
	}
}

// TestUsageRecorderGranularity: uses of one key within a millisecond of a
// recorded one stand for each other; a later one, a new *auth.Key for the
// key (the cache refreshed it) and its previous secret are each recorded.
func TestUsageRecorderGranularity(t *testing.T) {
	ctx := context.Background()
	fb := &flaky{Backend: openEmbedded(t)}
	svc := store.NewService(fb, store.Options{})
	ks := store.NewKeySource(fb)
	c, err := svc.Create(ctx, store.Actor{}, []byte(`{"name": "g", "user": "u"}`))
	if err != nil {
		t.Fatal(err)
	}
	k1, err := ks.LookupKeyID(ctx, c.Key.ID)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := ks.LookupKeyID(ctx, c.Key.ID) // another object for the same key
	if err != nil || k2 == k1 {
		t.Fatalf("second lookup: %v (same object: %v)", err, k2 == k1)
	}
	t0 := time.Date(2030, 5, 6, 7, 8, 9, 0, time.UTC)
	r := store.NewUsageRecorder(fb, store.UsageOptions{})
	last := func() (cur, prev time.Time) {
		t.Helper()
		if err := r.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		k, _ := svc.Get(ctx, c.Key.ID)
		if k.LastUsedAt != nil {
			cur = *k.LastUsedAt
		}
		if k.PreviousSecretLastUsedAt != nil {
			prev = *k.PreviousSecretLastUsedAt
		}
		return cur, prev
	}
	r.Record(k1, false, t0)
	r.Record(k1, false, t0.Add(500*time.Microsecond)) // within the granularity
	if cur, _ := last(); !cur.Equal(t0) {
		t.Errorf("last_used_at = %v, want %v", cur, t0)
	}
	r.Record(k1, false, t0.Add(2*time.Millisecond))
	if cur, _ := last(); !cur.Equal(t0.Add(2 * time.Millisecond)) {
		t.Errorf("last_used_at = %v, want %v (past the granularity)", cur, t0.Add(2*time.Millisecond))
	}
	r.Record(k2, false, t0.Add(2500*time.Microsecond)) // new object: not filtered
	r.Record(k2, true, t0.Add(2600*time.Microsecond))  // previous secret: its own entry
	cur, prev := last()
	if !cur.Equal(t0.Add(2500 * time.Microsecond)) {
		t.Errorf("last_used_at = %v, want %v (a new *auth.Key)", cur, t0.Add(2500*time.Microsecond))
	}
	if !prev.Equal(t0.Add(2600 * time.Microsecond)) {
		t.Errorf("previous_secret_last_used_at = %v, want %v", prev, t0.Add(2600*time.Microsecond))
	}
}
