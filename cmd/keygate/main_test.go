package main

import (
	"os"
	"testing"

	"github.com/keygate/keygate/internal/pgtest"
	"github.com/keygate/keygate/store/postgres"
)

// TestMain gives the package's tests a throwaway PostgreSQL (pgtest): the
// replica and store-down tests run serve against databases of it. Tests
// that need PostgreSQL skip loudly without it, unless CI=true. This is the
// package's only TestMain; add setup here rather than a second one.
func TestMain(m *testing.M) {
	os.Exit(pgtest.Main(m, postgres.MigrateURL))
}
