package admin

import (
	"context"
	"crypto/rand"
	"hash/crc32"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/keygate/keygate/auth"
)

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// newSecret makes a key in keygate's format (CONTRACT §3) independently of
// auth, so the admin tests also pin the format auth must accept.
func newSecret(t testing.TB, prefix string) string {
	t.Helper()
	var r [40]byte
	if _, err := rand.Read(r[:]); err != nil {
		t.Fatal(err)
	}
	b := []byte(prefix + "_")
	for _, c := range r {
		b = append(b, base62[int(c)%62])
	}
	sum := crc32.ChecksumIEEE(b)
	var cs [6]byte
	for i := 5; i >= 0; i-- {
		cs[i] = base62[sum%62]
		sum /= 62
	}
	return string(append(b, cs[:]...))
}

// fakeKeys is an auth.KeyStore over a map, with an injectable failure.
type fakeKeys struct {
	mu   sync.Mutex
	keys map[[32]byte]*auth.Key
	err  error
}

func (f *fakeKeys) add(secret string, k *auth.Key) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.keys == nil {
		f.keys = map[[32]byte]*auth.Key{}
	}
	f.keys[auth.Digest([]byte(secret))] = k
}

func (f *fakeKeys) LookupKey(_ context.Context, d [32]byte) (*auth.Key, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	k, ok := f.keys[d]
	if !ok {
		return nil, auth.ErrKeyNotFound
	}
	return k, nil
}

func (f *fakeKeys) LookupKeyID(context.Context, string) (*auth.Key, error) {
	return nil, auth.ErrKeyNotFound
}

// do sends one request to h and returns the recorded response.
func do(t testing.TB, h http.Handler, method, path, body string, hdr ...string) *httptest.ResponseRecorder {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, rd)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}
