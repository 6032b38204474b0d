package postgres

import (
	"testing"

	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/storetest"
)

// TestConformance holds the PostgreSQL store to the behaviour every
// Backend shares, each subtest on a database of its own.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Backend {
		p, _ := newStore(t, Options{})
		return p
	})
}
