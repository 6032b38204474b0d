package admin

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/keygate/keygate/auth"
	"github.com/keygate/keygate/store"
)

var testNow = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

type authFixture struct {
	h                                       *Handler
	keys                                    *fakeKeys
	reg                                     *prometheus.Registry
	admin, user, disabled, expired, walled  string
	rotatedOut, rotatedInGrace, unknownGood string
}

// newAuthFixture is a handler without a Service: the tests using it only
// reach code that runs before the Service is called.
func newAuthFixture(t *testing.T) *authFixture {
	f := &authFixture{keys: &fakeKeys{}, reg: prometheus.NewRegistry()}
	mk := func(k *auth.Key) string {
		s := newSecret(t, "kg")
		f.keys.add(s, k)
		return s
	}
	f.admin = mk(&auth.Key{ID: "key_admin", Enabled: true, Scopes: []string{auth.AdminScope}})
	f.user = mk(&auth.Key{ID: "key_user", Enabled: true, Scopes: []string{"default"}})
	f.disabled = mk(&auth.Key{ID: "key_off", Enabled: false, Scopes: []string{auth.AdminScope}})
	f.expired = mk(&auth.Key{ID: "key_old", Enabled: true, Scopes: []string{auth.AdminScope}, ExpiresAt: testNow})
	f.walled = mk(&auth.Key{ID: "key_wall", Enabled: true, Scopes: []string{auth.AdminScope},
		IPAllowlist: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	f.rotatedOut = mk(&auth.Key{ID: "key_rot", Enabled: true, Scopes: []string{auth.AdminScope},
		Previous: true, PreviousExpiresAt: testNow.Add(-time.Second)})
	f.rotatedInGrace = mk(&auth.Key{ID: "key_rot2", Enabled: true, Scopes: []string{auth.AdminScope},
		Previous: true, PreviousExpiresAt: testNow.Add(time.Hour)})
	f.unknownGood = newSecret(t, "kg")
	f.h = New(Options{Keys: f.keys, Registerer: f.reg, Now: func() time.Time { return testNow }})
	return f
}

func decodeError(t *testing.T, body []byte) errorBody {
	t.Helper()
	var e errorBody
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("error body %q is not JSON: %v", body, err)
	}
	if e.RequestID == "" || e.Message == "" {
		t.Errorf("error body %q lacks request_id or message", body)
	}
	return e
}

func TestAdminAuth(t *testing.T) {
	f := newAuthFixture(t)
	tests := []struct {
		name   string
		hdr    []string
		path   string
		status int
		code   string
	}{
		{"no key", nil, "/v1/openapi.json", 401, "missing_key"},
		{"malformed", []string{"X-API-Key", "kg_short"}, "/v1/openapi.json", 401, "invalid_key"},
		{"bad checksum", []string{"X-API-Key", f.admin[:len(f.admin)-1] + "x"}, "/v1/openapi.json", 401, "invalid_key"},
		{"other prefix", []string{"X-API-Key", newSecret(t, "zz")}, "/v1/openapi.json", 401, "invalid_key"},
		{"unknown", []string{"X-API-Key", f.unknownGood}, "/v1/openapi.json", 401, "invalid_key"},
		{"disabled", []string{"X-API-Key", f.disabled}, "/v1/openapi.json", 401, "key_disabled"},
		{"expired at its second", []string{"X-API-Key", f.expired}, "/v1/openapi.json", 401, "key_expired"},
		{"rotated out past grace", []string{"X-API-Key", f.rotatedOut}, "/v1/openapi.json", 401, "key_expired"},
		{"rotated out in grace", []string{"X-API-Key", f.rotatedInGrace}, "/v1/openapi.json", 200, ""},
		{"not admin", []string{"X-API-Key", f.user}, "/v1/keys", 403, "forbidden"},
		{"allowlist excludes peer", []string{"X-API-Key", f.walled}, "/v1/openapi.json", 403, "ip_not_allowed"},
		{"forwarded for is not believed", []string{"X-API-Key", f.walled, "X-Forwarded-For", "10.1.2.3"}, "/v1/openapi.json", 403, "ip_not_allowed"},
		{"admin X-API-Key", []string{"X-API-Key", f.admin}, "/v1/openapi.json", 200, ""},
		{"admin Authorization ApiKey", []string{"Authorization", "ApiKey " + f.admin}, "/v1/openapi.json", 200, ""},
		{"scheme case-insensitive", []string{"Authorization", "apikey " + f.admin}, "/v1/openapi.json", 200, ""},
		{"X-Authorization", []string{"X-Authorization", "ApiKey " + f.admin}, "/v1/openapi.json", 200, ""},
		{"appKey header", []string{"appKey", f.admin}, "/v1/openapi.json", 200, ""},
		{"bearer is not a source", []string{"Authorization", "Bearer " + f.admin}, "/v1/openapi.json", 401, "missing_key"},
		{"query is not a source", nil, "/v1/openapi.json?api_key=" + f.admin, 401, "missing_key"},
		{"same key twice", []string{"X-API-Key", f.admin, "Authorization", "ApiKey " + f.admin}, "/v1/openapi.json", 200, ""},
		{"two different keys", []string{"X-API-Key", f.admin, "X-API-Key", f.user}, "/v1/openapi.json", 400, "ambiguous_credentials"},
		{"healthz public", nil, "/healthz", 200, ""},
		{"readyz public", nil, "/readyz", 200, ""},
		{"metrics public", nil, "/metrics", 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := do(t, f.h, "GET", tt.path, "", tt.hdr...)
			if rec.Code != tt.status {
				t.Fatalf("GET %s = %d %s, want %d", tt.path, rec.Code, rec.Body, tt.status)
			}
			if tt.code == "" {
				return
			}
			if e := decodeError(t, rec.Body.Bytes()); e.Error != tt.code {
				t.Errorf("error = %q, want %q", e.Error, tt.code)
			}
			if got := rec.Header().Get("WWW-Authenticate"); (rec.Code == 401) != (got != "") {
				t.Errorf("WWW-Authenticate = %q on %d", got, rec.Code)
			}
			for _, s := range []string{f.admin, f.user, f.walled} {
				if strings.Contains(rec.Body.String(), s) {
					t.Errorf("response echoes a key: %s", rec.Body)
				}
			}
		})
	}
}

func TestAdminAuthStoreDown(t *testing.T) {
	f := newAuthFixture(t)
	f.keys.err = errors.Join(auth.ErrStoreUnavailable, errors.New("dial tcp: refused"))
	rec := do(t, f.h, "GET", "/v1/openapi.json", "", "X-API-Key", f.admin)
	if rec.Code != 503 || decodeError(t, rec.Body.Bytes()).Error != "store_unavailable" || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("store down: %d %s %v", rec.Code, rec.Body, rec.Header())
	}
}

func TestAdminForeignKeys(t *testing.T) {
	keys := &fakeKeys{}
	foreign := "legacy-0123456789-abcdefghij"
	keys.add(foreign, &auth.Key{ID: "key_legacy", Enabled: true, Scopes: []string{auth.AdminScope}})
	for _, accept := range []bool{false, true} {
		h := New(Options{Keys: keys, AcceptForeignKeys: accept})
		rec := do(t, h, "GET", "/v1/openapi.json", "", "X-API-Key", foreign)
		if want := map[bool]int{false: 401, true: 200}[accept]; rec.Code != want {
			t.Errorf("AcceptForeignKeys=%v: %d, want %d", accept, rec.Code, want)
		}
	}
	h := New(Options{Keys: keys, AcceptForeignKeys: true})
	if rec := do(t, h, "GET", "/v1/openapi.json", "", "X-API-Key", "short-foreign-key"); rec.Code != 401 {
		t.Errorf("a foreign key under 24 characters: %d, want 401", rec.Code)
	}
}

func TestAdminCustomSources(t *testing.T) {
	f := newAuthFixture(t)
	h := New(Options{Keys: f.keys, Sources: []Source{{Query: "appKey"}, {Header: "X-Admin"}}, Now: func() time.Time { return testNow }})
	if rec := do(t, h, "GET", "/v1/openapi.json", "", "X-Admin", f.admin); rec.Code != 200 {
		t.Errorf("configured header source: %d", rec.Code)
	}
	if rec := do(t, h, "GET", "/v1/openapi.json", "", "X-API-Key", f.admin); rec.Code != 401 {
		t.Errorf("a default source not configured: %d, want 401", rec.Code)
	}
	if rec := do(t, h, "GET", "/v1/openapi.json?appKey="+f.admin, ""); rec.Code != 401 {
		t.Errorf("a query source: %d, want 401", rec.Code)
	}
	// Only query sources configured: the admin API falls back to the
	// default headers rather than locking everyone out, and never reads
	// the query.
	h = New(Options{Keys: f.keys, Sources: []Source{{Query: "api_key"}}, Now: func() time.Time { return testNow }})
	if rec := do(t, h, "GET", "/v1/openapi.json", "", "Authorization", "ApiKey "+f.admin); rec.Code != 200 {
		t.Errorf("default header with only query sources configured: %d", rec.Code)
	}
	if rec := do(t, h, "GET", "/v1/openapi.json?api_key="+f.admin, ""); rec.Code != 401 {
		t.Errorf("the configured query source: %d, want 401", rec.Code)
	}
}

func TestAdminRequestErrors(t *testing.T) {
	f := newAuthFixture(t)
	big := `{"secret":"` + strings.Repeat("a", MaxBodyBytes) + `"}`
	tests := []struct {
		name, method, path, body string
		status                   int
		code, field              string
	}{
		{"unknown path", "GET", "/v2/nothing", "", 404, "not_found", ""},
		{"wrong method", "PUT", "/v1/keys", "", 405, "method_not_allowed", ""},
		{"wrong method on item", "POST", "/v1/keys/key_1", "", 405, "method_not_allowed", ""},
		{"lookup is not an id", "GET", "/v1/keys/lookup", "", 405, "method_not_allowed", ""},
		{"body over 1 MiB", "POST", "/v1/keys", big, 413, "body_too_large", ""},
		{"lookup over 1 MiB", "POST", "/v1/keys/lookup", big, 413, "body_too_large", ""},
		{"malformed JSON", "POST", "/v1/keys/bulk", `{"action":`, 400, "bad_request", ""},
		{"not an object", "POST", "/v1/keys/bulk", `[1,2]`, 400, "bad_request", ""},
		{"bulk unknown field", "POST", "/v1/keys/bulk", `{"action":"delete","ids":["a"],"force":true}`, 422, "invalid_field", "force"},
		{"bulk bad action", "POST", "/v1/keys/bulk", `{"action":"explode","ids":["a"]}`, 422, "invalid_field", "action"},
		{"bulk no action", "POST", "/v1/keys/bulk", `{"ids":["a"]}`, 422, "invalid_field", "action"},
		{"bulk no ids", "POST", "/v1/keys/bulk", `{"action":"enable","ids":[]}`, 422, "invalid_field", "ids"},
		{"bulk ids wrong type", "POST", "/v1/keys/bulk", `{"action":"enable","ids":"key_1"}`, 422, "invalid_field", "ids"},
		{"bulk too many ids", "POST", "/v1/keys/bulk", `{"action":"enable","ids":[` + strings.Repeat(`"k",`, 1000) + `"k"]}`, 422, "invalid_field", "ids"},
		{"rotate bad grace", "POST", "/v1/keys/key_1/rotate", `{"grace":"soon"}`, 422, "invalid_field", "grace"},
		{"rotate negative grace", "POST", "/v1/keys/key_1/rotate", `{"grace":"-1h"}`, 422, "invalid_field", "grace"},
		{"rotate unknown field", "POST", "/v1/keys/key_1/rotate", `{"grace":"1h","graze":"1h"}`, 422, "invalid_field", "graze"},
		{"purge bad duration", "POST", "/v1/keys/purge-expired", `{"expired_for":"a month"}`, 422, "invalid_field", "expired_for"},
		{"purge dry_run type", "POST", "/v1/keys/purge-expired", `{"dry_run":"yes"}`, 422, "invalid_field", "dry_run"},
		{"lookup without secret", "POST", "/v1/keys/lookup", `{}`, 422, "invalid_field", "secret"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := do(t, f.h, tt.method, tt.path, tt.body, "X-API-Key", f.admin)
			if rec.Code != tt.status {
				t.Fatalf("%s %s = %d %.200s, want %d", tt.method, tt.path, rec.Code, rec.Body, tt.status)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
			e := decodeError(t, rec.Body.Bytes())
			if e.Error != tt.code || e.Field != tt.field {
				t.Errorf("error = %q field %q, want %q field %q", e.Error, e.Field, tt.code, tt.field)
			}
			if rec.Code == 405 && rec.Header().Get("Allow") == "" {
				t.Error("405 without Allow")
			}
			if e.RequestID != rec.Header().Get("X-Request-Id") {
				t.Errorf("request_id %q != X-Request-Id %q", e.RequestID, rec.Header().Get("X-Request-Id"))
			}
		})
	}
}

func TestRequestIDKeptOrMade(t *testing.T) {
	f := newAuthFixture(t)
	if got := do(t, f.h, "GET", "/v1/keys", "", "X-Request-Id", "abc-123").Header().Get("X-Request-Id"); got != "abc-123" {
		t.Errorf("incoming X-Request-Id not kept: %q", got)
	}
	a := do(t, f.h, "GET", "/v1/keys", "", "X-Request-Id", "bad id\x01").Header().Get("X-Request-Id")
	b := do(t, f.h, "GET", "/v1/keys", "").Header().Get("X-Request-Id")
	if len(a) != 32 || len(b) != 32 || a == b {
		t.Errorf("made request ids %q, %q: want two distinct 32-hex ids", a, b)
	}
}

func TestReadyz(t *testing.T) {
	h := New(Options{Keys: &fakeKeys{}, Ready: func(ctxt contextT) (map[string]any, error) {
		return map[string]any{"store": "down", "cache": "cold"}, errors.New("store unreachable and cache cold")
	}})
	rec := do(t, h, "GET", "/readyz", "")
	var body struct {
		Status string         `json:"status"`
		Checks map[string]any `json:"checks"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || rec.Code != 503 || body.Status != "not_ready" || body.Checks["store"] != "down" {
		t.Fatalf("not ready: %d %s", rec.Code, rec.Body)
	}
	h = New(Options{Keys: &fakeKeys{}, Ready: func(ctxt contextT) (map[string]any, error) {
		return map[string]any{"store": "up"}, nil
	}})
	if rec := do(t, h, "GET", "/readyz", ""); rec.Code != 200 || !strings.Contains(rec.Body.String(), `"store":"up"`) {
		t.Fatalf("ready: %d %s", rec.Code, rec.Body)
	}
}

func TestUIMount(t *testing.T) {
	ui := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("console")) })
	h := New(Options{Keys: &fakeKeys{}, UI: ui})
	if rec := do(t, h, "GET", "/ui/", ""); rec.Code != 200 || rec.Body.String() != "console" {
		t.Errorf("/ui/ with a UI: %d %s", rec.Code, rec.Body)
	}
	h = New(Options{Keys: &fakeKeys{}})
	if rec := do(t, h, "GET", "/ui/", ""); rec.Code != 404 {
		t.Errorf("/ui/ without a UI: %d", rec.Code)
	}
}

func TestAdminRequestsMetric(t *testing.T) {
	f := newAuthFixture(t)
	do(t, f.h, "GET", "/v1/keys", "")
	do(t, f.h, "GET", "/v1/keys", "")
	do(t, f.h, "GET", "/v1/openapi.json", "", "X-API-Key", f.admin)
	do(t, f.h, "GET", "/v1/keys/key_123456", "", "X-API-Key", f.user)
	do(t, f.h, "GET", "/nope/key_123456", "")
	want := `
# HELP keygate_admin_requests_total Admin listener requests by operation and HTTP status.
# TYPE keygate_admin_requests_total counter
keygate_admin_requests_total{code="200",op="openapi"} 1
keygate_admin_requests_total{code="401",op="keys.list"} 2
keygate_admin_requests_total{code="403",op="keys.get"} 1
keygate_admin_requests_total{code="404",op="other"} 1
`
	if err := testutil.GatherAndCompare(f.reg, strings.NewReader(want), "keygate_admin_requests_total"); err != nil {
		t.Error(err)
	}
	if problems, err := testutil.GatherAndLint(f.reg); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
	// A second handler on the same registry (a reload) must not panic and
	// keeps counting into the same series.
	h2 := New(Options{Keys: f.keys, Registerer: f.reg})
	do(t, h2, "GET", "/nope", "")
	if got := testutil.ToFloat64(f.h.metrics.requests.WithLabelValues("other", "404")); got != 2 {
		t.Errorf("after a second handler: other/404 = %v, want 2", got)
	}
}

func TestKeysCollector(t *testing.T) {
	now := testNow
	calls := 0
	var fail error
	counts := map[string]int{store.StatusActive: 3, store.StatusExpired: 1}
	c := newKeysCollector(func(contextT) (map[string]int, error) {
		calls++
		if fail != nil {
			return nil, fail
		}
		out := map[string]int{}
		for k, v := range counts {
			out[k] = v
		}
		return out, nil
	}, 15*time.Second, func() time.Time { return now }, discardLogger())
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)

	fail = store.ErrUnavailable
	if n, err := testutil.GatherAndCount(reg, "keygate_keys"); err != nil || n != 0 {
		t.Fatalf("before any count succeeded: %d series, %v; want none", n, err)
	}
	fail = nil
	want := func(active, disabled, expired int) string {
		return "# HELP keygate_keys Keys in the store by status (active, disabled, expired), counted at scrape time.\n# TYPE keygate_keys gauge\n" +
			"keygate_keys{status=\"active\"} " + itoa(active) + "\nkeygate_keys{status=\"disabled\"} " + itoa(disabled) +
			"\nkeygate_keys{status=\"expired\"} " + itoa(expired) + "\n"
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want(3, 0, 1)), "keygate_keys"); err != nil {
		t.Fatal(err)
	}
	counts[store.StatusActive] = 5
	now = now.Add(10 * time.Second)
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want(3, 0, 1)), "keygate_keys"); err != nil {
		t.Errorf("within the TTL the cached count is reused: %v", err)
	}
	now = now.Add(6 * time.Second)
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want(5, 0, 1)), "keygate_keys"); err != nil {
		t.Errorf("after the TTL: %v", err)
	}
	fail = store.ErrUnavailable
	now = now.Add(time.Minute)
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want(5, 0, 1)), "keygate_keys"); err != nil {
		t.Errorf("store down: the last count stays: %v", err)
	}
	if calls != 4 {
		t.Errorf("count called %d times, want 4", calls)
	}
	if problems, err := testutil.CollectAndLint(c); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}
