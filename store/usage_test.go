package store_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

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
