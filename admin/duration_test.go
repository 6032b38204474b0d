package admin

import (
	"testing"
	"time"
)

var durationTests = []struct {
	in   string
	want time.Duration
	ok   bool
}{
	{"24h", 24 * time.Hour, true},
	{"30d", 30 * 24 * time.Hour, true},
	{"1d12h", 36 * time.Hour, true},
	{"1.5d", 36 * time.Hour, true},
	{"0", 0, true},
	{"0d", 0, true},
	{"90m", 90 * time.Minute, true},
	{" 2d ", 48 * time.Hour, true},
	{"", 0, false},
	{"d", 0, false},
	{"-1h", 0, false},
	{"-1d", 0, false},
	{"1d-1h", 0, false},
	{"1dd", 0, false},
	{"soon", 0, false},
	{"1e400d", 0, false},
	{"200000d", 0, false},
	{"NaNd", 0, false},
	{"3", 0, false},
}

func TestParseDuration(t *testing.T) {
	for _, tt := range durationTests {
		got, err := ParseDuration(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func FuzzParseDuration(f *testing.F) {
	for _, tt := range durationTests {
		f.Add(tt.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDuration(s)
		if err == nil && d < 0 {
			t.Errorf("ParseDuration(%q) = %v, negative", s, d)
		}
		// Without days it agrees with time.ParseDuration on what it accepts
		// (except any leading sign: "-0" is refused as negative).
		if std, serr := time.ParseDuration(s); serr == nil && std >= 0 && err != nil && s == trimmed(s) && s[0] != '+' && s[0] != '-' {
			t.Errorf("ParseDuration(%q) refused what time.ParseDuration accepts: %v", s, err)
		} else if serr == nil && err == nil && std != d {
			t.Errorf("ParseDuration(%q) = %v, time.ParseDuration = %v", s, d, std)
		}
	})
}

func trimmed(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t' || s[0] == '\n' || s[0] == '\r' || s[0] == '\v' || s[0] == '\f') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t' || s[len(s)-1] == '\n' || s[len(s)-1] == '\r' || s[len(s)-1] == '\v' || s[len(s)-1] == '\f') {
		s = s[:len(s)-1]
	}
	return s
}
