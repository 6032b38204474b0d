//go:build !race

package store

import (
	"testing"
	"time"

	"github.com/keygate/keygate/auth"
)

// TestUsageRecordAllocs: noting a key again, past the filter's granularity,
// allocates nothing once the key has its filter slot and map entry.
func TestUsageRecordAllocs(t *testing.T) {
	r := NewUsageRecorder(nil, UsageOptions{})
	k := &auth.Key{ID: "key_0123456789abcdefghij"}
	now := time.Now()
	r.Record(k, false, now)
	if n := testing.AllocsPerRun(100, func() {
		now = now.Add(2 * time.Millisecond)
		r.Record(k, false, now)
	}); n != 0 {
		t.Errorf("Record allocates %v times per call", n)
	}
}
