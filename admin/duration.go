package admin

import (
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/keygate/keygate/store"
)

// ParseDuration parses a duration of keygate's API syntax (Go syntax,
// optionally starting with a whole or fractional number of days: "30d",
// "1d12h", "36h") with store.ParseDuration, and refuses negative ones:
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
	d, err := store.ParseDuration(strings.TrimPrefix(s, "+"))
	if err != nil {
		return 0, errors.New("invalid duration " + strconv.Quote(in) + " (use Go syntax plus d for days, e.g. 30d or 36h)")
	}
	if d < 0 {
		return 0, errors.New("duration " + strconv.Quote(in) + " is negative")
	}
	return d, nil
}
