package admin

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keygate/keygate/store"
)

const namespace = "keygate"

// countTimeout bounds the count query a scrape may trigger.
const countTimeout = 2 * time.Second

// metrics are the admin listener's own series (CONTRACT §7).
type metrics struct {
	// requests is keygate_admin_requests_total{op,code}: op is the route's
	// fixed name (keys.create, …; "other" for unknown paths and methods),
	// code the HTTP status.
	requests *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, svc *store.Service, ttl time.Duration, now func() time.Time, log *slog.Logger) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "admin", Name: "requests_total",
			Help: "Admin listener requests by operation and HTTP status.",
		}, []string{"op", "code"}),
	}
	if reg == nil {
		return m
	}
	if err := reg.Register(m.requests); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			// A second handler on the same registry (tests, reload) keeps
			// counting into the first one's series.
			if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
				m.requests = existing
			}
		} else {
			log.Error("cannot register admin metrics", "err", err)
		}
	}
	if svc != nil {
		kc := newKeysCollector(svc.Counts, ttl, now, log)
		if err := reg.Register(kc); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				log.Error("cannot register keygate_keys", "err", err)
			}
		}
	}
	return m
}

func (m *metrics) request(op string, status int) {
	m.requests.WithLabelValues(op, codeLabel(status)).Inc()
}

// keysCollector is keygate_keys{status}. It counts at scrape time rather
// than tracking every change, so it is right whichever replica (or
// bootstrap, or expiry by the clock) changed the keys; a result is reused
// for ttl so several scrapers cost one count query. When the store cannot
// count, the last good result is exposed again (and nothing before the
// first one).
type keysCollector struct {
	desc  *prometheus.Desc
	count func(context.Context) (map[string]int, error)
	ttl   time.Duration
	now   func() time.Time
	log   *slog.Logger

	mu   sync.Mutex
	at   time.Time
	last map[string]int
}

func newKeysCollector(count func(context.Context) (map[string]int, error), ttl time.Duration, now func() time.Time, log *slog.Logger) *keysCollector {
	return &keysCollector{
		desc: prometheus.NewDesc(prometheus.BuildFQName(namespace, "", "keys"),
			"Keys in the store by status (active, disabled, expired), counted at scrape time.",
			[]string{"status"}, nil),
		count: count, ttl: ttl, now: now, log: log,
	}
}

func (c *keysCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *keysCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if c.last == nil || now.Sub(c.at) >= c.ttl {
		ctx, cancel := context.WithTimeout(context.Background(), countTimeout)
		counts, err := c.count(ctx)
		cancel()
		if err != nil {
			c.log.Warn("cannot count keys for keygate_keys", "err", err)
		} else {
			c.last, c.at = counts, now
		}
	}
	if c.last == nil {
		return
	}
	for _, s := range []string{store.StatusActive, store.StatusDisabled, store.StatusExpired} {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(c.last[s]), s)
	}
}
