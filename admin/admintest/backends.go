package admintest

import (
	"context"
	"testing"

	"github.com/keygate/keygate/internal/pgtest"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/postgres"
)

// Backends are the backends end-to-end tests run on: embedded always,
// PostgreSQL through internal/pgtest (skipped with a loud message when no
// PostgreSQL is installed, failed with CI=true).
func Backends() []Backend { return []Backend{Embedded(), Postgres()} }

// Postgres is a fresh, migrated database of pgtest's cluster.
func Postgres() Backend {
	return Backend{Name: "postgres", Open: func(t testing.TB) store.Backend {
		url := pgtest.NewDatabase(t)
		p, err := postgres.Open(context.Background(), url, postgres.Options{})
		if err != nil {
			t.Fatalf("postgres.Open: %v", err)
		}
		t.Cleanup(func() { p.Close() })
		return p
	}}
}

// Main runs a test package's tests with pgtest's cluster; use it from
// TestMain: os.Exit(admintest.Main(m)).
func Main(m *testing.M) int { return pgtest.Main(m, postgres.MigrateURL) }
