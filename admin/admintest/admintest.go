// Package admintest runs the admin API end to end for tests: an
// httptest.Server with admin.New over a real key Service on a real backend
// (embedded in a temp dir, PostgreSQL through internal/pgtest), a
// bootstrapped admin key and a settable clock. The admin package's tests
// and the keys CLI's tests share it, so both exercise the same server.
package admintest

import (
	"bytes"
	"context"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/embedded"
)

// Clock is a settable clock shared by the Service and the handler.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// Backend opens a fresh, empty store for one test.
type Backend struct {
	Name string
	Open func(t testing.TB) store.Backend
}

// Embedded is the bbolt backend in a temp dir.
func Embedded() Backend {
	return Backend{Name: "embedded", Open: func(t testing.TB) store.Backend {
		b, err := embedded.Open(filepath.Join(t.TempDir(), "keygate-data"), embedded.Options{})
		if err != nil {
			t.Fatalf("embedded.Open: %v", err)
		}
		t.Cleanup(func() { b.Close() })
		return b
	}}
}

// Server is a running admin API.
type Server struct {
	URL string
	// AdminKey is a bootstrapped admin key's secret; AdminID its id.
	AdminKey string
	AdminID  string
	Service  *store.Service
	Backend  store.Backend
	Registry *prometheus.Registry
	Clock    *Clock
	logs     *syncBuffer
}

// Logs returns everything the handler logged so far.
func (s *Server) Logs() string { return s.logs.String() }

// Start serves admin.New over a Service on a fresh store of b. so is the
// Service's configuration (its Now is replaced by the server's Clock).
func Start(t testing.TB, b Backend, so store.Options) *Server {
	t.Helper()
	clock := &Clock{t: time.Now().UTC().Truncate(time.Second)}
	so.Now = clock.Now
	be := b.Open(t)
	svc := store.NewService(be, so)
	c, err := svc.Bootstrap(context.Background(), "", false)
	if err != nil {
		t.Fatalf("Bootstrap: %v", err)
	}
	logs := &syncBuffer{}
	reg := prometheus.NewRegistry()
	h := admin.New(admin.Options{
		Service:           svc,
		Keys:              store.NewKeySource(be),
		KeyPrefix:         so.KeyPrefix,
		AcceptForeignKeys: so.AcceptForeignKeys,
		Registerer:        reg,
		Logger:            slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:               clock.Now,
		KeysCountTTL:      time.Nanosecond,
	})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &Server{URL: srv.URL, AdminKey: c.Secret, AdminID: c.Key.ID, Service: svc, Backend: be,
		Registry: reg, Clock: clock, logs: logs}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
