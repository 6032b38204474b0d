package store

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Sealer encrypts retrievable secrets with AES-256-GCM under a key file
// (keys.keystore). Losing the file loses retrievability, never
// authentication: the store authenticates by digest alone.
type Sealer struct{ aead cipher.AEAD }

// sealVersion is the first byte of every sealed secret, so the format can
// change without guessing.
const sealVersion = 1

// NewSealer loads the 32-byte key at path, or generates it when the file
// does not exist (directory 0700, file 0600). Creation is atomic: the key
// is written to a temporary file and linked into place, so two processes
// starting together end up using the same key.
func NewSealer(path string) (*Sealer, error) {
	key, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		key, err = createKeyFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("keystore: %w", err)
	}
	if len(key) != 32 {
		return nil, fmt.Errorf("keystore %s: holds %d bytes, want 32", path, len(key))
	}
	return newSealer(key)
}

func newSealer(key []byte) (*Sealer, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Sealer{aead: aead}, nil
}

func createKeyFile(path string) ([]byte, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	tmp, err := os.CreateTemp(dir, ".keystore-*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, err
	}
	if _, err := tmp.Write(key); err != nil {
		tmp.Close()
		return nil, err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, err
	}
	if err := tmp.Close(); err != nil {
		return nil, err
	}
	// Link fails when path exists, unlike Rename: a key another process
	// created meanwhile is kept and used, never replaced.
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return os.ReadFile(path)
		}
		return nil, err
	}
	return key, nil
}

// Seal encrypts secret: a version byte, a random nonce, then the
// ciphertext with its tag.
func (s *Sealer) Seal(secret string) []byte {
	ns := s.aead.NonceSize()
	out := make([]byte, 1+ns, 1+ns+len(secret)+s.aead.Overhead())
	out[0] = sealVersion
	rand.Read(out[1 : 1+ns])
	return s.aead.Seal(out, out[1:1+ns], []byte(secret), out[:1])
}

// Open decrypts what Seal made; an error when b was sealed under another
// key or altered.
func (s *Sealer) Open(b []byte) (string, error) {
	ns := s.aead.NonceSize()
	if len(b) < 1+ns+s.aead.Overhead() || b[0] != sealVersion {
		return "", errors.New("keystore: not a sealed secret")
	}
	pt, err := s.aead.Open(nil, b[1:1+ns], b[1+ns:], b[:1])
	if err != nil {
		return "", errors.New("keystore: cannot open the sealed secret (wrong keystore?)")
	}
	return string(pt), nil
}
