package pgtest_test

import (
	"context"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/keygate/keygate/internal/pgtest"
)

func TestMain(m *testing.M) {
	os.Exit(pgtest.Main(m, func(ctx context.Context, url string) error {
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, "CREATE TABLE marker (v text); INSERT INTO marker VALUES ('template')")
		return err
	}))
}

func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(ctx) })
	return conn
}

// Each database starts as a copy of the template and changes to one are
// invisible to the others.
func TestNewDatabaseClonesTemplate(t *testing.T) {
	for _, name := range []string{"a", "b", "c"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			conn := connect(t, pgtest.NewDatabase(t))
			var n int
			if err := conn.QueryRow(ctx, "SELECT count(*) FROM marker WHERE v = 'template'").Scan(&n); err != nil || n != 1 {
				t.Fatalf("template row: n=%d err=%v, want 1 row", n, err)
			}
			if _, err := conn.Exec(ctx, "INSERT INTO marker VALUES ($1)", name); err != nil {
				t.Fatal(err)
			}
			if err := conn.QueryRow(ctx, "SELECT count(*) FROM marker").Scan(&n); err != nil || n != 2 {
				t.Fatalf("rows = %d (err %v), want 2: databases are not isolated", n, err)
			}
		})
	}
}

func TestNewEmptyDatabaseSkipsSetup(t *testing.T) {
	ctx := context.Background()
	conn := connect(t, pgtest.NewEmptyDatabase(t))
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT to_regclass('marker') IS NOT NULL").Scan(&exists); err != nil {
		t.Fatal(err)
	}
	if exists {
		t.Fatal("empty database has the template's table")
	}
}

// A database is dropped when its test ends.
func TestDatabaseDroppedAfterTest(t *testing.T) {
	var name string
	t.Run("inner", func(t *testing.T) {
		conn := connect(t, pgtest.NewDatabase(t))
		if err := conn.QueryRow(context.Background(), "SELECT current_database()").Scan(&name); err != nil {
			t.Fatal(err)
		}
	})
	conn := connect(t, pgtest.Current(t).URL())
	var n int
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM pg_database WHERE datname = $1", name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("database %s still exists after its test", name)
	}
}
