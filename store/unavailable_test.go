package store_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync/atomic"
	"testing"

	"github.com/keygate/keygate/auth"
	"github.com/keygate/keygate/store"
)

// flaky is a real backend that can be switched to failing like a store
// that went away: every call, or only the audit append inside a
// transaction (a failure between a change and its commit).
type flaky struct {
	store.Backend
	down      atomic.Bool
	auditDown atomic.Bool
}

var errDown = fmt.Errorf("%w: connection refused", store.ErrUnavailable)

func (f *flaky) Update(ctx context.Context, fn func(store.Tx) error) error {
	if f.down.Load() {
		return errDown
	}
	return f.Backend.Update(ctx, func(tx store.Tx) error {
		return fn(&flakyTx{Tx: tx, f: f})
	})
}

func (f *flaky) View(ctx context.Context, fn func(store.Tx) error) error {
	if f.down.Load() {
		return errDown
	}
	return f.Backend.View(ctx, fn)
}

func (f *flaky) LookupDigest(ctx context.Context, d [32]byte) (*store.Key, error) {
	if f.down.Load() {
		return nil, errDown
	}
	return f.Backend.LookupDigest(ctx, d)
}

func (f *flaky) Ping(ctx context.Context) error {
	if f.down.Load() {
		return errDown
	}
	return f.Backend.Ping(ctx)
}

type flakyTx struct {
	store.Tx
	f *flaky
}

func (t *flakyTx) AppendAudit(ev *store.AuditEvent) error {
	if t.f.auditDown.Load() {
		return errDown
	}
	return t.Tx.AppendAudit(ev)
}

func TestUnavailablePassesThrough(t *testing.T) {
	ctx := context.Background()
	fb := &flaky{Backend: openEmbedded(t)}
	changes := 0
	svc := store.NewService(fb, store.Options{OnChange: func(store.Change) { changes++ }})
	c, err := svc.Create(ctx, store.Actor{}, []byte(`{"name": "n", "user": "u"}`))
	if err != nil {
		t.Fatal(err)
	}
	id := c.Key.ID
	fb.down.Store(true)
	calls := map[string]func() error{
		"Create": func() error {
			_, err := svc.Create(ctx, store.Actor{}, []byte(`{"name": "m", "user": "u"}`))
			return err
		},
		"Get":            func() error { _, err := svc.Get(ctx, id); return err },
		"List":           func() error { _, _, err := svc.List(ctx, url.Values{}); return err },
		"Lookup":         func() error { _, err := svc.Lookup(ctx, c.Secret); return err },
		"Update":         func() error { _, err := svc.Update(ctx, store.Actor{}, id, []byte(`{"notes": "x"}`)); return err },
		"SetEnabled":     func() error { _, err := svc.SetEnabled(ctx, store.Actor{}, id, false); return err },
		"Rotate":         func() error { _, err := svc.Rotate(ctx, store.Actor{}, id, 0); return err },
		"RevokeSessions": func() error { _, err := svc.RevokeSessions(ctx, store.Actor{}, id); return err },
		"Delete":         func() error { return svc.Delete(ctx, store.Actor{}, id) },
		"Bulk":           func() error { _, err := svc.Bulk(ctx, store.Actor{}, "delete", []string{id}); return err },
		"PurgeExpired":   func() error { _, err := svc.PurgeExpired(ctx, store.Actor{}, 0, false); return err },
		"Audit":          func() error { _, _, err := svc.Audit(ctx, url.Values{}); return err },
		"Counts":         func() error { _, err := svc.Counts(ctx); return err },
		"AdminKeyExists": func() error { _, err := svc.AdminKeyExists(ctx); return err },
		"Bootstrap":      func() error { _, err := svc.Bootstrap(ctx, "", false); return err },
		"SessionSecrets": func() error { _, err := svc.SessionSecrets(ctx, nil); return err },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s with the store down = %v, want ErrUnavailable", name, err)
		}
	}
	ks := store.NewKeySource(fb)
	if _, err := ks.LookupKey(ctx, auth.Digest([]byte(c.Secret))); !errors.Is(err, auth.ErrStoreUnavailable) || !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("KeySource.LookupKey with the store down = %v, want auth.ErrStoreUnavailable wrapping store.ErrUnavailable", err)
	}
	if _, err := ks.LookupKeyID(ctx, id); !errors.Is(err, auth.ErrStoreUnavailable) {
		t.Errorf("KeySource.LookupKeyID with the store down = %v, want auth.ErrStoreUnavailable", err)
	}

	// A failure inside the transaction leaves nothing half-applied.
	fb.down.Store(false)
	fb.auditDown.Store(true)
	if _, err := svc.Create(ctx, store.Actor{}, []byte(`{"name": "half", "user": "u"}`)); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Create with the audit append failing = %v, want ErrUnavailable", err)
	}
	if _, err := svc.Update(ctx, store.Actor{}, id, []byte(`{"name": "renamed"}`)); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Update with the audit append failing = %v", err)
	}
	if err := svc.Delete(ctx, store.Actor{}, id); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Delete with the audit append failing = %v", err)
	}
	fb.auditDown.Store(false)
	keys, _, err := svc.List(ctx, url.Values{})
	if err != nil || len(keys) != 1 || keys[0].Name != "n" {
		t.Errorf("after failed writes keys = %v, %v; want only the untouched first key", keys, err)
	}
	if changes != 1 {
		t.Errorf("OnChange called %d times, want once (failed writes publish nothing)", changes)
	}
}

func (f *flaky) RecordUsage(ctx context.Context, u []store.Usage) error {
	if f.down.Load() {
		return errDown
	}
	return f.Backend.RecordUsage(ctx, u)
}

// failAfter lets the first n Updates through, then fails like a store
// that went away.
type failAfter struct {
	store.Backend
	n atomic.Int64
}

func (f *failAfter) Update(ctx context.Context, fn func(store.Tx) error) error {
	if f.n.Add(-1) < 0 {
		return errDown
	}
	return f.Backend.Update(ctx, fn)
}

// A store failure in the middle of a bulk action must not hide which ids
// were already applied.
func TestBulkReportsAppliedIDsWhenTheStoreFails(t *testing.T) {
	ctx := context.Background()
	b := &failAfter{Backend: openEmbedded(t)}
	b.n.Store(1 << 30)
	svc := store.NewService(b, store.Options{})
	var ids []string
	for i := range 3 {
		c, err := svc.Create(ctx, store.Actor{}, []byte(fmt.Sprintf(`{"name": "k%d", "user": "u"}`, i)))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, c.Key.ID)
	}

	b.n.Store(1) // the first delete commits, then the store is down
	res, err := svc.Bulk(ctx, store.Actor{}, "delete", ids)
	if err != nil {
		t.Fatalf("Bulk with one id applied = %v, want per-id results", err)
	}
	want := []store.BulkResult{{ID: ids[0], OK: true}, {ID: ids[1], Error: "store_unavailable"}, {ID: ids[2], Error: "store_unavailable"}}
	if fmt.Sprint(res) != fmt.Sprint(want) {
		t.Errorf("Bulk results = %+v, want %+v", res, want)
	}

	b.n.Store(0) // down from the start: nothing applied, the error itself
	if _, err := svc.Bulk(ctx, store.Actor{}, "delete", ids[1:]); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Bulk with the store down = %v, want ErrUnavailable", err)
	}
}

// lyingIndex answers every digest with one fixed key, like a damaged
// digest index.
type lyingIndex struct {
	store.Backend
	k *store.Key
}

func (l *lyingIndex) LookupDigest(context.Context, [32]byte) (*store.Key, error) {
	return l.k.Clone(), nil
}

// A key returned for a digest it does not have is not trusted: the hot
// path and the admin lookup both fail closed.
func TestLookupDoesNotTrustTheDigestIndex(t *testing.T) {
	ctx := context.Background()
	b := openEmbedded(t)
	svc := store.NewService(b, store.Options{})
	c, err := svc.Create(ctx, store.Actor{}, []byte(`{"name": "real", "user": "u"}`))
	if err != nil {
		t.Fatal(err)
	}
	other, err := auth.NewSecret("kg")
	if err != nil {
		t.Fatal(err)
	}
	k, err := svc.Get(ctx, c.Key.ID)
	if err != nil {
		t.Fatal(err)
	}
	var stored *store.Key
	if err := b.View(ctx, func(tx store.Tx) (err error) { stored, err = tx.GetKey(k.ID); return err }); err != nil {
		t.Fatal(err)
	}
	lying := &lyingIndex{Backend: b, k: stored}
	if _, err := store.NewKeySource(lying).LookupKey(ctx, auth.Digest([]byte(other))); !errors.Is(err, auth.ErrKeyNotFound) {
		t.Errorf("KeySource.LookupKey(other secret) = %v, want ErrKeyNotFound", err)
	}
	if _, err := store.NewService(lying, store.Options{}).Lookup(ctx, other); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Service.Lookup(other secret) = %v, want ErrNotFound", err)
	}
	if got, err := store.NewKeySource(lying).LookupKey(ctx, auth.Digest([]byte(c.Secret))); err != nil || got.ID != k.ID {
		t.Errorf("KeySource.LookupKey(its own secret) = %v, %v", got, err)
	}
}
