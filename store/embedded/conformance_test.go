package embedded_test

import (
	"path/filepath"
	"testing"

	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/embedded"
	"github.com/keygate/keygate/store/storetest"
)

// TestConformance holds the embedded store to the behaviour every Backend
// shares with store/postgres, each test on its own fresh directory.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Backend {
		e, err := embedded.Open(filepath.Join(t.TempDir(), "keygate-data"), embedded.Options{})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		t.Cleanup(func() {
			if err := e.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
		return e
	})
}
