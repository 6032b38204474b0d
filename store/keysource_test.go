package store

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/keygate/keygate/auth"
)

func TestToAuthKey(t *testing.T) {
	cur, prev := [32]byte{1}, [32]byte{2}
	exp := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	grace := exp.Add(-time.Hour)
	k := &Key{
		ID: "key_1", Name: "n", User: "u", Application: "a", Tenant: "t",
		Scopes:      []string{"r1", "r2"},
		IPAllowlist: []string{"10.0.0.0/8", "192.0.2.1", "::ffff:198.51.100.0/120", "::ffff:203.0.113.9", "2001:db8::/32", "not-an-ip"},
		Enabled:     true, SessionsAllowed: true, SessionEpoch: 7,
		ExpiresAt: &exp, RateLimit: &RateLimit{RPS: 1.5, Burst: 2},
		Digest: cur, PreviousDigest: prev, PreviousSecretExpiresAt: &grace,
	}
	a := ToAuthKey(k, cur)
	if a.Previous || a.ScopesHeader != "r1,r2" || !a.ExpiresAt.Equal(exp) || a.SessionEpoch != 7 || a.RateLimit.RPS != 1.5 || a.RateLimit.Burst != 2 {
		t.Errorf("ToAuthKey(current) = %+v", a)
	}
	want := fmt.Sprint([]netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.1/32"),
		netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("203.0.113.9/32"),
		netip.MustParsePrefix("2001:db8::/32"), {},
	})
	if got := fmt.Sprint(a.IPAllowlist); got != want {
		t.Errorf("allowlist = %s, want %s", got, want)
	}
	// The unparsable entry matches nothing; the others still work.
	for addr, ok := range map[string]bool{"198.51.100.7": true, "203.0.113.9": true, "::ffff:10.2.3.4": true, "8.8.8.8": false, "2001:db9::1": false} {
		if got := a.AllowsIP(netip.MustParseAddr(addr)); got != ok {
			t.Errorf("AllowsIP(%s) = %v, want %v", addr, got, ok)
		}
	}
	only := ToAuthKey(&Key{IPAllowlist: []string{"garbage"}}, cur)
	if only.AllowsIP(netip.MustParseAddr("192.0.2.1")) {
		t.Error("a key whose only allowlist entry is unparsable allowed an address: must fail closed")
	}

	p := ToAuthKey(k, prev)
	if !p.Previous || !p.PreviousExpiresAt.Equal(grace) {
		t.Errorf("ToAuthKey(previous) Previous %v until %v, want true until %v", p.Previous, p.PreviousExpiresAt, grace)
	}
	if err := p.CheckState(grace.Add(-time.Second)); err != nil {
		t.Errorf("previous secret within grace: %v", err)
	}
	if err := p.CheckState(grace); err != auth.ErrKeyExpired {
		t.Errorf("previous secret at the end of grace: %v, want ErrKeyExpired", err)
	}
	k.PreviousSecretExpiresAt = nil
	if err := ToAuthKey(k, prev).CheckState(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)); err != auth.ErrKeyExpired {
		t.Errorf("previous secret with no recorded grace end: %v, want ErrKeyExpired", err)
	}
	if a := ToAuthKey(&Key{}, cur); a.IPAllowlist != nil || a.RateLimit != nil || !a.ExpiresAt.IsZero() || a.ScopesHeader != "" {
		t.Errorf("ToAuthKey(empty) = %+v", a)
	}
}
