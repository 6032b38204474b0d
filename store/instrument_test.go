package store_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/keygate/keygate/store"
)

func TestInstrument(t *testing.T) {
	ctx := context.Background()
	fb := &flaky{Backend: openEmbedded(t)}
	reg := prometheus.NewRegistry()
	b, err := store.Instrument(fb, reg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Instrument(fb, reg); err == nil {
		t.Error("registering the store metrics twice with one registry succeeded")
	}
	svc := store.NewService(b, store.Options{})
	c, err := svc.Create(ctx, store.Actor{}, []byte(`{"name": "n", "user": "u"}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Create(ctx, store.Actor{}, []byte(`{"name": "n", "user": "u"}`)); !errors.Is(err, store.ErrNameTaken) {
		t.Fatal(err)
	}
	if _, err := svc.Get(ctx, "key_missing"); !errors.Is(err, store.ErrNotFound) {
		t.Fatal(err)
	}
	if _, err := svc.Lookup(ctx, c.Secret); err != nil {
		t.Fatal(err)
	}
	if err := b.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	if got := upValue(t, reg); got != 1 {
		t.Errorf("keygate_store_up = %v after answers, want 1", got)
	}
	fb.down.Store(true)
	if _, err := svc.Get(ctx, c.Key.ID); !errors.Is(err, store.ErrUnavailable) {
		t.Fatal(err)
	}
	if got := upValue(t, reg); got != 0 {
		t.Errorf("keygate_store_up = %v after an unavailable error, want 0", got)
	}
	fb.down.Store(false)
	if err := b.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP keygate_store_queries_total Store queries by operation and result (ok, not_found, error).
# TYPE keygate_store_queries_total counter
keygate_store_queries_total{op="lookup_digest",result="error"} 0
keygate_store_queries_total{op="lookup_digest",result="not_found"} 0
keygate_store_queries_total{op="lookup_digest",result="ok"} 1
keygate_store_queries_total{op="ping",result="error"} 0
keygate_store_queries_total{op="ping",result="not_found"} 0
keygate_store_queries_total{op="ping",result="ok"} 2
keygate_store_queries_total{op="record_usage",result="error"} 0
keygate_store_queries_total{op="record_usage",result="not_found"} 0
keygate_store_queries_total{op="record_usage",result="ok"} 0
keygate_store_queries_total{op="scan_keys",result="error"} 0
keygate_store_queries_total{op="scan_keys",result="not_found"} 0
keygate_store_queries_total{op="scan_keys",result="ok"} 0
keygate_store_queries_total{op="update",result="error"} 0
keygate_store_queries_total{op="update",result="not_found"} 0
keygate_store_queries_total{op="update",result="ok"} 2
keygate_store_queries_total{op="view",result="error"} 1
keygate_store_queries_total{op="view",result="not_found"} 1
keygate_store_queries_total{op="view",result="ok"} 0
# HELP keygate_store_up 1 when the store answered the last ping or query, 0 when it could not.
# TYPE keygate_store_up gauge
keygate_store_up 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "keygate_store_queries_total", "keygate_store_up"); err != nil {
		t.Error(err)
	}
	if n, err := testutil.GatherAndCount(reg, "keygate_store_query_duration_seconds"); err != nil || n != 6 {
		t.Errorf("duration series = %d, %v; want one per op (6)", n, err)
	}
	problems, err := testutil.GatherAndLint(reg)
	if err != nil || len(problems) != 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
	// The wrapper is still a whole Backend.
	if err := b.RecordUsage(ctx, []store.Usage{{KeyID: c.Key.ID, At: time.Now()}}); err != nil {
		t.Error(err)
	}
}

func upValue(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "keygate_store_up" {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatal("keygate_store_up not gathered")
	return 0
}
