package store_test

import (
	"testing"

	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/embedded"
	"github.com/keygate/keygate/store/storetest"
)

// openEmbedded is a fresh embedded store in a temporary directory, so the
// Service is tested against a real Backend.
func openEmbedded(t *testing.T) store.Backend {
	t.Helper()
	b, err := embedded.Open(t.TempDir(), embedded.Options{})
	if err != nil {
		t.Fatalf("embedded.Open: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// TestService runs the conformance suite over the embedded store; it is
// the Service's own test here, and the backends run it for themselves.
func TestService(t *testing.T) {
	storetest.Run(t, openEmbedded)
}
