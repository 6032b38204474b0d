package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// migrations holds the schema, one file per version: NNNN_what.sql. A
// released file is never edited; a change is a new file.
//
//go:embed migrations/*.sql
var migrations embed.FS

// migrateLockID is the advisory lock replicas take while migrating, so two
// starting at once apply each version once ("keygate" in ASCII).
const migrateLockID int64 = 0x6b657967617465

type migration struct {
	version int
	name    string
	sql     string
}

// loadMigrations returns the embedded migrations in version order.
func loadMigrations() ([]migration, error) {
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	var ms []migration
	seen := map[int]string{}
	for _, path := range names {
		name := strings.TrimPrefix(path, "migrations/")
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("postgres: migration %s: name must be NNNN_description.sql", name)
		}
		if other, dup := seen[v]; dup {
			return nil, fmt.Errorf("postgres: migrations %s and %s have the same version", other, name)
		}
		seen[v] = name
		b, err := migrations.ReadFile(path)
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: name, sql: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	return ms, nil
}

// Migrate applies every migration the database lacks, each in its own
// transaction together with its schema_migrations row. It holds a session
// advisory lock throughout, so replicas migrating at once wait for each
// other and each version is applied once. Only ctx bounds it: a migration
// on a large table may legitimately take long.
func (p *Postgres) Migrate(ctx context.Context) error {
	ms, err := loadMigrations()
	if err != nil {
		return err
	}
	conn, err := p.pool.Acquire(ctx)
	if err != nil {
		return p.wrap(ctx, err)
	}
	defer conn.Release()
	// Waiting for another replica's migration, and migrating, may take
	// longer than the statement_timeout set for queries.
	if _, err := conn.Exec(ctx, "SET statement_timeout = 0"); err != nil {
		return p.wrap(ctx, err)
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.timeout)
		defer cancel()
		_, err := conn.Exec(uctx, "SELECT pg_advisory_unlock_all()")
		if err == nil {
			_, err = conn.Exec(uctx, "RESET statement_timeout")
		}
		if err != nil {
			// The session ends with the connection, and the lock with it.
			conn.Conn().Close(uctx)
		}
	}()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", migrateLockID); err != nil {
		return p.wrap(ctx, err)
	}

	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    integer PRIMARY KEY,
		name       text NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return p.wrap(ctx, err)
	}
	rows, err := conn.Query(ctx, "SELECT version FROM schema_migrations")
	if err != nil {
		return p.wrap(ctx, err)
	}
	applied, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		return p.wrap(ctx, err)
	}
	done := map[int]bool{}
	for _, v := range applied {
		done[v] = true
	}
	for _, m := range ms {
		if done[m.version] {
			continue
		}
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", m.version, m.name)
			return err
		})
		if err != nil {
			return fmt.Errorf("postgres: migration %s: %w", m.name, p.wrap(ctx, err))
		}
		p.log.Info("applied migration", "migration", m.name)
	}
	return nil
}

// ErrSchemaOutdated means the database lacks migrations this binary needs;
// `keygate migrate` (or serve with store.auto_migrate) applies them.
var ErrSchemaOutdated = errors.New("postgres: the database schema is out of date; run keygate migrate")

// CheckSchema reports whether every migration has been applied:
// ErrSchemaOutdated (wrapped, naming the missing migrations) when not,
// store.ErrUnavailable (wrapped) when the server cannot answer. It is for
// starting without auto_migrate.
func (p *Postgres) CheckSchema(ctx context.Context) error {
	ms, err := loadMigrations()
	if err != nil {
		return err
	}
	qctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	var exists bool
	if err := p.pool.QueryRow(qctx, "SELECT to_regclass('schema_migrations') IS NOT NULL").Scan(&exists); err != nil {
		return p.wrap(ctx, err)
	}
	var applied []int
	if exists {
		if err := p.pool.QueryRow(qctx, "SELECT ARRAY(SELECT version FROM schema_migrations)").Scan(&applied); err != nil {
			return p.wrap(ctx, err)
		}
	}
	done := map[int]bool{}
	for _, v := range applied {
		done[v] = true
	}
	var missing []string
	for _, m := range ms {
		if !done[m.version] {
			missing = append(missing, m.name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w (missing %s)", ErrSchemaOutdated, strings.Join(missing, ", "))
	}
	return nil
}
