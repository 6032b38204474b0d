package store

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

var durationTests = []struct {
	in   string
	want time.Duration
	ok   bool
}{
	{"30d", 30 * 24 * time.Hour, true},
	{"1d12h", 36 * time.Hour, true},
	{"1.5d", 36 * time.Hour, true},
	{"0d", 0, true},
	{"12h", 12 * time.Hour, true},
	{"90m", 90 * time.Minute, true},
	{"720h", 720 * time.Hour, true},
	{"d", 0, false},
	{"d12h", 0, false},
	{"1dd", 0, false},
	{"1d-2h", 0, false},
	{"1e3d", 0, false},
	{"infd", 0, false},
	{"NaNd", 0, false},
	{"30", 0, false},
	{"", 0, false},
	{"99999999999d", 0, false},
}

func TestParseDuration(t *testing.T) {
	for _, tt := range durationTests {
		got, err := ParseDuration(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func FuzzParseDuration(f *testing.F) {
	for _, tt := range durationTests {
		f.Add(tt.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDuration(s)
		if err != nil || d < 0 {
			return
		}
		back, err := ParseDuration(FormatDuration(d))
		if err != nil || back != d {
			t.Errorf("ParseDuration(FormatDuration(%v)) = %v, %v", d, back, err)
		}
	})
}

func TestCheckIPEntry(t *testing.T) {
	tests := []struct{ in, want string }{
		{"10.0.0.1", "10.0.0.1"},
		{"10.1.2.3/8", "10.0.0.0/8"},
		{"::ffff:10.0.0.1", "10.0.0.1"},
		{"::ffff:10.0.0.0/104", "10.0.0.0/8"},
		{"2001:DB8::1", "2001:db8::1"},
		{"2001:db8::/32", "2001:db8::/32"},
		{"0.0.0.0/0", "0.0.0.0/0"},
		{"fe80::1%eth0", ""},
		{"::ffff:10.0.0.0/64", ""},
		{"10.0.0.256", ""},
		{"10.0.0.0/33", ""},
		{"host.example", ""},
		{"", ""},
	}
	for _, tt := range tests {
		got, msg := checkIPEntry(tt.in)
		if got != tt.want || (msg == "") != (tt.want != "") {
			t.Errorf("checkIPEntry(%q) = %q, %q; want %q", tt.in, got, msg, tt.want)
		}
	}
}

// FuzzCreateInput feeds arbitrary bodies to the create validation: it must
// never panic, and whatever it accepts must satisfy the key invariants the
// rest of keygate relies on (and be accepted again, unchanged, when sent
// back as the key's own fields).
func FuzzCreateInput(f *testing.F) {
	for _, seed := range []string{
		`{"name": "n", "user": "u"}`,
		`{"name": "n", "user": "u", "tags": ["a", "a"], "scopes": ["x"], "ip_allowlist": ["10.0.0.1/8", "::ffff:1.2.3.4"]}`,
		`{"name": "n", "user": "u", "metadata": {"k": "v"}, "rate_limit": {"rps": 0.5}, "expires_in": "1d"}`,
		`{"name": "n", "user": "u", "expires_at": "2031-01-01T00:00:00Z", "enabled": false}`,
		`{"name": "n", "user": "u", "secret": "x"}`,
		`[]`, `{`, `null`,
	} {
		f.Add([]byte(seed))
	}
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	s := NewService(nil, Options{MaxLifetime: 400 * 24 * time.Hour, AcceptForeignKeys: true, Now: func() time.Time { return now }})
	f.Fuzz(func(t *testing.T, body []byte) {
		raw, err := decodeObject(body)
		if err != nil {
			return
		}
		k := &Key{Enabled: true, SessionsAllowed: true}
		if _, err := s.applyInput(k, raw, true, now); err != nil {
			if _, ok := err.(*FieldError); !ok {
				t.Fatalf("error %T %v, want *FieldError", err, err)
			}
			return
		}
		if k.Name == "" || k.User == "" || len(k.Name) > 4*maxIdentLen {
			t.Fatalf("accepted name %q user %q", k.Name, k.User)
		}
		for _, e := range k.IPAllowlist {
			if _, ok := parseAllowEntry(e); !ok {
				t.Fatalf("accepted allowlist entry %q does not parse", e)
			}
		}
		for _, sc := range k.Scopes {
			if sc == "" || strings.ContainsAny(sc, ", \n") {
				t.Fatalf("accepted scope %q", sc)
			}
		}
		if k.RateLimit != nil && k.RateLimit.RPS > 0 && k.RateLimit.Burst < 1 {
			t.Fatalf("accepted rate limit %+v", *k.RateLimit)
		}
		if k.ExpiresAt == nil || k.ExpiresAt.After(now.Add(s.opts.MaxLifetime)) || !k.ExpiresAt.After(now) {
			t.Fatalf("accepted expiry %v", k.ExpiresAt)
		}
		again, _ := json.Marshal(map[string]any{
			"name": k.Name, "description": k.Description, "user": k.User,
			"application": k.Application, "tenant": k.Tenant, "tags": k.Tags,
			"scopes": k.Scopes, "ip_allowlist": k.IPAllowlist, "client_name": k.ClientName,
			"notes": k.Notes, "metadata": k.Metadata, "enabled": k.Enabled,
			"sessions_allowed": k.SessionsAllowed, "expires_at": k.ExpiresAt, "rate_limit": k.RateLimit,
		})
		raw2, err := decodeObject(again)
		if err != nil {
			t.Fatal(err)
		}
		k2 := &Key{Enabled: true, SessionsAllowed: true}
		if _, err := s.applyInput(k2, raw2, true, now); err != nil {
			t.Fatalf("the accepted key's own fields are refused: %v\n%s", err, again)
		}
		if len(diffKeys(k, k2)) != 0 {
			t.Fatalf("re-applying the accepted fields changed %v", diffKeys(k, k2))
		}
	})
}
