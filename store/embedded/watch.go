package embedded

import (
	"context"
	"sync"

	"github.com/keygate/keygate/store"
)

// watcher is one Watch call's queue. Publishing appends to it and never
// blocks the writer; the Watch goroutine drains it and calls fn with no
// lock held. The queue is unbounded so no change is ever dropped: a lost
// change would leave a cache serving a revoked key until its TTL.
type watcher struct {
	mu     sync.Mutex
	queue  []store.Change
	signal chan struct{} // capacity 1: "queue may be non-empty"
}

// Watch calls fn with every key change this store commits, in commit
// order, until ctx ends, and returns ctx's error. The store is one
// process, so there is nothing to resync and resync is always false.
// Changes committed before Watch is called are not reported.
func (e *Embedded) Watch(ctx context.Context, fn func(c store.Change, resync bool)) error {
	w := &watcher{signal: make(chan struct{}, 1)}
	e.watchMu.Lock()
	e.watchers[w] = struct{}{}
	e.watchMu.Unlock()
	defer func() {
		e.watchMu.Lock()
		delete(e.watchers, w)
		e.watchMu.Unlock()
	}()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-w.signal:
		}
		w.mu.Lock()
		batch := w.queue
		w.queue = nil
		w.mu.Unlock()
		for _, c := range batch {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			fn(c, false)
		}
	}
}

// publish hands committed changes to every watcher, each its own copy.
func (e *Embedded) publish(changes []store.Change) {
	if len(changes) == 0 {
		return
	}
	e.watchMu.Lock()
	defer e.watchMu.Unlock()
	for w := range e.watchers {
		cp := make([]store.Change, len(changes))
		for i, c := range changes {
			cp[i] = store.Change{KeyID: c.KeyID, Digests: append([][32]byte(nil), c.Digests...)}
		}
		w.mu.Lock()
		w.queue = append(w.queue, cp...)
		w.mu.Unlock()
		select {
		case w.signal <- struct{}{}:
		default:
		}
	}
}

// watcherCount is the number of running Watch calls (for tests).
func (e *Embedded) watcherCount() int {
	e.watchMu.Lock()
	defer e.watchMu.Unlock()
	return len(e.watchers)
}
