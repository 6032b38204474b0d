package embedded

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/keygate/keygate/store"
)

// adminScope is the scope that makes a key an admin key (CONTRACT §3).
const adminScope = "keygate:admin"

var errTxDone = errors.New("embedded: transaction used after it ended")

// tx is a store.Tx over one bbolt transaction. It is valid only inside the
// fn given to Update or View, like the bbolt transaction it wraps.
type tx struct {
	btx *bolt.Tx
	// changes are the key changes made so far, one per key in the order
	// first touched; published only after the commit succeeds.
	changes []store.Change
}

var _ store.Tx = (*tx)(nil)

func (t *tx) close() { t.btx = nil }

func (t *tx) bucket(name string) (*bolt.Bucket, error) {
	if t.btx == nil {
		return nil, errTxDone
	}
	b := t.btx.Bucket([]byte(name))
	if b == nil {
		return nil, fmt.Errorf("embedded: bucket %s missing: run keygate migrate", name)
	}
	return b, nil
}

// buckets returns the four buckets every key operation touches.
func (t *tx) buckets() (keys, digestIdx, names *bolt.Bucket, err error) {
	if keys, err = t.bucket(bucketKeys); err != nil {
		return
	}
	if digestIdx, err = t.bucket(bucketDigests); err != nil {
		return
	}
	names, err = t.bucket(bucketNames)
	return
}

// changed records that key id changed and answered, before or after, to ds.
func (t *tx) changed(id string, ds ...[32]byte) {
	for i := range t.changes {
		c := &t.changes[i]
		if c.KeyID != id {
			continue
		}
		for _, d := range ds {
			if !containsDigest(c.Digests, d) {
				c.Digests = append(c.Digests, d)
			}
		}
		return
	}
	var uniq [][32]byte
	for _, d := range ds {
		if !containsDigest(uniq, d) {
			uniq = append(uniq, d)
		}
	}
	t.changes = append(t.changes, store.Change{KeyID: id, Digests: uniq})
}

func containsDigest(ds [][32]byte, d [32]byte) bool {
	for _, x := range ds {
		if x == d {
			return true
		}
	}
	return false
}

func (t *tx) GetKey(id string) (*store.Key, error) {
	keys, err := t.bucket(bucketKeys)
	if err != nil {
		return nil, err
	}
	r, err := getRecord(keys, id)
	if err != nil {
		return nil, err
	}
	return r.key()
}

func (t *tx) KeyByName(application, name string) (*store.Key, error) {
	return t.keyByIndex(bucketNames, nameKey(application, name))
}

func (t *tx) KeyByDigest(digest [32]byte) (*store.Key, error) {
	if digest == ([32]byte{}) {
		return nil, store.ErrNotFound
	}
	return t.keyByIndex(bucketDigests, digest[:])
}

func (t *tx) keyByIndex(index string, k []byte) (*store.Key, error) {
	idx, err := t.bucket(index)
	if err != nil {
		return nil, err
	}
	id := idx.Get(k)
	if id == nil {
		return nil, store.ErrNotFound
	}
	keys, err := t.bucket(bucketKeys)
	if err != nil {
		return nil, err
	}
	r, err := getRecord(keys, string(id))
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("embedded: %s index names missing key %s", index, id)
	}
	if err != nil {
		return nil, err
	}
	return r.key()
}

// CountApplicationKeys counts the names index entries of application.
// Inside Update no other writer runs until commit, so a count followed by
// an insert cannot be raced.
func (t *tx) CountApplicationKeys(application string) (int, error) {
	names, err := t.bucket(bucketNames)
	if err != nil {
		return 0, err
	}
	prefix := nameKey(application, "")
	n := 0
	c := names.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		n++
	}
	return n, nil
}

func (t *tx) AdminKeyExists() (bool, error) {
	keys, err := t.bucket(bucketKeys)
	if err != nil {
		return false, err
	}
	var scopes struct {
		Scopes []string `json:"scopes"`
	}
	found := false
	err = keys.ForEach(func(k, v []byte) error {
		scopes.Scopes = scopes.Scopes[:0]
		if err := json.Unmarshal(v, &scopes); err != nil {
			return fmt.Errorf("embedded: key %s: %w", k, err)
		}
		for _, s := range scopes.Scopes {
			if s == adminScope {
				found = true
				return errStop
			}
		}
		return nil
	})
	if err != nil && err != errStop {
		return false, err
	}
	return found, nil
}

// errStop ends a bucket ForEach early.
var errStop = errors.New("stop")

func checkKey(k *store.Key) error {
	if k.ID == "" {
		return errors.New("embedded: key has no id")
	}
	// The names index separates application and name with a NUL.
	if strings.IndexByte(k.Application, 0) >= 0 {
		return errors.New("embedded: application contains a NUL byte")
	}
	return nil
}

func (t *tx) InsertKey(k *store.Key) error {
	if err := checkKey(k); err != nil {
		return err
	}
	keys, digestIdx, names, err := t.buckets()
	if err != nil {
		return err
	}
	if keys.Get([]byte(k.ID)) != nil {
		return fmt.Errorf("embedded: key id %s already exists", k.ID)
	}
	nk := nameKey(k.Application, k.Name)
	if names.Get(nk) != nil {
		return store.ErrNameTaken
	}
	ds := digests(k)
	for _, d := range ds {
		if digestIdx.Get(d[:]) != nil {
			return store.ErrSecretTaken
		}
	}
	if err := putRecord(keys, toRecord(k)); err != nil {
		return err
	}
	if err := names.Put(nk, []byte(k.ID)); err != nil {
		return err
	}
	for _, d := range ds {
		if err := digestIdx.Put(d[:], []byte(k.ID)); err != nil {
			return err
		}
	}
	t.changed(k.ID, ds...)
	return nil
}

// UpdateKey replaces the stored key and moves its index entries: a rename
// moves the names entry, a rotation adds the new digest, and a digest the
// key no longer answers to (a previous secret cleared) is removed.
func (t *tx) UpdateKey(k *store.Key) error {
	if err := checkKey(k); err != nil {
		return err
	}
	keys, digestIdx, names, err := t.buckets()
	if err != nil {
		return err
	}
	oldRec, err := getRecord(keys, k.ID)
	if err != nil {
		return err
	}
	old, err := oldRec.key()
	if err != nil {
		return err
	}
	id := []byte(k.ID)

	oldName, newName := nameKey(old.Application, old.Name), nameKey(k.Application, k.Name)
	renamed := !bytes.Equal(oldName, newName)
	if renamed {
		if owner := names.Get(newName); owner != nil && !bytes.Equal(owner, id) {
			return store.ErrNameTaken
		}
	}
	oldDs, newDs := digests(old), digests(k)
	for _, d := range newDs {
		if owner := digestIdx.Get(d[:]); owner != nil && !bytes.Equal(owner, id) {
			return store.ErrSecretTaken
		}
	}

	if err := putRecord(keys, toRecord(k)); err != nil {
		return err
	}
	if renamed {
		if err := deleteIfOwned(names, oldName, id); err != nil {
			return err
		}
		if err := names.Put(newName, id); err != nil {
			return err
		}
	}
	for _, d := range oldDs {
		if !containsDigest(newDs, d) {
			if err := deleteIfOwned(digestIdx, d[:], id); err != nil {
				return err
			}
		}
	}
	for _, d := range newDs {
		if !containsDigest(oldDs, d) {
			if err := digestIdx.Put(d[:], id); err != nil {
				return err
			}
		}
	}
	t.changed(k.ID, append(oldDs, newDs...)...)
	return nil
}

func (t *tx) DeleteKey(id string) error {
	keys, digestIdx, names, err := t.buckets()
	if err != nil {
		return err
	}
	r, err := getRecord(keys, id)
	if err != nil {
		return err
	}
	old, err := r.key()
	if err != nil {
		return err
	}
	bid := []byte(id)
	if err := keys.Delete(bid); err != nil {
		return err
	}
	if err := deleteIfOwned(names, nameKey(old.Application, old.Name), bid); err != nil {
		return err
	}
	ds := digests(old)
	for _, d := range ds {
		if err := deleteIfOwned(digestIdx, d[:], bid); err != nil {
			return err
		}
	}
	t.changed(id, ds...)
	return nil
}

// deleteIfOwned removes an index entry only when it points at id, so a
// stale entry can never take another key's entry with it.
func deleteIfOwned(idx *bolt.Bucket, k, id []byte) error {
	if owner := idx.Get(k); owner != nil && bytes.Equal(owner, id) {
		return idx.Delete(k)
	}
	return nil
}

// ListKeys scans keys in id order from just after f.AfterID, applying every
// filter, and sets each returned key's Status at f.Now (time.Now when zero).
func (t *tx) ListKeys(f store.ListFilter) ([]*store.Key, error) {
	keys, err := t.bucket(bucketKeys)
	if err != nil {
		return nil, err
	}
	now := f.Now
	if now.IsZero() {
		now = time.Now()
	}
	q := strings.ToLower(f.Q)
	out := []*store.Key{}
	c := keys.Cursor()
	k, v := c.First()
	if f.AfterID != "" {
		k, v = c.Seek([]byte(f.AfterID))
		if k != nil && string(k) == f.AfterID {
			k, v = c.Next()
		}
	}
	for ; k != nil; k, v = c.Next() {
		if f.Limit > 0 && len(out) >= f.Limit {
			break
		}
		r, err := decodeRecord(string(k), v)
		if err != nil {
			return nil, err
		}
		key, err := r.key()
		if err != nil {
			return nil, err
		}
		status := key.StatusAt(now)
		if !matches(key, status, q, &f) {
			continue
		}
		key.Status = status
		out = append(out, key)
	}
	return out, nil
}

// matches reports whether k passes every set field of f; q is f.Q in
// lower case.
func matches(k *store.Key, status, q string, f *store.ListFilter) bool {
	switch {
	case f.Status != "" && status != f.Status,
		f.User != "" && k.User != f.User,
		f.Application != "" && k.Application != f.Application,
		f.Tenant != "" && k.Tenant != f.Tenant,
		f.Tag != "" && !containsString(k.Tags, f.Tag),
		f.ExpiresBefore != nil && (k.ExpiresAt == nil || !k.ExpiresAt.Before(*f.ExpiresBefore)),
		f.ExpiredBefore != nil && (k.ExpiresAt == nil || !k.ExpiresAt.Before(*f.ExpiredBefore)):
		return false
	}
	if q == "" {
		return true
	}
	return strings.Contains(strings.ToLower(k.Name), q) ||
		strings.Contains(strings.ToLower(k.Description), q) ||
		strings.Contains(strings.ToLower(k.Hint), q)
}

func containsString(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// CountByStatus counts keys per status at now; every status is present,
// with zero when no key has it.
func (t *tx) CountByStatus(now time.Time) (map[string]int, error) {
	keys, err := t.bucket(bucketKeys)
	if err != nil {
		return nil, err
	}
	counts := map[string]int{store.StatusActive: 0, store.StatusDisabled: 0, store.StatusExpired: 0}
	err = keys.ForEach(func(k, v []byte) error {
		r, err := decodeRecord(string(k), v)
		if err != nil {
			return err
		}
		key := store.Key{Enabled: r.Enabled, ExpiresAt: r.ExpiresAt}
		counts[key.StatusAt(now)]++
		return nil
	})
	if err != nil {
		return nil, err
	}
	return counts, nil
}

// AppendAudit stores ev. An event without an ID gets one that sorts after
// every earlier event (its time, then a per-store sequence), and one
// without a time gets the current time; both are set on ev.
func (t *tx) AppendAudit(ev *store.AuditEvent) error {
	audit, err := t.bucket(bucketAudit)
	if err != nil {
		return err
	}
	if ev.At.IsZero() {
		ev.At = time.Now()
	}
	ev.At = ev.At.UTC()
	if ev.ID == "" {
		seq, err := audit.NextSequence()
		if err != nil {
			return err
		}
		ev.ID = auditID(ev.At, seq)
	}
	if audit.Get([]byte(ev.ID)) != nil {
		return fmt.Errorf("embedded: audit event %s already exists", ev.ID)
	}
	v, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("embedded: audit event %s: %w", ev.ID, err)
	}
	return audit.Put([]byte(ev.ID), v)
}

// auditID is "evt_" and 26 Crockford base32 characters: 48 bits of Unix
// milliseconds and 80 bits holding seq. That is the layout and prefix of
// the service's event ids, so generated and given ids sort together by
// time.
func auditID(at time.Time, seq uint64) string {
	const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
	var b [16]byte
	ms := uint64(at.UnixMilli())
	b[0], b[1], b[2], b[3], b[4], b[5] = byte(ms>>40), byte(ms>>32), byte(ms>>24), byte(ms>>16), byte(ms>>8), byte(ms)
	binary.BigEndian.PutUint64(b[8:], seq)
	var out [26]byte
	var acc uint32
	bits := 2 // 130 output bits for 128 input bits: two leading zeros
	i := 0
	for _, c := range b {
		acc = acc<<8 | uint32(c)
		bits += 8
		for bits >= 5 {
			bits -= 5
			out[i] = crockford[(acc>>uint(bits))&31]
			i++
		}
	}
	return "evt_" + string(out[:])
}

// ListAudit returns events in id order from just after f.AfterID that
// match f's KeyID, Actor and Since (at or after), at most f.Limit when set.
func (t *tx) ListAudit(f store.AuditFilter) ([]*store.AuditEvent, error) {
	audit, err := t.bucket(bucketAudit)
	if err != nil {
		return nil, err
	}
	out := []*store.AuditEvent{}
	c := audit.Cursor()
	k, v := c.First()
	if f.AfterID != "" {
		k, v = c.Seek([]byte(f.AfterID))
		if k != nil && string(k) == f.AfterID {
			k, v = c.Next()
		}
	}
	for ; k != nil; k, v = c.Next() {
		if f.Limit > 0 && len(out) >= f.Limit {
			break
		}
		var ev store.AuditEvent
		if err := json.Unmarshal(v, &ev); err != nil {
			return nil, fmt.Errorf("embedded: audit event %s: %w", k, err)
		}
		if f.KeyID != "" && ev.KeyID != f.KeyID ||
			f.Actor != "" && ev.Actor != f.Actor ||
			f.Since != nil && ev.At.Before(*f.Since) {
			continue
		}
		out = append(out, &ev)
	}
	return out, nil
}

func (t *tx) Setting(name string) ([]byte, error) {
	settings, err := t.bucket(bucketSettings)
	if err != nil {
		return nil, err
	}
	v := settings.Get([]byte(name))
	if v == nil {
		return nil, store.ErrNotFound
	}
	return append([]byte{}, v...), nil
}

func (t *tx) PutSetting(name string, value []byte) error {
	settings, err := t.bucket(bucketSettings)
	if err != nil {
		return err
	}
	if value == nil {
		value = []byte{} // bbolt refuses a nil value; an empty setting is still set
	}
	return settings.Put([]byte(name), value)
}
