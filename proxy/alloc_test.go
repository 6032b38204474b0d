//go:build !race

package proxy

import "testing"

// TestAuthDecisionAllocs pins STYLE §2.7: deciding a request with a cached
// key allocates nothing.
func TestAuthDecisionAllocs(t *testing.T) {
	a := newAuthFixture(t)
	var err error
	n := testing.AllocsPerRun(100, func() { err = a.once() })
	if err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("auth decision allocates %v times per request, want 0", n)
	}
}
