package embedded

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/keygate/keygate/store"
)

var errBoom = errors.New("boom")

// t0 is the tests' fixed clock.
var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func openTemp(t *testing.T) (*Embedded, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "keygate-data")
	e, err := Open(dir, Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { e.Close() })
	return e, dir
}

func digestOf(s string) [32]byte { return sha256.Sum256([]byte(s)) }

func newKey(id, app, name string) *store.Key {
	exp := t0.Add(24 * time.Hour)
	return &store.Key{
		ID:              id,
		Name:            name,
		Description:     "key " + name,
		User:            "alice",
		Application:     app,
		Tags:            []string{"t1"},
		Scopes:          []string{"default"},
		Metadata:        map[string]string{"team": "a"},
		Enabled:         true,
		SessionsAllowed: true,
		ExpiresAt:       &exp,
		CreatedAt:       t0,
		UpdatedAt:       t0,
		RateLimit:       &store.RateLimit{RPS: 5, Burst: 10},
		Hint:            "kg_" + id,
		SessionEpoch:    3,
		Digest:          digestOf("secret-" + id),
		SealedSecret:    []byte("sealed-" + id),
	}
}

func insert(t *testing.T, e *Embedded, keys ...*store.Key) {
	t.Helper()
	err := e.Update(context.Background(), func(tx store.Tx) error {
		for _, k := range keys {
			if err := tx.InsertKey(k); err != nil {
				return fmt.Errorf("insert %s: %w", k.ID, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func view(t *testing.T, e *Embedded, fn func(store.Tx) error) {
	t.Helper()
	if err := e.View(context.Background(), fn); err != nil {
		t.Fatal(err)
	}
}

func getKey(t *testing.T, e *Embedded, id string) (*store.Key, error) {
	t.Helper()
	var k *store.Key
	err := e.View(context.Background(), func(tx store.Tx) error {
		var err error
		k, err = tx.GetKey(id)
		return err
	})
	return k, err
}

func TestReopenKeepsCommittedKey(t *testing.T) {
	e, dir := openTemp(t)
	k := newKey("key_01", "app", "one")
	k.PreviousDigest = digestOf("old")
	prevExp := t0.Add(time.Hour)
	k.PreviousSecretExpiresAt = &prevExp
	insert(t, e, k)
	if err := e.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	e2, err := Open(dir, Options{})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer e2.Close()
	got, err := getKey(t, e2, k.ID)
	if err != nil {
		t.Fatalf("GetKey after reopen: %v", err)
	}
	if !reflect.DeepEqual(got, k) {
		t.Errorf("GetKey after reopen = %+v\nwant %+v", got, k)
	}
	for _, d := range [][32]byte{k.Digest, k.PreviousDigest} {
		got, err := e2.LookupDigest(context.Background(), d)
		if err != nil || got.ID != k.ID {
			t.Errorf("LookupDigest(%x) = %v, %v; want %s", d[:4], got, err, k.ID)
		}
	}
	view(t, e2, func(tx store.Tx) error {
		got, err := tx.KeyByName("app", "one")
		if err != nil || got.ID != k.ID {
			t.Errorf("KeyByName after reopen = %v, %v", got, err)
		}
		return nil
	})

	st, err := os.Stat(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("database mode = %v, want 0600", st.Mode().Perm())
	}
	st, err = os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o700 {
		t.Errorf("directory mode = %v, want 0700", st.Mode().Perm())
	}
}

func TestFailedUpdateLeavesNothing(t *testing.T) {
	e, dir := openTemp(t)
	k := newKey("key_01", "app", "one")
	err := e.Update(context.Background(), func(tx store.Tx) error {
		if err := tx.InsertKey(k); err != nil {
			return err
		}
		if err := tx.AppendAudit(&store.AuditEvent{ID: "aud_1", At: t0, Actor: "system", Action: "create", KeyID: k.ID}); err != nil {
			return err
		}
		if err := tx.PutSetting("s", []byte("v")); err != nil {
			return err
		}
		return errBoom
	})
	if !errors.Is(err, errBoom) {
		t.Fatalf("Update = %v, want fn's error", err)
	}

	check := func(e *Embedded) {
		t.Helper()
		view(t, e, func(tx store.Tx) error {
			if _, err := tx.GetKey(k.ID); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("GetKey = %v, want ErrNotFound", err)
			}
			if _, err := tx.KeyByName("app", "one"); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("KeyByName = %v, want ErrNotFound", err)
			}
			if _, err := tx.KeyByDigest(k.Digest); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("KeyByDigest = %v, want ErrNotFound", err)
			}
			if n, err := tx.CountApplicationKeys("app"); err != nil || n != 0 {
				t.Errorf("CountApplicationKeys = %d, %v; want 0", n, err)
			}
			evs, err := tx.ListAudit(store.AuditFilter{})
			if err != nil || len(evs) != 0 {
				t.Errorf("ListAudit = %v, %v; want none", evs, err)
			}
			if _, err := tx.Setting("s"); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("Setting = %v, want ErrNotFound", err)
			}
			return nil
		})
	}
	check(e)
	e.Close()
	e2, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer e2.Close()
	check(e2)

	// The name and the digest are free for a later insert.
	insert(t, e2, k)
}

func TestConcurrentInsertSameName(t *testing.T) {
	e, _ := openTemp(t)
	for round := range 20 {
		var wg sync.WaitGroup
		start := make(chan struct{})
		errs := make([]error, 2)
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				k := newKey(fmt.Sprintf("key_%02d_%d", round, i), "app", fmt.Sprintf("name-%d", round))
				<-start
				errs[i] = e.Update(context.Background(), func(tx store.Tx) error { return tx.InsertKey(k) })
			}()
		}
		close(start)
		wg.Wait()
		ok, taken := 0, 0
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case errors.Is(err, store.ErrNameTaken):
				taken++
			default:
				t.Fatalf("round %d: unexpected error %v", round, err)
			}
		}
		if ok != 1 || taken != 1 {
			t.Fatalf("round %d: %d inserts succeeded and %d got ErrNameTaken, want 1 and 1", round, ok, taken)
		}
	}
	view(t, e, func(tx store.Tx) error {
		n, err := tx.CountApplicationKeys("app")
		if err != nil || n != 20 {
			t.Errorf("CountApplicationKeys = %d, %v; want 20", n, err)
		}
		return nil
	})
}

func TestInsertUniqueness(t *testing.T) {
	e, _ := openTemp(t)
	a := newKey("key_a", "app", "one")
	a.PreviousDigest = digestOf("a-old")
	insert(t, e, a)

	sameName := newKey("key_b", "app", "one")
	sameDigest := newKey("key_c", "app", "two")
	sameDigest.Digest = a.Digest
	samePrevious := newKey("key_d", "app", "three")
	samePrevious.Digest = a.PreviousDigest
	sameID := newKey("key_a", "app", "four")
	for _, tt := range []struct {
		name string
		k    *store.Key
		want error
	}{
		{"name", sameName, store.ErrNameTaken},
		{"digest", sameDigest, store.ErrSecretTaken},
		{"previous digest", samePrevious, store.ErrSecretTaken},
	} {
		err := e.Update(context.Background(), func(tx store.Tx) error { return tx.InsertKey(tt.k) })
		if !errors.Is(err, tt.want) {
			t.Errorf("InsertKey with taken %s = %v, want %v", tt.name, err, tt.want)
		}
	}
	if err := e.Update(context.Background(), func(tx store.Tx) error { return tx.InsertKey(sameID) }); err == nil {
		t.Error("InsertKey with a taken id succeeded")
	}
	// The same name in another application is another key.
	insert(t, e, newKey("key_e", "other", "one"))
	view(t, e, func(tx store.Tx) error {
		for app, want := range map[string]int{"app": 1, "other": 1, "none": 0} {
			if n, err := tx.CountApplicationKeys(app); err != nil || n != want {
				t.Errorf("CountApplicationKeys(%q) = %d, %v; want %d", app, n, err, want)
			}
		}
		return nil
	})
}

func TestUpdateKeyMaintainsIndexes(t *testing.T) {
	e, _ := openTemp(t)
	ctx := context.Background()
	a, b := newKey("key_a", "app", "one"), newKey("key_b", "app", "two")
	insert(t, e, a, b)

	update := func(k *store.Key) error {
		return e.Update(ctx, func(tx store.Tx) error { return tx.UpdateKey(k) })
	}
	lookup := func(d [32]byte) string {
		k, err := e.LookupDigest(ctx, d)
		if errors.Is(err, store.ErrNotFound) {
			return ""
		}
		if err != nil {
			t.Fatal(err)
		}
		return k.ID
	}
	byName := func(app, name string) string {
		var id string
		view(t, e, func(tx store.Tx) error {
			k, err := tx.KeyByName(app, name)
			if errors.Is(err, store.ErrNotFound) {
				return nil
			}
			if err != nil {
				return err
			}
			id = k.ID
			return nil
		})
		return id
	}

	// Rename, and move to another application.
	a.Name, a.Application = "uno", "other"
	if err := update(a); err != nil {
		t.Fatalf("rename: %v", err)
	}
	if id := byName("app", "one"); id != "" {
		t.Errorf("old name still finds %s", id)
	}
	if id := byName("other", "uno"); id != a.ID {
		t.Errorf("new name finds %q, want %s", id, a.ID)
	}
	// The old name is free again.
	insert(t, e, newKey("key_c", "app", "one"))

	// Renaming onto a taken name fails and changes nothing.
	taken := a.Clone()
	taken.Name, taken.Application, taken.Description = "two", "app", "changed"
	if err := update(taken); !errors.Is(err, store.ErrNameTaken) {
		t.Fatalf("rename onto taken name = %v, want ErrNameTaken", err)
	}
	if got, _ := getKey(t, e, a.ID); got.Description != a.Description || got.Name != "uno" {
		t.Errorf("failed rename changed the key: %+v", got)
	}
	if id := byName("app", "two"); id != b.ID {
		t.Errorf("failed rename took the name: finds %q, want %s", id, b.ID)
	}

	// Rotate: the new secret and the previous one both find the key.
	old := a.Digest
	a.PreviousDigest, a.Digest = a.Digest, digestOf("a-new")
	if err := update(a); err != nil {
		t.Fatalf("rotate: %v", err)
	}
	if lookup(old) != a.ID || lookup(a.Digest) != a.ID {
		t.Errorf("after rotation: old digest finds %q, new finds %q; want %s for both", lookup(old), lookup(a.Digest), a.ID)
	}
	// Rotate again: the first secret is gone, the second is previous.
	second := a.Digest
	a.PreviousDigest, a.Digest = a.Digest, digestOf("a-third")
	if err := update(a); err != nil {
		t.Fatalf("second rotate: %v", err)
	}
	if got := lookup(old); got != "" {
		t.Errorf("first secret still finds %s after a second rotation", got)
	}
	if lookup(second) != a.ID || lookup(a.Digest) != a.ID {
		t.Error("second rotation lost the current or previous secret")
	}
	// Clearing the previous secret removes its index entry.
	a.PreviousDigest = [32]byte{}
	if err := update(a); err != nil {
		t.Fatalf("clear previous: %v", err)
	}
	if got := lookup(second); got != "" {
		t.Errorf("cleared previous secret still finds %s", got)
	}
	// A secret another key holds is refused.
	stolen := a.Clone()
	stolen.Digest = b.Digest
	if err := update(stolen); !errors.Is(err, store.ErrSecretTaken) {
		t.Errorf("rotate onto another key's secret = %v, want ErrSecretTaken", err)
	}
	if lookup(b.Digest) != b.ID || lookup(a.Digest) != a.ID {
		t.Error("refused rotation changed the digest index")
	}
	// Updating a missing key.
	if err := update(newKey("key_missing", "app", "x")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("UpdateKey(missing) = %v, want ErrNotFound", err)
	}

	// Delete removes the key and every index entry.
	if err := e.Update(ctx, func(tx store.Tx) error { return tx.DeleteKey(a.ID) }); err != nil {
		t.Fatalf("DeleteKey: %v", err)
	}
	if _, err := getKey(t, e, a.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetKey after delete = %v", err)
	}
	if got := lookup(a.Digest); got != "" {
		t.Errorf("deleted key's digest finds %s", got)
	}
	if id := byName("other", "uno"); id != "" {
		t.Errorf("deleted key's name finds %s", id)
	}
	if err := e.Update(ctx, func(tx store.Tx) error { return tx.DeleteKey(a.ID) }); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second DeleteKey = %v, want ErrNotFound", err)
	}
	// Name and secret can be reused.
	reuse := newKey("key_z", "other", "uno")
	reuse.Digest = a.Digest
	insert(t, e, reuse)
}

func ids(keys []*store.Key) []string {
	out := []string{}
	for _, k := range keys {
		out = append(out, k.ID)
	}
	return out
}

func TestListKeysFilters(t *testing.T) {
	e, _ := openTemp(t)
	past, soon, later := t0.Add(-time.Hour), t0.Add(time.Hour), t0.Add(48*time.Hour)
	k1 := newKey("key_1", "billing", "Alpha Reader")
	k1.ExpiresAt = &later
	k2 := newKey("key_2", "billing", "beta")
	k2.Enabled = false
	k2.Tags = []string{"ci", "t1"}
	k3 := newKey("key_3", "search", "gamma")
	k3.ExpiresAt = &past
	k3.User = "bob"
	k3.Tenant = "acme"
	k4 := newKey("key_4", "search", "delta")
	k4.ExpiresAt = nil
	k4.Description = "For the READER service"
	k4.Tags = nil
	k5 := newKey("key_5", "search", "epsilon")
	k5.ExpiresAt = &soon
	k5.Hint = "kg_XyZ12345"
	insert(t, e, k3, k1, k5, k2, k4) // insertion order does not matter

	for _, tt := range []struct {
		name string
		f    store.ListFilter
		want []string
	}{
		{"all", store.ListFilter{}, []string{"key_1", "key_2", "key_3", "key_4", "key_5"}},
		{"q name case-insensitive", store.ListFilter{Q: "alpha"}, []string{"key_1"}},
		{"q name or description", store.ListFilter{Q: "reader"}, []string{"key_1", "key_4"}},
		{"q hint", store.ListFilter{Q: "xyz1"}, []string{"key_5"}},
		{"q no match", store.ListFilter{Q: "zzz"}, []string{}},
		{"active", store.ListFilter{Status: store.StatusActive}, []string{"key_1", "key_4", "key_5"}},
		{"disabled", store.ListFilter{Status: store.StatusDisabled}, []string{"key_2"}},
		{"expired", store.ListFilter{Status: store.StatusExpired}, []string{"key_3"}},
		{"expired later", store.ListFilter{Status: store.StatusExpired, Now: soon}, []string{"key_3", "key_5"}},
		{"user", store.ListFilter{User: "bob"}, []string{"key_3"}},
		{"application", store.ListFilter{Application: "billing"}, []string{"key_1", "key_2"}},
		{"tenant", store.ListFilter{Tenant: "acme"}, []string{"key_3"}},
		{"tag", store.ListFilter{Tag: "ci"}, []string{"key_2"}},
		{"tag shared", store.ListFilter{Tag: "t1"}, []string{"key_1", "key_2", "key_3", "key_5"}},
		{"expires before", store.ListFilter{ExpiresBefore: &later}, []string{"key_2", "key_3", "key_5"}},
		{"expired before", store.ListFilter{ExpiredBefore: &t0}, []string{"key_3"}},
		{"combined", store.ListFilter{Application: "search", Status: store.StatusActive, Q: "E"}, []string{"key_4", "key_5"}},
		{"after id", store.ListFilter{AfterID: "key_3"}, []string{"key_4", "key_5"}},
		{"after id not stored", store.ListFilter{AfterID: "key_25"}, []string{"key_3", "key_4", "key_5"}},
		{"limit", store.ListFilter{Limit: 2}, []string{"key_1", "key_2"}},
		{"limit counts matches", store.ListFilter{Application: "search", Limit: 2}, []string{"key_3", "key_4"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.f.Now.IsZero() {
				tt.f.Now = t0
			}
			view(t, e, func(tx store.Tx) error {
				got, err := tx.ListKeys(tt.f)
				if err != nil {
					return err
				}
				if !reflect.DeepEqual(ids(got), tt.want) {
					t.Errorf("ListKeys(%+v) = %v, want %v", tt.f, ids(got), tt.want)
				}
				for _, k := range got {
					if want := k.StatusAt(tt.f.Now); k.Status != want {
						t.Errorf("%s: Status = %q, want %q", k.ID, k.Status, want)
					}
				}
				return nil
			})
		})
	}
}

func TestListKeysPagination(t *testing.T) {
	e, _ := openTemp(t)
	var want []string
	var keys []*store.Key
	for i := range 7 {
		k := newKey(fmt.Sprintf("key_%02d", i), "app", fmt.Sprintf("k%d", i))
		if i%3 == 0 {
			k.Enabled = false
		}
		keys = append(keys, k)
		if k.Enabled {
			want = append(want, k.ID)
		}
	}
	insert(t, e, keys...)
	var got []string
	after := ""
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("pagination does not end")
		}
		var page []*store.Key
		view(t, e, func(tx store.Tx) error {
			var err error
			page, err = tx.ListKeys(store.ListFilter{Status: store.StatusActive, AfterID: after, Limit: 2, Now: t0})
			return err
		})
		if len(page) > 2 {
			t.Fatalf("page of %d keys, limit 2", len(page))
		}
		got = append(got, ids(page)...)
		if len(page) < 2 {
			break
		}
		after = page[len(page)-1].ID
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("paged ids = %v, want %v", got, want)
	}
}

func TestCountsAndAdmin(t *testing.T) {
	e, _ := openTemp(t)
	past := t0.Add(-time.Minute)
	a := newKey("key_a", "app", "a")
	b := newKey("key_b", "app", "b")
	b.Enabled = false
	c := newKey("key_c", "app", "c")
	c.ExpiresAt = &past
	insert(t, e, a, b, c)
	view(t, e, func(tx store.Tx) error {
		got, err := tx.CountByStatus(t0)
		if err != nil {
			return err
		}
		want := map[string]int{store.StatusActive: 1, store.StatusDisabled: 1, store.StatusExpired: 1}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("CountByStatus = %v, want %v", got, want)
		}
		if ok, err := tx.AdminKeyExists(); err != nil || ok {
			t.Errorf("AdminKeyExists without admin = %v, %v", ok, err)
		}
		return nil
	})
	admin := newKey("key_admin", "", "admin")
	admin.Scopes = []string{"default", adminScope}
	insert(t, e, admin)
	view(t, e, func(tx store.Tx) error {
		if ok, err := tx.AdminKeyExists(); err != nil || !ok {
			t.Errorf("AdminKeyExists with admin = %v, %v", ok, err)
		}
		return nil
	})
}

func TestAudit(t *testing.T) {
	e, _ := openTemp(t)
	ctx := context.Background()
	evs := []*store.AuditEvent{
		{ID: "aud_01", At: t0, Actor: "key_admin", Action: "create", KeyID: "key_a", IP: "10.0.0.1",
			Changes: map[string]store.FieldChange{"name": {Before: nil, After: "a"}}},
		{ID: "aud_02", At: t0.Add(time.Minute), Actor: "system", Action: "create", KeyID: "key_b"},
		{ID: "aud_03", At: t0.Add(2 * time.Minute), Actor: "key_admin", Action: "disable", KeyID: "key_a"},
	}
	err := e.Update(ctx, func(tx store.Tx) error {
		for _, ev := range evs {
			if err := tx.AppendAudit(ev); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	since := t0.Add(time.Minute)
	for _, tt := range []struct {
		name string
		f    store.AuditFilter
		want []string
	}{
		{"all", store.AuditFilter{}, []string{"aud_01", "aud_02", "aud_03"}},
		{"key", store.AuditFilter{KeyID: "key_a"}, []string{"aud_01", "aud_03"}},
		{"actor", store.AuditFilter{Actor: "system"}, []string{"aud_02"}},
		{"since is inclusive", store.AuditFilter{Since: &since}, []string{"aud_02", "aud_03"}},
		{"after", store.AuditFilter{AfterID: "aud_01"}, []string{"aud_02", "aud_03"}},
		{"limit", store.AuditFilter{Limit: 1, AfterID: "aud_01"}, []string{"aud_02"}},
		{"key and limit", store.AuditFilter{KeyID: "key_a", Limit: 1, AfterID: "aud_01"}, []string{"aud_03"}},
	} {
		view(t, e, func(tx store.Tx) error {
			got, err := tx.ListAudit(tt.f)
			if err != nil {
				return err
			}
			var gotIDs []string
			for _, ev := range got {
				gotIDs = append(gotIDs, ev.ID)
			}
			if !reflect.DeepEqual(gotIDs, tt.want) {
				t.Errorf("%s: ListAudit(%+v) = %v, want %v", tt.name, tt.f, gotIDs, tt.want)
			}
			return nil
		})
	}
	view(t, e, func(tx store.Tx) error {
		got, err := tx.ListAudit(store.AuditFilter{Limit: 1})
		if err != nil {
			return err
		}
		want := store.AuditEvent{ID: "aud_01", At: t0, Actor: "key_admin", Action: "create", KeyID: "key_a", IP: "10.0.0.1",
			Changes: map[string]store.FieldChange{"name": {Before: nil, After: "a"}}}
		if len(got) != 1 || !reflect.DeepEqual(*got[0], want) {
			t.Errorf("stored event = %+v, want %+v", got, want)
		}
		return nil
	})

	// Events without an id get increasing ones, in the order appended.
	var generated []string
	for range 3 {
		ev := &store.AuditEvent{At: t0, Actor: "system", Action: "purge"}
		if err := e.Update(ctx, func(tx store.Tx) error { return tx.AppendAudit(ev) }); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(ev.ID, "evt_") || len(ev.ID) != 30 {
			t.Fatalf("generated id %q", ev.ID)
		}
		generated = append(generated, ev.ID)
	}
	for i := 1; i < len(generated); i++ {
		if generated[i] <= generated[i-1] {
			t.Errorf("generated ids do not increase: %v", generated)
		}
	}
	// Same time, ids from store's generator and ours sort by time.
	if a, b := auditID(t0, 1), auditID(t0.Add(time.Millisecond), 0); a >= b {
		t.Errorf("auditID does not sort by time: %s >= %s", a, b)
	}
}

func TestSettings(t *testing.T) {
	e, _ := openTemp(t)
	ctx := context.Background()
	view(t, e, func(tx store.Tx) error {
		if _, err := tx.Setting("session_secret"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Setting(unset) = %v, want ErrNotFound", err)
		}
		return nil
	})
	for _, v := range []string{"one", "two", ""} {
		if err := e.Update(ctx, func(tx store.Tx) error { return tx.PutSetting("session_secret", []byte(v)) }); err != nil {
			t.Fatal(err)
		}
		view(t, e, func(tx store.Tx) error {
			got, err := tx.Setting("session_secret")
			if err != nil || string(got) != v {
				t.Errorf("Setting = %q, %v; want %q", got, err, v)
			}
			return nil
		})
	}
}

func TestReturnedKeysAreCopies(t *testing.T) {
	e, _ := openTemp(t)
	k := newKey("key_a", "app", "a")
	want := k.Clone()
	insert(t, e, k)
	// Changing what was inserted changes nothing stored.
	k.Tags[0] = "changed"
	k.Metadata["team"] = "changed"
	k.SealedSecret[0] = 'X'

	got, err := getKey(t, e, k.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("stored key changed with the inserted value: %+v", got)
	}
	got.Tags[0] = "changed"
	got.Metadata["team"] = "changed"
	got.SealedSecret[0] = 'X'
	*got.ExpiresAt = t0
	again, err := getKey(t, e, k.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(again, want) {
		t.Errorf("stored key changed with a returned value: %+v", again)
	}
}

func TestRecordUsage(t *testing.T) {
	e, _ := openTemp(t)
	ctx := context.Background()
	k := newKey("key_a", "app", "a")
	k.PreviousDigest = digestOf("old")
	insert(t, e, k)

	changes := startWatch(t, e)
	t1, t2 := t0.Add(time.Minute), t0.Add(2*time.Minute)
	err := e.RecordUsage(ctx, []store.Usage{
		{KeyID: k.ID, At: t2},
		{KeyID: k.ID, At: t1}, // earlier: ignored
		{KeyID: k.ID, At: t1, Previous: true},
		{KeyID: "key_deleted", At: t2},
	})
	if err != nil {
		t.Fatalf("RecordUsage: %v", err)
	}
	got, err := getKey(t, e, k.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.LastUsedAt == nil || !got.LastUsedAt.Equal(t2) {
		t.Errorf("LastUsedAt = %v, want %v", got.LastUsedAt, t2)
	}
	if got.PreviousSecretLastUsedAt == nil || !got.PreviousSecretLastUsedAt.Equal(t1) {
		t.Errorf("PreviousSecretLastUsedAt = %v, want %v", got.PreviousSecretLastUsedAt, t1)
	}
	// An earlier report in a later batch does not move it back.
	if err := e.RecordUsage(ctx, []store.Usage{{KeyID: k.ID, At: t1}}); err != nil {
		t.Fatal(err)
	}
	if got, _ := getKey(t, e, k.ID); !got.LastUsedAt.Equal(t2) {
		t.Errorf("LastUsedAt moved back to %v", got.LastUsedAt)
	}
	// No change was published: the first one a watcher sees is the marker.
	insert(t, e, newKey("key_marker", "app", "marker"))
	if c := <-changes; c.KeyID != "key_marker" {
		t.Errorf("watcher saw %s before the marker; RecordUsage published a change", c.KeyID)
	}
}

// startWatch runs Watch until the test ends and returns what it reports.
// It returns once the watcher is registered, so every later commit is seen.
func startWatch(t *testing.T, e *Embedded) <-chan store.Change {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan store.Change, 100)
	done := make(chan error, 1)
	before := e.watcherCount()
	go func() {
		done <- e.Watch(ctx, func(c store.Change, resync bool) {
			if resync {
				t.Errorf("embedded Watch reported a resync")
			}
			ch <- c
		})
	}()
	for e.watcherCount() == before {
		runtime.Gosched()
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Watch returned %v, want context.Canceled", err)
		}
	})
	return ch
}

func sameDigests(got, want [][32]byte) bool {
	if len(got) != len(want) {
		return false
	}
	for _, d := range want {
		if !containsDigest(got, d) {
			return false
		}
	}
	return true
}

func TestWatchSeesCommitsNotRollbacks(t *testing.T) {
	e, _ := openTemp(t)
	ctx := context.Background()
	w1, w2 := startWatch(t, e), startWatch(t, e)

	a := newKey("key_a", "app", "a")
	insert(t, e, a)
	// Rolled back: never published.
	err := e.Update(ctx, func(tx store.Tx) error {
		if err := tx.InsertKey(newKey("key_rolled_back", "app", "r")); err != nil {
			return err
		}
		return errBoom
	})
	if !errors.Is(err, errBoom) {
		t.Fatal(err)
	}
	// A transaction with no key change publishes nothing.
	if err := e.Update(ctx, func(tx store.Tx) error { return tx.PutSetting("s", []byte("v")) }); err != nil {
		t.Fatal(err)
	}
	// Rotation: old and new digests.
	old := a.Digest
	a.PreviousDigest, a.Digest = a.Digest, digestOf("a-new")
	if err := e.Update(ctx, func(tx store.Tx) error { return tx.UpdateKey(a) }); err != nil {
		t.Fatal(err)
	}
	// Clearing the previous secret still names it, so negative entries
	// and entries under the old digest are dropped.
	a.PreviousDigest = [32]byte{}
	if err := e.Update(ctx, func(tx store.Tx) error { return tx.UpdateKey(a) }); err != nil {
		t.Fatal(err)
	}
	if err := e.Update(ctx, func(tx store.Tx) error { return tx.DeleteKey(a.ID) }); err != nil {
		t.Fatal(err)
	}
	// Two keys in one transaction: two changes.
	insert(t, e, newKey("key_b", "app", "b"), newKey("key_c", "app", "c"))

	want := []store.Change{
		{KeyID: "key_a", Digests: [][32]byte{old}},
		{KeyID: "key_a", Digests: [][32]byte{old, a.Digest}},
		{KeyID: "key_a", Digests: [][32]byte{old, a.Digest}},
		{KeyID: "key_a", Digests: [][32]byte{a.Digest}},
		{KeyID: "key_b", Digests: [][32]byte{digestOf("secret-key_b")}},
		{KeyID: "key_c", Digests: [][32]byte{digestOf("secret-key_c")}},
	}
	for name, w := range map[string]<-chan store.Change{"first": w1, "second": w2} {
		for i, wc := range want {
			c := <-w
			if c.KeyID != wc.KeyID || !sameDigests(c.Digests, wc.Digests) {
				t.Errorf("%s watcher, change %d = %s %x, want %s %x", name, i, c.KeyID, c.Digests, wc.KeyID, wc.Digests)
			}
		}
	}
}

func TestWatchMergesChangesPerKey(t *testing.T) {
	e, _ := openTemp(t)
	w := startWatch(t, e)
	a := newKey("key_a", "app", "a")
	err := e.Update(context.Background(), func(tx store.Tx) error {
		if err := tx.InsertKey(a); err != nil {
			return err
		}
		b := a.Clone()
		b.Digest = digestOf("a-2")
		return tx.UpdateKey(b)
	})
	if err != nil {
		t.Fatal(err)
	}
	insert(t, e, newKey("key_marker", "app", "m"))
	c := <-w
	if c.KeyID != "key_a" || !sameDigests(c.Digests, [][32]byte{a.Digest, digestOf("a-2")}) {
		t.Errorf("change = %s %x, want key_a with both digests", c.KeyID, c.Digests)
	}
	if c := <-w; c.KeyID != "key_marker" {
		t.Errorf("next change = %s, want key_marker (one change per key per transaction)", c.KeyID)
	}
}

func TestSecondOpenFails(t *testing.T) {
	_, dir := openTemp(t)
	e2, err := Open(dir, Options{Timeout: 50 * time.Millisecond})
	if err == nil {
		e2.Close()
		t.Fatal("second Open of the same directory succeeded")
	}
	if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "keygate-data is in use by another process") {
		t.Errorf("second Open = %v, want ErrInUse", err)
	}
}

func TestCanceledContext(t *testing.T) {
	e, _ := openTemp(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	called := false
	fn := func(store.Tx) error { called = true; return nil }
	if err := e.Update(ctx, fn); !errors.Is(err, context.Canceled) {
		t.Errorf("Update = %v, want context.Canceled", err)
	}
	if err := e.View(ctx, fn); !errors.Is(err, context.Canceled) {
		t.Errorf("View = %v, want context.Canceled", err)
	}
	if called {
		t.Error("fn ran under a canceled context")
	}
	if _, err := e.LookupDigest(ctx, digestOf("x")); !errors.Is(err, context.Canceled) {
		t.Errorf("LookupDigest = %v, want context.Canceled", err)
	}
	if err := e.RecordUsage(ctx, []store.Usage{{KeyID: "k", At: t0}}); !errors.Is(err, context.Canceled) {
		t.Errorf("RecordUsage = %v, want context.Canceled", err)
	}
}

func TestViewRefusesWrites(t *testing.T) {
	e, _ := openTemp(t)
	err := e.View(context.Background(), func(tx store.Tx) error { return tx.InsertKey(newKey("key_a", "app", "a")) })
	if err == nil {
		t.Fatal("InsertKey inside View succeeded")
	}
	if _, err := getKey(t, e, "key_a"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("key written by View: %v", err)
	}
}

func TestTxUnusableAfterReturn(t *testing.T) {
	e, _ := openTemp(t)
	var leaked store.Tx
	view(t, e, func(tx store.Tx) error { leaked = tx; return nil })
	if _, err := leaked.GetKey("key_a"); !errors.Is(err, errTxDone) {
		t.Errorf("GetKey on an ended tx = %v, want errTxDone", err)
	}
}

func TestClosed(t *testing.T) {
	e, _ := openTemp(t)
	ctx := context.Background()
	if err := e.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	if err := e.Ping(ctx); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Ping after Close = %v, want ErrUnavailable", err)
	}
	if _, err := e.LookupDigest(ctx, digestOf("x")); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("LookupDigest after Close = %v, want ErrUnavailable", err)
	}
	if err := e.Update(ctx, func(store.Tx) error { return nil }); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Update after Close = %v, want ErrUnavailable", err)
	}
}

func TestScanKeys(t *testing.T) {
	e, _ := openTemp(t)
	n := 2*scanBatch + 7
	var keys []*store.Key
	for i := range n {
		keys = append(keys, newKey(fmt.Sprintf("key_%04d", i), "app", fmt.Sprintf("k%d", i)))
	}
	insert(t, e, keys...)
	seen := map[string]int{}
	err := e.ScanKeys(context.Background(), func(k *store.Key) error {
		seen[k.ID]++
		// fn runs outside any transaction, so it may write.
		if k.ID == "key_0000" {
			return e.RecordUsage(context.Background(), []store.Usage{{KeyID: k.ID, At: t0}})
		}
		return nil
	})
	if err != nil {
		t.Fatalf("ScanKeys: %v", err)
	}
	if len(seen) != n {
		t.Errorf("ScanKeys saw %d keys, want %d", len(seen), n)
	}
	for id, c := range seen {
		if c != 1 {
			t.Errorf("ScanKeys saw %s %d times", id, c)
		}
	}
	calls := 0
	err = e.ScanKeys(context.Background(), func(*store.Key) error { calls++; return errBoom })
	if !errors.Is(err, errBoom) || calls != 1 {
		t.Errorf("ScanKeys with failing fn = %v after %d calls, want errBoom after 1", err, calls)
	}
}

func TestMigrate(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")

	// A fresh store that may not be migrated cannot be used.
	if e, err := Open(dir, Options{SkipMigrate: true}); err == nil {
		e.Close()
		t.Fatal("Open with SkipMigrate on a fresh store succeeded")
	} else if !strings.Contains(err.Error(), "keygate migrate") {
		t.Errorf("Open with SkipMigrate = %v, want advice to run keygate migrate", err)
	}

	e, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	insert(t, e, newKey("key_a", "app", "a"))
	if err := e.Migrate(ctx); err != nil {
		t.Fatalf("second Migrate: %v", err)
	}
	if _, err := getKey(t, e, "key_a"); err != nil {
		t.Fatalf("Migrate lost data: %v", err)
	}
	// A store from a newer keygate is refused.
	if err := e.db.Update(func(btx *bolt.Tx) error {
		return writeVersion(btx.Bucket([]byte(bucketMeta)), schemaVersion()+1)
	}); err != nil {
		t.Fatal(err)
	}
	if err := e.Migrate(ctx); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Errorf("Migrate of a newer schema = %v, want a refusal", err)
	}
	if err := e.db.Update(func(btx *bolt.Tx) error {
		return writeVersion(btx.Bucket([]byte(bucketMeta)), schemaVersion())
	}); err != nil {
		t.Fatal(err)
	}
	e.Close()

	e, err = Open(dir, Options{SkipMigrate: true})
	if err != nil {
		t.Fatalf("Open with SkipMigrate on a migrated store: %v", err)
	}
	defer e.Close()
	if _, err := getKey(t, e, "key_a"); err != nil {
		t.Error(err)
	}
}

// BenchmarkLookupDigest is the hot path's store query on a cache miss.
func BenchmarkLookupDigest(b *testing.B) {
	e, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	const n = 1000
	err = e.Update(context.Background(), func(tx store.Tx) error {
		for i := range n {
			if err := tx.InsertKey(newKey(fmt.Sprintf("key_%04d", i), "app", fmt.Sprintf("k%d", i))); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	ds := make([][32]byte, n)
	for i := range ds {
		ds[i] = digestOf(fmt.Sprintf("secret-key_%04d", i))
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := e.LookupDigest(context.Background(), ds[i%n]); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
}
