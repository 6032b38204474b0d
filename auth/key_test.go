package auth

import (
	"errors"
	"net/netip"
	"testing"
	"time"
)

func TestAllowsRoute(t *testing.T) {
	tests := []struct {
		name   string
		scopes []string
		route  string
		want   bool
	}{
		{"no scopes: any route", nil, "billing", true},
		{"empty scopes: any route", []string{}, "default", true},
		{"listed", []string{"billing", "search"}, "search", true},
		{"not listed", []string{"billing", "search"}, "default", false},
		{"case matters", []string{"billing"}, "Billing", false},
		{"no prefix match", []string{"bill"}, "billing", false},
		{"admin only: no proxy route", []string{AdminScope}, "default", false},
		{"admin only: not even a route named like the scope", []string{AdminScope}, AdminScope, false},
		{"admin and a route", []string{AdminScope, "billing"}, "billing", true},
		{"admin and a route: other route", []string{AdminScope, "billing"}, "default", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := &Key{Scopes: tt.scopes}
			if got := k.AllowsRoute(tt.route); got != tt.want {
				t.Errorf("Key{Scopes: %q}.AllowsRoute(%q) = %v, want %v", tt.scopes, tt.route, got, tt.want)
			}
		})
	}
}

func TestIsAdmin(t *testing.T) {
	for _, tt := range []struct {
		scopes []string
		want   bool
	}{
		{nil, false},
		{[]string{"billing"}, false},
		{[]string{"keygate:Admin"}, false},
		{[]string{AdminScope}, true},
		{[]string{"billing", AdminScope}, true},
	} {
		if got := (&Key{Scopes: tt.scopes}).IsAdmin(); got != tt.want {
			t.Errorf("Key{Scopes: %q}.IsAdmin() = %v, want %v", tt.scopes, got, tt.want)
		}
	}
}

func TestAllowsIP(t *testing.T) {
	list := func(ps ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, p := range ps {
			out = append(out, netip.MustParsePrefix(p))
		}
		return out
	}
	v4 := list("10.0.0.0/8", "192.0.2.7/32")
	v6 := list("2001:db8::/32")
	both := list("10.0.0.0/8", "2001:db8::/32")
	tests := []struct {
		name  string
		allow []netip.Prefix
		addr  string // "" is the invalid (zero) Addr
		want  bool
	}{
		{"no allowlist: v4", nil, "203.0.113.1", true},
		{"no allowlist: v6", nil, "2001:db8::1", true},
		{"no allowlist: invalid addr", nil, "", true},
		{"v4 inside", v4, "10.1.2.3", true},
		{"v4 network address", v4, "10.0.0.0", true},
		{"v4 last address", v4, "10.255.255.255", true},
		{"v4 just outside", v4, "11.0.0.0", false},
		{"v4 single host", v4, "192.0.2.7", true},
		{"v4 next to single host", v4, "192.0.2.8", false},
		{"v4 against v6 list", v6, "10.1.2.3", false},
		{"v6 inside", v6, "2001:db8:1::5", true},
		{"v6 outside", v6, "2001:db9::1", false},
		{"v6 against v4 list", v4, "::1", false},
		{"mapped v4 inside", v4, "::ffff:10.1.2.3", true},
		{"mapped v4 outside", v4, "::ffff:11.1.2.3", false},
		{"mapped v4 against v6 list", v6, "::ffff:10.1.2.3", false},
		{"mapped v4 against mixed list", both, "::ffff:10.9.9.9", true},
		{"v6 against mixed list", both, "2001:db8::abcd", true},
		{"v4-compatible is not mapped", v4, "::10.1.2.3", false},
		{"zoned v6 inside", list("fe80::/10"), "fe80::1%eth0", true},
		{"zoned v6 outside", v6, "fe80::1%eth0", false},
		{"invalid addr with allowlist fails closed", v4, "", false},
		{"invalid addr with catch-all allowlist fails closed", list("0.0.0.0/0", "::/0"), "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var addr netip.Addr
			if tt.addr != "" {
				addr = netip.MustParseAddr(tt.addr)
			}
			k := &Key{IPAllowlist: tt.allow}
			if got := k.AllowsIP(addr); got != tt.want {
				t.Errorf("Key{IPAllowlist: %v}.AllowsIP(%v) = %v, want %v", tt.allow, addr, got, tt.want)
			}
		})
	}
}

func TestCheckState(t *testing.T) {
	exp := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	grace := exp.Add(time.Hour)
	tests := []struct {
		name string
		key  Key
		now  time.Time
		want error
	}{
		{"enabled, never expires", Key{Enabled: true}, exp, nil},
		{"disabled", Key{Enabled: false}, exp, ErrKeyDisabled},
		{"disabled beats expired", Key{Enabled: false, ExpiresAt: exp}, exp.Add(time.Hour), ErrKeyDisabled},
		{"before expiry", Key{Enabled: true, ExpiresAt: exp}, exp.Add(-time.Nanosecond), nil},
		{"a second before expiry", Key{Enabled: true, ExpiresAt: exp}, exp.Add(-time.Second), nil},
		{"at its exact second of expiry", Key{Enabled: true, ExpiresAt: exp}, exp, ErrKeyExpired},
		{"after expiry", Key{Enabled: true, ExpiresAt: exp}, exp.Add(time.Second), ErrKeyExpired},
		{"expiry in another zone", Key{Enabled: true, ExpiresAt: exp.In(time.FixedZone("X", 3600))}, exp, ErrKeyExpired},
		{"previous secret in grace", Key{Enabled: true, Previous: true, PreviousExpiresAt: grace}, grace.Add(-time.Nanosecond), nil},
		{"previous secret at end of grace", Key{Enabled: true, Previous: true, PreviousExpiresAt: grace}, grace, ErrKeyExpired},
		{"previous secret past grace", Key{Enabled: true, Previous: true, PreviousExpiresAt: grace}, grace.Add(time.Minute), ErrKeyExpired},
		{"previous secret without grace", Key{Enabled: true, Previous: true}, exp, ErrKeyExpired},
		{"current secret ignores previous grace", Key{Enabled: true, Previous: false, PreviousExpiresAt: exp}, grace, nil},
		{"previous secret in grace of an expired key", Key{Enabled: true, ExpiresAt: exp, Previous: true, PreviousExpiresAt: grace}, exp, ErrKeyExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.key.CheckState(tt.now); !errors.Is(got, tt.want) || (got == nil) != (tt.want == nil) {
				t.Errorf("CheckState(%v) = %v, want %v", tt.now, got, tt.want)
			}
		})
	}
}

func TestKeyLogValue(t *testing.T) {
	var nilKey *Key
	if got := nilKey.LogValue().String(); got != "<nil>" {
		t.Errorf("(*Key)(nil).LogValue() = %q", got)
	}
	k := &Key{ID: "key_01", Name: "billing", User: "alice", Scopes: []string{"a"}}
	if got := k.LogValue().String(); got != "key_01" {
		t.Errorf("LogValue() = %q, want the id only", got)
	}
}
