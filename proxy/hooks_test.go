package proxy

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/auth"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestSignedSessionsEndToEnd: a key asks for a session, the cookie then
// authenticates alone, and stops working when the key's epoch moves
// (revoke-sessions), with the cookie cleared.
func TestSignedSessionsEndToEnd(t *testing.T) {
	signer, err := auth.NewSessionSigner([][]byte{[]byte(strings.Repeat("s", 32))})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, func(_ *fixture, o *Options) {
		o.Sessions = &SignedSessions{Signer: signer, TTL: 30 * time.Minute, Secure: true, SameSite: "Strict"}
	})
	k := &auth.Key{ID: "key_ss", User: "u", Enabled: true, SessionsAllowed: true, SessionEpoch: 1}
	secret := f.keys.add(t, k)

	r := f.get("/x?keygate-session=true", "X-API-Key: "+secret)
	if r.status != 200 {
		t.Fatalf("status %d", r.status)
	}
	set := r.header.Get("Set-Cookie")
	for _, attr := range []string{"keygate_session=", "Path=/", "Max-Age=1800", "HttpOnly", "Secure", "SameSite=Strict"} {
		if !strings.Contains(set, attr) {
			t.Errorf("Set-Cookie %q lacks %s", set, attr)
		}
	}
	if strings.Contains(set, secret) {
		t.Errorf("cookie carries the secret")
	}
	if n := testutil.ToFloat64(f.srv.m.sessions); n != 1 {
		t.Errorf("keygate_sessions_issued_total = %v, want 1", n)
	}
	cookies, err := http.ParseSetCookie(set)
	if err != nil {
		t.Fatal(err)
	}
	e := f.get("/x", "Cookie: "+cookies.Name+"="+cookies.Value).upstream(t)
	if a := e.Values("X-Keygate-Auth"); len(a) != 1 || a[0] != "session" {
		t.Errorf("X-Keygate-Auth = %q", a)
	}
	if len(e.Values("Cookie")) != 0 {
		t.Errorf("session cookie forwarded: %q", e.Values("Cookie"))
	}

	f.keys.add(t, &auth.Key{ID: "key_ss", User: "u", Enabled: true, SessionsAllowed: true, SessionEpoch: 2})
	r = f.get("/x", "Cookie: "+cookies.Name+"="+cookies.Value)
	if code, _ := r.denial(t); code != "session_invalid" {
		t.Fatalf("after revoke: %d %s", r.status, code)
	}
	if c := r.header.Get("Set-Cookie"); !strings.Contains(c, "keygate_session=;") || !strings.Contains(c, "Max-Age=0") {
		t.Errorf("cookie not cleared: %q", c)
	}
}

// TestKeyLimiter: the key's own limit applies; time is the injected clock.
func TestKeyLimiter(t *testing.T) {
	f := newFixture(t, func(_ *fixture, o *Options) {
		o.RateLimiter = KeyLimiter{Limiter: auth.NewLimiter(100, time.Minute), Default: auth.RateLimit{}}
	})
	limited := f.keys.add(t, &auth.Key{ID: "key_rl", User: "u", Enabled: true, RateLimit: &auth.RateLimit{RPS: 0.5, Burst: 1}})
	free := f.keys.add(t, &auth.Key{ID: "key_free", User: "u", Enabled: true})
	if r := f.get("/x", "X-API-Key: "+limited); r.status != 200 {
		t.Fatalf("first: %d", r.status)
	}
	r := f.get("/x", "X-API-Key: "+limited)
	if code, _ := r.denial(t); r.status != 429 || code != "rate_limited" || r.header.Get("Retry-After") != "2" {
		t.Errorf("second: %d %s Retry-After %q, want 429 rate_limited 2", r.status, code, r.header.Get("Retry-After"))
	}
	later := f.now.Add(2 * time.Second)
	f.clock.Store(&later)
	if r := f.get("/x", "X-API-Key: "+limited); r.status != 200 {
		t.Errorf("after the refill: %d", r.status)
	}
	for range 5 {
		if r := f.get("/x", "X-API-Key: "+free); r.status != 200 {
			t.Errorf("default unlimited: %d", r.status)
		}
	}
}
