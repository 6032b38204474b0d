package auth

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

var (
	secretA = []byte("session-secret-A-0123456789abcdefghij")
	secretB = []byte("session-secret-B-0123456789abcdefghij")
	// t0 has a fractional second so truncation is exercised.
	t0 = time.Date(2026, 11, 23, 12, 0, 0, 500_000_000, time.UTC)
)

func mustSigner(t testing.TB, secrets ...[]byte) *SessionSigner {
	t.Helper()
	s, err := NewSessionSigner(secrets)
	if err != nil {
		t.Fatalf("NewSessionSigner: %v", err)
	}
	return s
}

func mustCookie(t testing.TB, s *SessionSigner, id string, epoch int64, issued, expires time.Time) []byte {
	t.Helper()
	v, err := s.AppendCookieValue(nil, id, epoch, issued, expires)
	if err != nil {
		t.Fatalf("AppendCookieValue(%q): %v", id, err)
	}
	return v
}

// refCookie builds a cookie value from the documented layout, independently
// of the package: version, id length, epoch, issued, expires, id, HMAC.
func refCookie(secret []byte, version byte, idLen int, id string, epoch, issued, expires int64) []byte {
	raw := []byte{version, byte(idLen)}
	raw = binary.BigEndian.AppendUint64(raw, uint64(epoch))
	raw = binary.BigEndian.AppendUint64(raw, uint64(issued))
	raw = binary.BigEndian.AppendUint64(raw, uint64(expires))
	raw = append(raw, id...)
	return resign(secret, raw)
}

// resign appends HMAC-SHA256 of body under secret and encodes.
func resign(secret, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return []byte(base64.RawURLEncoding.EncodeToString(m.Sum(body)))
}

func TestSessionRoundTrip(t *testing.T) {
	s := mustSigner(t, secretA)
	exp := t0.Add(time.Hour)
	v := mustCookie(t, s, "key_01JDXYZ", 7, t0, exp)
	if want := refCookie(secretA, 1, 11, "key_01JDXYZ", 7, t0.Unix(), exp.Unix()); !bytes.Equal(v, want) {
		t.Errorf("AppendCookieValue = %s, want the documented layout %s", v, want)
	}
	got, err := s.Verify(v, t0)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	want := Session{KeyID: "key_01JDXYZ", Epoch: 7, Issued: t0.Truncate(time.Second), Expires: exp.Truncate(time.Second)}
	if got != want {
		t.Errorf("Verify = %+v, want %+v", got, want)
	}
	if strings.Contains(string(v), "=") {
		t.Errorf("cookie %s is padded", v)
	}

	// VerifyAppend appends after what dst holds and fills the rest.
	buf := append(make([]byte, 0, 300), "id="...)
	out, sess, err := s.VerifyAppend(buf, v, t0)
	if err != nil {
		t.Fatalf("VerifyAppend: %v", err)
	}
	if string(out) != "id=key_01JDXYZ" || sess.KeyID != "" || sess.Epoch != 7 || !sess.Expires.Equal(want.Expires) {
		t.Errorf("VerifyAppend = %q, %+v", out, sess)
	}
	if out, _, err := s.VerifyAppend(buf, v[:len(v)-1], t0); err == nil || string(out) != "id=" {
		t.Errorf("VerifyAppend(truncated) = %q, %v; want dst unchanged and an error", out, err)
	}

	// Appending keeps what dst held.
	v2, err := s.AppendCookieValue([]byte("keygate_session="), "k", -1, t0, exp)
	if err != nil || !bytes.HasPrefix(v2, []byte("keygate_session=")) {
		t.Fatalf("AppendCookieValue(dst) = %q, %v", v2, err)
	}
	if got, err := s.Verify(v2[len("keygate_session="):], t0); err != nil || got.KeyID != "k" || got.Epoch != -1 {
		t.Errorf("Verify = %+v, %v; want k, epoch -1", got, err)
	}
}

func TestSessionLongestKeyID(t *testing.T) {
	s := mustSigner(t, secretA)
	id := strings.Repeat("k", MaxSessionKeyIDLen)
	v := mustCookie(t, s, id, 1, t0, t0.Add(time.Minute))
	if len(v) != MaxSessionCookieLen || MaxSessionCookieLen != base64.RawURLEncoding.EncodedLen(maxSessionRawLen) {
		t.Errorf("longest cookie is %d bytes, MaxSessionCookieLen %d", len(v), MaxSessionCookieLen)
	}
	if got, err := s.Verify(v, t0); err != nil || got.KeyID != id {
		t.Errorf("Verify(longest) = %+v, %v", got, err)
	}
	short := mustCookie(t, s, "k", 1, t0, t0.Add(time.Minute))
	if len(short) != minSessionCookieLen {
		t.Errorf("shortest cookie is %d bytes, minSessionCookieLen %d", len(short), minSessionCookieLen)
	}
}

func TestSessionRotation(t *testing.T) {
	old := mustSigner(t, secretA)
	rotated := mustSigner(t, secretB, secretA)
	exp := t0.Add(time.Hour)

	// A cookie signed before rotation still verifies after it.
	if _, err := rotated.Verify(mustCookie(t, old, "key_1", 1, t0, exp), t0); err != nil {
		t.Errorf("rotated signer rejects a cookie signed with the old secret: %v", err)
	}
	// New cookies are signed with the new secret: the old signer, which
	// does not know it, rejects them.
	fresh := mustCookie(t, rotated, "key_1", 1, t0, exp)
	if !bytes.Equal(fresh, refCookie(secretB, 1, 5, "key_1", 1, t0.Unix(), exp.Unix())) {
		t.Errorf("rotated signer did not sign with its first secret")
	}
	if _, err := old.Verify(fresh, t0); !errors.Is(err, ErrSessionInvalid) {
		t.Errorf("old signer Verify(new cookie) = %v, want ErrSessionInvalid", err)
	}
}

func TestSessionSecretsCopied(t *testing.T) {
	sec := bytes.Clone(secretA)
	s := mustSigner(t, sec)
	v := mustCookie(t, s, "key_1", 1, t0, t0.Add(time.Hour))
	sec[0] ^= 0xff
	if _, err := s.Verify(v, t0); err != nil {
		t.Errorf("changing the caller's secret slice changed the signer: %v", err)
	}
}

func TestNewSessionSignerErrors(t *testing.T) {
	for _, tt := range []struct {
		name    string
		secrets [][]byte
	}{
		{"nil", nil},
		{"empty list", [][]byte{}},
		{"short", [][]byte{make([]byte, MinSessionSecretLen-1)}},
		{"short second", [][]byte{secretA, []byte("short")}},
	} {
		if _, err := NewSessionSigner(tt.secrets); err == nil {
			t.Errorf("%s: NewSessionSigner succeeded, want an error", tt.name)
		}
	}
	if _, err := NewSessionSigner([][]byte{make([]byte, MinSessionSecretLen)}); err != nil {
		t.Errorf("NewSessionSigner(32 bytes): %v", err)
	}
}

func TestAppendCookieValueErrors(t *testing.T) {
	s := mustSigner(t, secretA)
	for _, tt := range []struct {
		name            string
		id              string
		issued, expires time.Time
	}{
		{"empty id", "", t0, t0.Add(time.Hour)},
		{"id too long", strings.Repeat("k", MaxSessionKeyIDLen+1), t0, t0.Add(time.Hour)},
		{"expires at issue", "key_1", t0, t0},
		{"expires within the issue second", "key_1", t0, t0.Add(400 * time.Millisecond)},
		{"expires before issue", "key_1", t0, t0.Add(-time.Hour)},
	} {
		if v, err := s.AppendCookieValue([]byte("x"), tt.id, 1, tt.issued, tt.expires); err == nil || string(v) != "x" {
			t.Errorf("%s: AppendCookieValue = %q, %v; want dst unchanged and an error", tt.name, v, err)
		}
	}
	var zero SessionSigner
	if v, err := zero.AppendCookieValue(nil, "key_1", 1, t0, t0.Add(time.Hour)); err == nil {
		t.Errorf("zero SessionSigner signed %q", v)
	}
	if _, err := zero.Verify(mustCookie(t, s, "key_1", 1, t0, t0.Add(time.Hour)), t0); !errors.Is(err, ErrSessionInvalid) {
		t.Errorf("zero SessionSigner Verify = %v, want ErrSessionInvalid", err)
	}
}

// badSessionTests are cookie values Verify must refuse at t0.
func badSessionTests() []struct {
	name  string
	value []byte
	now   time.Time
} {
	// The cookie expires at this exact second.
	exp := t0.Add(time.Hour).Truncate(time.Second)
	good := refCookie(secretA, 1, 6, "key_12", 3, t0.Unix(), exp.Unix())
	std := bytes.ReplaceAll(bytes.ReplaceAll(good, []byte("-"), []byte("+")), []byte("_"), []byte("/"))
	tests := []struct {
		name  string
		value []byte
		now   time.Time
	}{
		{"empty", nil, t0},
		{"not base64", []byte(strings.Repeat("!", 100)), t0},
		{"extended", append(bytes.Clone(good), 'A'), t0},
		{"extended by a byte", []byte(base64.RawURLEncoding.EncodeToString(append(mustDecode(good), 0))), t0},
		{"padded", append(bytes.Clone(good), '='), t0},
		{"newline inside", append(append(bytes.Clone(good[:10]), '\n'), good[10:]...), t0},
		{"unknown secret", refCookie(secretB, 1, 6, "key_12", 3, t0.Unix(), exp.Unix()), t0},
		{"expired at its second", good, exp},
		{"expired", good, exp.Add(time.Hour)},
		{"issued in the future", refCookie(secretA, 1, 6, "key_12", 3, t0.Add(SessionClockSkew+time.Second).Unix(), exp.Unix()), t0},
		{"issued far in the future", good, t0.Add(-SessionClockSkew - time.Second)},
		{"other version", refCookie(secretA, 2, 6, "key_12", 3, t0.Unix(), exp.Unix()), t0},
		{"id length too long", refCookie(secretA, 1, 7, "key_12", 3, t0.Unix(), exp.Unix()), t0},
		{"id length too short", refCookie(secretA, 1, 5, "key_12", 3, t0.Unix(), exp.Unix()), t0},
		{"empty id", refCookie(secretA, 1, 0, "", 3, t0.Unix(), exp.Unix()), t0},
		{"too long", []byte(strings.Repeat("A", MaxSessionCookieLen+1)), t0},
		{"no MAC", []byte(base64.RawURLEncoding.EncodeToString(mustDecode(good)[:sessionHeaderLen+5])), t0},
	}
	if !bytes.Equal(std, good) {
		tests = append(tests, struct {
			name  string
			value []byte
			now   time.Time
		}{"standard alphabet", std, t0})
	}
	// Non-canonical trailing bits: the last character of an unpadded
	// encoding carries spare low bits that must be zero.
	if n := len(good) % 4; n == 2 || n == 3 {
		nc := bytes.Clone(good)
		nc[len(nc)-1] = base64URLAlphabet[strings.IndexByte(base64URLAlphabet, nc[len(nc)-1])|1]
		tests = append(tests, struct {
			name  string
			value []byte
			now   time.Time
		}{"non-canonical last character", nc, t0})
	}
	for i := range good {
		tests = append(tests, struct {
			name  string
			value []byte
			now   time.Time
		}{fmt.Sprintf("truncated to %d", i), bytes.Clone(good[:i]), t0})
	}
	raw := mustDecode(good)
	for i := range raw {
		for bit := range 8 {
			t := bytes.Clone(raw)
			t[i] ^= 1 << bit
			tests = append(tests, struct {
				name  string
				value []byte
				now   time.Time
			}{fmt.Sprintf("bit %d of byte %d flipped", bit, i), []byte(base64.RawURLEncoding.EncodeToString(t)), t0})
		}
	}
	return tests
}

const base64URLAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

func mustDecode(v []byte) []byte {
	raw, err := base64.RawURLEncoding.DecodeString(string(v))
	if err != nil {
		panic(err)
	}
	return raw
}

func TestSessionVerifyRejects(t *testing.T) {
	s := mustSigner(t, secretA)
	// The cookie expires at this exact second.
	exp := t0.Add(time.Hour).Truncate(time.Second)
	good := refCookie(secretA, 1, 6, "key_12", 3, t0.Unix(), exp.Unix())
	// The good cookie is accepted through its whole life, including an
	// issue time up to the allowed skew ahead of now.
	for _, now := range []time.Time{t0.Add(-SessionClockSkew), t0, exp.Add(-time.Nanosecond)} {
		if _, err := s.Verify(good, now); err != nil {
			t.Fatalf("Verify(good) at %v: %v", now, err)
		}
	}
	for _, tt := range badSessionTests() {
		if got, err := s.Verify(tt.value, tt.now); !errors.Is(err, ErrSessionInvalid) || got != (Session{}) {
			t.Errorf("%s: Verify(%q) = %+v, %v; want ErrSessionInvalid", tt.name, tt.value, got, err)
		}
		if out, _, err := s.VerifyAppend(nil, tt.value, tt.now); !errors.Is(err, ErrSessionInvalid) || out != nil {
			t.Errorf("%s: VerifyAppend(%q) = %q, %v; want ErrSessionInvalid", tt.name, tt.value, out, err)
		}
	}
}

// FuzzSessionVerify checks that Verify never panics on any value, only
// accepts a value whose signature a naive re-signing reproduces, and that
// minting from the fuzzed fields round-trips.
func FuzzSessionVerify(f *testing.F) {
	for _, tt := range badSessionTests()[:20] {
		f.Add(tt.value, "key_1", int64(3), int64(3600))
	}
	f.Add(refCookie(secretA, 1, 5, "key_1", 3, t0.Unix(), t0.Add(time.Hour).Unix()), "key_01JDXYZ", int64(-5), int64(1))
	s := mustSigner(f, secretA)
	f.Fuzz(func(t *testing.T, value []byte, id string, epoch, ttl int64) {
		if sess, err := s.Verify(value, t0); err == nil {
			raw := mustDecode(value)
			if !bytes.Equal(resign(secretA, raw[:len(raw)-sessionMACLen]), value) {
				t.Fatalf("Verify accepted %q, which is not the canonical signed form", value)
			}
			if sess.KeyID == "" || !t0.Before(sess.Expires) {
				t.Fatalf("Verify(%q) = %+v", value, sess)
			}
		}
		exp := t0.Add(time.Duration(ttl) * time.Second)
		v, err := s.AppendCookieValue(nil, id, epoch, t0, exp)
		if err != nil {
			if id != "" && len(id) <= MaxSessionKeyIDLen && exp.Unix() > t0.Unix() {
				t.Fatalf("AppendCookieValue(%q, %d, ttl %d): %v", id, epoch, ttl, err)
			}
			return
		}
		got, err := s.Verify(v, t0)
		want := Session{KeyID: id, Epoch: epoch, Issued: time.Unix(t0.Unix(), 0).UTC(), Expires: time.Unix(exp.Unix(), 0).UTC()}
		if err != nil || got != want {
			t.Fatalf("Verify(AppendCookieValue(%q, %d, ttl %d)) = %+v, %v; want %+v", id, epoch, ttl, got, err, want)
		}
	})
}

func BenchmarkSessionVerify(b *testing.B) {
	s := mustSigner(b, secretA, secretB)
	v := mustCookie(b, s, "key_01JDXYZABCDEFGHJKMNPQRSTV", 1, t0, t0.Add(time.Hour))
	b.Run("Verify", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := s.Verify(v, t0); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
	b.Run("VerifyAppend", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			buf := make([]byte, 0, MaxSessionKeyIDLen)
			for pb.Next() {
				if _, _, err := s.VerifyAppend(buf, v, t0); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
	b.Run("OldSecret", func(b *testing.B) {
		old := mustCookie(b, mustSigner(b, secretB), "key_01JDXYZABCDEFGHJKMNPQRSTV", 1, t0, t0.Add(time.Hour))
		b.ReportAllocs()
		buf := make([]byte, 0, MaxSessionKeyIDLen)
		for b.Loop() {
			if _, _, err := s.VerifyAppend(buf, old, t0); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkSessionAppendCookieValue(b *testing.B) {
	s := mustSigner(b, secretA)
	buf := make([]byte, 0, MaxSessionCookieLen)
	exp := t0.Add(time.Hour)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.AppendCookieValue(buf, "key_01JDXYZABCDEFGHJKMNPQRSTV", 1, t0, exp); err != nil {
			b.Fatal(err)
		}
	}
}
