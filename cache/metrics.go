package cache

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics holds the cache's collectors with their label children looked
// up once, so the hit path only increments.
type metrics struct {
	hit, negativeHit, miss, staleHit prometheus.Counter

	invalidations         *prometheus.CounterVec
	local, notify, resync prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, entries func() int) (metrics, error) {
	lookups := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "keygate",
		Subsystem: "cache",
		Name:      "lookups_total",
		Help:      "Key lookups answered by the cache, by result: hit, negative_hit (known unknown), miss (asked the store), stale_hit (served past its TTL while the store failed).",
	}, []string{"result"})
	size := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "keygate",
		Subsystem: "cache",
		Name:      "entries",
		Help:      "Keys and unknown digests held by the key cache (what cache.max_keys caps), including expired ones not yet freed.",
	}, func() float64 { return float64(entries()) })
	inval := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "keygate",
		Name:      "invalidations_total",
		Help:      "Cache invalidations, by source: local (this replica's change), notify (store notification), resync (periodic resync).",
	}, []string{"source"})

	m := metrics{
		hit:           lookups.WithLabelValues("hit"),
		negativeHit:   lookups.WithLabelValues("negative_hit"),
		miss:          lookups.WithLabelValues("miss"),
		staleHit:      lookups.WithLabelValues("stale_hit"),
		invalidations: inval,
		local:         inval.WithLabelValues(string(SourceLocal)),
		notify:        inval.WithLabelValues(string(SourceNotify)),
		resync:        inval.WithLabelValues(string(SourceResync)),
	}
	if reg == nil {
		return m, nil
	}
	cols := []prometheus.Collector{lookups, size, inval}
	for i, col := range cols {
		if err := reg.Register(col); err != nil {
			for _, done := range cols[:i] {
				reg.Unregister(done)
			}
			return metrics{}, fmt.Errorf("cache: registering metrics: %w", err)
		}
	}
	return m, nil
}

// invalidation returns the counter for src. Sources other than the three
// constants are counted under their own label; callers should not invent
// them.
func (m *metrics) invalidation(src Source) prometheus.Counter {
	switch src {
	case SourceLocal:
		return m.local
	case SourceNotify:
		return m.notify
	case SourceResync:
		return m.resync
	}
	return m.invalidations.WithLabelValues(string(src))
}
