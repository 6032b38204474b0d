package store

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Store operations as the op label names them.
var instrumentedOps = []string{"update", "view", "lookup_digest", "scan_keys", "record_usage", "ping"}

// opMetrics are one op's label children, looked up once.
type opMetrics struct {
	ok, notFound, failed prometheus.Counter
	duration             prometheus.Observer
}

// instrumented is a Backend that counts and times every query.
type instrumented struct {
	Backend
	ops map[string]*opMetrics
	up  prometheus.Gauge
}

// Instrument wraps b so each query is counted in
// keygate_store_queries_total{op,result} (result ok, not_found or error)
// and timed in keygate_store_query_duration_seconds{op}, and
// keygate_store_up tells whether the store last answered: Ping sets it,
// and so does every query (1 when the store answered, 0 when it was
// unavailable). Errors that are the caller's (a name taken, a field
// refused) count as ok: the store answered. The metrics are registered
// with reg; registering twice with one Registerer is an error. The result
// is only a Backend: callers needing more of b (migrations, paths) keep b.
func Instrument(b Backend, reg prometheus.Registerer) (Backend, error) {
	queries := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "keygate", Subsystem: "store", Name: "queries_total",
		Help: "Store queries by operation and result (ok, not_found, error).",
	}, []string{"op", "result"})
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "keygate", Subsystem: "store", Name: "query_duration_seconds",
		Help:    "Time store queries took, by operation.",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	}, []string{"op"})
	up := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "keygate", Subsystem: "store", Name: "up",
		Help: "1 when the store answered the last ping or query, 0 when it could not.",
	})
	for _, c := range []prometheus.Collector{queries, duration, up} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	m := &instrumented{Backend: b, ops: make(map[string]*opMetrics, len(instrumentedOps)), up: up}
	for _, op := range instrumentedOps {
		m.ops[op] = &opMetrics{
			ok:       queries.WithLabelValues(op, "ok"),
			notFound: queries.WithLabelValues(op, "not_found"),
			failed:   queries.WithLabelValues(op, "error"),
			duration: duration.WithLabelValues(op),
		}
	}
	return m, nil
}

// callerErrors are outcomes in which the store answered.
var callerErrors = []error{ErrNameTaken, ErrSecretTaken, ErrApplicationLimit, ErrAdminExists, ErrNotRetrievable}

func (m *instrumented) observe(op string, start time.Time, err error) {
	om := m.ops[op]
	om.duration.Observe(time.Since(start).Seconds())
	switch {
	case err == nil:
		om.ok.Inc()
		m.up.Set(1)
	case errors.Is(err, ErrNotFound):
		om.notFound.Inc()
		m.up.Set(1)
	case errors.Is(err, ErrUnavailable):
		om.failed.Inc()
		m.up.Set(0)
	case isCallerError(err):
		om.ok.Inc()
		m.up.Set(1)
	default:
		om.failed.Inc()
	}
}

func isCallerError(err error) bool {
	var fe *FieldError
	var be *BadRequestError
	if errors.As(err, &fe) || errors.As(err, &be) {
		return true
	}
	for _, e := range callerErrors {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

func (m *instrumented) Update(ctx context.Context, fn func(Tx) error) error {
	start := time.Now()
	err := m.Backend.Update(ctx, fn)
	m.observe("update", start, err)
	return err
}

func (m *instrumented) View(ctx context.Context, fn func(Tx) error) error {
	start := time.Now()
	err := m.Backend.View(ctx, fn)
	m.observe("view", start, err)
	return err
}

func (m *instrumented) LookupDigest(ctx context.Context, digest [32]byte) (*Key, error) {
	start := time.Now()
	k, err := m.Backend.LookupDigest(ctx, digest)
	m.observe("lookup_digest", start, err)
	return k, err
}

func (m *instrumented) ScanKeys(ctx context.Context, fn func(*Key) error) error {
	start := time.Now()
	err := m.Backend.ScanKeys(ctx, fn)
	m.observe("scan_keys", start, err)
	return err
}

func (m *instrumented) RecordUsage(ctx context.Context, usage []Usage) error {
	start := time.Now()
	err := m.Backend.RecordUsage(ctx, usage)
	m.observe("record_usage", start, err)
	return err
}

func (m *instrumented) Ping(ctx context.Context) error {
	start := time.Now()
	err := m.Backend.Ping(ctx)
	m.observe("ping", start, err)
	if err != nil {
		m.up.Set(0)
	}
	return err
}
