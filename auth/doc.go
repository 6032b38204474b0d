// Package auth holds what keygate decides about a request's key: the key
// format (generation, checksum, digest, hint), the immutable hot-path view of
// a key, the policy it must pass (enabled, expiry, IP allowlist, route scope),
// session cookies and per-key rate limits.
//
// auth imports no other keygate package. It defines the small KeyStore
// interface it consumes; package store implements it and package cache
// decorates it.
package auth
