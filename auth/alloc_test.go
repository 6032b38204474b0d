//go:build !race

package auth

import "testing"

// The race detector adds allocations of its own, so these run without it
// (as fasthttp's allocation_test.go does).

func TestParseAndHashAllocs(t *testing.T) {
	s := []byte(secretVectors[0])
	var sink [32]byte
	allocs := testing.AllocsPerRun(100, func() {
		if ValidSecret("kg", s) {
			sink = Digest(s)
		}
	})
	_ = sink
	if allocs != 0 {
		t.Errorf("ValidSecret+Digest: %v allocs per run, want 0", allocs)
	}
}
