package store

import (
	"testing"
	"time"

	"github.com/keygate/keygate/auth"
)

// BenchmarkUsageRecordOneKey is the proxy's per-request usage note for a
// single busy key, from every CPU at once (the worst case for sharing).
func BenchmarkUsageRecordOneKey(b *testing.B) {
	r := NewUsageRecorder(nil, UsageOptions{})
	k := &auth.Key{ID: "key_0123456789abcdefghij"}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r.Record(k, false, time.Now())
		}
	})
}
