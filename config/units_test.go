package config

import (
	"math"
	"strings"
	"testing"
	"time"
)

var durationTests = []struct {
	in      string
	want    Duration
	wantErr bool
}{
	{in: "0", want: 0},
	{in: "-0", want: 0},
	{in: "30s", want: Duration(30 * time.Second)},
	{in: "5m", want: Duration(5 * time.Minute)},
	{in: "1h", want: Duration(time.Hour)},
	{in: "1.5h", want: Duration(90 * time.Minute)},
	{in: "250ms", want: Duration(250 * time.Millisecond)},
	{in: "3µs", want: Duration(3 * time.Microsecond)},
	{in: "30d", want: Duration(30 * 24 * time.Hour)},
	{in: "1d", want: Duration(24 * time.Hour)},
	{in: "1d12h", want: Duration(36 * time.Hour)},
	{in: "12h1d", want: Duration(36 * time.Hour)},
	{in: "1.5d", want: Duration(36 * time.Hour)},
	{in: ".5d", want: Duration(12 * time.Hour)},
	{in: "+2d", want: Duration(48 * time.Hour)},
	{in: "-1d2h", want: Duration(-26 * time.Hour)},
	{in: "1d1d", want: Duration(48 * time.Hour)},
	{in: "2h45m30.5s", want: Duration(2*time.Hour + 45*time.Minute + 30500*time.Millisecond)},
	{in: "106751d", want: Duration(106751 * 24 * time.Hour)},
	{in: "-2562047h47m16.854775808s", want: Duration(math.MinInt64)},
	{in: "", wantErr: true},
	{in: "d", wantErr: true},
	{in: "-", wantErr: true},
	{in: "5", wantErr: true},
	{in: "1w", wantErr: true},
	{in: "1D", wantErr: true},
	{in: "1 d", wantErr: true},
	{in: "1d-2h", wantErr: true},
	{in: "forever", wantErr: true},
	{in: "106752d", wantErr: true},
	{in: "106751d24h", wantErr: true},
	{in: "9999999999999999999d", wantErr: true},
}

func TestParseDuration(t *testing.T) {
	for _, tt := range durationTests {
		got, err := ParseDuration(tt.in)
		if tt.wantErr {
			if err == nil {
				t.Errorf("ParseDuration(%q) = %v, want an error", tt.in, got)
			} else if !strings.Contains(err.Error(), "invalid duration") {
				t.Errorf("ParseDuration(%q) error = %q, want it to say invalid duration", tt.in, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", tt.in, int64(got), err, int64(tt.want))
		}
	}
}

func TestDurationString(t *testing.T) {
	tests := []struct {
		in   Duration
		want string
	}{
		{0, "0s"},
		{Duration(30 * time.Second), "30s"},
		{Duration(24 * time.Hour), "1d"},
		{Duration(30 * 24 * time.Hour), "30d"},
		{Duration(-48 * time.Hour), "-2d"},
		{Duration(36 * time.Hour), "36h0m0s"},
	}
	for _, tt := range tests {
		if got := tt.in.String(); got != tt.want {
			t.Errorf("Duration(%d).String() = %q, want %q", int64(tt.in), got, tt.want)
		}
	}
}

var byteSizeTests = []struct {
	in      string
	want    ByteSize
	wantErr bool
}{
	{in: "0", want: 0},
	{in: "1048576", want: 1 << 20},
	{in: "10MiB", want: 10 << 20},
	{in: "16KiB", want: 16 << 10},
	{in: "16kib", want: 16 << 10},
	{in: "1MB", want: 1000000},
	{in: "1kb", want: 1000},
	{in: "2GB", want: 2e9},
	{in: "1TB", want: 1e12},
	{in: "3GiB", want: 3 << 30},
	{in: "1TiB", want: 1 << 40},
	{in: "512k", want: 512 << 10},
	{in: "10m", want: 10 << 20},
	{in: "1G", want: 1 << 30},
	{in: "100B", want: 100},
	{in: "16 KiB", want: 16 << 10},
	{in: " 7 ", want: 7},
	{in: "9223372036854775807", want: math.MaxInt64},
	{in: "", wantErr: true},
	{in: "MiB", wantErr: true},
	{in: "-1", wantErr: true},
	{in: "-1KiB", wantErr: true},
	{in: "1.5MiB", wantErr: true},
	{in: "10 MB B", wantErr: true},
	{in: "10XB", wantErr: true},
	{in: "9223372036854775808", wantErr: true},
	{in: "8388608TiB", wantErr: true},
	{in: "0x10", wantErr: true},
}

func TestParseByteSize(t *testing.T) {
	for _, tt := range byteSizeTests {
		got, err := ParseByteSize(tt.in)
		if tt.wantErr {
			if err == nil {
				t.Errorf("ParseByteSize(%q) = %d, want an error", tt.in, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}

func TestByteSizeString(t *testing.T) {
	tests := []struct {
		in   ByteSize
		want string
	}{
		{0, "0"},
		{10 * MiB, "10MiB"},
		{16 * KiB, "16KiB"},
		{1000000, "1000000"},
		{1536 * MiB, "1536MiB"},
		{2 * TiB, "2TiB"},
		{-5, "-5"},
	}
	for _, tt := range tests {
		if got := tt.in.String(); got != tt.want {
			t.Errorf("ByteSize(%d).String() = %q, want %q", int64(tt.in), got, tt.want)
		}
	}
}

// FuzzParseDuration checks that ParseDuration never panics, round-trips
// through String, and agrees exactly with time.ParseDuration (the
// reference) on inputs without a day unit.
func FuzzParseDuration(f *testing.F) {
	for _, tt := range durationTests {
		f.Add(tt.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseDuration(s)
		if !strings.Contains(s, "d") {
			want, werr := time.ParseDuration(s)
			if (err == nil) != (werr == nil) || (err == nil && got != Duration(want)) {
				t.Fatalf("ParseDuration(%q) = %v, %v; time.ParseDuration = %v, %v", s, int64(got), err, int64(want), werr)
			}
		}
		if err != nil {
			return
		}
		back, err := ParseDuration(got.String())
		if err != nil || back != got {
			t.Fatalf("ParseDuration(%q) = %d, String %q parses to %d, %v", s, int64(got), got.String(), int64(back), err)
		}
	})
}

// FuzzParseByteSize checks that ParseByteSize never panics, never returns
// a negative size, and round-trips through String.
func FuzzParseByteSize(f *testing.F) {
	for _, tt := range byteSizeTests {
		f.Add(tt.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseByteSize(s)
		if err != nil {
			return
		}
		if got < 0 {
			t.Fatalf("ParseByteSize(%q) = %d, negative", s, got)
		}
		back, err := ParseByteSize(got.String())
		if err != nil || back != got {
			t.Fatalf("ParseByteSize(%q) = %d, String %q parses to %d, %v", s, got, got.String(), back, err)
		}
	})
}
