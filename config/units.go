package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

const (
	second = time.Second
	minute = time.Minute
	hour   = time.Hour
	day    = 24 * time.Hour
)

// Duration is a time.Duration written in Go syntax plus "d" for days of 24
// hours: "30s", "5m", "30d", "1d12h", "1.5d". In YAML it is a scalar; a
// bare 0 is zero.
type Duration time.Duration

// Std returns d as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// ParseDuration parses Go duration syntax extended with a "d" unit (24h).
// Anything time.ParseDuration accepts it accepts with the same value.
func ParseDuration(s string) (Duration, error) {
	bad := func() (Duration, error) {
		if s != "" && strings.Trim(s, "0123456789.") == "" {
			return 0, fmt.Errorf("invalid duration %q: missing unit (e.g. %q)", s, s+"s")
		}
		return 0, fmt.Errorf("invalid duration %q", s)
	}
	// Split off the sign, then walk number+unit segments. Day segments are
	// computed here; everything else is handed, with the sign, to
	// time.ParseDuration so its syntax and range are exactly Go's.
	rest, sign := s, ""
	if rest != "" && (rest[0] == '-' || rest[0] == '+') {
		sign, rest = rest[:1], rest[1:]
	}
	var days int64
	var haveDays bool
	var other strings.Builder
	for rest != "" {
		i := 0
		for i < len(rest) && (rest[i] == '.' || '0' <= rest[i] && rest[i] <= '9') {
			i++
		}
		j := i
		for j < len(rest) && rest[j] != '.' && !('0' <= rest[j] && rest[j] <= '9') {
			j++
		}
		num, unit := rest[:i], rest[i:j]
		rest = rest[j:]
		if unit != "d" {
			other.WriteString(num)
			other.WriteString(unit)
			continue
		}
		// n days is n*24 hours: let Go parse n hours, then scale.
		h, err := time.ParseDuration(sign + num + "h")
		if err != nil || h > math.MaxInt64/24 || h < math.MinInt64/24 {
			return bad()
		}
		d := int64(h) * 24
		if sum, ok := addInt64(days, d); ok {
			days = sum
		} else {
			return bad()
		}
		haveDays = true
	}
	var o time.Duration
	if other.Len() > 0 || !haveDays {
		var err error
		if o, err = time.ParseDuration(sign + other.String()); err != nil {
			return bad()
		}
	}
	total, ok := addInt64(days, int64(o))
	if !ok {
		return bad()
	}
	return Duration(total), nil
}

func addInt64(a, b int64) (int64, bool) {
	s := a + b
	if (b > 0 && s < a) || (b < 0 && s > a) {
		return 0, false
	}
	return s, true
}

// String formats d as whole days ("30d") when it is a non-zero multiple of
// 24h, otherwise like time.Duration. ParseDuration reads it back exactly.
func (d Duration) String() string {
	if d != 0 && time.Duration(d)%day == 0 {
		return strconv.FormatInt(int64(time.Duration(d)/day), 10) + "d"
	}
	return time.Duration(d).String()
}

// MarshalText implements encoding.TextMarshaler (also used for YAML).
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler (also used for YAML).
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// ByteSize is a size in bytes. It is written as a plain integer ("1048576")
// or an integer with a unit: B; KB, MB, GB, TB (powers of 1000); KiB, MiB,
// GiB, TiB and the nginx-style K, M, G, T (powers of 1024). Units are case
// insensitive and may follow a space: "10MiB", "16 KiB", "1MB", "512k".
type ByteSize int64

// Binary byte units.
const (
	KiB ByteSize = 1 << (10 * (iota + 1))
	MiB
	GiB
	TiB
)

var byteUnits = map[string]ByteSize{
	"": 1, "b": 1,
	"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
	"k": KiB, "m": MiB, "g": GiB, "t": TiB,
	"kib": KiB, "mib": MiB, "gib": GiB, "tib": TiB,
}

// ParseByteSize parses a ByteSize. Negative and fractional sizes are
// refused.
func ParseByteSize(s string) (ByteSize, error) {
	bad := func() (ByteSize, error) { return 0, fmt.Errorf("invalid size %q", s) }
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && '0' <= t[i] && t[i] <= '9' {
		i++
	}
	if i == 0 {
		return bad()
	}
	n, err := strconv.ParseInt(t[:i], 10, 64)
	if err != nil {
		return bad()
	}
	mult, ok := byteUnits[strings.ToLower(strings.TrimLeft(t[i:], " "))]
	if !ok {
		return bad()
	}
	if n > math.MaxInt64/int64(mult) {
		return bad()
	}
	return ByteSize(n) * mult, nil
}

// String formats b with the largest binary unit that divides it exactly
// ("10MiB", "16KiB"), otherwise as a plain number of bytes. ParseByteSize
// reads it back exactly.
func (b ByteSize) String() string {
	if b > 0 {
		for _, u := range []struct {
			n    ByteSize
			name string
		}{{TiB, "TiB"}, {GiB, "GiB"}, {MiB, "MiB"}, {KiB, "KiB"}} {
			if b%u.n == 0 {
				return strconv.FormatInt(int64(b/u.n), 10) + u.name
			}
		}
	}
	return strconv.FormatInt(int64(b), 10)
}

// MarshalText implements encoding.TextMarshaler (also used for YAML).
func (b ByteSize) MarshalText() ([]byte, error) { return []byte(b.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler (also used for YAML).
func (b *ByteSize) UnmarshalText(t []byte) error {
	v, err := ParseByteSize(string(t))
	if err != nil {
		return err
	}
	*b = v
	return nil
}
