// Package embedded is the single-node key store: a store.Backend kept in one
// bbolt file under a data directory. bbolt is pure Go (no cgo), commits with
// fsync, and runs one read-write transaction at a time, so every uniqueness
// and per-application limit check made inside Update is serialized without
// further locking. Only one process may open the directory at a time.
package embedded

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/keygate/keygate/store"
)

// FileName is the database file inside the data directory.
const FileName = "keygate.db"

// ErrInUse is returned by Open when another process holds the database.
var ErrInUse = errors.New("keygate-data is in use by another process")

// Options configure Open. Zero values are documented per field.
type Options struct {
	// Timeout bounds the wait for the database file's lock, held by any
	// other process that has it open. Zero means 1s.
	Timeout time.Duration
	// Logger receives migration messages. Nil discards them.
	Logger *slog.Logger
	// SkipMigrate makes Open check that the schema is current instead of
	// migrating it (store.auto_migrate: false); Open then fails on a store
	// that needs "keygate migrate". False: Open migrates.
	SkipMigrate bool
}

// Embedded is a store.Backend on a bbolt file. It is safe for concurrent use.
type Embedded struct {
	db  *bolt.DB
	log *slog.Logger

	// writeMu is held across each Update and the publication of its
	// changes, so watchers see changes in commit order. bbolt runs one
	// writer at a time anyway, so it costs no concurrency.
	writeMu sync.Mutex

	watchMu  sync.Mutex
	watchers map[*watcher]struct{}
}

var _ store.Backend = (*Embedded)(nil)

// Open opens (creating when missing) the store in dir: the directory with
// mode 0700 and dir/keygate.db with mode 0600. It fails with ErrInUse when
// another process has the store open.
func Open(dir string, opts Options) (*Embedded, error) {
	if dir == "" {
		return nil, errors.New("embedded: no data directory given")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("embedded: create data directory: %w", err)
	}
	path := filepath.Join(dir, FileName)
	bo := *bolt.DefaultOptions
	bo.Timeout = opts.Timeout
	if bo.Timeout <= 0 {
		bo.Timeout = time.Second
	}
	db, err := bolt.Open(path, 0o600, &bo)
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("%w (%s stayed locked for %s; stop the other keygate or use another store.path)", ErrInUse, path, bo.Timeout)
	}
	if err != nil {
		return nil, fmt.Errorf("embedded: open %s: %w", path, err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e := &Embedded{
		db:       db,
		log:      log.With("component", "store", "driver", "embedded"),
		watchers: make(map[*watcher]struct{}),
	}
	if opts.SkipMigrate {
		err = e.checkSchema()
	} else {
		err = e.Migrate(context.Background())
	}
	if err != nil {
		db.Close()
		return nil, err
	}
	return e, nil
}

// Path is the database file.
func (e *Embedded) Path() string { return e.db.Path() }

// Update runs fn in bbolt's single read-write transaction. fn's error, or
// a failed commit, discards everything fn did. The key changes fn made are
// published to watchers once the commit has succeeded.
func (e *Embedded) Update(ctx context.Context, fn func(store.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	e.writeMu.Lock()
	defer e.writeMu.Unlock()
	// Waiting for another writer may have outlasted the caller.
	if err := ctx.Err(); err != nil {
		return err
	}
	t, err := e.run(true, fn)
	if err != nil {
		return err
	}
	e.publish(t.changes)
	return nil
}

// View runs fn in a read-only transaction; its writes fail.
func (e *Embedded) View(ctx context.Context, fn func(store.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	_, err := e.run(false, fn)
	return err
}

// run runs fn in a transaction. An error fn returns comes back unchanged;
// any other (beginning or committing failed) means the store cannot answer
// and is wrapped in store.ErrUnavailable.
func (e *Embedded) run(writable bool, fn func(store.Tx) error) (*tx, error) {
	var t *tx
	var fnErr error
	body := func(btx *bolt.Tx) error {
		t = &tx{btx: btx}
		defer t.close()
		fnErr = fn(t)
		return fnErr
	}
	var err error
	if writable {
		err = e.db.Update(body)
	} else {
		err = e.db.View(body)
	}
	switch {
	case err == nil:
		return t, nil
	case fnErr != nil:
		return nil, fnErr
	default:
		return nil, unavailable(err)
	}
}

// LookupDigest returns the key whose current or previous secret has digest;
// store.ErrNotFound when none has.
func (e *Embedded) LookupDigest(ctx context.Context, digest [32]byte) (*store.Key, error) {
	var k *store.Key
	err := e.View(ctx, func(t store.Tx) error {
		var err error
		k, err = t.KeyByDigest(digest)
		return err
	})
	if err != nil {
		return nil, err
	}
	return k, nil
}

// scanBatch is how many keys ScanKeys reads per read transaction. fn runs
// outside any transaction: a long-lived bbolt reader would block a writer
// that needs to grow the file.
const scanBatch = 256

// ScanKeys calls fn for every key in id order until fn returns an error,
// which it returns. Keys written during the scan may or may not be seen.
func (e *Embedded) ScanKeys(ctx context.Context, fn func(*store.Key) error) error {
	after := ""
	for {
		var batch []*store.Key
		err := e.View(ctx, func(t store.Tx) error {
			var err error
			batch, err = t.ListKeys(store.ListFilter{AfterID: after, Limit: scanBatch})
			return err
		})
		if err != nil {
			return err
		}
		for _, k := range batch {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := fn(k); err != nil {
				return err
			}
		}
		if len(batch) < scanBatch {
			return nil
		}
		after = batch[len(batch)-1].ID
	}
}

// RecordUsage writes a batch of last-use times in one transaction, keeping
// the later of the stored and the reported time. Usage of deleted keys is
// dropped. No change is published: last use does not affect authentication.
func (e *Embedded) RecordUsage(ctx context.Context, usage []store.Usage) error {
	if len(usage) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	err := e.db.Update(func(btx *bolt.Tx) error {
		keys := btx.Bucket([]byte(bucketKeys))
		for _, u := range usage {
			r, err := getRecord(keys, u.KeyID)
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			at := u.At.UTC()
			dst := &r.LastUsedAt
			if u.Previous {
				dst = &r.PreviousSecretLastUsedAt
			}
			if *dst != nil && !at.After(**dst) {
				continue
			}
			*dst = &at
			if err := putRecord(keys, r); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return unavailable(err)
	}
	return nil
}

// Ping reports whether the store can answer a read.
func (e *Embedded) Ping(ctx context.Context) error {
	return e.View(ctx, func(store.Tx) error { return nil })
}

// Close closes the database; later calls return nil. Watchers keep
// running until their contexts end.
func (e *Embedded) Close() error {
	if err := e.db.Close(); err != nil {
		return fmt.Errorf("embedded: close: %w", err)
	}
	return nil
}

func unavailable(err error) error {
	return fmt.Errorf("%w: %v", store.ErrUnavailable, err)
}
