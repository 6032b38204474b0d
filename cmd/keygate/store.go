package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/embedded"
	"github.com/keygate/keygate/store/postgres"
)

// ConfigFlag is the --config flag shared by the commands that read the
// configuration file.
type ConfigFlag struct {
	Config string `name:"config" short:"c" type:"path" env:"KEYGATE_CONFIG" help:"YAML configuration file (default: built-in defaults plus KEYGATE_* variables)."`
}

func (f ConfigFlag) load(g *Globals) (*config.Config, error) {
	cfg, err := config.Load(f.Config, g.Getenv)
	if err != nil {
		return nil, configError(err)
	}
	return cfg, nil
}

// configError lists each configuration problem on its own line.
func configError(err error) error {
	msg := "invalid configuration:"
	for _, p := range config.Problems(err) {
		msg += "\n  " + p.Error()
	}
	return errors.New(msg)
}

// openBackend opens the configured store. migrate applies migrations
// (serve with auto_migrate, keygate migrate); otherwise an out-of-date
// schema is an error.
func openBackend(ctx context.Context, cfg *config.Config, log *slog.Logger, migrate bool) (store.Backend, error) {
	switch cfg.Store.Driver {
	case config.DriverPostgres:
		pg, err := postgres.Open(ctx, cfg.Store.URL, postgres.Options{
			MaxConns:     cfg.Store.MaxConns,
			QueryTimeout: cfg.Store.QueryTimeout.Std(),
			// CONTRACT §5: a change reaches every replica within 1 s even
			// when its notification is lost, so the change log is reread
			// twice a second (one indexed query per replica).
			ResyncInterval: 500 * time.Millisecond,
			Logger:         log,
		})
		if err != nil {
			return nil, err
		}
		mctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		if migrate {
			err = pg.Migrate(mctx)
		} else {
			err = pg.CheckSchema(mctx) // refuse an out-of-date database up front
		}
		if err != nil {
			pg.Close()
			return nil, fmt.Errorf("postgres schema: %w", err)
		}
		return pg, nil
	default:
		return embedded.Open(cfg.Store.Path, embedded.Options{Logger: log, SkipMigrate: !migrate})
	}
}

// serviceOptions derives the key service's options from the configuration.
func serviceOptions(cfg *config.Config) (store.Options, error) {
	o := store.Options{
		KeyPrefix:         cfg.Auth.KeyPrefix,
		AcceptForeignKeys: cfg.Auth.AcceptForeignKeys,
		DefaultLifetime:   cfg.Keys.DefaultLifetime.Std(),
		MaxLifetime:       cfg.Keys.MaxLifetime.Std(),
		MaxPerApplication: cfg.Keys.MaxPerApplication,
	}
	if cfg.Keys.Retrievable {
		s, err := store.NewSealer(cfg.Keys.Keystore)
		if err != nil {
			return o, fmt.Errorf("keys.keystore: %w", err)
		}
		o.Sealer = s
	}
	return o, nil
}

// BootstrapCmd creates the first admin key directly in the store.
type BootstrapCmd struct {
	ConfigFlag
	Force bool `help:"Create another admin key even if one exists."`
}

// Run creates the admin key and prints its secret alone on stdout (details
// on stderr), so scripts can capture it. KEYGATE_BOOTSTRAP_ADMIN_KEY, when
// set, is imported instead of generating a secret.
func (c *BootstrapCmd) Run(g *Globals) error {
	cfg, err := c.load(g)
	if err != nil {
		return err
	}
	b, err := openBackend(g.Ctx, cfg, discardLogger(), cfg.Store.AutoMigrate)
	if err != nil {
		return err
	}
	defer b.Close()
	opts, err := serviceOptions(cfg)
	if err != nil {
		return err
	}
	svc := store.NewService(b, opts)
	created, err := svc.Bootstrap(g.Ctx, g.Getenv("KEYGATE_BOOTSTRAP_ADMIN_KEY"), c.Force)
	if errors.Is(err, store.ErrAdminExists) {
		return errors.New("an admin key already exists; use --force to create another")
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(g.Stderr, "created admin key %s (%s); its secret is shown once:\n", created.Key.ID, created.Key.Hint)
	_, err = fmt.Fprintln(g.Stdout, created.Secret)
	return err
}

// MigrateCmd applies schema migrations.
type MigrateCmd struct{ ConfigFlag }

// Run migrates the configured store.
func (c *MigrateCmd) Run(g *Globals) error {
	cfg, err := c.load(g)
	if err != nil {
		return err
	}
	b, err := openBackend(g.Ctx, cfg, discardLogger(), true)
	if err != nil {
		return err
	}
	defer b.Close()
	_, err = fmt.Fprintf(g.Stdout, "%s store: migrations applied, schema is current\n", cfg.Store.Driver)
	return err
}

// CheckConfigCmd validates the configuration.
type CheckConfigCmd struct{ ConfigFlag }

// Run prints "ok" or every problem, one a line, and sets the exit status.
func (c *CheckConfigCmd) Run(g *Globals) error {
	if code := config.CheckConfig(c.Config, g.Getenv, g.Stdout); code != 0 {
		return silentError{code: code}
	}
	return nil
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
