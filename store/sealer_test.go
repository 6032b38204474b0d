package store

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestSealerCreatesKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", "keystore")
	s, err := NewSealer(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 || fi.Size() != 32 {
		t.Errorf("key file mode %v size %d, want 0600 and 32 bytes", fi.Mode().Perm(), fi.Size())
	}
	if di, _ := os.Stat(filepath.Dir(path)); di.Mode().Perm() != 0o700 {
		t.Errorf("key directory mode %v, want 0700", di.Mode().Perm())
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only the key file (no temporary left)", len(entries))
	}
	const secret = "kg_0123456789abcdefghijABCDEFGHIJ0123456789xyzXYZ"
	sealed := s.Seal(secret)
	if strings.Contains(string(sealed), secret) {
		t.Fatal("sealed secret holds the secret in clear")
	}
	if string(s.Seal(secret)) == string(sealed) {
		t.Error("sealing twice gave the same bytes: nonce reused")
	}
	again, err := NewSealer(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := again.Open(sealed); err != nil || got != secret {
		t.Errorf("reloaded keystore Open = %q, %v", got, err)
	}
	other, err := NewSealer(filepath.Join(t.TempDir(), "k"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Open(sealed); err == nil {
		t.Error("another keystore opened the secret")
	}
	for i := range sealed {
		b := append([]byte(nil), sealed...)
		b[i] ^= 1
		if _, err := s.Open(b); err == nil {
			t.Errorf("Open accepted a sealed secret with byte %d changed", i)
		}
	}
	for _, b := range [][]byte{nil, {1}, sealed[:len(sealed)-1]} {
		if _, err := s.Open(b); err == nil {
			t.Errorf("Open(%x) accepted", b)
		}
	}
}

func TestSealerRefusesBadKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keystore")
	if err := os.WriteFile(path, []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewSealer(path); err == nil {
		t.Error("NewSealer accepted a 5-byte key file")
	}
	if b, _ := os.ReadFile(path); string(b) != "short" {
		t.Error("NewSealer replaced an existing key file")
	}
}

// TestSealerConcurrentCreate: replicas starting together on one data
// directory end up with one key.
func TestSealerConcurrentCreate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ks", "key")
	sealers := make([]*Sealer, 8)
	var wg sync.WaitGroup
	for i := range sealers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := NewSealer(path)
			if err != nil {
				t.Error(err)
				return
			}
			sealers[i] = s
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	sealed := sealers[0].Seal("secret")
	for i, s := range sealers {
		if got, err := s.Open(sealed); err != nil || got != "secret" {
			t.Errorf("sealer %d cannot open what sealer 0 sealed: %v", i, err)
		}
	}
}
