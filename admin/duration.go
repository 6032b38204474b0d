package admin

import (
	"errors"
	"math"
	"strconv"
	"strings"
	"time"
)

// ParseDuration parses a Go duration ("36h", "90m") that may start with a
// whole or fractional number of days ("30d", "1d12h", "1.5d"), the form
// keygate's configuration and API use. Negative durations are refused:
// every caller means "how long".
func ParseDuration(s string) (time.Duration, error) {
	in := s
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New("empty duration")
	}
	if s[0] == '-' {
		return 0, errors.New("duration " + strconv.Quote(in) + " is negative")
	}
	s = strings.TrimPrefix(s, "+")
	var d time.Duration
	if i := strings.IndexByte(s, 'd'); i >= 0 {
		days, err := strconv.ParseFloat(s[:i], 64)
		if err != nil || i == 0 || s[0] == '+' || math.IsNaN(days) || math.IsInf(days, 0) {
			return 0, errors.New("invalid duration " + strconv.Quote(in))
		}
		hours := days * 24
		if hours > float64(math.MaxInt64/int64(time.Hour)) {
			return 0, errors.New("duration " + strconv.Quote(in) + " is too long")
		}
		d = time.Duration(hours * float64(time.Hour))
		s = s[i+1:]
		if s == "" {
			return d, nil
		}
		if s[0] == '-' || s[0] == '+' {
			return 0, errors.New("invalid duration " + strconv.Quote(in))
		}
	}
	rest, err := time.ParseDuration(s)
	if err != nil {
		return 0, errors.New("invalid duration " + strconv.Quote(in) + " (use Go syntax plus d for days, e.g. 30d or 36h)")
	}
	if rest < 0 {
		return 0, errors.New("duration " + strconv.Quote(in) + " is negative")
	}
	if d > math.MaxInt64-rest {
		return 0, errors.New("duration " + strconv.Quote(in) + " is too long")
	}
	return d + rest, nil
}
