package embedded

import (
	"context"
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Buckets. Keys are stored once, in keys; the other key buckets are
// indexes maintained by the same transaction.
const (
	bucketKeys     = "keys"     // key id → JSON record
	bucketDigests  = "digests"  // SHA-256 of a current or previous secret → key id
	bucketNames    = "names"    // application + "\x00" + name → key id
	bucketAudit    = "audit"    // event id (sortable) → JSON event
	bucketSettings = "settings" // setting name → value
	bucketMeta     = "meta"     // schemaVersionKey → big-endian uint64
)

const schemaVersionKey = "schema_version"

// migration moves the schema from version-1 to version. Migrations are
// numbered from 1 and never edited once released; a change to the stored
// form is a new migration appended to the list.
type migration struct {
	version int
	name    string
	apply   func(*bolt.Tx) error
}

func migrations() []migration {
	return []migration{
		{1, "create buckets", func(btx *bolt.Tx) error {
			for _, b := range []string{bucketKeys, bucketDigests, bucketNames, bucketAudit, bucketSettings} {
				if _, err := btx.CreateBucketIfNotExists([]byte(b)); err != nil {
					return fmt.Errorf("bucket %s: %w", b, err)
				}
			}
			return nil
		}},
	}
}

// schemaVersion is the version this build writes and expects.
func schemaVersion() int { return len(migrations()) }

// Migrate brings the schema to the current version, each migration in its
// own transaction with the version it reaches. It is idempotent, and fails
// on a store written by a newer keygate.
func (e *Embedded) Migrate(ctx context.Context) error {
	for _, m := range migrations() {
		if err := ctx.Err(); err != nil {
			return err
		}
		applied := false
		err := e.db.Update(func(btx *bolt.Tx) error {
			meta, err := btx.CreateBucketIfNotExists([]byte(bucketMeta))
			if err != nil {
				return err
			}
			v, err := readVersion(meta)
			if err != nil {
				return err
			}
			if v > schemaVersion() {
				return fmt.Errorf("embedded: schema version %d is newer than this keygate's %d; upgrade keygate", v, schemaVersion())
			}
			if v >= m.version {
				return nil
			}
			if err := m.apply(btx); err != nil {
				return fmt.Errorf("embedded: migration %d (%s): %w", m.version, m.name, err)
			}
			applied = true
			return writeVersion(meta, m.version)
		})
		if err != nil {
			return err
		}
		if applied {
			e.log.Info("store migrated", "schema_version", m.version, "migration", m.name)
		}
	}
	return nil
}

// checkSchema fails unless the schema is at the current version.
func (e *Embedded) checkSchema() error {
	return e.db.View(func(btx *bolt.Tx) error {
		v := 0
		if meta := btx.Bucket([]byte(bucketMeta)); meta != nil {
			var err error
			if v, err = readVersion(meta); err != nil {
				return err
			}
		}
		switch {
		case v < schemaVersion():
			return fmt.Errorf("embedded: schema version %d, want %d: run keygate migrate (or set store.auto_migrate: true)", v, schemaVersion())
		case v > schemaVersion():
			return fmt.Errorf("embedded: schema version %d is newer than this keygate's %d; upgrade keygate", v, schemaVersion())
		}
		return nil
	})
}

func readVersion(meta *bolt.Bucket) (int, error) {
	b := meta.Get([]byte(schemaVersionKey))
	if b == nil {
		return 0, nil
	}
	if len(b) != 8 {
		return 0, fmt.Errorf("embedded: corrupt schema version (%d bytes)", len(b))
	}
	return int(binary.BigEndian.Uint64(b)), nil
}

func writeVersion(meta *bolt.Bucket, v int) error {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(v))
	return meta.Put([]byte(schemaVersionKey), b[:])
}
