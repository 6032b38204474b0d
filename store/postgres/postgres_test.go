package postgres

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	neturl "net/url"
	"os"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/keygate/keygate/internal/pgtest"
	"github.com/keygate/keygate/store"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m, MigrateURL)) }

// t0 has whole microseconds, PostgreSQL's precision.
var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

// waitFor bounds waits for asynchronous deliveries. It is generous on
// purpose: it only keeps a broken test from hanging, it measures nothing.
const waitFor = 30 * time.Second

func newStore(t *testing.T, o Options) (*Postgres, string) {
	t.Helper()
	url := pgtest.NewDatabase(t)
	return openURL(t, url, o, nil), url
}

func openURL(t *testing.T, url string, o Options, configure func(*pgxpool.Config)) *Postgres {
	t.Helper()
	p, err := open(context.Background(), url, o, configure)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// withParam adds a connection parameter to a URL.
func withParam(url, param string) string {
	if strings.Contains(url, "?") {
		return url + "&" + param
	}
	return url + "?" + param
}

func digest(s string) [32]byte { return sha256.Sum256([]byte(s)) }

func ptr(t time.Time) *time.Time { return &t }

func newKey(id, app, name string) *store.Key {
	return &store.Key{
		ID: id, Name: name, User: "u-" + name, Application: app,
		Enabled: true, SessionsAllowed: true,
		CreatedAt: t0, UpdatedAt: t0,
		Hint:   "kg_" + name,
		Digest: digest(id),
	}
}

func mustUpdate(t *testing.T, p *Postgres, fn func(store.Tx) error) {
	t.Helper()
	if err := p.Update(context.Background(), fn); err != nil {
		t.Fatalf("Update: %v", err)
	}
}

func insert(t *testing.T, p *Postgres, keys ...*store.Key) {
	t.Helper()
	mustUpdate(t, p, func(tx store.Tx) error {
		for _, k := range keys {
			if err := tx.InsertKey(k); err != nil {
				return fmt.Errorf("InsertKey(%s): %w", k.ID, err)
			}
		}
		return nil
	})
}

func getKey(t *testing.T, p *Postgres, id string) (*store.Key, error) {
	t.Helper()
	var k *store.Key
	err := p.View(context.Background(), func(tx store.Tx) error {
		var err error
		k, err = tx.GetKey(id)
		return err
	})
	return k, err
}

func TestMigrateConcurrentAndIdempotent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.NewEmptyDatabase(t)
	a := openURL(t, url, Options{}, nil)
	b := openURL(t, url, Options{}, nil)
	if err := a.CheckSchema(ctx); !errors.Is(err, ErrSchemaOutdated) || !strings.Contains(err.Error(), "0001_init.sql") {
		t.Fatalf("CheckSchema before Migrate = %v, want ErrSchemaOutdated naming 0001_init.sql", err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, p := range []*Postgres{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = p.Migrate(ctx)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("concurrent Migrate #%d: %v", i, err)
		}
	}
	if err := a.Migrate(ctx); err != nil {
		t.Fatalf("Migrate again: %v", err)
	}
	if err := a.CheckSchema(ctx); err != nil {
		t.Fatalf("CheckSchema after Migrate: %v", err)
	}
	ms, err := loadMigrations()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := a.pool.QueryRow(ctx, "SELECT count(*) FROM schema_migrations").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != len(ms) {
		t.Fatalf("schema_migrations has %d rows, want %d (one per migration)", n, len(ms))
	}
	insert(t, a, newKey("key_1", "", "one"))
}

func TestKeyRoundTrip(t *testing.T) {
	t.Parallel()
	p, _ := newStore(t, Options{})
	full := &store.Key{
		ID: "key_full", Name: "full", Description: "every field set", User: "alice",
		Application: "billing", Tenant: "acme",
		Tags: []string{"a", "b"}, Scopes: []string{"r1", "keygate:admin"},
		IPAllowlist: []string{"10.0.0.0/8", "2001:db8::/32"},
		ClientName:  "curl", Notes: "n", Metadata: map[string]string{"team": "x", "empty": ""},
		Enabled: false, SessionsAllowed: true,
		ExpiresAt: ptr(t0.Add(time.Hour)), CreatedAt: t0, UpdatedAt: t0.Add(time.Second),
		LastUsedAt: ptr(t0.Add(2 * time.Second)), RateLimit: &store.RateLimit{RPS: 2.5, Burst: 7},
		Hint: "kg_AbCd1234", SecretRotatedAt: ptr(t0.Add(3 * time.Second)),
		PreviousSecretExpiresAt:  ptr(t0.Add(4 * time.Second)),
		PreviousSecretLastUsedAt: ptr(t0.Add(5 * time.Second)),
		SessionEpoch:             3,
		Digest:                   digest("cur"), PreviousDigest: digest("prev"),
		SealedSecret: []byte{1, 2, 3},
	}
	bare := newKey("key_bare", "", "bare") // nil slices, maps and times
	empty := newKey("key_empty", "", "empty")
	empty.Tags, empty.Scopes, empty.IPAllowlist, empty.Metadata = []string{}, []string{}, []string{}, map[string]string{}
	insert(t, p, full, bare, empty)

	for _, want := range []*store.Key{full, bare, empty} {
		got, err := getKey(t, p, want.ID)
		if err != nil {
			t.Fatalf("GetKey(%s): %v", want.ID, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("GetKey(%s) =\n%+v\nwant\n%+v", want.ID, got, want)
		}
		got, err = p.LookupDigest(context.Background(), want.Digest)
		if err != nil || got.ID != want.ID {
			t.Errorf("LookupDigest(current of %s) = %v, %v", want.ID, got, err)
		}
	}
	if got, err := p.LookupDigest(context.Background(), full.PreviousDigest); err != nil || !reflect.DeepEqual(got, full) {
		t.Errorf("LookupDigest(previous) = %+v, %v; want the full key", got, err)
	}
	if _, err := p.LookupDigest(context.Background(), digest("nobody")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("LookupDigest(unknown) error = %v, want ErrNotFound", err)
	}
	err := p.View(context.Background(), func(tx store.Tx) error {
		if k, err := tx.KeyByName("billing", "full"); err != nil || k.ID != full.ID {
			t.Errorf("KeyByName = %v, %v", k, err)
		}
		if _, err := tx.KeyByName("other", "full"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("KeyByName(other app) error = %v, want ErrNotFound", err)
		}
		if k, err := tx.KeyByDigest(full.PreviousDigest); err != nil || k.ID != full.ID {
			t.Errorf("KeyByDigest(previous) = %v, %v", k, err)
		}
		if ok, err := tx.AdminKeyExists(); err != nil || !ok {
			t.Errorf("AdminKeyExists = %v, %v; want true", ok, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestWriteErrors(t *testing.T) {
	t.Parallel()
	p, _ := newStore(t, Options{})
	a, b := newKey("key_a", "app", "a"), newKey("key_b", "app", "b")
	insert(t, p, a, b)

	tests := []struct {
		name string
		fn   func(store.Tx) error
		want error
	}{
		{"insert taken name", func(tx store.Tx) error {
			k := newKey("key_c", "app", "a")
			return tx.InsertKey(k)
		}, store.ErrNameTaken},
		{"same name in another application", func(tx store.Tx) error {
			return tx.InsertKey(newKey("key_c", "other", "a"))
		}, nil},
		{"insert taken digest", func(tx store.Tx) error {
			k := newKey("key_c", "app", "c")
			k.Digest = a.Digest
			return tx.InsertKey(k)
		}, store.ErrSecretTaken},
		{"insert taken previous digest", func(tx store.Tx) error {
			k := newKey("key_c", "app", "c")
			k.PreviousDigest = b.Digest
			return tx.InsertKey(k)
		}, store.ErrSecretTaken},
		{"rename onto a taken name", func(tx store.Tx) error {
			k := b.Clone()
			k.Name = "a"
			return tx.UpdateKey(k)
		}, store.ErrNameTaken},
		{"rotate onto a taken digest", func(tx store.Tx) error {
			k := b.Clone()
			k.Digest, k.PreviousDigest = a.Digest, b.Digest
			return tx.UpdateKey(k)
		}, store.ErrSecretTaken},
		{"update missing", func(tx store.Tx) error { return tx.UpdateKey(newKey("key_x", "app", "x")) }, store.ErrNotFound},
		{"delete missing", func(tx store.Tx) error { return tx.DeleteKey("key_x") }, store.ErrNotFound},
		{"get missing", func(tx store.Tx) error { _, err := tx.GetKey("key_x"); return err }, store.ErrNotFound},
		{"unset setting", func(tx store.Tx) error { _, err := tx.Setting("nope"); return err }, store.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The failing write is undone and the transaction goes on:
			// the marker written after it must commit.
			err := p.Update(context.Background(), func(tx store.Tx) error {
				err := tt.fn(tx)
				if !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
					t.Errorf("error = %v, want %v", err, tt.want)
				}
				if err := tx.PutSetting("marker", []byte(tt.name)); err != nil {
					return err
				}
				return errors.New("roll back")
			})
			if err == nil || err.Error() != "roll back" {
				t.Fatalf("Update = %v, want the fn's own error", err)
			}
		})
	}
	// Nothing of the rolled back transactions stayed.
	for _, want := range []*store.Key{a, b} {
		if got, err := getKey(t, p, want.ID); err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("after rollbacks GetKey(%s) = %+v, %v; want %+v", want.ID, got, err, want)
		}
	}
	if _, err := getKey(t, p, "key_c"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("key_c exists after rollback: %v", err)
	}

	// A failed write inside a committed transaction leaves no trace, and the
	// rest commits.
	mustUpdate(t, p, func(tx store.Tx) error {
		k := newKey("key_c", "app", "c")
		k.PreviousDigest = b.Digest // taken: the whole InsertKey is undone
		if err := tx.InsertKey(k); !errors.Is(err, store.ErrSecretTaken) {
			t.Errorf("InsertKey = %v, want ErrSecretTaken", err)
		}
		return tx.PutSetting("after", []byte("v"))
	})
	if _, err := p.LookupDigest(context.Background(), digest("key_c")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the undone insert left its current secret: %v", err)
	}
	err := p.View(context.Background(), func(tx store.Tx) error {
		v, err := tx.Setting("after")
		if err != nil || string(v) != "v" {
			t.Errorf("Setting(after) = %q, %v", v, err)
		}
		return tx.InsertKey(newKey("key_v", "", "v"))
	})
	if !errors.Is(err, errReadOnly) {
		t.Errorf("InsertKey in View = %v, want errReadOnly", err)
	}
}

func TestRotateAndDelete(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p, _ := newStore(t, Options{})
	k := newKey("key_r", "", "r")
	insert(t, p, k)
	old := k.Digest

	// Rotate with grace: the old secret becomes the previous one.
	k.PreviousDigest, k.Digest = old, digest("new")
	k.PreviousSecretExpiresAt, k.SecretRotatedAt = ptr(t0.Add(time.Hour)), ptr(t0)
	mustUpdate(t, p, func(tx store.Tx) error { return tx.UpdateKey(k) })
	for _, d := range [][32]byte{old, k.Digest} {
		if got, err := p.LookupDigest(ctx, d); err != nil || !reflect.DeepEqual(got, k) {
			t.Fatalf("after rotation LookupDigest = %+v, %v; want %+v", got, err, k)
		}
	}

	// A use of the previous secret recorded meanwhile survives an update
	// that keeps it in place.
	if err := p.RecordUsage(ctx, []store.Usage{{KeyID: k.ID, At: t0.Add(time.Minute), Previous: true}}); err != nil {
		t.Fatal(err)
	}
	k.Description = "edited"
	mustUpdate(t, p, func(tx store.Tx) error { return tx.UpdateKey(k) })
	got, err := getKey(t, p, k.ID)
	if err != nil || got.PreviousSecretLastUsedAt == nil || !got.PreviousSecretLastUsedAt.Equal(t0.Add(time.Minute)) {
		t.Fatalf("PreviousSecretLastUsedAt = %v (err %v), want the recorded use", got.PreviousSecretLastUsedAt, err)
	}

	// Rotate without grace: the old secret stops being found at once.
	k = got
	k.PreviousDigest, k.Digest = [32]byte{}, digest("newer")
	k.PreviousSecretExpiresAt, k.PreviousSecretLastUsedAt = nil, nil
	mustUpdate(t, p, func(tx store.Tx) error { return tx.UpdateKey(k) })
	for _, d := range [][32]byte{old, digest("new")} {
		if _, err := p.LookupDigest(ctx, d); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("retired secret still found: %v", err)
		}
	}
	if got, err := getKey(t, p, k.ID); err != nil || !reflect.DeepEqual(got, k) {
		t.Errorf("GetKey = %+v, %v; want %+v", got, err, k)
	}
	// Slots may swap: the previous secret becomes current again.
	k.PreviousDigest, k.Digest = k.Digest, digest("new")
	mustUpdate(t, p, func(tx store.Tx) error { return tx.UpdateKey(k) })
	k.PreviousDigest, k.Digest = k.Digest, k.PreviousDigest
	mustUpdate(t, p, func(tx store.Tx) error { return tx.UpdateKey(k) })
	if got, err := getKey(t, p, k.ID); err != nil || !reflect.DeepEqual(got, k) {
		t.Errorf("after swapping slots GetKey = %+v, %v; want %+v", got, err, k)
	}

	mustUpdate(t, p, func(tx store.Tx) error { return tx.DeleteKey(k.ID) })
	var n int
	if err := p.pool.QueryRow(ctx, "SELECT count(*) FROM key_secrets").Scan(&n); err != nil || n != 0 {
		t.Errorf("key_secrets rows after delete = %d (err %v), want 0", n, err)
	}
	if _, err := p.LookupDigest(ctx, k.Digest); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("deleted key found: %v", err)
	}
}

// Two transactions insert the same (application, name) at once: the second
// waits on the first's uncommitted row, and exactly one gets ErrNameTaken.
func TestUniqueNameRace(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p, _ := newStore(t, Options{QueryTimeout: waitFor})
	inserted, release := make(chan struct{}), make(chan struct{})
	errA := make(chan error, 1)
	go func() {
		errA <- p.Update(ctx, func(tx store.Tx) error {
			if err := tx.InsertKey(newKey("key_a", "app", "same")); err != nil {
				return err
			}
			close(inserted)
			<-release
			return nil
		})
	}()
	<-inserted
	errB := make(chan error, 1)
	go func() {
		errB <- p.Update(ctx, func(tx store.Tx) error { return tx.InsertKey(newKey("key_b", "app", "same")) })
	}()
	waitUntilBlocked(t, p)
	close(release)
	if err := <-errA; err != nil {
		t.Errorf("first Update: %v", err)
	}
	if err := <-errB; !errors.Is(err, store.ErrNameTaken) {
		t.Errorf("second Update = %v, want ErrNameTaken", err)
	}
}

// waitUntilBlocked waits for some session of p's database to wait on a lock.
func waitUntilBlocked(t *testing.T, p *Postgres) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		var n int
		err := p.pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no session ever waited on a lock")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Concurrent creates check the application's count and insert; the
// advisory lock of CountApplicationKeys makes them take turns, so a cap of
// two admits exactly two.
func TestApplicationCapRace(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p, _ := newStore(t, Options{QueryTimeout: waitFor, MaxConns: 20})
	const n, limit = 12, 2
	var wg sync.WaitGroup
	var created, refused atomic.Int32
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			err := p.Update(ctx, func(tx store.Tx) error {
				c, err := tx.CountApplicationKeys("capped")
				if err != nil {
					return err
				}
				if c >= limit {
					return store.ErrApplicationLimit
				}
				return tx.InsertKey(newKey(fmt.Sprintf("key_%02d", i), "capped", fmt.Sprint(i)))
			})
			switch {
			case err == nil:
				created.Add(1)
			case errors.Is(err, store.ErrApplicationLimit):
				refused.Add(1)
			default:
				t.Errorf("create %d: %v", i, err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if created.Load() != limit || refused.Load() != n-limit {
		t.Errorf("created %d, refused %d; want %d and %d", created.Load(), refused.Load(), limit, n-limit)
	}
	err := p.View(ctx, func(tx store.Tx) error {
		c, err := tx.CountApplicationKeys("capped")
		if err == nil && c != limit {
			t.Errorf("CountApplicationKeys = %d, want %d", c, limit)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

type delivery struct {
	c      store.Change
	resync bool
}

// watch runs p.Watch until the test ends, sending what it reports. The
// second channel receives a value each time Watch starts listening.
func watch(t *testing.T, p *Postgres) (<-chan delivery, <-chan struct{}) {
	t.Helper()
	ch := make(chan delivery, 100)
	listening := make(chan struct{}, 10)
	p.onListen = func() {
		select {
		case listening <- struct{}{}:
		default:
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Watch(ctx, func(c store.Change, resync bool) { ch <- delivery{c, resync} }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Watch returned %v, want context.Canceled", err)
		}
	})
	return ch, listening
}

// waitListening waits until Watch listens.
func waitListening(t *testing.T, listening <-chan struct{}) {
	t.Helper()
	select {
	case <-listening:
	case <-time.After(waitFor):
		t.Fatal("Watch never listened")
	}
}

// next returns the first delivery for key id with the given resync flag.
func next(t *testing.T, ch <-chan delivery, id string, resync bool) store.Change {
	t.Helper()
	timeout := time.After(waitFor)
	for {
		select {
		case d := <-ch:
			if d.c.KeyID == id && d.resync == resync {
				return d.c
			}
		case <-timeout:
			t.Fatalf("no change of %s (resync %v) delivered", id, resync)
		}
	}
}

func sameDigests(got [][32]byte, want ...[32]byte) bool {
	seen := map[[32]byte]bool{}
	for _, d := range got {
		seen[d] = true
	}
	if len(seen) != len(want) {
		return false
	}
	for _, d := range want {
		if !seen[d] {
			return false
		}
	}
	return true
}

// A write through one replica reaches another replica's Watch by
// notification, naming old and new digests.
func TestWatchNotifies(t *testing.T) {
	t.Parallel()
	p, url := newStore(t, Options{ResyncInterval: time.Hour})
	other := openURL(t, url, Options{}, nil)
	ch, listening := watch(t, p)
	waitListening(t, listening)

	k := newKey("key_w", "", "w")
	insert(t, other, k)
	if c := next(t, ch, k.ID, false); !sameDigests(c.Digests, k.Digest) {
		t.Errorf("insert change digests = %x, want the key's", c.Digests)
	}
	old := k.Digest
	k.Digest = digest("rotated")
	mustUpdate(t, other, func(tx store.Tx) error { return tx.UpdateKey(k) })
	if c := next(t, ch, k.ID, false); !sameDigests(c.Digests, old, k.Digest) {
		t.Errorf("rotation change digests = %x, want old and new", c.Digests)
	}
	mustUpdate(t, other, func(tx store.Tx) error { return tx.DeleteKey(k.ID) })
	if c := next(t, ch, k.ID, false); !sameDigests(c.Digests, k.Digest) {
		t.Errorf("delete change digests = %x, want the deleted key's", c.Digests)
	}
	// Usage is no change.
	insert(t, other, newKey("key_u", "", "u"))
	next(t, ch, "key_u", false)
	if err := other.RecordUsage(context.Background(), []store.Usage{{KeyID: "key_u", At: t0}}); err != nil {
		t.Fatal(err)
	}
	insert(t, other, newKey("key_v", "", "v"))
	timeout := time.After(waitFor)
	for {
		select {
		case d := <-ch:
			if !d.resync && d.c.KeyID == "key_u" {
				t.Fatal("RecordUsage notified a change")
			}
			if d.c.KeyID == "key_v" {
				return
			}
		case <-timeout:
			t.Fatal("the change after RecordUsage was not delivered")
		}
	}
}

// A change whose notification was lost (here: recorded without one) is
// delivered by the periodic resync.
func TestWatchResyncsMissedChange(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p, _ := newStore(t, Options{ResyncInterval: 20 * time.Millisecond})
	ch, listening := watch(t, p)
	waitListening(t, listening)
	d := digest("missed")
	if _, err := p.pool.Exec(ctx, "INSERT INTO key_changes (key_id, digests) VALUES ($1, $2)", "key_missed", [][]byte{d[:]}); err != nil {
		t.Fatal(err)
	}
	if c := next(t, ch, "key_missed", true); !sameDigests(c.Digests, d) {
		t.Errorf("resynced digests = %x, want %x", c.Digests, d)
	}
}

// A resync reports each recorded change once, however often its window
// covers it.
func TestResyncReportsOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p, _ := newStore(t, Options{})
	insert(t, p, newKey("key_1", "", "1"))
	var got []string
	w := newWatcher(func(c store.Change, resync bool) { got = append(got, c.KeyID) })
	if err := p.resyncOnce(ctx, w); err != nil {
		t.Fatal(err)
	}
	insert(t, p, newKey("key_2", "", "2"))
	if err := p.resyncOnce(ctx, w); err != nil {
		t.Fatal(err)
	}
	if want := []string{"key_1", "key_2"}; !reflect.DeepEqual(got, want) {
		t.Errorf("resyncs reported %v, want %v", got, want)
	}
	// Pruning keeps recent changes.
	var n int
	if err := p.pool.QueryRow(ctx, "SELECT count(*) FROM key_changes").Scan(&n); err != nil || n != 2 {
		t.Errorf("key_changes rows = %d (err %v), want 2", n, err)
	}
}

func TestParsePayload(t *testing.T) {
	d := digest("x")
	tests := []struct {
		in   string
		ok   bool
		want store.Change
		seq  int64
	}{
		{fmt.Sprintf(`{"id":"key_1","d":["%x"],"s":42}`, d), true, store.Change{KeyID: "key_1", Digests: [][32]byte{d}}, 42},
		// From a replica that does not send the seq.
		{fmt.Sprintf(`{"id":"key_1","d":["%x"]}`, d), true, store.Change{KeyID: "key_1", Digests: [][32]byte{d}}, 0},
		{`{"id":"key_1","d":[]}`, true, store.Change{KeyID: "key_1", Digests: [][32]byte{}}, 0},
		{`{"id":"key_1","d":[],"s":-1}`, false, store.Change{}, 0},
		{`{"id":"key_1","d":[],"s":"1"}`, false, store.Change{}, 0},
		{`{"id":"key_1","d":["abcd"]}`, false, store.Change{}, 0},
		{fmt.Sprintf(`{"id":"key_1","d":["%x00"]}`, d), false, store.Change{}, 0},
		{`{"d":[]}`, false, store.Change{}, 0},
		{`not json`, false, store.Change{}, 0},
	}
	for _, tt := range tests {
		got, seq, ok := parsePayload(tt.in)
		if ok != tt.ok || seq != tt.seq || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("parsePayload(%q) = %v, %d, %v; want %v, %d, %v", tt.in, got, seq, ok, tt.want, tt.seq, tt.ok)
		}
	}
}

// The payload a change is notified with parses back to the change and its
// seq, and one that would pass NOTIFY's limit is not sent.
func TestPayloadPrefix(t *testing.T) {
	d := digest("x")
	prefix, ok := payloadPrefix("key_1", [][]byte{d[:]})
	if !ok {
		t.Fatal("payloadPrefix refused a one-digest change")
	}
	c, seq, ok := parsePayload(prefix + "9223372036854775807}")
	if want := (store.Change{KeyID: "key_1", Digests: [][32]byte{d}}); !ok || seq != 9223372036854775807 || !reflect.DeepEqual(c, want) {
		t.Errorf("payload parsed as %v, %d, %v; want %v and the seq", c, seq, ok, want)
	}
	if _, ok := payloadPrefix("key_1", nil); !ok {
		t.Error("payloadPrefix refused a change without digests")
	}
	many := make([][]byte, maxNotifyPayload/64)
	for i := range many {
		many[i] = d[:]
	}
	if prefix, ok := payloadPrefix("key_1", many); ok {
		t.Errorf("payloadPrefix accepted a %d-byte prefix", len(prefix))
	}
}

// resyncGate holds a Watch's resyncs for the test: after each successful
// one, the start of its window is sent on reports, and the resyncing
// goroutine waits for resume before it goes on.
type resyncGate struct {
	reports <-chan time.Time
	resume  chan<- struct{}
}

// watchGated is watch with the resyncs held by a resyncGate.
func watchGated(t *testing.T, p *Postgres) (<-chan delivery, <-chan struct{}, resyncGate) {
	t.Helper()
	reports, resume, done := make(chan time.Time), make(chan struct{}), make(chan struct{})
	p.onResync = func(from time.Time) {
		select {
		case reports <- from:
		case <-done:
			return
		}
		select {
		case <-resume:
		case <-done:
		}
	}
	ch, listening := watch(t, p)
	// Registered after watch's cleanup, so run before it: a resync held
	// here would keep Watch from returning.
	t.Cleanup(func() { close(done) })
	return ch, listening, resyncGate{reports, resume}
}

// nextResync lets the held resync go and waits for the next one; it
// returns the start of that one's window.
func (g resyncGate) nextResync(t *testing.T) time.Time {
	t.Helper()
	select {
	case g.resume <- struct{}{}:
	case <-time.After(waitFor):
		t.Fatal("no resync held")
	}
	return g.held(t)
}

// held waits until a resync is held and returns the start of its window.
func (g resyncGate) held(t *testing.T) time.Time {
	t.Helper()
	select {
	case from := <-g.reports:
		return from
	case <-time.After(waitFor):
		t.Fatal("no resync")
	}
	return time.Time{}
}

// A change a notification reported is not reported again by the resyncs
// whose windows cover it, and a change recorded without a notification is
// reported by them exactly once (as is one too big to notify).
func TestWatchReportsEachChangeOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p, url := newStore(t, Options{ResyncInterval: 50 * time.Millisecond})
	other := openURL(t, url, Options{}, nil)
	ch, listening, gate := watchGated(t, p)
	waitListening(t, listening)
	// While a resync is held, the notification is surely reported first.
	gate.held(t)
	insert(t, other, newKey("key_n", "", "n"))
	next(t, ch, "key_n", false)
	d := digest("missed")
	if _, err := other.pool.Exec(ctx, "INSERT INTO key_changes (key_id, digests) VALUES ($1, $2)", "key_missed", [][]byte{d[:]}); err != nil {
		t.Fatal(err)
	}
	// Too long a payload to notify: recorded only.
	many := make([][]byte, maxNotifyPayload/64)
	for i := range many {
		many[i] = d[:]
	}
	mustUpdate(t, other, func(stx store.Tx) error { return stx.(*tx).changed("key_big", many) })
	var at time.Time
	if err := other.pool.QueryRow(ctx, "SELECT max(at) FROM key_changes").Scan(&at); err != nil {
		t.Fatal(err)
	}

	// Let resyncs run until one's window starts after both changes: each
	// before it reread them. fn sends each report before the resync
	// that made it is held, so ch then holds every report.
	n := 0
	for from := gate.nextResync(t); !from.After(at); from = gate.nextResync(t) {
		n++
	}
	if n == 0 {
		t.Fatal("no resync window covered the changes")
	}
	type count struct{ notified, resynced int }
	counts := map[string]count{}
	for len(ch) > 0 {
		d := <-ch
		c := counts[d.c.KeyID]
		if d.resync {
			c.resynced++
		} else {
			c.notified++
		}
		counts[d.c.KeyID] = c
	}
	if c := counts["key_n"]; c != (count{0, 0}) {
		t.Errorf("after %d resyncs covering it, the notified change was reported %d more times by notification, %d by resync; want none", n, c.notified, c.resynced)
	}
	for _, id := range []string{"key_missed", "key_big"} {
		if c := counts[id]; c != (count{0, 1}) {
			t.Errorf("after %d resyncs covering it, unnotified change %s was reported %d times by notification, %d by resync; want once by resync", n, id, c.notified, c.resynced)
		}
	}
}

// Notified changes are remembered as long as a resync window can cover
// them and no longer, whether or not a resync read them; a notification
// without a seq (from an older replica) is reported again by resync.
func TestResyncSkipsNotified(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p, _ := newStore(t, Options{})
	insert(t, p, newKey("key_1", "", "1"), newKey("key_2", "", "2"))
	seqs := map[string]int64{}
	rows, err := p.pool.Query(ctx, "SELECT key_id, seq FROM key_changes")
	if err != nil {
		t.Fatal(err)
	}
	var id string
	var seq int64
	if _, err := pgx.ForEachRow(rows, []any{&id, &seq}, func() error { seqs[id] = seq; return nil }); err != nil || len(seqs) != 2 {
		t.Fatalf("key_changes = %v (err %v), want both keys", seqs, err)
	}
	var at time.Time
	if err := p.pool.QueryRow(ctx, "SELECT max(at) FROM key_changes").Scan(&at); err != nil {
		t.Fatal(err)
	}
	var got []delivery
	w := newWatcher(func(c store.Change, resync bool) { got = append(got, delivery{store.Change{KeyID: c.KeyID}, resync}) })
	w.notified(store.Change{KeyID: "key_1"}, seqs["key_1"])
	w.notified(store.Change{KeyID: "key_2"}, 0)
	const unread = 1 << 40 // a seq no resync reads
	w.notified(store.Change{KeyID: "key_unread"}, unread)
	if err := p.resyncOnce(ctx, w); err != nil {
		t.Fatal(err)
	}
	want := []delivery{{store.Change{KeyID: "key_1"}, false}, {store.Change{KeyID: "key_2"}, false}, {store.Change{KeyID: "key_unread"}, false}, {store.Change{KeyID: "key_2"}, true}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("reported %v, want %v", got, want)
	}
	if w.seen[seqs["key_1"]].IsZero() || w.seen[unread].IsZero() {
		t.Errorf("after a resync seen = %v, want every change timed", w.seen)
	}
	// A resync whose window starts after the changes forgets them all.
	w.last = at.Add(resyncOverlap + time.Second)
	if err := p.resyncOnce(ctx, w); err != nil {
		t.Fatal(err)
	}
	if len(w.seen) != 0 {
		t.Errorf("after the window passed seen = %v, want empty", w.seen)
	}
}

// queryCounter counts the statements sent on a pool.
type queryCounter struct{ n atomic.Int32 }

func (q *queryCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	q.n.Add(1)
	return ctx
}

func (q *queryCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func TestRecordUsageOneStatement(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.NewDatabase(t)
	var qc queryCounter
	p := openURL(t, url, Options{}, func(c *pgxpool.Config) { c.ConnConfig.Tracer = &qc })
	a, b := newKey("key_a", "", "a"), newKey("key_b", "", "b")
	b.PreviousDigest, b.PreviousSecretExpiresAt = digest("b-old"), ptr(t0.Add(time.Hour))
	a.LastUsedAt = ptr(t0.Add(10 * time.Minute)) // later than what is recorded below
	insert(t, p, a, b)

	qc.n.Store(0)
	usage := []store.Usage{
		{KeyID: "key_a", At: t0.Add(time.Minute)},
		{KeyID: "key_b", At: t0.Add(2 * time.Minute)},
		{KeyID: "key_b", At: t0.Add(4 * time.Minute)},
		{KeyID: "key_b", At: t0.Add(3 * time.Minute), Previous: true},
		{KeyID: "key_gone", At: t0},
	}
	if err := p.RecordUsage(ctx, usage); err != nil {
		t.Fatal(err)
	}
	if n := qc.n.Load(); n != 1 {
		t.Errorf("RecordUsage sent %d statements, want 1", n)
	}
	check := func(name string, got *time.Time, want time.Time) {
		t.Helper()
		if got == nil || !got.Equal(want) {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	ga, _ := getKey(t, p, "key_a")
	gb, _ := getKey(t, p, "key_b")
	check("a.LastUsedAt (later time kept)", ga.LastUsedAt, t0.Add(10*time.Minute))
	check("b.LastUsedAt", gb.LastUsedAt, t0.Add(4*time.Minute))
	check("b.PreviousSecretLastUsedAt", gb.PreviousSecretLastUsedAt, t0.Add(3*time.Minute))
	if !gb.UpdatedAt.Equal(t0) {
		t.Errorf("RecordUsage changed UpdatedAt to %v", gb.UpdatedAt)
	}
	qc.n.Store(0)
	if err := p.RecordUsage(ctx, nil); err != nil || qc.n.Load() != 0 {
		t.Errorf("RecordUsage(nil) = %v with %d statements, want nil and none", err, qc.n.Load())
	}
}

func TestListKeys(t *testing.T) {
	t.Parallel()
	p, _ := newStore(t, Options{})
	later := t0.Add(time.Hour)
	k1 := newKey("key_1", "search", "50%_off")
	k1.Tags, k1.User, k1.Tenant = []string{"red", "blue"}, "alice", "acme"
	k2 := newKey("key_2", "search", "500ff")
	k2.Enabled = false
	k2.ExpiresAt = ptr(t0.Add(30 * time.Minute))
	k3 := newKey("key_3", "billing", "Old")
	k3.ExpiresAt = ptr(t0.Add(-time.Minute))
	k3.Description = "Ünïcode DESCRIPTION"
	k4 := newKey("key_4", "billing", "plain")
	k4.Tags = []string{"blue"}
	k5 := newKey("key_5", "", "soon")
	k5.ExpiresAt = ptr(t0.Add(45 * time.Minute))
	k5.Hint = "kg_ZZtop"
	insert(t, p, k1, k2, k3, k4, k5)

	tests := []struct {
		name string
		f    store.ListFilter
		want []string
	}{
		{"all", store.ListFilter{}, []string{"key_1", "key_2", "key_3", "key_4", "key_5"}},
		{"q escapes percent and underscore", store.ListFilter{Q: "0%_"}, []string{"key_1"}},
		{"q percent alone", store.ListFilter{Q: "%"}, []string{"key_1"}},
		{"q case-insensitive", store.ListFilter{Q: "OLD"}, []string{"key_3"}},
		{"q case-insensitive beyond ASCII", store.ListFilter{Q: "üNÏ"}, []string{"key_3"}},
		{"q description", store.ListFilter{Q: "description"}, []string{"key_3"}},
		{"q hint", store.ListFilter{Q: "zztop"}, []string{"key_5"}},
		{"active", store.ListFilter{Status: store.StatusActive, Now: t0}, []string{"key_1", "key_4", "key_5"}},
		{"disabled", store.ListFilter{Status: store.StatusDisabled, Now: t0}, []string{"key_2"}},
		{"expired", store.ListFilter{Status: store.StatusExpired, Now: t0}, []string{"key_3"}},
		{"expired later", store.ListFilter{Status: store.StatusExpired, Now: later}, []string{"key_3", "key_5"}},
		{"user", store.ListFilter{User: "alice"}, []string{"key_1"}},
		{"application", store.ListFilter{Application: "billing"}, []string{"key_3", "key_4"}},
		{"tenant", store.ListFilter{Tenant: "acme"}, []string{"key_1"}},
		{"tag", store.ListFilter{Tag: "blue"}, []string{"key_1", "key_4"}},
		{"expires before", store.ListFilter{ExpiresBefore: &later}, []string{"key_2", "key_3", "key_5"}},
		{"expired before", store.ListFilter{ExpiredBefore: &t0}, []string{"key_3"}},
		{"after and limit", store.ListFilter{AfterID: "key_2", Limit: 2}, []string{"key_3", "key_4"}},
		{"combined", store.ListFilter{Application: "search", Status: store.StatusActive, Q: "off", Now: t0}, []string{"key_1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := p.View(context.Background(), func(tx store.Tx) error {
				keys, err := tx.ListKeys(tt.f)
				if err != nil {
					return err
				}
				got := []string{}
				for _, k := range keys {
					got = append(got, k.ID)
					now := tt.f.Now
					if now.IsZero() {
						now = time.Now()
					}
					if want := k.StatusAt(now); k.Status != want {
						t.Errorf("%s: Status = %q, want %q", k.ID, k.Status, want)
					}
				}
				if !reflect.DeepEqual(got, tt.want) {
					t.Errorf("ListKeys(%+v) = %v, want %v", tt.f, got, tt.want)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}

	err := p.View(context.Background(), func(tx store.Tx) error {
		got, err := tx.CountByStatus(t0)
		want := map[string]int{store.StatusActive: 3, store.StatusDisabled: 1, store.StatusExpired: 1}
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("CountByStatus = %v, %v; want %v", got, err, want)
		}
		if _, err := tx.ListKeys(store.ListFilter{Status: "bogus"}); err == nil {
			t.Error("ListKeys with an unknown status succeeded")
		}
		if ok, err := tx.AdminKeyExists(); err != nil || ok {
			t.Errorf("AdminKeyExists = %v, %v; want false", ok, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestScanKeysPages(t *testing.T) {
	t.Parallel()
	p, _ := newStore(t, Options{})
	p.scanPage = 2
	var want []string
	var keys []*store.Key
	for i := range 5 {
		k := newKey(fmt.Sprintf("key_%d", i), "", fmt.Sprint(i))
		keys, want = append(keys, k), append(want, k.ID)
	}
	insert(t, p, keys...)
	var got []string
	if err := p.ScanKeys(context.Background(), func(k *store.Key) error { got = append(got, k.ID); return nil }); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ScanKeys saw %v, want %v", got, want)
	}
	stop := errors.New("stop")
	n := 0
	err := p.ScanKeys(context.Background(), func(*store.Key) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 {
		t.Errorf("ScanKeys with a failing fn = %v after %d calls, want stop after 1", err, n)
	}
}

func TestAuditAndSettings(t *testing.T) {
	t.Parallel()
	p, _ := newStore(t, Options{})
	evs := []*store.AuditEvent{
		{ID: "evt_1", At: t0, Actor: "key_admin", Action: "create", KeyID: "key_1", IP: "10.0.0.1",
			Changes: map[string]store.FieldChange{"name": {Before: nil, After: "one"}, "enabled": {Before: false, After: true}}},
		{ID: "evt_2", At: t0.Add(time.Minute), Actor: "system", Action: "delete", KeyID: "key_2"},
		{ID: "evt_3", At: t0.Add(2 * time.Minute), Actor: "key_admin", Action: "update", KeyID: "key_1",
			Changes: map[string]store.FieldChange{}},
	}
	mustUpdate(t, p, func(tx store.Tx) error {
		for _, ev := range evs {
			if err := tx.AppendAudit(ev); err != nil {
				return err
			}
		}
		if err := tx.PutSetting("s", []byte("one")); err != nil {
			return err
		}
		return tx.PutSetting("s", []byte("two"))
	})
	since := t0.Add(time.Minute)
	tests := []struct {
		name string
		f    store.AuditFilter
		want []string
	}{
		{"all", store.AuditFilter{}, []string{"evt_1", "evt_2", "evt_3"}},
		{"key", store.AuditFilter{KeyID: "key_1"}, []string{"evt_1", "evt_3"}},
		{"actor", store.AuditFilter{Actor: "system"}, []string{"evt_2"}},
		{"since", store.AuditFilter{Since: &since}, []string{"evt_2", "evt_3"}},
		{"after and limit", store.AuditFilter{AfterID: "evt_1", Limit: 1}, []string{"evt_2"}},
	}
	err := p.View(context.Background(), func(tx store.Tx) error {
		for _, tt := range tests {
			got, err := tx.ListAudit(tt.f)
			if err != nil {
				return err
			}
			var ids []string
			for _, ev := range got {
				ids = append(ids, ev.ID)
			}
			if !reflect.DeepEqual(ids, tt.want) {
				t.Errorf("%s: ListAudit = %v, want %v", tt.name, ids, tt.want)
			}
		}
		all, err := tx.ListAudit(store.AuditFilter{})
		if err != nil {
			return err
		}
		if !reflect.DeepEqual(all, evs) {
			t.Errorf("audit round trip:\n got %+v\nwant %+v", all, evs)
		}
		v, err := tx.Setting("s")
		if err != nil || string(v) != "two" {
			t.Errorf("Setting = %q, %v; want the latest value", v, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// closedURL is the URL of a port nothing listens on.
func closedURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "postgres://keygate:hunter2@" + addr + "/keygate?sslmode=disable"
}

func TestStoreDownIsUnavailable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := openURL(t, closedURL(t), Options{}, nil)
	calls := map[string]error{
		"Ping":         p.Ping(ctx),
		"CheckSchema":  p.CheckSchema(ctx),
		"Update":       p.Update(ctx, func(tx store.Tx) error { return nil }),
		"View":         p.View(ctx, func(tx store.Tx) error { return nil }),
		"RecordUsage":  p.RecordUsage(ctx, []store.Usage{{KeyID: "key_1", At: t0}}),
		"ScanKeys":     p.ScanKeys(ctx, func(*store.Key) error { return nil }),
		"Migrate":      p.Migrate(ctx),
		"LookupDigest": func() error { _, err := p.LookupDigest(ctx, digest("x")); return err }(),
	}
	for name, err := range calls {
		if !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s = %v, want ErrUnavailable", name, err)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s error reveals the password: %v", name, err)
		}
	}
	// A server that answers but refuses the connection (here: no such
	// database) is as unavailable as one that does not answer.
	missing := openURL(t, pgtest.Current(t).DatabaseURL("keygate_no_such_database"), Options{}, nil)
	if err := missing.Ping(ctx); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Ping of a missing database = %v, want ErrUnavailable", err)
	}
	if _, err := Open(ctx, "postgres://keygate:hunter2@[::1", Options{}); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("Open(bad URL) = %v, want an error without the password", err)
	}
}

// A query that cannot finish in QueryTimeout (here: waiting on a row lock
// held elsewhere) fails with ErrUnavailable instead of waiting on.
func TestQueryTimeout(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p, url := newStore(t, Options{})
	insert(t, p, newKey("key_l", "", "l"))
	short := openURL(t, withParam(url, "connect_timeout=30"), Options{QueryTimeout: 100 * time.Millisecond}, nil)
	holder, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close(ctx)
	lock, err := holder.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Rollback(ctx)
	if _, err := lock.Exec(ctx, "SELECT 1 FROM keys WHERE id = 'key_l' FOR UPDATE"); err != nil {
		t.Fatal(err)
	}
	err = short.Update(ctx, func(tx store.Tx) error { _, err := tx.GetKey("key_l"); return err })
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("GetKey on a locked row = %v, want ErrUnavailable", err)
	}
	lock.Rollback(ctx)
	if k, err := getKey(t, p, "key_l"); err != nil || k.ID != "key_l" {
		t.Fatalf("after the lock is gone GetKey = %v, %v", k, err)
	}
}

// A server that ends our sessions (a restart, a failover) makes the next
// queries fail as unavailable or succeed on a new connection, never with
// another error; and Watch reconnects and keeps delivering.
func TestSessionsKilled(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p, url := newStore(t, Options{ResyncInterval: time.Hour})
	admin := openURL(t, url, Options{}, nil)
	ch, listening := watch(t, p)
	waitListening(t, listening)
	insert(t, p, newKey("key_1", "", "1"))
	next(t, ch, "key_1", false)
	killer, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer killer.Close(ctx)
	if _, err := killer.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid()`); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := p.LookupDigest(ctx, digest("key_1")); err != nil && !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("LookupDigest after the session was killed = %v, want success or ErrUnavailable", err)
		}
	}
	// Watch reconnects, and a later change arrives by notification again.
	waitListening(t, listening)
	deadline := time.Now().Add(waitFor)
	for {
		err := admin.Update(ctx, func(tx store.Tx) error { return tx.InsertKey(newKey("key_2", "", "2")) })
		if err == nil {
			break
		}
		if !errors.Is(err, store.ErrUnavailable) || time.Now().After(deadline) {
			t.Fatalf("insert after the sessions were killed: %v", err)
		}
	}
	next(t, ch, "key_2", false)
}

// freezer is a TCP proxy to addr whose connections can be frozen: they
// stay open but carry nothing more, like a connection across a network
// partition. Connections made after a freeze work.
type freezer struct {
	l    net.Listener
	mu   sync.Mutex
	live []net.Conn // not frozen yet
	all  []net.Conn
}

func newFreezer(t *testing.T, addr string) *freezer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &freezer{l: l}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		l.Close()
		f.freeze()
		wg.Wait()
		for _, c := range f.all {
			c.Close()
		}
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", addr)
			if err != nil {
				c.Close()
				continue
			}
			f.mu.Lock()
			f.live = append(f.live, c, s)
			f.all = append(f.all, c, s)
			f.mu.Unlock()
			wg.Add(2)
			go func() { defer wg.Done(); io.Copy(s, c) }()
			go func() { defer wg.Done(); io.Copy(c, s) }()
		}
	}()
	return f
}

// freeze stops every current connection from carrying data, without
// closing it: a close would tell the peers, and a partition tells nobody.
func (f *freezer) freeze() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.live {
		c.(*net.TCPConn).SetReadDeadline(time.Unix(1, 0))
	}
	f.live = nil
}

// A listening connection that goes silent is noticed and replaced.
func TestWatchReplacesSilentConnection(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDatabase(t)
	u, err := neturl.Parse(url)
	if err != nil {
		t.Fatal(err)
	}
	fz := newFreezer(t, u.Host)
	u.Host = fz.l.Addr().String()
	p := openURL(t, withParam(u.String(), "connect_timeout=30"), Options{ResyncInterval: 50 * time.Millisecond, QueryTimeout: 500 * time.Millisecond}, nil)
	other := openURL(t, url, Options{}, nil)
	ch, listening := watch(t, p)
	waitListening(t, listening)
	fz.freeze()
	waitListening(t, listening)
	insert(t, other, newKey("key_after", "", "after"))
	next(t, ch, "key_after", false)
}

func TestServerSideTimeouts(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.NewDatabase(t)
	show := func(p *Postgres, name string) string {
		t.Helper()
		var v string
		if err := p.pool.QueryRow(ctx, "SHOW "+name).Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	p := openURL(t, withParam(url, "connect_timeout=30"), Options{QueryTimeout: 250 * time.Millisecond}, nil)
	if got := show(p, "statement_timeout"); got != "1250ms" {
		t.Errorf("statement_timeout = %s, want the query timeout plus a second", got)
	}
	if got := show(p, "idle_in_transaction_session_timeout"); got != "1min" {
		t.Errorf("idle_in_transaction_session_timeout = %s, want 1min", got)
	}
	own := openURL(t, withParam(url, "statement_timeout=7000"), Options{}, nil)
	if got := show(own, "statement_timeout"); got != "7s" {
		t.Errorf("statement_timeout set in the URL became %s, want 7s", got)
	}
}

// Migrate waits for another replica's migration however long it takes:
// the statement_timeout that bounds queries does not apply to it.
func TestMigrateWaitsPastStatementTimeout(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.NewDatabase(t)
	// statement_timeout becomes 1001ms; connecting gets its own timeout.
	p := openURL(t, withParam(url, "connect_timeout=30"), Options{QueryTimeout: time.Millisecond}, nil)
	holder, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close(ctx)
	if _, err := holder.Exec(ctx, "SELECT pg_advisory_lock($1)", migrateLockID); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.Migrate(ctx) }()
	waitUntilBlocked(t, p)
	time.Sleep(1500 * time.Millisecond) // past statement_timeout, so it would have fired
	if _, err := holder.Exec(ctx, "SELECT pg_advisory_unlock($1)", migrateLockID); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Migrate after waiting for the lock: %v", err)
	}
	var v string
	if err := p.pool.QueryRow(ctx, "SHOW statement_timeout").Scan(&v); err != nil || v != "1001ms" {
		t.Errorf("after Migrate statement_timeout = %q (err %v), want the pool's 1001ms back", v, err)
	}
}

// BenchmarkLookupDigest measures the hot path's store query.
func BenchmarkLookupDigest(b *testing.B) {
	ctx := context.Background()
	p, err := Open(ctx, pgtest.NewDatabase(b), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	k := newKey("key_bench", "", "bench")
	k.Tags, k.Scopes, k.Metadata = []string{"a"}, []string{"r"}, map[string]string{"m": "v"}
	if err := p.Update(ctx, func(tx store.Tx) error { return tx.InsertKey(k) }); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := p.LookupDigest(ctx, k.Digest); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// Close ends a Watch that is still running.
func TestCloseEndsWatch(t *testing.T) {
	t.Parallel()
	p, _ := newStore(t, Options{})
	listening := make(chan struct{}, 1)
	p.onListen = func() {
		select {
		case listening <- struct{}{}:
		default:
		}
	}
	done := make(chan error, 1)
	go func() { done <- p.Watch(context.Background(), func(store.Change, bool) {}) }()
	waitListening(t, listening)
	p.Close()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Watch after Close returned %v, want context.Canceled", err)
		}
	case <-time.After(waitFor):
		t.Fatal("Watch still running after Close")
	}
}

// Synced closes only once a Watch listens and has resynced.
func TestSynced(t *testing.T) {
	t.Parallel()
	p, _ := newStore(t, Options{})
	select {
	case <-p.Synced():
		t.Fatal("Synced closed before any Watch")
	default:
	}
	watch(t, p)
	select {
	case <-p.Synced():
	case <-time.After(waitFor):
		t.Fatal("Synced never closed while watching")
	}
}
