package main

import (
	"testing"
	"time"

	"github.com/keygate/keygate/internal/pgtest"
)

// /readyz must not claim ready once the store is down and the warm cache
// can no longer serve (CONTRACT: 200 while it can serve: store reachable or cache warm).
func TestReadyzAfterCacheCold(t *testing.T) {
	dbURL := pgtest.NewDatabase(t)
	_, upstream := startEcho(t, 0)
	adminKey := newSecret(t)
	a := startPostgresReplica(t, dbURL, upstream, adminKey, "")
	k := a.createKey(adminKey, map[string]any{"name": "k1", "user": "u1"})
	viaURL, outage := outages[0].prepare(t, dbURL)
	b := startPostgresReplica(t, viaURL, upstream, adminKey, "cache:\n  positive_ttl: 1s\n  stale_if_error: 1s\n")
	wantForwarded(t, "warm", b.get(k.Secret, "/r"), k.ID, "u1")
	outage()
	time.Sleep(3 * time.Second)
	r := b.get(k.Secret, "/r")
	rz := b.adminDo(adminKey, "GET", "/readyz", nil)
	t.Logf("key request status %d; /readyz %s", r.status, rz)
	if r.status == 503 && rz.status == 200 {
		t.Errorf("/readyz 200 while every key request gets 503 (store down, cache past stale_if_error)")
	}
}

// A fresh replica warms a rotated key's previous secret while in grace, so
// the old secret works through an outage that starts right after it started.
func TestWarmPreviousSecret(t *testing.T) {
	dbURL := pgtest.NewDatabase(t)
	viaURL, outage := outages[0].prepare(t, dbURL)
	_, upstream := startEcho(t, 0)
	adminKey := newSecret(t)
	a := startPostgresReplica(t, dbURL, upstream, adminKey, "")
	k := a.createKey(adminKey, map[string]any{"name": "k1", "user": "u1"})
	r := a.mustAdmin(adminKey, 200, "POST", "/v1/keys/"+k.ID+"/rotate", map[string]any{"grace": "1h"})
	newSecret, _ := r.json()["secret"].(string)
	b := startPostgresReplica(t, viaURL, upstream, adminKey, "")
	outage()
	wantForwarded(t, "new secret, fresh replica, store down", b.get(newSecret, "/r"), k.ID, "u1")
	wantForwarded(t, "old secret in grace, fresh replica, store down", b.get(k.Secret, "/r"), k.ID, "u1")
}
