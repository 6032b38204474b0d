package cache

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/auth"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

// fakeStore is an auth.KeyStore in memory that counts its queries and can
// hold them until released.
type fakeStore struct {
	calls atomic.Int64

	mu   sync.Mutex
	keys map[[32]byte]*auth.Key
	ids  map[string]*auth.Key
	err  error
	// ignoreCtx makes held queries wait for release even when their
	// context ends, like a store that does not honour deadlines.
	ignoreCtx bool
	// yield makes a query pause between reading and answering, widening
	// the window in which an answer can become stale in flight.
	yield bool
	// entered, when set, receives once per query as it starts.
	entered chan struct{}
	// gate, when set, holds every query until it is closed (or the
	// query's context ends).
	gate chan struct{}
}

func newFakeStore() *fakeStore {
	return &fakeStore{keys: map[[32]byte]*auth.Key{}, ids: map[string]*auth.Key{}}
}

// add stores k under digest d; a non-previous key is also found by id.
func (f *fakeStore) add(d [32]byte, k *auth.Key) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.keys[d] = k
	if !k.Previous {
		f.ids[k.ID] = k
	}
}

func (f *fakeStore) setErr(err error) {
	f.mu.Lock()
	f.err = err
	f.mu.Unlock()
}

// hold makes queries announce themselves on the returned channel and wait
// until release is called.
func (f *fakeStore) hold() (entered <-chan struct{}, release func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.entered = make(chan struct{}, 1000)
	f.gate = make(chan struct{})
	gate := f.gate
	return f.entered, func() { close(gate) }
}

func (f *fakeStore) wait(ctx context.Context) error {
	f.calls.Add(1)
	f.mu.Lock()
	entered, gate, ignoreCtx := f.entered, f.gate, f.ignoreCtx
	f.mu.Unlock()
	done := ctx.Done()
	if ignoreCtx {
		done = nil
	}
	if entered != nil {
		entered <- struct{}{}
	}
	if gate != nil {
		select {
		case <-gate:
		case <-done:
			return fmt.Errorf("%w: %w", auth.ErrStoreUnavailable, ctx.Err())
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

func (f *fakeStore) LookupKey(ctx context.Context, d [32]byte) (*auth.Key, error) {
	if err := f.wait(ctx); err != nil {
		return nil, err
	}
	f.mu.Lock()
	k, ok := f.keys[d]
	yield := f.yield
	f.mu.Unlock()
	return f.answer(k, ok, yield)
}

func (f *fakeStore) LookupKeyID(ctx context.Context, id string) (*auth.Key, error) {
	if err := f.wait(ctx); err != nil {
		return nil, err
	}
	f.mu.Lock()
	k, ok := f.ids[id]
	yield := f.yield
	f.mu.Unlock()
	return f.answer(k, ok, yield)
}

func (f *fakeStore) answer(k *auth.Key, ok, yield bool) (*auth.Key, error) {
	if yield {
		runtime.Gosched()
	}
	if !ok {
		return nil, auth.ErrKeyNotFound
	}
	return k, nil
}

// fakeClock is a clock tests move by hand.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

func digestOf(s string) [32]byte { return sha256.Sum256([]byte(s)) }

func testKey(id, name string) *auth.Key {
	return &auth.Key{ID: id, Name: name, User: "u", Enabled: true, SessionsAllowed: true}
}

// defaultOpts are CONTRACT §2's cache defaults on a fake clock.
func defaultOpts(clk *fakeClock) Options {
	return Options{
		MaxKeys:      1000,
		PositiveTTL:  5 * time.Minute,
		NegativeTTL:  30 * time.Second,
		StaleIfError: time.Hour,
		Now:          clk.Now,
	}
}

func newTestCache(t testing.TB, next auth.KeyStore, o Options) *Cache {
	t.Helper()
	c, err := New(next, o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// counterValue reads one child of a counter vector from reg.
func counterValue(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no %s{%s=%q} in registry", name, label, value)
	return 0
}

func gaugeValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no gauge %s in registry", name)
	return 0
}

// lookup is one LookupKey call and what it should give.
type lookup struct {
	name    string
	advance time.Duration
	digest  [32]byte
	want    *auth.Key
	wantErr error
	calls   int64 // store queries so far, after this lookup
}

func TestLookupHitNegativeMissAndExpiry(t *testing.T) {
	clk := newFakeClock()
	st := newFakeStore()
	known, unknown := digestOf("known"), digestOf("unknown")
	k := testKey("key_1", "one")
	st.add(known, k)
	reg := prometheus.NewRegistry()
	o := defaultOpts(clk)
	o.Registerer = reg
	c := newTestCache(t, st, o)

	steps := []lookup{
		{name: "first lookup asks the store", digest: known, want: k, calls: 1},
		{name: "second is a hit", digest: known, want: k, calls: 1},
		{name: "unknown asks the store", digest: unknown, wantErr: auth.ErrKeyNotFound, calls: 2},
		{name: "unknown again is a negative hit", digest: unknown, wantErr: auth.ErrKeyNotFound, calls: 2},
		{name: "negative entry expires", advance: 30 * time.Second, digest: unknown, wantErr: auth.ErrKeyNotFound, calls: 3},
		{name: "positive entry still fresh", digest: known, want: k, calls: 3},
		{name: "just before positive expiry", advance: 4*time.Minute + 29*time.Second, digest: known, want: k, calls: 3},
		{name: "positive entry expires", advance: time.Second, digest: known, want: k, calls: 4},
		{name: "refreshed entry is a hit", digest: known, want: k, calls: 4},
	}
	for _, s := range steps {
		clk.Advance(s.advance)
		got, err := c.LookupKey(context.Background(), s.digest)
		if got != s.want || !errors.Is(err, s.wantErr) || (s.wantErr == nil && err != nil) {
			t.Errorf("%s: LookupKey = %v, %v; want %v, %v", s.name, got, err, s.want, s.wantErr)
		}
		if n := st.calls.Load(); n != s.calls {
			t.Errorf("%s: store queries = %d, want %d", s.name, n, s.calls)
		}
		c.Wait()
	}

	for result, want := range map[string]float64{"hit": 4, "negative_hit": 1, "miss": 4, "stale_hit": 0} {
		if got := counterValue(t, reg, "keygate_cache_lookups_total", "result", result); got != want {
			t.Errorf("keygate_cache_lookups_total{result=%q} = %v, want %v", result, got, want)
		}
	}
	if got := gaugeValue(t, reg, "keygate_cache_entries"); got != 2 {
		t.Errorf("keygate_cache_entries = %v, want 2", got)
	}
}

func TestZeroTTLsCacheNothing(t *testing.T) {
	clk := newFakeClock()
	st := newFakeStore()
	d := digestOf("k")
	st.add(d, testKey("key_1", "one"))
	c := newTestCache(t, st, Options{MaxKeys: 100, Now: clk.Now})
	for i := range 3 {
		if _, err := c.LookupKey(context.Background(), d); err != nil {
			t.Fatalf("LookupKey: %v", err)
		}
		if _, err := c.LookupKey(context.Background(), digestOf("nope")); !errors.Is(err, auth.ErrKeyNotFound) {
			t.Fatalf("LookupKey(unknown) = %v, want ErrKeyNotFound", err)
		}
		c.Wait()
		if n := st.calls.Load(); n != int64(2*(i+1)) {
			t.Fatalf("store queries = %d, want %d", n, 2*(i+1))
		}
	}
	if n := c.Len(); n != 0 {
		t.Errorf("Len = %d, want 0", n)
	}
}

func TestLookupKeyIDIsCachedAndInvalidated(t *testing.T) {
	clk := newFakeClock()
	st := newFakeStore()
	k := testKey("key_1", "one")
	st.add(digestOf("k"), k)
	c := newTestCache(t, st, defaultOpts(clk))
	ctx := context.Background()

	for range 3 {
		got, err := c.LookupKeyID(ctx, "key_1")
		if got != k || err != nil {
			t.Fatalf("LookupKeyID = %v, %v; want %v", got, err, k)
		}
		c.Wait()
	}
	if _, err := c.LookupKeyID(ctx, "key_nope"); !errors.Is(err, auth.ErrKeyNotFound) {
		t.Fatalf("LookupKeyID(unknown) = %v, want ErrKeyNotFound", err)
	}
	c.Wait()
	if _, err := c.LookupKeyID(ctx, "key_nope"); !errors.Is(err, auth.ErrKeyNotFound) {
		t.Fatalf("LookupKeyID(unknown) again = %v, want ErrKeyNotFound", err)
	}
	if n := st.calls.Load(); n != 2 {
		t.Fatalf("store queries = %d, want 2 (one per id)", n)
	}

	k2 := testKey("key_1", "renamed")
	st.add(digestOf("k"), k2)
	c.Invalidate("key_1")
	if got, err := c.LookupKeyID(ctx, "key_1"); got != k2 || err != nil {
		t.Fatalf("after Invalidate: LookupKeyID = %v, %v; want %v", got, err, k2)
	}
	if n := st.calls.Load(); n != 3 {
		t.Fatalf("store queries = %d, want 3", n)
	}
}

func TestConcurrentMissesShareOneQuery(t *testing.T) {
	st := newFakeStore()
	d := digestOf("k")
	k := testKey("key_1", "one")
	st.add(d, k)
	entered, release := st.hold()
	c := newTestCache(t, st, defaultOpts(newFakeClock()))

	const callers = 32
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for range callers {
		wg.Go(func() {
			got, err := c.LookupKey(context.Background(), d)
			if got != k || err != nil {
				errs <- fmt.Errorf("LookupKey = %v, %v; want %v", got, err, k)
			}
		})
	}
	<-entered
	release()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := st.calls.Load(); n != 1 {
		t.Errorf("store queries = %d, want 1", n)
	}
}

func TestCancelledCallerDoesNotFailTheSharedQuery(t *testing.T) {
	st := newFakeStore()
	d := digestOf("k")
	k := testKey("key_1", "one")
	st.add(d, k)
	entered, release := st.hold()
	c := newTestCache(t, st, defaultOpts(newFakeClock()))

	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() {
		_, err := c.LookupKey(ctx, d)
		first <- err
	}()
	<-entered
	cancel()
	if err := <-first; !errors.Is(err, auth.ErrStoreUnavailable) || !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled caller: err = %v, want ErrStoreUnavailable and context.Canceled", err)
	}
	release()
	if got, err := c.LookupKey(context.Background(), d); got != k || err != nil {
		t.Errorf("second caller: LookupKey = %v, %v; want %v", got, err, k)
	}
	if n := st.calls.Load(); n != 1 {
		t.Errorf("store queries = %d, want 1 (the cancelled caller's query should have finished for the other)", n)
	}
}

func TestStaleIfError(t *testing.T) {
	clk := newFakeClock()
	st := newFakeStore()
	d, unknown := digestOf("k"), digestOf("unknown")
	k := testKey("key_1", "one")
	st.add(d, k)
	reg := prometheus.NewRegistry()
	o := defaultOpts(clk)
	o.Registerer = reg
	c := newTestCache(t, st, o)
	ctx := context.Background()

	if _, err := c.LookupKey(ctx, d); err != nil {
		t.Fatalf("LookupKey: %v", err)
	}
	if _, err := c.LookupKey(ctx, unknown); !errors.Is(err, auth.ErrKeyNotFound) {
		t.Fatalf("LookupKey(unknown) = %v, want ErrKeyNotFound", err)
	}
	c.Wait()
	st.setErr(fmt.Errorf("%w: connection refused", auth.ErrStoreUnavailable))

	clk.Advance(5*time.Minute + time.Second)
	if got, err := c.LookupKey(ctx, d); got != k || err != nil {
		t.Errorf("past positive TTL, store down: LookupKey = %v, %v; want stale %v", got, err, k)
	}
	if got := counterValue(t, reg, "keygate_cache_lookups_total", "result", "stale_hit"); got != 1 {
		t.Errorf("stale_hit = %v, want 1", got)
	}
	// An unknown digest is never answered stale: unknown keys get 503
	// while the store is down (CONTRACT §5).
	if _, err := c.LookupKey(ctx, unknown); !errors.Is(err, auth.ErrStoreUnavailable) {
		t.Errorf("expired negative entry, store down: err = %v, want ErrStoreUnavailable", err)
	}
	if _, err := c.LookupKey(ctx, digestOf("never seen")); !errors.Is(err, auth.ErrStoreUnavailable) {
		t.Errorf("no entry, store down: err = %v, want ErrStoreUnavailable", err)
	}

	// The failed query lets the stale key answer alone for a moment, so
	// a hanging store does not hold up every request.
	before := st.calls.Load()
	if got, err := c.LookupKey(ctx, d); got != k || err != nil {
		t.Errorf("right after a failed query: LookupKey = %v, %v; want stale %v", got, err, k)
	}
	if n := st.calls.Load() - before; n != 0 {
		t.Errorf("store queries right after a failed one = %d, want 0", n)
	}
	if got := counterValue(t, reg, "keygate_cache_lookups_total", "result", "stale_hit"); got != 2 {
		t.Errorf("stale_hit = %v, want 2", got)
	}
	clk.Advance(staleRetry)
	if got, err := c.LookupKey(ctx, d); got != k || err != nil {
		t.Errorf("retry while still down: LookupKey = %v, %v; want stale %v", got, err, k)
	}
	if n := st.calls.Load() - before; n != 1 {
		t.Errorf("store queries after staleRetry = %d, want 1", n)
	}

	clk.Advance(time.Hour - 2*time.Second - staleRetry) // 1s before staleUntil
	if got, err := c.LookupKey(ctx, d); got != k || err != nil {
		t.Errorf("just inside stale_if_error: LookupKey = %v, %v; want stale %v", got, err, k)
	}
	clk.Advance(time.Second)
	if _, err := c.LookupKey(ctx, d); !errors.Is(err, auth.ErrStoreUnavailable) {
		t.Errorf("past stale_if_error: err = %v, want ErrStoreUnavailable", err)
	}

	// The store comes back: the key is fresh again.
	st.setErr(nil)
	if got, err := c.LookupKey(ctx, d); got != k || err != nil {
		t.Errorf("store back: LookupKey = %v, %v; want %v", got, err, k)
	}
}

func TestInvalidatedKeyIsNotServedStale(t *testing.T) {
	clk := newFakeClock()
	st := newFakeStore()
	d := digestOf("k")
	st.add(d, testKey("key_1", "one"))
	c := newTestCache(t, st, defaultOpts(clk))
	ctx := context.Background()

	if _, err := c.LookupKey(ctx, d); err != nil {
		t.Fatalf("LookupKey: %v", err)
	}
	c.Wait()
	st.setErr(auth.ErrStoreUnavailable)
	c.Invalidate("key_1")
	if got, err := c.LookupKey(ctx, d); !errors.Is(err, auth.ErrStoreUnavailable) {
		t.Errorf("invalidated, store down: LookupKey = %v, %v; want ErrStoreUnavailable", got, err)
	}
}

func TestStoreFailuresBecomeUnavailable(t *testing.T) {
	tests := []struct {
		name string
		next auth.KeyStore
	}{
		{"other error", errStore{errors.New("pq: something odd")}},
		{"no key and no error", errStore{nil}},
		{"panic", panicStore{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestCache(t, tt.next, defaultOpts(newFakeClock()))
			if _, err := c.LookupKey(context.Background(), digestOf("k")); !errors.Is(err, auth.ErrStoreUnavailable) {
				t.Errorf("LookupKey err = %v, want ErrStoreUnavailable", err)
			}
			if _, err := c.LookupKeyID(context.Background(), "key_1"); !errors.Is(err, auth.ErrStoreUnavailable) {
				t.Errorf("LookupKeyID err = %v, want ErrStoreUnavailable", err)
			}
		})
	}
}

type errStore struct{ err error }

func (s errStore) LookupKey(context.Context, [32]byte) (*auth.Key, error) { return nil, s.err }
func (s errStore) LookupKeyID(context.Context, string) (*auth.Key, error) { return nil, s.err }

type panicStore struct{}

func (panicStore) LookupKey(context.Context, [32]byte) (*auth.Key, error) { panic("boom") }
func (panicStore) LookupKeyID(context.Context, string) (*auth.Key, error) { panic("boom") }

func TestConcurrencyCapFailsFastWithoutAskingTheStore(t *testing.T) {
	clk := newFakeClock()
	st := newFakeStore()
	a, b, cached := digestOf("a"), digestOf("b"), digestOf("cached")
	ka, kc := testKey("key_a", "a"), testKey("key_c", "c")
	st.add(a, ka)
	st.add(b, testKey("key_b", "b"))
	st.add(cached, kc)
	o := defaultOpts(clk)
	o.MaxConcurrentLookups = 1
	c := newTestCache(t, st, o)
	ctx := context.Background()

	if _, err := c.LookupKey(ctx, cached); err != nil {
		t.Fatalf("LookupKey(cached): %v", err)
	}
	c.Wait()
	clk.Advance(6 * time.Minute) // cached is now only good as a stale answer

	entered, release := st.hold()
	done := make(chan error, 1)
	go func() {
		got, err := c.LookupKey(ctx, a)
		if err == nil && got != ka {
			err = fmt.Errorf("got %v, want %v", got, ka)
		}
		done <- err
	}()
	<-entered
	if _, err := c.LookupKey(ctx, b); !errors.Is(err, auth.ErrStoreUnavailable) {
		t.Errorf("over the cap: err = %v, want ErrStoreUnavailable", err)
	}
	if _, err := c.LookupKeyID(ctx, "key_b"); !errors.Is(err, auth.ErrStoreUnavailable) {
		t.Errorf("over the cap by id: err = %v, want ErrStoreUnavailable", err)
	}
	if got, err := c.LookupKey(ctx, cached); got != kc || err != nil {
		t.Errorf("over the cap with a stale entry: LookupKey = %v, %v; want stale %v", got, err, kc)
	}
	if n := st.calls.Load(); n != 2 {
		t.Errorf("store queries = %d, want 2 (cached, then a)", n)
	}
	release()
	if err := <-done; err != nil {
		t.Errorf("query under the cap: %v", err)
	}
	// The slot is free again.
	if _, err := c.LookupKey(ctx, b); err != nil {
		t.Errorf("after the cap cleared: %v", err)
	}
}

func TestInvalidationDuringLookupDoesNotResurrect(t *testing.T) {
	clk := newFakeClock()
	st := newFakeStore()
	d := digestOf("k")
	v1, v2 := testKey("key_1", "v1"), testKey("key_1", "v2")
	st.add(d, v1)
	c := newTestCache(t, st, defaultOpts(clk))
	ctx := context.Background()

	entered, release := st.hold()
	done := make(chan *auth.Key, 1)
	go func() {
		got, _ := c.LookupKey(ctx, d)
		done <- got
	}()
	<-entered
	// The query is in the store and will answer v1 (the fake reads its
	// map on release): as far as the cache knows, it read before the
	// change announced here.
	c.Invalidate("key_1", d)
	release()
	if got := <-done; got != v1 {
		t.Fatalf("in-flight lookup = %v, want %v", got, v1)
	}
	st.add(d, v2)
	c.Wait()
	if got, err := c.LookupKey(ctx, d); got != v2 || err != nil {
		t.Errorf("after invalidation: LookupKey = %v, %v; want %v", got, err, v2)
	}
	if n := st.calls.Load(); n != 2 {
		t.Errorf("store queries = %d, want 2", n)
	}
}

// TestLateSetAfterInvalidateIsIgnored plays the race the epoch check in put
// cannot close: a lookup that began before an invalidation writes its
// entry after it (or ristretto applies the write after the Del).
func TestLateSetAfterInvalidateIsIgnored(t *testing.T) {
	clk := newFakeClock()
	st := newFakeStore()
	d := digestOf("k")
	v1, v2 := testKey("key_1", "v1"), testKey("key_1", "v2")
	st.add(d, v2)
	c := newTestCache(t, st, defaultOpts(clk))
	ctx := context.Background()

	tests := []struct {
		name       string
		invalidate func()
		lookup     func() (*auth.Key, error)
		late       target
		lateKey    *auth.Key
		want       *auth.Key
	}{
		{
			name:       "digest, invalidated by id",
			invalidate: func() { c.Invalidate("key_1") },
			lookup:     func() (*auth.Key, error) { return c.LookupKey(ctx, d) },
			late:       target{digest: d}, lateKey: v1, want: v2,
		},
		{
			name:       "digest, invalidated by digest",
			invalidate: func() { c.Invalidate("", d) },
			lookup:     func() (*auth.Key, error) { return c.LookupKey(ctx, d) },
			late:       target{digest: d}, lateKey: v1, want: v2,
		},
		{
			name:       "negative digest entry",
			invalidate: func() { c.Invalidate("", d) },
			lookup:     func() (*auth.Key, error) { return c.LookupKey(ctx, d) },
			late:       target{digest: d}, lateKey: nil, want: v2,
		},
		{
			name:       "id",
			invalidate: func() { c.Invalidate("key_1") },
			lookup:     func() (*auth.Key, error) { return c.LookupKeyID(ctx, "key_1") },
			late:       target{byID: true, id: "key_1"}, lateKey: v1, want: v2,
		},
		{
			name:       "everything",
			invalidate: c.InvalidateAll,
			lookup:     func() (*auth.Key, error) { return c.LookupKey(ctx, d) },
			late:       target{digest: d}, lateKey: v1, want: v2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mk := c.mark()
			tt.invalidate()
			if !c.set(tt.late, tt.lateKey, mk, time.Hour, time.Hour) {
				t.Fatal("set dropped")
			}
			c.Wait()
			before := st.calls.Load()
			if got, err := tt.lookup(); got != tt.want || err != nil {
				t.Errorf("lookup = %v, %v; want %v", got, err, tt.want)
			}
			if n := st.calls.Load() - before; n != 1 {
				t.Errorf("store queries = %d, want 1 (the late entry must not answer)", n)
			}
		})
	}
}

func TestInvalidateByIDDropsEveryDigest(t *testing.T) {
	clk := newFakeClock()
	st := newFakeStore()
	cur, prev, other := digestOf("current"), digestOf("previous"), digestOf("other")
	k := testKey("key_1", "one")
	kPrev := testKey("key_1", "one")
	kPrev.Previous = true
	kPrev.PreviousExpiresAt = clk.Now().Add(time.Hour)
	ko := testKey("key_2", "two")
	st.add(cur, k)
	st.add(prev, kPrev)
	st.add(other, ko)
	c := newTestCache(t, st, defaultOpts(clk))
	ctx := context.Background()

	lookupAll := func() {
		t.Helper()
		for d, want := range map[[32]byte]*auth.Key{cur: k, prev: kPrev, other: ko} {
			if got, err := c.LookupKey(ctx, d); got != want || err != nil {
				t.Fatalf("LookupKey = %v, %v; want %v", got, err, want)
			}
		}
		if got, err := c.LookupKeyID(ctx, "key_1"); got != k || err != nil {
			t.Fatalf("LookupKeyID = %v, %v; want %v", got, err, k)
		}
		c.Wait()
	}
	lookupAll()
	lookupAll()
	if n := st.calls.Load(); n != 4 {
		t.Fatalf("store queries = %d, want 4", n)
	}
	if n := c.Len(); n != 3 {
		t.Fatalf("Len = %d, want 3 (entries by id are not counted)", n)
	}

	c.Invalidate("key_1")
	c.Wait()
	if n := c.Len(); n != 1 {
		t.Errorf("Len after Invalidate(key_1) = %d, want 1 (only key_2's entry)", n)
	}
	lookupAll()
	if n := st.calls.Load(); n != 7 {
		t.Errorf("store queries = %d, want 7 (both digests and the id asked again, key_2 still cached)", n)
	}
}

func TestInvalidateDigestDropsNegativeEntry(t *testing.T) {
	st := newFakeStore()
	d := digestOf("new key")
	c := newTestCache(t, st, defaultOpts(newFakeClock()))
	ctx := context.Background()

	if _, err := c.LookupKey(ctx, d); !errors.Is(err, auth.ErrKeyNotFound) {
		t.Fatalf("LookupKey = %v, want ErrKeyNotFound", err)
	}
	c.Wait()
	k := testKey("key_new", "new")
	st.add(d, k) // the key is created...
	if _, err := c.LookupKey(ctx, d); !errors.Is(err, auth.ErrKeyNotFound) {
		t.Fatalf("before Invalidate: LookupKey = %v, want the remembered ErrKeyNotFound", err)
	}
	c.Invalidate("key_new", d) // ...and announced
	if got, err := c.LookupKey(ctx, d); got != k || err != nil {
		t.Errorf("after Invalidate: LookupKey = %v, %v; want %v", got, err, k)
	}
}

func TestInvalidateAll(t *testing.T) {
	st := newFakeStore()
	reg := prometheus.NewRegistry()
	o := defaultOpts(newFakeClock())
	o.Registerer = reg
	c := newTestCache(t, st, o)
	ctx := context.Background()

	var ds [][32]byte
	for i := range 10 {
		d := digestOf(fmt.Sprint("k", i))
		st.add(d, testKey(fmt.Sprint("key_", i), "n"))
		ds = append(ds, d)
	}
	for _, d := range ds {
		if _, err := c.LookupKey(ctx, d); err != nil {
			t.Fatalf("LookupKey: %v", err)
		}
	}
	c.Wait()
	c.Invalidate("key_0") // leaves a tombstone InvalidateAll subsumes
	c.InvalidateAllFrom(SourceResync)
	for _, d := range ds {
		if _, err := c.LookupKey(ctx, d); err != nil {
			t.Fatalf("LookupKey: %v", err)
		}
	}
	if n := st.calls.Load(); n != 20 {
		t.Errorf("store queries = %d, want 20", n)
	}
	c.Wait()
	before := st.calls.Load()
	for _, d := range ds {
		if _, err := c.LookupKey(ctx, d); err != nil {
			t.Fatalf("LookupKey: %v", err)
		}
	}
	if n := st.calls.Load() - before; n != 0 {
		t.Errorf("store queries after refill = %d, want 0", n)
	}
	for src, want := range map[string]float64{"local": 1, "resync": 1, "notify": 0} {
		if got := counterValue(t, reg, "keygate_invalidations_total", "source", src); got != want {
			t.Errorf("keygate_invalidations_total{source=%q} = %v, want %v", src, got, want)
		}
	}
}

func TestWarm(t *testing.T) {
	clk := newFakeClock()
	st := newFakeStore()
	st.setErr(auth.ErrStoreUnavailable) // an outage right after start
	c := newTestCache(t, st, defaultOpts(clk))
	ctx := context.Background()

	k1, k2 := testKey("key_1", "one"), testKey("key_2", "two")
	k2prev := testKey("key_2", "two")
	k2prev.Previous = true
	d1, d2, d2prev := digestOf("1"), digestOf("2"), digestOf("2prev")

	e := c.Epoch()
	c.Invalidate("key_1") // changed after the warm-up read the store
	n := c.Warm(e, []WarmEntry{{d1, k1}, {d2, k2}, {d2prev, k2prev}, {digestOf("nil"), nil}})
	if n != 3 {
		t.Errorf("Warm = %d, want 3", n)
	}
	if got, err := c.LookupKey(ctx, d2); got != k2 || err != nil {
		t.Errorf("LookupKey(warmed) = %v, %v; want %v", got, err, k2)
	}
	if got, err := c.LookupKey(ctx, d2prev); got != k2prev || err != nil {
		t.Errorf("LookupKey(warmed previous) = %v, %v; want %v", got, err, k2prev)
	}
	if got, err := c.LookupKeyID(ctx, "key_2"); got != k2 || err != nil {
		t.Errorf("LookupKeyID(warmed) = %v, %v; want %v (not the previous-secret view)", got, err, k2)
	}
	if n := st.calls.Load(); n != 0 {
		t.Errorf("store queries = %d, want 0", n)
	}
	if _, err := c.LookupKey(ctx, d1); !errors.Is(err, auth.ErrStoreUnavailable) {
		t.Errorf("LookupKey(invalidated before Warm) err = %v, want ErrStoreUnavailable", err)
	}
	// Warmed entries are stale-served like looked-up ones.
	clk.Advance(time.Hour)
	if got, err := c.LookupKey(ctx, d2); got != k2 || err != nil {
		t.Errorf("stale warmed key: LookupKey = %v, %v; want %v", got, err, k2)
	}
}

func TestTombstonesArePruned(t *testing.T) {
	clk := newFakeClock()
	st := newFakeStore()
	d := digestOf("k")
	k := testKey("key_1", "one")
	st.add(d, k)
	o := defaultOpts(clk)
	c := newTestCache(t, st, o)

	count := func() (n int) {
		for i := range c.tombs {
			s := &c.tombs[i]
			s.mu.RLock()
			n += len(s.ids) + len(s.digests)
			s.mu.RUnlock()
		}
		return n
	}
	mk := c.mark()
	c.Invalidate("key_1", d)
	for i := range 200 {
		c.Invalidate(fmt.Sprint("key_x", i))
	}
	if n := count(); n != 202 {
		t.Fatalf("tombstones = %d, want 202", n)
	}
	// Long after any entry from before them could be used, later
	// invalidations sweep the shards they touch...
	clk.Advance(c.maxLife + 2*pruneEvery)
	for i := range 200 {
		c.Invalidate(fmt.Sprint("key_y", i))
	}
	if n := count(); n >= 300 {
		t.Errorf("tombstones = %d, want most of the 202 old ones pruned", n)
	}
	// ...and a sweep of every shard leaves only the new ones.
	for i := range c.tombs {
		s := &c.tombs[i]
		s.mu.Lock()
		s.nextPrune = time.Time{}
		c.pruneLocked(s, clk.Now())
		s.mu.Unlock()
	}
	if n := count(); n != 200 {
		t.Errorf("tombstones = %d, want 200", n)
	}
	// An entry from before a pruned tombstone is dead by its own expiry:
	// it is not served even stale.
	st.setErr(auth.ErrStoreUnavailable)
	c.set(target{digest: d}, k, mk, o.PositiveTTL, o.StaleIfError)
	c.Wait()
	if _, err := c.LookupKey(context.Background(), d); !errors.Is(err, auth.ErrStoreUnavailable) {
		t.Errorf("entry older than a pruned tombstone: err = %v, want ErrStoreUnavailable", err)
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	_, err := New(nil, Options{
		MaxKeys:              -1,
		PositiveTTL:          -time.Second,
		NegativeTTL:          -time.Second,
		StaleIfError:         -time.Second,
		MaxConcurrentLookups: -1,
		LookupTimeout:        -time.Second,
	})
	if err == nil {
		t.Fatal("New with bad options succeeded")
	}
	for _, want := range []string{"next", "MaxKeys", "PositiveTTL", "NegativeTTL", "StaleIfError", "MaxConcurrentLookups", "LookupTimeout"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("New error %q does not name %s", err, want)
		}
	}
}

func TestNewReportsDuplicateRegistration(t *testing.T) {
	reg := prometheus.NewRegistry()
	o := defaultOpts(newFakeClock())
	o.Registerer = reg
	newTestCache(t, newFakeStore(), o)
	if c, err := New(newFakeStore(), o); err == nil {
		c.Close()
		t.Fatal("second New on one Registerer succeeded, want an error")
	}
}

// TestInvalidationIsLinearizable runs lookups against a writer that
// changes a key in the store and then invalidates it: a lookup that begins
// after an Invalidate returned must never see an older version. Run with
// -race.
func TestInvalidationIsLinearizable(t *testing.T) {
	clk := newFakeClock()
	st := newFakeStore()
	d := digestOf("k")
	st.add(d, testKey("key_1", "0"))
	st.yield = true
	o := defaultOpts(clk)
	o.MaxConcurrentLookups = 1000
	c := newTestCache(t, st, o)

	const versions = 3000
	var committed atomic.Int64 // highest version whose Invalidate returned
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	report := func(err error) {
		select {
		case errs <- err:
		default:
		}
	}
	for r := range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				floor := committed.Load()
				var got *auth.Key
				var err error
				if r%2 == 0 {
					got, err = c.LookupKey(context.Background(), d)
				} else {
					got, err = c.LookupKeyID(context.Background(), "key_1")
				}
				if err != nil {
					report(fmt.Errorf("lookup: %v", err))
					continue
				}
				var v int64
				fmt.Sscan(got.Name, &v)
				if v < floor {
					report(fmt.Errorf("lookup began after version %d was committed but returned version %d", floor, v))
				}
				if r == 0 {
					clk.Advance(time.Second)
				}
			}
		})
	}
	for v := int64(1); v <= versions; v++ {
		st.add(d, testKey("key_1", fmt.Sprint(v)))
		switch v % 3 {
		case 0:
			c.Invalidate("key_1")
		case 1:
			c.InvalidateFrom(SourceNotify, "key_1", d)
		case 2:
			if v%30 == 2 {
				c.InvalidateAll()
			} else {
				c.Invalidate("key_1", d)
			}
		}
		committed.Store(v)
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestFlightKeySeparatesEpochsAndKinds(t *testing.T) {
	d := digestOf("k")
	keys := map[string]string{}
	for _, tt := range []struct {
		name string
		t    target
		ep   uint64
	}{
		{"digest at 1", target{digest: d}, 1},
		{"digest at 2", target{digest: d}, 2},
		{"other digest at 1", target{digest: digestOf("other")}, 1},
		{"id at 1", target{byID: true, id: "key_1"}, 1},
		{"id at 2", target{byID: true, id: "key_1"}, 2},
		{"other id at 1", target{byID: true, id: "key_2"}, 1},
	} {
		k := tt.t.flightKey(tt.ep)
		if other, ok := keys[k]; ok {
			t.Errorf("%s and %s share flight key %q", tt.name, other, k)
		}
		keys[k] = tt.name
	}
}

func TestClose(t *testing.T) {
	st := newFakeStore()
	d := digestOf("k")
	k := testKey("key_1", "one")
	st.add(d, k)
	c, err := New(st, defaultOpts(newFakeClock()))
	if err != nil {
		t.Fatal(err)
	}
	st.mu.Lock()
	st.ignoreCtx = true
	st.mu.Unlock()
	entered, release := st.hold()
	done := make(chan error, 1)
	go func() {
		got, err := c.LookupKey(context.Background(), d)
		if err == nil && got != k {
			err = fmt.Errorf("got %v, want %v", got, k)
		}
		done <- err
	}()
	<-entered
	c.Close()
	// The query in flight finishes after Close: its answer reaches its
	// caller and its write is skipped.
	release()
	if err := <-done; err != nil {
		t.Errorf("lookup in flight across Close: %v", err)
	}
	before := st.calls.Load()
	if _, err := c.LookupKey(context.Background(), d); !errors.Is(err, auth.ErrStoreUnavailable) {
		t.Errorf("LookupKey after Close: err = %v, want ErrStoreUnavailable", err)
	}
	if n := st.calls.Load() - before; n != 0 {
		t.Errorf("store queries after Close = %d, want 0", n)
	}
	c.Invalidate("key_1", d)
	c.Wait()
	c.Close()
}

// TestMetricsLint runs promlint over everything the cache registers (the
// series client_golang's testutil.CollectAndLint would check).
func TestMetricsLint(t *testing.T) {
	reg := prometheus.NewRegistry()
	o := defaultOpts(newFakeClock())
	o.Registerer = reg
	newTestCache(t, newFakeStore(), o)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	want := map[string]bool{
		"keygate_cache_lookups_total": true,
		"keygate_cache_entries":       true,
		"keygate_invalidations_total": true,
	}
	for _, mf := range mfs {
		if !want[mf.GetName()] {
			t.Errorf("unexpected metric %s", mf.GetName())
		}
		delete(want, mf.GetName())
	}
	for name := range want {
		t.Errorf("metric %s not registered", name)
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatalf("Lint: %v", err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}

// deadlineStore records the deadline each query gets.
type deadlineStore struct {
	mu        sync.Mutex
	deadlines []time.Duration // time left at the start of each query; -1: none
}

func (s *deadlineStore) record(ctx context.Context) {
	left := time.Duration(-1)
	if dl, ok := ctx.Deadline(); ok {
		left = time.Until(dl)
	}
	s.mu.Lock()
	s.deadlines = append(s.deadlines, left)
	s.mu.Unlock()
}

func (s *deadlineStore) LookupKey(ctx context.Context, _ [32]byte) (*auth.Key, error) {
	s.record(ctx)
	return nil, auth.ErrKeyNotFound
}

func (s *deadlineStore) LookupKeyID(ctx context.Context, _ string) (*auth.Key, error) {
	s.record(ctx)
	return nil, auth.ErrKeyNotFound
}

func TestStoreQueriesGetLookupTimeout(t *testing.T) {
	tests := []struct {
		name    string
		timeout time.Duration
		want    time.Duration
	}{
		{"default", 0, DefaultLookupTimeout},
		{"configured", 250 * time.Millisecond, 250 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := &deadlineStore{}
			c := newTestCache(t, st, Options{MaxKeys: 10, LookupTimeout: tt.timeout})
			// A request context without a deadline, and one with a longer
			// one: the store query gets LookupTimeout either way.
			ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
			defer cancel()
			c.LookupKey(context.Background(), digestOf("a"))
			c.LookupKeyID(ctx, "key_1")
			if len(st.deadlines) != 2 {
				t.Fatalf("store queries = %d, want 2", len(st.deadlines))
			}
			for i, left := range st.deadlines {
				if left <= 0 || left > tt.want {
					t.Errorf("query %d: time left %v, want a deadline at most %v away", i, left, tt.want)
				}
			}
		})
	}
}

// TestWarmFillsMaxKeysWithIDs: Warm caches every key by digest and by id;
// the id entries must not push keys out of a cache sized for the keys.
func TestWarmFillsMaxKeysWithIDs(t *testing.T) {
	st := newFakeStore()
	st.setErr(auth.ErrStoreUnavailable)
	o := defaultOpts(newFakeClock())
	o.MaxKeys = 8
	c := newTestCache(t, st, o)
	ctx := context.Background()

	var ws []WarmEntry
	for i := range 8 {
		ws = append(ws, WarmEntry{digestOf(fmt.Sprint(i)), testKey(fmt.Sprint("key_", i), "n")})
	}
	if n := c.Warm(c.Epoch(), ws); n != 8 {
		t.Fatalf("Warm = %d, want 8", n)
	}
	if n := c.Len(); n != 8 {
		t.Errorf("Len = %d, want 8", n)
	}
	for _, w := range ws {
		if got, err := c.LookupKey(ctx, w.Digest); got != w.Key || err != nil {
			t.Errorf("LookupKey(%s) = %v, %v; want %v", w.Key.ID, got, err, w.Key)
		}
		if got, err := c.LookupKeyID(ctx, w.Key.ID); got != w.Key || err != nil {
			t.Errorf("LookupKeyID(%s) = %v, %v; want %v", w.Key.ID, got, err, w.Key)
		}
	}
	if n := st.calls.Load(); n != 0 {
		t.Errorf("store queries = %d, want 0", n)
	}
}

// TestLookupKeyAtRealClock: with the real clock the caller's reading
// stands in for the cache's own (an entry expired since that reading is
// still served by it, and looked up again by LookupKey), and with a clock
// of the cache's own it is ignored.
func TestLookupKeyAtRealClock(t *testing.T) {
	st := newFakeStore()
	d := digestOf("k")
	k := testKey("key_1", "one")
	st.add(d, k)
	o := defaultOpts(nil)
	o.Now = nil // the real clock
	o.PositiveTTL = 20 * time.Millisecond
	c := newTestCache(t, st, o)
	ctx := context.Background()
	then := time.Now()
	if got, err := c.LookupKeyAt(ctx, d, then); got != k || err != nil {
		t.Fatalf("LookupKeyAt = %v, %v", got, err)
	}
	c.Wait()
	for time.Since(then) < 2*o.PositiveTTL {
		time.Sleep(o.PositiveTTL)
	}
	if got, err := c.LookupKeyAt(ctx, d, then); got != k || err != nil {
		t.Fatalf("LookupKeyAt = %v, %v", got, err)
	}
	if n := st.calls.Load(); n != 1 {
		t.Fatalf("store queries = %d, want 1: the caller's reading says the entry is fresh", n)
	}
	if got, err := c.LookupKey(ctx, d); got != k || err != nil {
		t.Fatalf("LookupKey = %v, %v", got, err)
	}
	if n := st.calls.Load(); n != 2 {
		t.Errorf("store queries = %d, want 2: by the cache's own clock the entry has expired", n)
	}

	clk := newFakeClock()
	st2 := newFakeStore()
	st2.add(d, k)
	c2 := newTestCache(t, st2, defaultOpts(clk))
	c2.LookupKeyAt(ctx, d, clk.Now())
	c2.Wait()
	clk.Advance(time.Hour)                     // past the entry's expiry by the cache's clock…
	c2.LookupKeyAt(ctx, d, time.Time{}.Add(1)) // …whatever the caller says
	if n := st2.calls.Load(); n != 2 {
		t.Errorf("store queries = %d, want 2: a cache with its own clock ignores the caller's", n)
	}
}

// TestFrontEntries: a key hit often enough to be answered from the
// lock-free front table is still dropped by Invalidate, InvalidateAll and
// its expiry, exactly as from ristretto.
func TestFrontEntries(t *testing.T) {
	clk := newFakeClock()
	st := newFakeStore()
	d := digestOf("front")
	k1 := testKey("key_f", "one")
	st.add(d, k1)
	c := newTestCache(t, st, defaultOpts(clk))
	ctx := context.Background()
	hot := func(want *auth.Key) {
		t.Helper()
		for i := 0; i < 3; i++ { // miss, ristretto hit (fills front), front hit
			if got, err := c.LookupKey(ctx, d); got != want || err != nil {
				t.Fatalf("LookupKey = %v, %v; want %v", got, err, want)
			}
			c.Wait()
		}
	}
	hot(k1)
	if n := st.calls.Load(); n != 1 {
		t.Fatalf("store queries = %d, want 1", n)
	}

	k2 := testKey("key_f", "two")
	st.add(d, k2)
	c.Invalidate("key_f")
	hot(k2)
	if n := st.calls.Load(); n != 2 {
		t.Errorf("store queries after Invalidate = %d, want 2", n)
	}

	k3 := testKey("key_f", "three")
	st.add(d, k3)
	c.InvalidateAll()
	hot(k3)
	if n := st.calls.Load(); n != 3 {
		t.Errorf("store queries after InvalidateAll = %d, want 3", n)
	}

	k4 := testKey("key_f", "four")
	st.add(d, k4)
	clk.Advance(defaultOpts(clk).PositiveTTL + time.Second)
	hot(k4)
	if n := st.calls.Load(); n != 4 {
		t.Errorf("store queries after expiry = %d, want 4", n)
	}
}

// TestFrontAfterClose: once the cache is closed, a key held in the front
// table is not answered from it either.
func TestFrontAfterClose(t *testing.T) {
	st := newFakeStore()
	d := digestOf("closed")
	st.add(d, testKey("key_c", "c"))
	c, err := New(st, defaultOpts(newFakeClock()))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if _, err := c.LookupKey(ctx, d); err != nil {
			t.Fatal(err)
		}
		c.Wait()
	}
	c.Close()
	if k, err := c.LookupKey(ctx, d); !errors.Is(err, auth.ErrStoreUnavailable) {
		t.Errorf("LookupKey after Close = %v, %v; want ErrStoreUnavailable", k, err)
	}
}
