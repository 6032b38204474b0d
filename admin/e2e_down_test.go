package admin_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/keygate/keygate/admin/admintest"
	"github.com/keygate/keygate/store"
)

// downBackend fails every transaction while down, as a store that cannot
// answer does; LookupDigest (what authenticates the admin key, normally
// through the cache) keeps working, as a warm cache would.
type downBackend struct {
	store.Backend
	down atomic.Bool
}

func (d *downBackend) Update(ctx context.Context, fn func(store.Tx) error) error {
	if d.down.Load() {
		return fmt.Errorf("update: connection refused: %w", store.ErrUnavailable)
	}
	return d.Backend.Update(ctx, fn)
}

func (d *downBackend) View(ctx context.Context, fn func(store.Tx) error) error {
	if d.down.Load() {
		return fmt.Errorf("view: connection refused: %w", store.ErrUnavailable)
	}
	return d.Backend.View(ctx, fn)
}

func TestE2EStoreDown(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b admintest.Backend) {
		var db *downBackend
		a := newAPI(t, admintest.Backend{Name: b.Name, Open: func(t testing.TB) store.Backend {
			db = &downBackend{Backend: b.Open(t)}
			return db
		}}, store.Options{})
		id, _ := a.create(map[string]any{"name": "before", "user": "u"})
		if r := a.as("").do("GET", "/metrics", nil); !strings.Contains(string(r.body), `keygate_keys{status="active"} 2`) {
			t.Fatalf("metrics before the outage:\n%s", r.body)
		}
		db.down.Store(true)
		for _, c := range []struct {
			method, path string
			body         any
		}{
			{"POST", "/v1/keys", map[string]any{"name": "during", "user": "u"}},
			{"GET", "/v1/keys", nil},
			{"GET", "/v1/keys/" + id, nil},
			{"PATCH", "/v1/keys/" + id, map[string]any{"name": "renamed"}},
			{"POST", "/v1/keys/" + id + "/disable", nil},
			{"POST", "/v1/keys/" + id + "/rotate", nil},
			{"DELETE", "/v1/keys/" + id, nil},
			{"POST", "/v1/keys/bulk", map[string]any{"action": "delete", "ids": []string{id}}},
			{"POST", "/v1/keys/purge-expired", nil},
			{"GET", "/v1/audit", nil},
		} {
			r := a.do(c.method, c.path, c.body)
			if r.status != 503 || r.header.Get("Retry-After") == "" {
				t.Errorf("%s %s with the store down: %d %s", c.method, c.path, r.status, r.body)
				continue
			}
			if code, _ := r.errCode(t); code != "store_unavailable" {
				t.Errorf("%s %s: %s", c.method, c.path, code)
			}
		}
		// The last good count stays exposed rather than a gap or zeros.
		if r := a.as("").do("GET", "/metrics", nil); r.status != 200 || !strings.Contains(string(r.body), `keygate_keys{status="active"} 2`) {
			t.Errorf("metrics during the outage: %d\n%s", r.status, r.body)
		}
		db.down.Store(false)
		k := keyOf(a.must(200, "GET", "/v1/keys/"+id, nil))
		if k["name"] != "before" || k["status"] != "active" {
			t.Errorf("after the outage the key changed: %v", k)
		}
		if keys := a.must(200, "GET", "/v1/keys?q=during", nil)["keys"].([]any); len(keys) != 0 {
			t.Errorf("a create that failed with 503 left a key behind")
		}
		if !strings.Contains(a.srv.Logs(), "admin request failed") {
			t.Error("503s were not logged with their cause")
		}
	})
}
