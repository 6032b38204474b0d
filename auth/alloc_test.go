//go:build !race

package auth

import (
	"testing"
	"time"
)

// The race detector adds allocations of its own, so these run without it
// (as fasthttp's allocation_test.go does).

func TestParseAndHashAllocs(t *testing.T) {
	s := []byte(secretVectors[0])
	var sink [32]byte
	allocs := testing.AllocsPerRun(100, func() {
		if ValidSecret("kg", s) {
			sink = Digest(s)
		}
	})
	_ = sink
	if allocs != 0 {
		t.Errorf("ValidSecret+Digest: %v allocs per run, want 0", allocs)
	}
}

func TestSessionVerifyAllocs(t *testing.T) {
	s := mustSigner(t, secretA, secretB)
	v := mustCookie(t, s, "key_01JDXYZABCDEFGHJKMNPQRSTV", 1, t0, t0.Add(time.Hour))
	old := mustCookie(t, mustSigner(t, secretB), "key_01JDXYZABCDEFGHJKMNPQRSTV", 1, t0, t0.Add(time.Hour))
	buf := make([]byte, 0, MaxSessionKeyIDLen)
	out := make([]byte, 0, MaxSessionCookieLen)
	for _, tt := range []struct {
		name string
		want float64
		f    func() error
	}{
		{"VerifyAppend", 0, func() error { _, _, err := s.VerifyAppend(buf, v, t0); return err }},
		{"VerifyAppend old secret", 0, func() error { _, _, err := s.VerifyAppend(buf, old, t0); return err }},
		{"Verify", 1, func() error { _, err := s.Verify(v, t0); return err }},
		{"AppendCookieValue", 0, func() error {
			_, err := s.AppendCookieValue(out, "key_1", 1, t0, t0.Add(time.Hour))
			return err
		}},
	} {
		var err error
		allocs := testing.AllocsPerRun(100, func() { err = tt.f() })
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if allocs != tt.want {
			t.Errorf("%s: %v allocs per run, want %v", tt.name, allocs, tt.want)
		}
	}
}

func TestLimiterAllowAllocs(t *testing.T) {
	l := NewLimiter(1000, time.Minute)
	rl := RateLimit{RPS: 10, Burst: 2}
	l.Allow("key_a", rl, t0) // the one allocation: adding the bucket
	now := t0
	allocs := testing.AllocsPerRun(100, func() {
		// Both outcomes: allowed while tokens last, then refused.
		now = now.Add(time.Millisecond)
		l.Allow("key_a", rl, now)
	})
	if allocs != 0 {
		t.Errorf("Limiter.Allow on an existing bucket: %v allocs per run, want 0", allocs)
	}
}
