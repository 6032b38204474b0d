// Package postgres is the PostgreSQL key store: a store.Backend over a
// pgxpool that several keygate replicas share. Writes run in READ COMMITTED
// transactions that record each key change in key_changes and announce it
// with NOTIFY on commit; Watch listens on a dedicated connection and
// resyncs from key_changes to cover lost notifications. The schema is
// applied by Migrate from versioned SQL files embedded in the binary.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/keygate/keygate/store"
)

var _ store.Backend = (*Postgres)(nil)

// Options configure a Postgres store. Zero values are documented per field.
type Options struct {
	// MaxConns caps the pool's connections (store.max_conns). Zero keeps
	// the URL's pool_max_conns, or pgxpool's default.
	MaxConns int
	// QueryTimeout bounds each query, including the wait for a pooled
	// connection. Zero means 2s.
	QueryTimeout time.Duration
	// ResyncInterval is how often Watch rereads recent changes to cover
	// lost notifications. Zero means 5s.
	ResyncInterval time.Duration
	// Logger receives Watch's connection problems. Nil discards them.
	Logger *slog.Logger
}

// Defaults of Options.
const (
	DefaultQueryTimeout   = 2 * time.Second
	DefaultResyncInterval = 5 * time.Second
)

// minConnectTimeout is the least time a new connection is given, unless
// the URL sets connect_timeout.
const minConnectTimeout = 5 * time.Second

// Postgres is a store.Backend on PostgreSQL. It is safe for concurrent use.
type Postgres struct {
	pool    *pgxpool.Pool
	timeout time.Duration
	resync  time.Duration
	log     *slog.Logger
	// scanPage is ScanKeys' page size (defaultScanPage; tests shrink it).
	scanPage int
	// onListen, when set, is called each time Watch starts listening.
	onListen func()
	// onResync, when set, is called after each successful resync with
	// the start of the window it read (key_changes rows after from).
	onResync func(from time.Time)

	// closed ends every Watch when Close is called.
	closed context.Context
	close  context.CancelFunc

	// synced is closed after a Watch's first successful resync (see Synced).
	synced     chan struct{}
	syncedOnce sync.Once
}

// Synced returns a channel closed once a Watch is listening and has
// completed its first resync. From then on every committed change reaches
// the watcher (by notification, or by the next resync), so a cache warmed
// after Synced, from an epoch taken after it, cannot miss a change nor lose
// its warm entries to the first resync's re-reports of earlier changes.
func (p *Postgres) Synced() <-chan struct{} { return p.synced }

// Open returns a store for the database at url. Like pgxpool.New it does
// not connect: a server that is down now makes queries fail with
// store.ErrUnavailable until it is back, not Open.
func Open(ctx context.Context, url string, o Options) (*Postgres, error) {
	return open(ctx, url, o, nil)
}

// open is Open with a hook to adjust the pool's configuration (tests
// install tracers).
func open(ctx context.Context, url string, o Options, configure func(*pgxpool.Config)) (*Postgres, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// The parse error would quote the URL, password and all.
		return nil, errors.New("postgres: the store URL is not a valid PostgreSQL connection string")
	}
	p := &Postgres{timeout: o.QueryTimeout, resync: o.ResyncInterval, log: o.Logger, scanPage: defaultScanPage, synced: make(chan struct{})}
	if p.timeout <= 0 {
		p.timeout = DefaultQueryTimeout
	}
	if p.resync <= 0 {
		p.resync = DefaultResyncInterval
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	p.log = p.log.With("component", "store")
	if o.MaxConns > 0 {
		cfg.MaxConns = int32(o.MaxConns)
	}
	// A query waits for a connection only as long as its own timeout,
	// but the connection being made goes on for the next query; give it
	// longer, so a slow server still gets connections, yet not for ever.
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = max(p.timeout, minConnectTimeout)
	}
	// Server-side backstops for when our own timeouts cannot act (the
	// process froze or the network failed mid-statement): the server ends a
	// statement that runs a second past the query timeout, and a session
	// idle inside a transaction (holding key locks) for a minute. A URL
	// that sets either keeps its value.
	params := cfg.ConnConfig.RuntimeParams
	for name, value := range map[string]string{
		"application_name":                    "keygate",
		"statement_timeout":                   strconv.FormatInt((p.timeout + time.Second).Milliseconds(), 10),
		"idle_in_transaction_session_timeout": "60000",
	} {
		if _, ok := params[name]; !ok {
			params[name] = value
		}
	}
	if configure != nil {
		configure(cfg)
	}
	if p.pool, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	p.closed, p.close = context.WithCancel(context.Background())
	return p, nil
}

// MigrateURL opens the database at url, applies every pending migration
// and closes it again: `keygate migrate`, and pgtest's template setup.
func MigrateURL(ctx context.Context, url string) error {
	p, err := Open(ctx, url, Options{MaxConns: 2})
	if err != nil {
		return err
	}
	defer p.Close()
	return p.Migrate(ctx)
}

// Close ends every Watch and closes the pool, waiting for connections in
// use to be released.
func (p *Postgres) Close() error {
	p.close()
	p.pool.Close()
	return nil
}

// Ping reports whether the server answers.
func (p *Postgres) Ping(ctx context.Context) error {
	qctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	return p.wrap(ctx, p.pool.Ping(qctx))
}

// SQLSTATEs and constraint names errors are classified by.
const (
	uniqueViolation = "23505"
	deadlock        = "40P01"

	nameConstraint   = "keys_application_name_key"
	digestConstraint = "key_secrets_digest_key"
	keyIDConstraint  = "keys_pkey"
)

// errIDTaken is an InsertKey with an id already stored: a bug of the
// caller, since ids are generated unique.
var errIDTaken = errors.New("postgres: a key with this id already exists")

// wrap turns a pgx error into the store's: no rows is ErrNotFound, unique
// violations are ErrNameTaken or ErrSecretTaken, and anything that is not
// the server's answer to a query (a refused connection, a timeout, a
// server shutting down) is ErrUnavailable. Error text carries no values
// from the data. ctx is the caller's, to tell its cancellation from our
// own timeouts.
func (p *Postgres) wrap(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return store.ErrNotFound
	}
	for _, ours := range []error{store.ErrNotFound, store.ErrNameTaken, store.ErrSecretTaken, store.ErrUnavailable, errIDTaken, errReadOnly} {
		if errors.Is(err, ours) {
			return err // classified already
		}
	}
	// A server that refuses the connection answers with a PgError too
	// (55000 database not accepting connections, 3D000 no such database,
	// 28P01 bad password): no query was answered, so the store is
	// unavailable, whatever the SQLSTATE.
	var connErr *pgconn.ConnectError
	if errors.As(err, &connErr) {
		return fmt.Errorf("%w: %v", store.ErrUnavailable, err)
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		if ctx.Err() == context.Canceled {
			return fmt.Errorf("%w: %w", store.ErrUnavailable, context.Canceled)
		}
		return fmt.Errorf("%w: %v", store.ErrUnavailable, err)
	}
	switch class := pgErr.Code[:2]; {
	case pgErr.Code == uniqueViolation && pgErr.ConstraintName == nameConstraint:
		return store.ErrNameTaken
	case pgErr.Code == uniqueViolation && pgErr.ConstraintName == digestConstraint:
		return store.ErrSecretTaken
	case pgErr.Code == uniqueViolation && pgErr.ConstraintName == keyIDConstraint:
		return errIDTaken
	case class == "08", // connection exception
		class == "53",         // insufficient resources (too many connections, disk full)
		class == "57",         // operator intervention: shutdown, cancel after our timeout
		class == "58",         // system error
		pgErr.Code == "25006": // read-only transaction: a standby after failover
		return fmt.Errorf("%w: %s (SQLSTATE %s)", store.ErrUnavailable, pgErr.Message, pgErr.Code)
	case class == "22": // data exception: messages quote the offending value
		return fmt.Errorf("postgres: invalid data (SQLSTATE %s)", pgErr.Code)
	default:
		return fmt.Errorf("postgres: %s (SQLSTATE %s)", pgErr.Message, pgErr.Code)
	}
}

func isDeadlock(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == deadlock
}
