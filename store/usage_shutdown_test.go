package store

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/auth"
)

type slowUsage struct {
	Backend
	mu      sync.Mutex
	written int
	started chan struct{}
}

func (b *slowUsage) RecordUsage(ctx context.Context, u []Usage) error {
	select {
	case b.started <- struct{}{}:
	default:
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(200 * time.Millisecond):
	}
	b.mu.Lock()
	b.written += len(u)
	b.mu.Unlock()
	return nil
}

// serve's order: listeners drained, the final Flush, then Run's context is
// cancelled. A periodic flush in progress must not make the final one a
// no-op whose batch is then lost.
func TestUsageFinalFlushWaitsForPeriodic(t *testing.T) {
	b := &slowUsage{started: make(chan struct{}, 1)}
	r := NewUsageRecorder(b, UsageOptions{Interval: 50 * time.Millisecond, Timeout: 5 * time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	r.Record(&auth.Key{ID: "k1"}, false, time.Now())
	<-b.started                                           // the periodic flush holds k1's batch
	if err := r.Flush(context.Background()); err != nil { // serve's final flush
		t.Fatal(err)
	}
	cancel() // serve's deferred stopBG
	<-done
	if b.written == 0 {
		t.Errorf("k1's use was never written: the final Flush found nothing, the periodic one was cancelled")
	}
}
