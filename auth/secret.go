package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"hash/crc32"
	"io"
)

// Key format (CONTRACT §3): <prefix>_<40 random><6 checksum>, all base62.
const (
	// SecretRandomLen is the number of random base62 characters in a
	// keygate-format secret.
	SecretRandomLen = 40
	// SecretChecksumLen is the number of base62 checksum characters that
	// end a keygate-format secret.
	SecretChecksumLen = 6
	// MaxPrefixLen is the longest key prefix NewSecret accepts.
	MaxPrefixLen = 16

	// MinForeignSecretLen and MaxForeignSecretLen bound imported secrets
	// that are not in keygate's format.
	MinForeignSecretLen = 24
	MaxForeignSecretLen = 512

	// hintLen is how many random characters a hint shows.
	hintLen = 8

	// base62 is the alphabet in value order: '0' is 0, 'A' is 10, 'a' is 36.
	base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	// bodyLen is what follows the prefix's "_".
	bodyLen = SecretRandomLen + SecretChecksumLen
	// maxUnbiased is the largest multiple of 62 that fits in a byte: bytes
	// at or above it are rejected so that b%62 is uniform.
	maxUnbiased = 256 - 256%62 // 248
)

// errBadPrefix is returned by NewSecret for a prefix the format cannot carry.
var errBadPrefix = errors.New("auth: key prefix must be 1 to 16 ASCII letters or digits")

// NewSecret returns a new keygate-format secret with the given prefix
// (1 to 16 ASCII letters or digits): prefix, "_", 40 characters drawn
// uniformly from base62 with crypto/rand, and the 6-character checksum.
func NewSecret(prefix string) (string, error) {
	return newSecret(rand.Reader, prefix)
}

// newSecret is NewSecret reading randomness from r, so tests can check the
// rejection sampling with chosen bytes.
func newSecret(r io.Reader, prefix string) (string, error) {
	if !validPrefix(prefix) {
		return "", errBadPrefix
	}
	n := len(prefix) + 1
	buf := make([]byte, n+bodyLen)
	copy(buf, prefix)
	buf[n-1] = '_'
	random := buf[n : n+SecretRandomLen]
	// Draw in batches; 248/256 of bytes are accepted, so a batch of 64 is
	// usually one read for 40 characters.
	var pool [64]byte
	filled := 0
	for filled < len(random) {
		if _, err := io.ReadFull(r, pool[:]); err != nil {
			return "", err
		}
		for _, b := range pool {
			if b >= maxUnbiased {
				continue
			}
			random[filled] = base62[b%62]
			filled++
			if filled == len(random) {
				break
			}
		}
	}
	putChecksum(buf[n+SecretRandomLen:], crc32.ChecksumIEEE(buf[:n+SecretRandomLen]))
	return string(buf), nil
}

// putChecksum writes c as a big-endian base62 number, left-padded with '0',
// into dst (len SecretChecksumLen; 62^6 > 2^32 so it always fits).
func putChecksum(dst []byte, c uint32) {
	v := uint64(c)
	for i := len(dst) - 1; i >= 0; i-- {
		dst[i] = base62[v%62]
		v /= 62
	}
}

// base62Value returns the value of base62 digit c, or -1. It is a table
// lookup: the proxy runs it on every character of every key, and the
// branches of a range test mispredict on random characters.
func base62Value(c byte) int { return int(base62Table[c]) }

var base62Table = func() (t [256]int8) {
	for i := range t {
		t[i] = -1
	}
	for i := 0; i < 10; i++ {
		t['0'+i] = int8(i)
	}
	for i := 0; i < 26; i++ {
		t['A'+i] = int8(10 + i)
		t['a'+i] = int8(36 + i)
	}
	return t
}()

// validPrefix reports whether prefix is 1 to MaxPrefixLen ASCII letters or
// digits (config's auth.key_prefix rule).
func validPrefix(prefix string) bool {
	if len(prefix) == 0 || len(prefix) > MaxPrefixLen {
		return false
	}
	for i := 0; i < len(prefix); i++ {
		if base62Value(prefix[i]) < 0 {
			return false
		}
	}
	return true
}

// ValidSecret reports whether s is a keygate-format secret with the given
// prefix and a correct checksum. It does not allocate, so the proxy can
// reject a mistyped or random key before any cache or store work.
func ValidSecret(prefix string, s []byte) bool {
	n := len(prefix) + 1
	if len(s) != n+bodyLen || !validPrefix(prefix) {
		return false
	}
	// The string conversion in a comparison does not allocate.
	if string(s[:n-1]) != prefix || s[n-1] != '_' {
		return false
	}
	for _, c := range s[n : n+SecretRandomLen] {
		if base62Value(c) < 0 {
			return false
		}
	}
	var sum uint64
	for _, c := range s[n+SecretRandomLen:] {
		v := base62Value(c)
		if v < 0 {
			return false
		}
		sum = sum*62 + uint64(v)
	}
	// sum may exceed 2^32 for a forged checksum; the comparison in uint64
	// refuses that rather than wrapping.
	return sum == uint64(crc32.ChecksumIEEE(s[:n+SecretRandomLen]))
}

// ValidForeignSecret reports whether s is acceptable as an imported secret
// in another format: MinForeignSecretLen to MaxForeignSecretLen bytes of
// visible ASCII (0x21 to 0x7e), so no spaces, controls or non-ASCII.
func ValidForeignSecret(s []byte) bool {
	if len(s) < MinForeignSecretLen || len(s) > MaxForeignSecretLen {
		return false
	}
	for _, c := range s {
		if c < 0x21 || c > 0x7e {
			return false
		}
	}
	return true
}

// Digest is what keys are stored and looked up by: SHA-256 of the full
// secret. The array result keeps the hot path free of allocations.
func Digest(s []byte) [32]byte {
	return sha256.Sum256(s)
}

// Hint is the display hint kept with a key: for a keygate-format secret its
// prefix, "_" and first 8 random characters (kg_AbCd1234); for any other
// secret its first 8 characters (all of it when shorter).
func Hint(secret string) string {
	if i := len(secret) - bodyLen - 1; i > 0 && secret[i] == '_' &&
		ValidSecret(secret[:i], []byte(secret)) {
		return secret[:i+1+hintLen]
	}
	return secret[:min(len(secret), hintLen)]
}

// AcceptableSecret reports whether s may be a key's secret: a valid keygate
// key, or, when foreign is set, a foreign secret (ValidForeignSecret). A
// string starting with keygate's own "<prefix>_" is judged as a keygate key
// only, so a mistyped keygate key is never taken for a foreign one and its
// checksum always applies (CONTRACT §3). It does not allocate.
func AcceptableSecret(prefix string, foreign bool, s []byte) bool {
	if ValidSecret(prefix, s) {
		return true
	}
	if len(s) > len(prefix) && s[len(prefix)] == '_' && string(s[:len(prefix)]) == prefix {
		return false
	}
	return foreign && ValidForeignSecret(s)
}
