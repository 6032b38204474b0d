//go:build !race

package proxy

import "testing"

// TestAuthDecisionAllocs pins STYLE §2.7: deciding a request with a cached
// key allocates nothing.
func TestAuthDecisionAllocs(t *testing.T) {
	for _, tt := range []struct {
		name string
		mode int
	}{{"key", authPlain}, {"key with rate limit", authRateLimit}, {"session cookie with rate limit", authSession}} {
		a := newAuthFixtureWith(t, tt.mode)
		var err error
		// reset as release does between requests: pooled state must keep
		// its buffers.
		n := testing.AllocsPerRun(100, func() { a.st.reset(); err = a.once() })
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if n != 0 {
			t.Errorf("%s: auth decision allocates %v times per request, want 0", tt.name, n)
		}
	}
}
