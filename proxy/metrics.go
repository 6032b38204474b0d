package proxy

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the proxy's CONTRACT §7 series. Label children are looked up
// once, at construction, so the hot path only increments.
type metrics struct {
	authRequests *prometheus.CounterVec
	authDuration *prometheus.HistogramVec
	upRequests   *prometheus.CounterVec
	upDuration   *prometheus.HistogramVec
	sessions     prometheus.Counter

	authDurationBy [numResults]prometheus.Observer
	// noRoute counts auth results of requests refused before a route was
	// known (route label "").
	noRoute routeMetrics
}

// Upstream code classes: 1xx…5xx, then error.
const (
	codeError   = 5
	numUpCodes  = 6
	routeLabelN = ""
)

type routeMetrics struct {
	auth       [numResults][numSources]prometheus.Counter
	upCodes    [numUpCodes]prometheus.Counter
	upDuration prometheus.Observer
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		authRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "keygate", Subsystem: "auth", Name: "requests_total",
			Help: "Requests authenticated by the proxy, by result, credential source and route.",
		}, []string{"result", "source", "route"}),
		authDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "keygate", Subsystem: "auth", Name: "duration_seconds",
			Help:    "Time to decide a request's authentication, by result.",
			Buckets: []float64{.00001, .000025, .00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"result"}),
		upRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "keygate", Subsystem: "upstream", Name: "requests_total",
			Help: "Requests forwarded upstream, by route and status class (error: no response).",
		}, []string{"route", "code"}),
		upDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "keygate", Subsystem: "upstream", Name: "duration_seconds",
			Help:    "Time from forwarding a request (the end of its auth decision) to receiving the upstream response headers (bodies stream), by route.",
			Buckets: prometheus.DefBuckets,
		}, []string{"route"}),
		sessions: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "keygate", Subsystem: "sessions", Name: "issued_total",
			Help: "Session cookies issued to keys that asked for one.",
		}),
	}
	if reg != nil {
		var err error
		if m.sessions, err = register(reg, m.sessions); err != nil {
			return nil, err
		}
		if m.authRequests, err = register(reg, m.authRequests); err != nil {
			return nil, err
		}
		if m.authDuration, err = register(reg, m.authDuration); err != nil {
			return nil, err
		}
		if m.upRequests, err = register(reg, m.upRequests); err != nil {
			return nil, err
		}
		if m.upDuration, err = register(reg, m.upDuration); err != nil {
			return nil, err
		}
	}
	for r := range numResults {
		m.authDurationBy[r] = m.authDuration.WithLabelValues(r.String())
	}
	m.noRoute = m.forRoute(routeLabelN)
	return m, nil
}

// register registers c, or returns the collector already registered under
// the same description (a second Server on one registry, as on reload).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, err
	}
	return c, nil
}

func (m *metrics) forRoute(name string) routeMetrics {
	var rm routeMetrics
	for r := range numResults {
		for src := range numSources {
			rm.auth[r][src] = m.authRequests.WithLabelValues(r.String(), src.String(), name)
		}
	}
	if name != routeLabelN {
		for i, c := range [numUpCodes]string{"1xx", "2xx", "3xx", "4xx", "5xx", "error"} {
			rm.upCodes[i] = m.upRequests.WithLabelValues(name, c)
		}
		rm.upDuration = m.upDuration.WithLabelValues(name)
	}
	return rm
}

// upCode maps a status to its class index.
func upCode(status int) int {
	if status < 100 || status > 599 {
		return codeError
	}
	return status/100 - 1
}
