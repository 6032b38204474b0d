package main

import (
	"testing"
	"time"
)

// TestNoLimitIfZero: the config's "0 means no limit" reaches the proxy as
// its own spelling of it (negative), not as "use the default".
func TestNoLimitIfZero(t *testing.T) {
	for in, want := range map[time.Duration]time.Duration{0: -1, time.Second: time.Second, 30 * time.Second: 30 * time.Second} {
		if got := noLimitIfZero(in); got != want {
			t.Errorf("noLimitIfZero(%v) = %v, want %v", in, got, want)
		}
	}
}
