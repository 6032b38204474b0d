// Package store keeps keys, their secrets' digests, the audit log and shared
// settings. The package itself holds the model, the Backend interface that
// the two implementations (store/postgres and store/embedded) satisfy, and
// the key Service that enforces the product's rules (validation, uniqueness,
// lifetimes, audit) on top of any Backend. It implements auth.KeyStore for
// the hot path through KeySource.
package store
