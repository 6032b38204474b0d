//go:build !race

package cache

import (
	"context"
	"errors"
	"testing"

	"github.com/keygate/keygate/auth"
)

// TestHitPathDoesNotAllocate pins STYLE §7: a cache hit, positive or
// negative, by digest or by id, allocates nothing.
func TestHitPathDoesNotAllocate(t *testing.T) {
	clk := newFakeClock()
	st := newFakeStore()
	d := digestOf("k")
	k := testKey("key_1", "one")
	st.add(d, k)
	c := newTestCache(t, st, defaultOpts(clk))
	ctx := context.Background()
	unknown := digestOf("unknown")
	if _, err := c.LookupKey(ctx, d); err != nil {
		t.Fatal(err)
	}
	c.LookupKey(ctx, unknown)
	c.LookupKeyID(ctx, "key_1")
	c.Wait()
	// An invalidation of another key sends hits through the tombstone
	// check; that path must not allocate either.
	c.Invalidate("key_2", digestOf("other"))

	tests := []struct {
		name string
		f    func()
	}{
		{"digest hit", func() {
			if got, err := c.LookupKey(ctx, d); got != k || err != nil {
				t.Fatalf("LookupKey = %v, %v", got, err)
			}
		}},
		{"negative hit", func() {
			if _, err := c.LookupKey(ctx, unknown); !errors.Is(err, auth.ErrKeyNotFound) {
				t.Fatalf("LookupKey(unknown) = %v", err)
			}
		}},
		{"id hit", func() {
			if got, err := c.LookupKeyID(ctx, "key_1"); got != k || err != nil {
				t.Fatalf("LookupKeyID = %v, %v", got, err)
			}
		}},
	}
	for _, tt := range tests {
		if n := testing.AllocsPerRun(1000, tt.f); n != 0 {
			t.Errorf("%s: %v allocs/op, want 0", tt.name, n)
		}
	}
	if n := st.calls.Load(); n != 3 {
		t.Errorf("store queries = %d, want 3 (every measured call a hit)", n)
	}
}
