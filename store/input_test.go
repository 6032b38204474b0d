package store

import (
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
