package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/admin/ui"
	"github.com/keygate/keygate/auth"
	"github.com/keygate/keygate/cache"
	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/proxy"
	"github.com/keygate/keygate/store"
)

// ServeCmd runs the proxy and admin listeners.
type ServeCmd struct {
	ConfigFlag
	Upstream string `name:"upstream" placeholder:"URL" help:"Upstream URL of the first route (the catch-all route when there is no config file); replaces its targets."`
}

// Run serves until the context ends (SIGINT/SIGTERM), then drains.
func (c *ServeCmd) Run(g *Globals) error {
	getenv := g.Getenv
	if c.Upstream != "" {
		// Through the environment layer, so the URL is validated like any
		// other value: routes[0].upstream.targets.
		getenv = overlayEnv(getenv, config.EnvName("routes[0].upstream.targets"), c.Upstream)
	}
	cfg, err := config.Load(c.Config, getenv)
	if err != nil {
		return configError(err)
	}
	log := newLogger(cfg.Log, g.Stderr)
	s, err := newServer(g.Ctx, cfg, log, getenv, g.Stderr)
	if err != nil {
		return err
	}
	return s.run(g.Ctx)
}

// server is one running keygate: store, cache, key service, proxy, admin.
type server struct {
	cfg   *config.Config
	log   *slog.Logger
	reg   *prometheus.Registry
	raw   store.Backend // as opened (closed at the end)
	store store.Backend // instrumented
	cache *cache.Cache
	svc   *store.Service
	proxy *proxy.Server
	admin *http.Server
	usage *store.UsageRecorder
	// limiter holds the per-key token buckets; they are per process, so
	// each replica enforces a key's rate on its own share of the traffic.
	limiter *auth.Limiter
	warmed  atomic.Bool
	// storeOK is when the store last answered a ping or the warm-up (unix
	// nanoseconds): cached keys serve for positive_ttl + stale_if_error
	// past it.
	storeOK atomic.Int64
	// drained is set when both listeners finished their in-flight
	// requests; only then may the cache be closed (ristretto's Close is
	// not safe during lookups).
	drained atomic.Bool
}

func newServer(ctx context.Context, cfg *config.Config, log *slog.Logger, getenv func(string) string, stderr io.Writer) (_ *server, err error) {
	s := &server{cfg: cfg, log: log, reg: prometheus.NewRegistry()}
	s.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "keygate", Name: "build_info",
		Help: "Always 1; the labels identify the build.",
	}, []string{"version", "goversion"})
	buildInfo.WithLabelValues(version, runtime.Version()).Set(1)
	s.reg.MustRegister(buildInfo)

	s.raw, err = openBackend(ctx, cfg, log, cfg.Store.AutoMigrate) // the store names its own component
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			s.raw.Close()
		}
	}()
	if s.store, err = store.Instrument(s.raw, s.reg); err != nil {
		return nil, err
	}
	s.cache, err = cache.New(store.NewKeySource(s.store), cache.Options{
		MaxKeys:       int64(cfg.Cache.MaxKeys),
		PositiveTTL:   cfg.Cache.PositiveTTL.Std(),
		NegativeTTL:   cfg.Cache.NegativeTTL.Std(),
		StaleIfError:  cfg.Cache.StaleIfError.Std(),
		LookupTimeout: cfg.Store.QueryTimeout.Std(),
		Registerer:    s.reg,
	})
	if err != nil {
		return nil, err
	}
	sopts, err := serviceOptions(cfg)
	if err != nil {
		return nil, err
	}
	sopts.OnChange = func(ch store.Change) {
		s.cache.InvalidateFrom(cache.SourceLocal, ch.KeyID, ch.Digests...)
	}
	s.svc = store.NewService(s.store, sopts)

	if err := s.bootstrapAdmin(ctx, getenv, stderr); err != nil {
		return nil, err
	}
	s.usage = store.NewUsageRecorder(s.store, store.UsageOptions{Logger: log.With("component", "usage")})
	popts, err := s.proxyOptions(ctx)
	if err != nil {
		return nil, err
	}
	if s.proxy, err = proxy.New(popts); err != nil {
		return nil, err
	}
	s.admin = &http.Server{
		Addr: cfg.Admin.Listen,
		Handler: admin.New(admin.Options{
			Service:           s.svc,
			Keys:              s.cache,
			KeyPrefix:         cfg.Auth.KeyPrefix,
			AcceptForeignKeys: cfg.Auth.AcceptForeignKeys,
			Sources:           adminSources(cfg.Auth.Sources),
			Registerer:        s.reg,
			Gatherer:          s.reg,
			Ready:             s.ready,
			UI:                ui.Handler(),
			Logger:            log,
			Timeout:           30 * time.Second,
		}),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return s, nil
}

// bootstrapAdmin creates the first admin key when the store has none
// (CONTRACT §1): imported from KEYGATE_BOOTSTRAP_ADMIN_KEY when set, else
// generated and printed once on stderr. Several replicas starting at once
// may race here; Bootstrap refuses the losers with ErrAdminExists.
func (s *server) bootstrapAdmin(ctx context.Context, getenv func(string) string, stderr io.Writer) error {
	exists, err := s.svc.AdminKeyExists(ctx)
	if err != nil {
		return fmt.Errorf("look for an admin key: %w", err)
	}
	if exists {
		return nil
	}
	seed := getenv("KEYGATE_BOOTSTRAP_ADMIN_KEY")
	created, err := s.svc.Bootstrap(ctx, seed, false)
	if errors.Is(err, store.ErrAdminExists) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("bootstrap admin key: %w", err)
	}
	if seed != "" {
		s.log.Info("imported the bootstrap admin key from KEYGATE_BOOTSTRAP_ADMIN_KEY", "key_id", created.Key.ID, "hint", created.Key.Hint)
		return nil
	}
	fmt.Fprintf(stderr, "\nkeygate: created the first admin key %s. Its secret is shown once, here:\n\n    %s\n\n", created.Key.ID, created.Secret)
	return nil
}

func (s *server) proxyOptions(ctx context.Context) (proxy.Options, error) {
	cfg := s.cfg
	o := proxy.Options{
		Keys:              s.cache,
		KeyPrefix:         cfg.Auth.KeyPrefix,
		AcceptForeignKeys: cfg.Auth.AcceptForeignKeys,
		StripCredentials:  cfg.Auth.StripCredentials,
		IdentityPrefix:    cfg.Proxy.IdentityHeaderPrefix,
		TrustedProxies:    cfg.TrustedProxyPrefixes(),
		ProxyProtocol:     cfg.Proxy.ProxyProtocol,
		CertFile:          cfg.Proxy.TLS.CertFile,
		KeyFile:           cfg.Proxy.TLS.KeyFile,
		MaxRequestBody:    int(cfg.Proxy.MaxRequestBody),
		MaxHeaderBytes:    int(cfg.Proxy.MaxHeaderBytes),
		ReadTimeout:       noLimitIfZero(cfg.Proxy.ReadTimeout.Std()),
		WriteTimeout:      noLimitIfZero(cfg.Proxy.WriteTimeout.Std()),
		IdleTimeout:       noLimitIfZero(cfg.Proxy.IdleTimeout.Std()),
		Registerer:        s.reg,
		Logger:            s.log.With("component", "proxy"),
		AccessLog:         cfg.Log.AccessLog,
		OnAuthenticated:   s.usage.Record,
		SessionParam:      cfg.Sessions.RequestParam,
	}
	// One bucket per cacheable key at most: a key that is not cached has
	// to be looked up anyway, and the limiter evicts least recently used.
	s.limiter = auth.NewLimiter(cfg.Cache.MaxKeys, 0)
	o.RateLimiter = proxy.KeyLimiter{
		Limiter: s.limiter,
		Default: auth.RateLimit{RPS: cfg.RateLimit.Default.RPS, Burst: cfg.RateLimit.Default.Burst},
	}
	sessions, err := s.sessions(ctx)
	if err != nil {
		return proxy.Options{}, err
	}
	o.Sessions = sessions
	for _, src := range cfg.Auth.Sources {
		o.Sources = append(o.Sources, proxy.Source{Header: src.Header, Scheme: src.Scheme, Query: src.Query})
	}
	for _, r := range cfg.Routes {
		o.Routes = append(o.Routes, proxy.Route{
			Name:              r.Name,
			Host:              r.Match.Host,
			PathPrefix:        r.Match.PathPrefix,
			Methods:           r.Match.Methods,
			Targets:           r.Upstream.Targets,
			Timeout:           r.Upstream.Timeout.Std(),
			MaxConnsPerTarget: r.Upstream.MaxConnsPerTarget,
			Auth:              string(r.Auth),
			StripPrefix:       r.StripPrefix,
		})
	}
	return o, nil
}

// sessions returns the session cookie hook (CONTRACT §4 step 6), or nil
// when sessions are off. The signing secrets are the configured ones or,
// when none are, one generated on first use and kept in the store, so
// replicas sharing the store accept each other's cookies.
func (s *server) sessions(ctx context.Context) (proxy.Sessions, error) {
	c := s.cfg.Sessions
	if !c.Enabled {
		return nil, nil
	}
	configured := make([][]byte, 0, len(c.Secrets))
	for _, sec := range c.Secrets {
		configured = append(configured, []byte(sec))
	}
	secrets, err := s.svc.SessionSecrets(ctx, configured)
	if err != nil {
		return nil, fmt.Errorf("session signing secrets: %w", err)
	}
	signer, err := auth.NewSessionSigner(secrets)
	if err != nil {
		return nil, fmt.Errorf("sessions.secrets: %w", err)
	}
	return &proxy.SignedSessions{
		Signer:   signer,
		Cookie:   c.CookieName,
		TTL:      c.TTL.Std(),
		Secure:   c.Secure,
		SameSite: c.SameSite,
	}, nil
}

func adminSources(srcs []config.Source) []admin.Source {
	out := make([]admin.Source, 0, len(srcs))
	for _, src := range srcs {
		out = append(out, admin.Source{Header: src.Header, Scheme: src.Scheme, Query: src.Query})
	}
	return out
}

// run starts everything, reports ready once the cache is warm, and on
// ctx's end drains both listeners within shutdown_timeout.
func (s *server) run(ctx context.Context) error {
	defer s.raw.Close()
	defer func() {
		if s.drained.Load() {
			s.cache.Close()
		}
	}()

	proxyLn, err := net.Listen("tcp", s.cfg.Proxy.Listen)
	if err != nil {
		return fmt.Errorf("proxy.listen: %w", err)
	}
	adminLn, err := net.Listen("tcp", s.cfg.Admin.Listen)
	if err != nil {
		proxyLn.Close()
		return fmt.Errorf("admin.listen: %w", err)
	}

	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	defer func() { stopBG(); wg.Wait() }()
	if s.cfg.Store.Driver == config.DriverPostgres {
		// Other replicas' changes. The embedded store has one process, and
		// its own changes are invalidated by OnChange already.
		wg.Add(1)
		go func() { defer wg.Done(); s.watch(bg) }()
	}
	wg.Add(1)
	go func() { defer wg.Done(); s.usage.Run(bg) }()
	wg.Add(1)
	go func() { defer wg.Done(); s.sweep(bg, time.Minute) }()

	errc := make(chan error, 2)
	go func() { errc <- s.proxy.Serve(proxyLn) }()
	go func() {
		if err := s.admin.Serve(adminLn); !errors.Is(err, http.ErrServerClosed) {
			errc <- err
		}
	}()
	s.log.Info("keygate serving", "proxy", proxyLn.Addr().String(), "admin", adminLn.Addr().String(),
		"store", s.cfg.Store.Driver, "version", version)

	wg.Add(1)
	go func() { defer wg.Done(); s.warm(bg) }()

	select {
	case <-ctx.Done():
	case err := <-errc:
		s.log.Error("listener failed", "err", err)
		s.shutdown()
		return err
	}
	s.log.Info("shutting down", "timeout", s.cfg.ShutdownTimeout.Std().String())
	return s.shutdown()
}

func (s *server) shutdown() error {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout.Std())
	defer cancel()
	var wg sync.WaitGroup
	var perr, aerr error
	wg.Add(2)
	go func() { defer wg.Done(); perr = s.proxy.Shutdown(ctx) }()
	go func() { defer wg.Done(); aerr = s.admin.Shutdown(ctx) }()
	wg.Wait()
	fctx, fcancel := context.WithTimeout(context.Background(), s.cfg.Store.QueryTimeout.Std())
	defer fcancel()
	if err := s.usage.Flush(fctx); err != nil {
		s.log.Warn("final usage flush failed", "err", err)
	}
	s.drained.Store(perr == nil && aerr == nil)
	return errors.Join(perr, aerr)
}

// sweep drops idle rate-limit buckets every interval until ctx ends, so
// keys that stopped calling give their memory back.
func (s *server) sweep(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			s.limiter.Sweep(now)
		}
	}
}

// watch applies other replicas' changes to the cache until ctx ends.
// Postgres.Watch reconnects by itself and returns only when ctx ends; the
// loop is a guard in case a Backend's Watch gives up.
func (s *server) watch(ctx context.Context) {
	for ctx.Err() == nil {
		err := s.store.Watch(ctx, func(ch store.Change, resync bool) {
			src := cache.SourceNotify
			if resync {
				src = cache.SourceResync
			}
			s.cache.InvalidateFrom(src, ch.KeyID, ch.Digests...)
		})
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("store watch stopped; retrying", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// warm loads the active keys into the cache (CONTRACT §5), retrying while
// the store cannot answer; /readyz reports ready once it has. On a store
// that other replicas write to, it first waits until the change watcher is
// synced: warming earlier would either miss a change made meanwhile or have
// the watcher's first resync re-report recent changes and drop the keys just
// loaded (a fresh replica must serve through an outage that starts at once).
func (s *server) warm(ctx context.Context) {
	if w, ok := s.raw.(interface{ Synced() <-chan struct{} }); ok { // PostgreSQL
		select {
		case <-w.Synced():
		case <-ctx.Done():
			return
		}
	}
	for ctx.Err() == nil {
		n, err := s.warmOnce(ctx)
		if err == nil {
			s.storeOK.Store(time.Now().UnixNano())
			s.warmed.Store(true)
			s.log.Info("cache warmed", "keys", n)
			return
		}
		s.log.Warn("cache warm-up failed; retrying", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

func (s *server) warmOnce(ctx context.Context) (int, error) {
	epoch := s.cache.Epoch()
	now := time.Now()
	limit := s.cfg.Cache.MaxKeys
	var entries []cache.WarmEntry
	errFull := errors.New("cache full")
	err := s.store.ScanKeys(ctx, func(k *store.Key) error {
		if k.StatusAt(now) != store.StatusActive {
			return nil
		}
		if len(entries) >= limit {
			return errFull
		}
		entries = append(entries, cache.WarmEntry{Digest: k.Digest, Key: store.ToAuthKey(k, k.Digest)})
		if k.HasPrevious() && k.PreviousSecretExpiresAt != nil && now.Before(*k.PreviousSecretExpiresAt) && len(entries) < limit {
			entries = append(entries, cache.WarmEntry{Digest: k.PreviousDigest, Key: store.ToAuthKey(k, k.PreviousDigest)})
		}
		return nil
	})
	if err != nil && !errors.Is(err, errFull) {
		return 0, err
	}
	return s.cache.Warm(epoch, entries), nil
}

// ready is /readyz: ready while the process can serve (CONTRACT §6: store
// reachable or cache warm) — once the cache is warm, and then while the
// store answers or its last answer is recent enough for cached keys to
// still be served (positive_ttl + stale_if_error).
func (s *server) ready(ctx context.Context) (map[string]any, error) {
	// Probes have short timeouts of their own: don't wait the full query
	// timeout on a hanging store.
	pctx, cancel := context.WithTimeout(ctx, min(s.cfg.Store.QueryTimeout.Std(), 500*time.Millisecond))
	defer cancel()
	now := time.Now()
	storeState := "ok"
	if err := s.store.Ping(pctx); err != nil {
		storeState = "unavailable"
	} else {
		s.storeOK.Store(now.UnixNano())
	}
	cacheServes := now.Sub(time.Unix(0, s.storeOK.Load())) < s.cfg.Cache.PositiveTTL.Std()+s.cfg.Cache.StaleIfError.Std()
	detail := map[string]any{
		"store": map[string]any{"driver": s.cfg.Store.Driver, "status": storeState},
		"cache": map[string]any{"warm": s.warmed.Load(), "entries": s.cache.Len(), "serving": cacheServes},
	}
	switch {
	case !s.warmed.Load():
		return detail, errors.New("the key cache is not warm yet")
	case storeState != "ok" && !cacheServes:
		return detail, errors.New("the store is unavailable and cached keys are past stale_if_error")
	}
	return detail, nil
}

func newLogger(c config.LogConfig, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: c.SlogLevel()}
	if c.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// overlayEnv returns getenv with name set to value.
func overlayEnv(getenv func(string) string, name, value string) func(string) string {
	return func(k string) string {
		if k == name {
			return value
		}
		return getenv(k)
	}
}

// noLimitIfZero maps a configured timeout of 0 ("no limit" in the config)
// to proxy.Options' spelling of it, a negative value (zero there means the
// default).
func noLimitIfZero(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}
