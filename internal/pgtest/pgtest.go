// Package pgtest gives tests a throwaway PostgreSQL: a private cluster
// started with the machine's own initdb/pg_ctl (or the server named by
// KEYGATE_TEST_DATABASE_URL), and a fresh database per test cloned from a
// template that the package migrates once (the pgtestdb approach), so tests
// that need PostgreSQL run in parallel.
//
// Wire it into a package's TestMain:
//
//	func TestMain(m *testing.M) {
//		os.Exit(pgtest.Main(m, func(ctx context.Context, url string) error {
//			return postgres.MigrateURL(ctx, url) // prepares the template once
//		}))
//	}
//
// and in each test:
//
//	url := pgtest.NewDatabase(t) // a new database, already migrated
//
// Without PostgreSQL binaries a local run skips these tests with a loud
// message; with CI=true Main fails instead. Running as root, the cluster
// runs as the "postgres" system user, which the postgresql package creates
// (.ci/run installs it); pgtest never creates users.
//
// Main keeps the cluster in a package variable so NewDatabase can take just
// t; that is the one piece of global state, and it is test-only.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// EnvURL names the variable that points tests at an existing server instead
// of a private cluster. Its value is a postgres:// URL of a role allowed to
// CREATE DATABASE; pgtest creates (and drops) databases in that server.
const EnvURL = "KEYGATE_TEST_DATABASE_URL"

// ErrNoPostgres means no PostgreSQL server binaries were found.
var ErrNoPostgres = errors.New("pgtest: no PostgreSQL server binaries (initdb, pg_ctl, postgres) in /usr/lib/postgresql/*/bin or PATH")

// SetupFunc prepares the template database at url (typically: apply the
// schema migrations). It must close every connection it opened before it
// returns, since a database with sessions cannot be cloned.
type SetupFunc func(ctx context.Context, url string) error

// adminTimeout bounds each administrative statement (create, drop, clone).
const adminTimeout = 2 * time.Minute

// Cluster is a PostgreSQL server tests create databases in.
type Cluster struct {
	adminURL *url.URL
	admin    *pgxpool.Pool
	srv      *server // nil when the server is external
	setup    SetupFunc

	tmplOnce sync.Once
	tmpl     string
	tmplErr  error
}

var (
	current    *Cluster // set by Main
	skipReason string   // set by Main when PostgreSQL is unavailable
)

// Main starts a cluster (see Start), runs the package's tests and stops the
// cluster; its result is the exit code for os.Exit. When PostgreSQL is not
// installed it runs the tests anyway, and NewDatabase skips the ones that
// need it, unless CI=true: then it fails without running them.
func Main(m *testing.M, setup SetupFunc) int {
	c, err := Start(setup)
	if err != nil {
		if errors.Is(err, ErrNoPostgres) && os.Getenv("CI") != "true" {
			skipReason = err.Error()
			fmt.Fprintf(os.Stderr, "\n"+
				"************************************************************\n"+
				"* %v\n"+
				"* Tests that need PostgreSQL are SKIPPED. Install the\n"+
				"* postgresql package or set %s to run them.\n"+
				"* (With CI=true this is a failure.)\n"+
				"************************************************************\n\n",
				err, EnvURL)
			return m.Run()
		}
		fmt.Fprintf(os.Stderr, "%v\nFAIL: the tests that need PostgreSQL cannot run.\n", err)
		return 1
	}
	current = c
	code := m.Run()
	current = nil
	if err := c.Close(); err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// NewDatabase returns the URL of a new database cloned from the template
// prepared by Main's setup; it is dropped when t ends. It skips t when
// PostgreSQL is unavailable (see Main).
func NewDatabase(t testing.TB) string {
	t.Helper()
	return cluster(t).NewDatabase(t)
}

// NewEmptyDatabase is NewDatabase without the template's setup: a database
// as CREATE DATABASE makes it (for testing the setup itself).
func NewEmptyDatabase(t testing.TB) string {
	t.Helper()
	return cluster(t).NewEmptyDatabase(t)
}

// Current returns the cluster Main started, skipping t like NewDatabase.
func Current(t testing.TB) *Cluster {
	t.Helper()
	return cluster(t)
}

func cluster(t testing.TB) *Cluster {
	t.Helper()
	if current != nil {
		return current
	}
	if skipReason != "" {
		t.Skipf("SKIPPED: %s (install postgresql or set %s)", skipReason, EnvURL)
	}
	t.Fatal("pgtest: no cluster; call pgtest.Main from the package's TestMain")
	return nil
}

// Start provides a server: the one in $KEYGATE_TEST_DATABASE_URL when set,
// otherwise a new private cluster (errors.Is(err, ErrNoPostgres) when no
// binaries are installed). setup, which may be nil, prepares the template
// the first time a test asks for a database. Close releases everything.
func Start(setup SetupFunc) (*Cluster, error) {
	c := &Cluster{setup: setup}
	raw := os.Getenv(EnvURL)
	if raw == "" {
		srv, err := startServer()
		if err != nil {
			return nil, err
		}
		c.srv = srv
		raw = srv.url
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" {
		c.stopServer()
		return nil, fmt.Errorf("pgtest: %s must be a postgres://user@host:port/db URL", EnvURL)
	}
	c.adminURL = u
	cfg, err := pgxpool.ParseConfig(raw)
	if err != nil {
		c.stopServer()
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	cfg.MaxConns = 4
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	c.admin, err = pgxpool.NewWithConfig(ctx, cfg)
	if err == nil {
		err = c.admin.Ping(ctx)
	}
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("pgtest: cannot reach the test server: %w", err)
	}
	return c, nil
}

// URL returns the URL of the server's administrative database.
func (c *Cluster) URL() string { return c.adminURL.String() }

// DatabaseURL returns the URL of database name on this server.
func (c *Cluster) DatabaseURL(name string) string {
	u := *c.adminURL
	u.Path = "/" + name
	u.RawPath = ""
	return u.String()
}

// NewDatabase is the package-level NewDatabase on this cluster.
func (c *Cluster) NewDatabase(t testing.TB) string {
	t.Helper()
	c.tmplOnce.Do(func() { c.tmpl, c.tmplErr = c.makeTemplate() })
	if c.tmplErr != nil {
		t.Fatalf("pgtest: preparing the template database: %v", c.tmplErr)
	}
	return c.newDatabase(t, c.tmpl)
}

// NewEmptyDatabase is the package-level NewEmptyDatabase on this cluster.
func (c *Cluster) NewEmptyDatabase(t testing.TB) string {
	t.Helper()
	return c.newDatabase(t, "template0")
}

func (c *Cluster) newDatabase(t testing.TB, template string) string {
	t.Helper()
	name := uniqueName("keygate_test_")
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	if _, err := c.admin.Exec(ctx, "CREATE DATABASE "+ident(name)+" TEMPLATE "+ident(template)); err != nil {
		t.Fatalf("pgtest: creating a database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
		defer cancel()
		if err := c.drop(ctx, name); err != nil {
			t.Errorf("pgtest: dropping test database: %v", err)
		}
	})
	return c.DatabaseURL(name)
}

func (c *Cluster) makeTemplate() (string, error) {
	name := uniqueName("keygate_tmpl_")
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	if _, err := c.admin.Exec(ctx, "CREATE DATABASE "+ident(name)); err != nil {
		return "", err
	}
	c.tmpl = name // so Close drops it even if setup fails
	if c.setup != nil {
		if err := c.setup(ctx, c.DatabaseURL(name)); err != nil {
			return "", fmt.Errorf("setup: %w", err)
		}
	}
	// A clone needs a template without sessions: refuse new ones and end
	// any the setup left behind.
	if _, err := c.admin.Exec(ctx, "ALTER DATABASE "+ident(name)+" ALLOW_CONNECTIONS false"); err != nil {
		return "", err
	}
	if _, err := c.admin.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", name); err != nil {
		return "", err
	}
	return name, nil
}

func (c *Cluster) drop(ctx context.Context, name string) error {
	_, err := c.admin.Exec(ctx, "DROP DATABASE IF EXISTS "+ident(name)+" WITH (FORCE)")
	return err
}

// Close drops the template (on an external server) and stops the private
// cluster, removing its files.
func (c *Cluster) Close() error {
	var errs []error
	if c.admin != nil {
		if c.srv == nil && c.tmpl != "" {
			ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
			errs = append(errs, c.drop(ctx, c.tmpl))
			cancel()
		}
		c.admin.Close()
	}
	errs = append(errs, c.stopServer())
	return errors.Join(errs...)
}

func (c *Cluster) stopServer() error {
	if c.srv == nil {
		return nil
	}
	return c.srv.stop()
}

// uniqueName is unique across processes sharing one server.
func uniqueName(prefix string) string {
	var b [8]byte
	rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

func ident(s string) string { return pgx.Identifier{s}.Sanitize() }
