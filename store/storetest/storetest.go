// Package storetest is the conformance suite every store.Backend passes:
// it drives the key Service (validation, audit, rotation, pagination,
// concurrency limits) and the Backend's own hot-path methods against a
// real backend, so store/embedded and store/postgres are held to the same
// behaviour.
package storetest

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/auth"
	"github.com/keygate/keygate/store"
)

// Clock is a settable clock for Options.Now.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock stopped at t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// start is where test clocks begin: a whole second in the future of any
// test run, so expiries the tests compute are never in the real past.
var start = time.Date(2031, 3, 4, 5, 6, 7, 0, time.UTC)

var admin = store.Actor{KeyID: "key_01TESTADMIN", IP: "192.0.2.10"}

// fixture is one fresh backend with a Service over it.
type fixture struct {
	t     *testing.T
	b     store.Backend
	clock *Clock
	svc   *store.Service
	opts  store.Options

	mu      sync.Mutex
	changes []store.Change
	secrets []string // every secret issued, to search the audit log for
}

type newBackendFunc = func(t *testing.T) store.Backend

func setup(t *testing.T, newBackend newBackendFunc, o store.Options) *fixture {
	t.Helper()
	f := &fixture{t: t, b: newBackend(t), clock: NewClock(start)}
	if o.Now == nil {
		o.Now = f.clock.Now
	}
	o.OnChange = func(c store.Change) {
		f.mu.Lock()
		f.changes = append(f.changes, c)
		f.mu.Unlock()
	}
	f.opts = o
	f.svc = store.NewService(f.b, o)
	return f
}

// service returns another Service over the same backend (another replica).
func (f *fixture) service(o store.Options) *store.Service {
	if o.Now == nil {
		o.Now = f.clock.Now
	}
	return store.NewService(f.b, o)
}

func (f *fixture) remember(secret string) {
	f.mu.Lock()
	f.secrets = append(f.secrets, secret)
	f.mu.Unlock()
}

func (f *fixture) create(body string) *store.Created {
	f.t.Helper()
	c, err := f.svc.Create(context.Background(), admin, []byte(body))
	if err != nil {
		f.t.Fatalf("Create(%s): %v", body, err)
	}
	f.remember(c.Secret)
	return c
}

func (f *fixture) get(id string) *store.Key {
	f.t.Helper()
	k, err := f.svc.Get(context.Background(), id)
	if err != nil {
		f.t.Fatalf("Get(%s): %v", id, err)
	}
	return k
}

// allAudit reads the whole audit log through the Service's pagination.
func (f *fixture) allAudit(q url.Values) []*store.AuditEvent {
	f.t.Helper()
	var all []*store.AuditEvent
	q = cloneValues(q)
	for {
		evs, next, err := f.svc.Audit(context.Background(), q)
		if err != nil {
			f.t.Fatalf("Audit(%v): %v", q, err)
		}
		all = append(all, evs...)
		if next == "" {
			return all
		}
		q.Set("cursor", next)
	}
}

func (f *fixture) allKeys(q url.Values) []*store.Key {
	f.t.Helper()
	var all []*store.Key
	q = cloneValues(q)
	for {
		keys, next, err := f.svc.List(context.Background(), q)
		if err != nil {
			f.t.Fatalf("List(%v): %v", q, err)
		}
		all = append(all, keys...)
		if next == "" {
			return all
		}
		q.Set("cursor", next)
	}
}

func (f *fixture) events(keyID, action string) []*store.AuditEvent {
	var out []*store.AuditEvent
	for _, ev := range f.allAudit(url.Values{"key_id": {keyID}}) {
		if ev.Action == action {
			out = append(out, ev)
		}
	}
	return out
}

// lastChange returns the last OnChange call.
func (f *fixture) lastChange() store.Change {
	f.t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.changes) == 0 {
		f.t.Fatal("OnChange was never called")
	}
	return f.changes[len(f.changes)-1]
}

func (f *fixture) changeCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.changes)
}

func cloneValues(q url.Values) url.Values {
	c := url.Values{}
	for k, v := range q {
		c[k] = append([]string(nil), v...)
	}
	return c
}

func ids(keys []*store.Key) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k.ID
	}
	return out
}

func wantFieldError(t *testing.T, err error, field string) {
	t.Helper()
	var fe *store.FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("error = %v, want a FieldError for %q", err, field)
	}
	if fe.Field != field {
		t.Fatalf("FieldError field = %q (%v), want %q", fe.Field, fe, field)
	}
}

func ptime(t time.Time) *time.Time { return &t }

func sameTime(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.Equal(*b)
}

// change returns ev's change of field, failing when it is absent.
func change(t *testing.T, ev *store.AuditEvent, field string) store.FieldChange {
	t.Helper()
	c, ok := ev.Changes[field]
	if !ok {
		t.Fatalf("%s event %s has no change of %q: %v", ev.Action, ev.ID, field, ev.Changes)
	}
	return c
}

// jsonEq compares two values by their JSON form, so values read back from
// a store (numbers as float64, lists as []any) compare with Go literals.
func jsonEq(a, b any) bool { return canonJSON(a) == canonJSON(b) }

// canonJSON is v's JSON with object keys sorted.
func canonJSON(v any) string {
	j, err := json.Marshal(v)
	if err != nil {
		return "unmarshalable: " + err.Error()
	}
	var generic any
	if err := json.Unmarshal(j, &generic); err != nil {
		return "invalid: " + err.Error()
	}
	j, _ = json.Marshal(generic)
	return string(j)
}

// Run runs the conformance suite. newBackend must return a fresh, empty,
// migrated backend for each call and arrange its own cleanup with
// t.Cleanup.
func Run(t *testing.T, newBackend func(t *testing.T) store.Backend) {
	tests := []struct {
		name string
		fn   func(t *testing.T, nb newBackendFunc)
	}{
		{"CreateAndGet", testCreateAndGet},
		{"CreateDefaults", testCreateDefaults},
		{"Lifetimes", testLifetimes},
		{"ValidationWritesNothing", testValidationWritesNothing},
		{"ListFilters", testListFilters},
		{"ListPaginationWithInserts", testListPagination},
		{"Update", testUpdate},
		{"EnableDisable", testEnableDisable},
		{"RotateWithoutGrace", testRotateWithoutGrace},
		{"RotateWithGrace", testRotateWithGrace},
		{"RevokeSessions", testRevokeSessions},
		{"DisableEndsSessions", testDisableEndsSessions},
		{"Delete", testDelete},
		{"Bulk", testBulk},
		{"PurgeExpired", testPurgeExpired},
		{"Import", testImport},
		{"NameUniqueness", testNameUniqueness},
		{"ConcurrentSameName", testConcurrentSameName},
		{"MaxPerApplication", testMaxPerApplication},
		{"AuditTrail", testAuditTrail},
		{"AuditFilters", testAuditFilters},
		{"Bootstrap", testBootstrap},
		{"SessionSecrets", testSessionSecrets},
		{"RetrievableSecrets", testRetrievableSecrets},
		{"Counts", testCounts},
		{"RecordUsage", testRecordUsage},
		{"Watch", testWatch},
		{"ScanKeys", testScanKeys},
		{"KeySource", testKeySource},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, newBackend)
		})
	}
}

func testCreateAndGet(t *testing.T, nb newBackendFunc) {
	f := setup(t, nb, store.Options{DefaultLifetime: 24 * time.Hour})
	c := f.create(`{
		"name": "billing-prod", "description": "Billing service", "user": "svc-billing",
		"application": "billing", "tenant": "acme",
		"tags": ["prod", "billing", "prod"], "scopes": ["api", "reports", "api"],
		"ip_allowlist": ["10.0.0.0/8", "2001:db8::1", "::ffff:192.0.2.7", "192.0.2.0/24"],
		"client_name": "billing-worker", "notes": "line one\nline two",
		"metadata": {"team": "payments", "cost_center": "42"},
		"sessions_allowed": false,
		"expires_in": "30d",
		"rate_limit": {"rps": 2.5}
	}`)
	k := c.Key
	if !strings.HasPrefix(k.ID, "key_") || len(k.ID) != len("key_")+26 {
		t.Errorf("id = %q, want key_ and 26 characters", k.ID)
	}
	if !auth.ValidSecret("kg", []byte(c.Secret)) {
		t.Errorf("secret %q is not a valid kg_ key", c.Secret)
	}
	if k.Hint != auth.Hint(c.Secret) || !strings.HasPrefix(c.Secret, k.Hint) {
		t.Errorf("hint = %q, want %q", k.Hint, auth.Hint(c.Secret))
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"name", k.Name, "billing-prod"},
		{"description", k.Description, "Billing service"},
		{"user", k.User, "svc-billing"},
		{"application", k.Application, "billing"},
		{"tenant", k.Tenant, "acme"},
		{"tags", k.Tags, []string{"prod", "billing"}},
		{"scopes", k.Scopes, []string{"api", "reports"}},
		{"ip_allowlist", k.IPAllowlist, []string{"10.0.0.0/8", "2001:db8::1", "192.0.2.7", "192.0.2.0/24"}},
		{"client_name", k.ClientName, "billing-worker"},
		{"notes", k.Notes, "line one\nline two"},
		{"metadata", k.Metadata, map[string]string{"team": "payments", "cost_center": "42"}},
		{"enabled", k.Enabled, true},
		{"sessions_allowed", k.SessionsAllowed, false},
		{"status", k.Status, store.StatusActive},
		{"rate_limit", k.RateLimit, &store.RateLimit{RPS: 2.5, Burst: 3}},
		{"expires_at", k.ExpiresAt.Format(time.RFC3339), start.Add(30 * 24 * time.Hour).Format(time.RFC3339)},
		{"created_at", k.CreatedAt.Format(time.RFC3339), start.Format(time.RFC3339)},
		{"last_used_at", k.LastUsedAt, (*time.Time)(nil)},
		{"secret_rotated_at", k.SecretRotatedAt, (*time.Time)(nil)},
	}
	for _, c := range checks {
		if !jsonEq(c.got, c.want) {
			t.Errorf("created %s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if len(c.Warnings) != 0 {
		t.Errorf("warnings = %q, want none for a key without keygate:admin", c.Warnings)
	}
	got := f.get(k.ID)
	if !jsonEq(got, k) {
		t.Errorf("Get = %+v\nwant what Create returned %+v", got, k)
	}
	if got.Digest != auth.Digest([]byte(c.Secret)) {
		t.Error("stored digest is not SHA-256 of the secret")
	}
	if ch := f.lastChange(); ch.KeyID != k.ID || !containsDigest(ch.Digests, auth.Digest([]byte(c.Secret))) {
		t.Errorf("OnChange = %+v, want key %s with its digest", ch, k.ID)
	}
	j, _ := json.Marshal(got)
	if strings.Contains(string(j), c.Secret) || strings.Contains(string(j), hex.EncodeToString(got.Digest[:])) {
		t.Errorf("key JSON holds the secret or its digest: %s", j)
	}

	adminKey := f.create(`{"name": "ops", "user": "alice", "scopes": ["keygate:admin"]}`)
	if len(adminKey.Warnings) != 1 || !strings.Contains(adminKey.Warnings[0], "least privilege") {
		t.Errorf("admin key warnings = %q, want one about least privilege", adminKey.Warnings)
	}
	if _, err := f.svc.Get(context.Background(), "key_01NOSUCHKEY0000000000000000"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get(missing) = %v, want ErrNotFound", err)
	}
	k2, err := f.svc.Lookup(context.Background(), c.Secret)
	if err != nil || k2.ID != k.ID {
		t.Errorf("Lookup(secret) = %v, %v; want %s", k2, err, k.ID)
	}
	if _, err := f.svc.Lookup(context.Background(), "kg_not-a-key"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Lookup(malformed) = %v, want ErrNotFound", err)
	}
	other, _ := auth.NewSecret("kg")
	if _, err := f.svc.Lookup(context.Background(), other); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Lookup(unknown secret) = %v, want ErrNotFound", err)
	}
}

func containsDigest(ds [][32]byte, d [32]byte) bool {
	for _, x := range ds {
		if x == d {
			return true
		}
	}
	return false
}

func testCreateDefaults(t *testing.T, nb newBackendFunc) {
	f := setup(t, nb, store.Options{DefaultLifetime: 24 * time.Hour})
	k := f.create(`{"name": "n", "user": "u"}`).Key
	if k.ExpiresAt == nil || !k.ExpiresAt.Equal(start.Add(24*time.Hour)) {
		t.Errorf("expires_at = %v, want now + default lifetime %v", k.ExpiresAt, start.Add(24*time.Hour))
	}
	if !k.Enabled || !k.SessionsAllowed {
		t.Errorf("enabled, sessions_allowed = %v, %v; want true, true", k.Enabled, k.SessionsAllowed)
	}
	j, _ := json.Marshal(f.get(k.ID))
	for _, want := range []string{`"tags":[]`, `"scopes":[]`, `"ip_allowlist":[]`, `"metadata":{}`, `"rate_limit":null`, `"last_used_at":null`} {
		if !strings.Contains(string(j), want) {
			t.Errorf("key JSON %s lacks %s", j, want)
		}
	}
	never := f.create(`{"name": "n2", "user": "u", "expires_at": null}`).Key
	if never.ExpiresAt != nil {
		t.Errorf("expires_at null: expires_at = %v, want never", never.ExpiresAt)
	}
	disabled := f.create(`{"name": "n3", "user": "u", "enabled": false}`).Key
	if disabled.Status != store.StatusDisabled {
		t.Errorf("enabled false: status = %q, want disabled", disabled.Status)
	}

	g := setup(t, nb, store.Options{})
	if k := g.create(`{"name": "n", "user": "u"}`).Key; k.ExpiresAt != nil {
		t.Errorf("without a default lifetime expires_at = %v, want never", k.ExpiresAt)
	}
}

func testLifetimes(t *testing.T, nb newBackendFunc) {
	f := setup(t, nb, store.Options{DefaultLifetime: 0, MaxLifetime: 90 * 24 * time.Hour})
	ctx := context.Background()
	k := f.create(`{"name": "capped", "user": "u"}`).Key
	if k.ExpiresAt == nil || !k.ExpiresAt.Equal(start.Add(90*24*time.Hour)) {
		t.Errorf("no default lifetime under a cap: expires_at = %v, want now + max lifetime", k.ExpiresAt)
	}
	refused := []struct{ body, field string }{
		{`{"name": "a", "user": "u", "expires_at": null}`, "expires_at"},
		{`{"name": "a", "user": "u", "expires_at": "` + start.Add(91*24*time.Hour).Format(time.RFC3339) + `"}`, "expires_at"},
		{`{"name": "a", "user": "u", "expires_in": "91d"}`, "expires_in"},
		{`{"name": "a", "user": "u", "expires_at": "` + start.Add(-time.Second).Format(time.RFC3339) + `"}`, "expires_at"},
		{`{"name": "a", "user": "u", "expires_in": "soon"}`, "expires_in"},
		{`{"name": "a", "user": "u", "expires_in": "-1h"}`, "expires_in"},
	}
	for _, r := range refused {
		_, err := f.svc.Create(ctx, admin, []byte(r.body))
		wantFieldError(t, err, r.field)
	}
	ok := f.create(`{"name": "b", "user": "u", "expires_in": "1d12h"}`).Key
	if !ok.ExpiresAt.Equal(start.Add(36 * time.Hour)) {
		t.Errorf(`expires_in "1d12h": expires_at = %v, want %v`, ok.ExpiresAt, start.Add(36*time.Hour))
	}
	_, err := f.svc.Update(ctx, admin, ok.ID, []byte(`{"expires_at": null}`))
	wantFieldError(t, err, "expires_at")
	if got := f.get(ok.ID); !sameTime(got.ExpiresAt, ok.ExpiresAt) {
		t.Errorf("refused patch changed expires_at to %v", got.ExpiresAt)
	}
}

// testValidationWritesNothing: every refused create leaves neither a key
// nor an audit event behind.
func testValidationWritesNothing(t *testing.T, nb newBackendFunc) {
	f := setup(t, nb, store.Options{DefaultLifetime: time.Hour})
	ctx := context.Background()
	long := strings.Repeat("x", 201)
	fieldCases := []struct{ body, field string }{
		{`{"user": "u"}`, "name"},
		{`{"name": "", "user": "u"}`, "name"},
		{`{"name": "   ", "user": "u"}`, "name"},
		{`{"name": "n"}`, "user"},
		{`{"name": "` + long + `", "user": "u"}`, "name"},
		{`{"name": "a\u0007b", "user": "u"}`, "name"},
		{`{"name": "n", "user": "u\nv"}`, "user"},
		{`{"name": 5, "user": "u"}`, "name"},
		{`{"name": "n", "user": "u", "tags": "prod"}`, "tags"},
		{`{"name": "n", "user": "u", "tags": ["a", 1]}`, "tags[1]"},
		{`{"name": "n", "user": "u", "scopes": ["ok", ""]}`, "scopes[1]"},
		{`{"name": "n", "user": "u", "scopes": ["two words"]}`, "scopes[0]"},
		{`{"name": "n", "user": "u", "ip_allowlist": ["10.0.0.1", "::1", "10.0.0.300"]}`, "ip_allowlist[2]"},
		{`{"name": "n", "user": "u", "ip_allowlist": ["10.0.0.0/33"]}`, "ip_allowlist[0]"},
		{`{"name": "n", "user": "u", "ip_allowlist": ["example.com"]}`, "ip_allowlist[0]"},
		{`{"name": "n", "user": "u", "metadata": {"": "x"}}`, "metadata"},
		{`{"name": "n", "user": "u", "metadata": {"k": 1}}`, "metadata.k"},
		{`{"name": "n", "user": "u", "metadata": ["k"]}`, "metadata"},
		{`{"name": "n", "user": "u", "enabled": "yes"}`, "enabled"},
		{`{"name": "n", "user": "u", "sessions_allowed": 1}`, "sessions_allowed"},
		{`{"name": "n", "user": "u", "rate_limit": {"rps": -1}}`, "rate_limit.rps"},
		{`{"name": "n", "user": "u", "rate_limit": {"rps": 2000000}}`, "rate_limit.rps"},
		{`{"name": "n", "user": "u", "rate_limit": {"rps": 1, "burst": 1.5}}`, "rate_limit.burst"},
		{`{"name": "n", "user": "u", "rate_limit": {"rps": 1, "burst": -1}}`, "rate_limit.burst"},
		{`{"name": "n", "user": "u", "rate_limit": {"rps": 1, "brust": 2}}`, "rate_limit.brust"},
		{`{"name": "n", "user": "u", "rate_limit": 5}`, "rate_limit"},
		{`{"name": "n", "user": "u", "expires_at": "tomorrow"}`, "expires_at"},
		{`{"name": "n", "user": "u", "expires_at": "2031-03-05T00:00:00Z", "expires_in": "1d"}`, "expires_in"},
		{`{"name": "n", "user": "u", "colour": "red"}`, "colour"},
		{`{"name": "n", "user": "u", "id": "key_mine"}`, "id"},
		{`{"name": "n", "user": "u", "status": "active"}`, "status"},
		{`{"name": "n", "user": "u", "hint": "kg_x"}`, "hint"},
		{`{"name": "n", "user": "u", "secret": "kg_tooshort"}`, "secret"},
		{`{"name": "n", "user": "u", "secret": 42}`, "secret"},
	}
	for _, c := range fieldCases {
		_, err := f.svc.Create(ctx, admin, []byte(c.body))
		var fe *store.FieldError
		if !errors.As(err, &fe) || fe.Field != c.field {
			t.Errorf("Create(%s) = %v, want FieldError for %q", c.body, err, c.field)
		}
	}
	for _, body := range []string{`{"name": "n",`, `not json`, `[1, 2]`, `"name"`, ``, `null`, `{"name": "n"} {}`} {
		_, err := f.svc.Create(ctx, admin, []byte(body))
		var be *store.BadRequestError
		if !errors.As(err, &be) {
			t.Errorf("Create(%q) = %v, want BadRequestError", body, err)
		}
	}
	if keys := f.allKeys(nil); len(keys) != 0 {
		t.Errorf("refused creates left %d keys: %v", len(keys), ids(keys))
	}
	if evs := f.allAudit(nil); len(evs) != 0 {
		t.Errorf("refused creates left %d audit events", len(evs))
	}
	if n := f.changeCount(); n != 0 {
		t.Errorf("refused creates called OnChange %d times", n)
	}
}

func testListFilters(t *testing.T, nb newBackendFunc) {
	f := setup(t, nb, store.Options{})
	ctx := context.Background()
	a := f.create(`{"name": "Alpha-Prod", "description": "the FIRST one", "user": "alice", "application": "shop", "tenant": "t1", "tags": ["prod", "eu"], "expires_in": "10d"}`).Key
	b := f.create(`{"name": "b-eta", "user": "bob", "application": "shop", "tenant": "t2", "tags": ["dev"], "expires_in": "1h"}`).Key
	c := f.create(`{"name": "gamma", "user": "alice", "application": "blog", "tags": ["prod"]}`).Key
	d := f.create(`{"name": "delta", "user": "carol", "enabled": false}`).Key
	f.clock.Advance(2 * time.Hour) // b expires
	cases := []struct {
		q    url.Values
		want []string
	}{
		{url.Values{}, []string{a.ID, b.ID, c.ID, d.ID}},
		{url.Values{"q": {"alpha-"}}, []string{a.ID}},
		{url.Values{"q": {"first one"}}, []string{a.ID}},
		{url.Values{"q": {"-ET"}}, []string{b.ID}}, // "-" and " " keep random hints from matching
		{url.Values{"q": {c.Hint[3:8]}}, []string{c.ID}},
		{url.Values{"status": {"active"}}, []string{a.ID, c.ID}},
		{url.Values{"status": {"expired"}}, []string{b.ID}},
		{url.Values{"status": {"disabled"}}, []string{d.ID}},
		{url.Values{"user": {"alice"}}, []string{a.ID, c.ID}},
		{url.Values{"application": {"shop"}}, []string{a.ID, b.ID}},
		{url.Values{"tenant": {"t2"}}, []string{b.ID}},
		{url.Values{"tag": {"prod"}}, []string{a.ID, c.ID}},
		{url.Values{"tag": {"pro"}}, nil},
		{url.Values{"expires_before": {start.Add(24 * time.Hour).Format(time.RFC3339)}}, []string{b.ID}},
		{url.Values{"user": {"alice"}, "tag": {"eu"}}, []string{a.ID}},
	}
	for _, tc := range cases {
		got := ids(f.allKeys(tc.q))
		if strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("List(%v) = %v, want %v", tc.q, got, tc.want)
		}
	}
	for _, k := range f.allKeys(nil) {
		if want := map[string]string{a.ID: "active", b.ID: "expired", c.ID: "active", d.ID: "disabled"}[k.ID]; k.Status != want {
			t.Errorf("listed %s status = %q, want %q", k.Name, k.Status, want)
		}
	}
	bad := []struct {
		q     url.Values
		field string
	}{
		{url.Values{"status": {"revoked"}}, "status"},
		{url.Values{"limit": {"0"}}, "limit"},
		{url.Values{"limit": {"1001"}}, "limit"},
		{url.Values{"limit": {"ten"}}, "limit"},
		{url.Values{"expires_before": {"2031-01-01"}}, "expires_before"},
		{url.Values{"cursor": {"!!!"}}, "cursor"},
	}
	for _, tc := range bad {
		_, _, err := f.svc.List(ctx, tc.q)
		var fe *store.FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("List(%v) = %v, want FieldError for %q", tc.q, err, tc.field)
		}
	}
}

func testListPagination(t *testing.T, nb newBackendFunc) {
	f := setup(t, nb, store.Options{})
	ctx := context.Background()
	// A second replica whose clock is behind makes ids that sort before
	// the cursor: they must not shift the pages either.
	lagging := f.service(store.Options{Now: func() time.Time { return start.Add(-time.Hour) }})
	var original []string
	for i := 0; i < 10; i++ {
		original = append(original, f.create(fmt.Sprintf(`{"name": "k%02d", "user": "u"}`, i)).Key.ID)
	}
	seen := map[string]int{}
	q := url.Values{"limit": {"3"}}
	pages := 0
	for {
		keys, next, err := f.svc.List(ctx, q)
		if err != nil {
			t.Fatalf("List(%v): %v", q, err)
		}
		if len(keys) > 3 {
			t.Fatalf("page of %d keys with limit 3", len(keys))
		}
		for _, k := range keys {
			seen[k.ID]++
		}
		pages++
		if next == "" {
			break
		}
		for j := 0; j < 2; j++ {
			f.create(fmt.Sprintf(`{"name": "new-%d-%d", "user": "u"}`, pages, j))
			if _, err := lagging.Create(ctx, admin, []byte(fmt.Sprintf(`{"name": "old-%d-%d", "user": "u"}`, pages, j))); err != nil {
				t.Fatal(err)
			}
		}
		if pages > 50 {
			t.Fatal("pagination does not end")
		}
		q.Set("cursor", next)
		if _, _, err := f.svc.List(ctx, url.Values{"limit": {"3"}, "cursor": {next[:len(next)-1] + flip(next[len(next)-1])}}); err == nil {
			t.Errorf("a cursor with its last character changed was accepted")
		} else {
			wantFieldError(t, err, "cursor")
		}
	}
	for _, id := range original {
		if seen[id] != 1 {
			t.Errorf("key %s listed %d times, want once", id, seen[id])
		}
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("key %s listed %d times", id, n)
		}
	}
	// Exactly a page: no next cursor pointing at an empty page.
	all := f.allKeys(nil)
	keys, next, err := f.svc.List(ctx, url.Values{"limit": {fmt.Sprint(len(all))}})
	if err != nil || len(keys) != len(all) || next != "" {
		t.Errorf("List(limit = all %d) = %d keys, next %q, %v; want all and no next cursor", len(all), len(keys), next, err)
	}
	// Audit cursors are not key cursors.
	_, next, _ = f.svc.List(ctx, url.Values{"limit": {"1"}})
	if _, _, err := f.svc.Audit(ctx, url.Values{"cursor": {next}}); err == nil {
		t.Error("Audit accepted a key list cursor")
	}
}

func flip(c byte) string {
	if c == 'A' {
		return "B"
	}
	return "A"
}

func testUpdate(t *testing.T, nb newBackendFunc) {
	f := setup(t, nb, store.Options{})
	ctx := context.Background()
	k := f.create(`{"name": "svc", "user": "u", "description": "d", "tags": ["a"], "metadata": {"keep": "1", "drop": "2"}, "rate_limit": {"rps": 10, "burst": 20}, "expires_in": "1d"}`).Key
	f.clock.Advance(time.Minute)
	before := f.changeCount()
	got, err := f.svc.Update(ctx, admin, k.ID, []byte(`{
		"name": "svc-renamed", "description": null, "tags": ["b", "c"],
		"metadata": {"drop": null, "add": "3"}, "rate_limit": {"rps": 5},
		"expires_at": null, "enabled": false, "ip_allowlist": ["10.1.2.3/8"]
	}`))
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"name", got.Name, "svc-renamed"},
		{"description", got.Description, ""},
		{"user", got.User, "u"},
		{"tags", got.Tags, []string{"b", "c"}},
		{"metadata", got.Metadata, map[string]string{"keep": "1", "add": "3"}},
		{"rate_limit", got.RateLimit, &store.RateLimit{RPS: 5, Burst: 20}},
		{"expires_at", got.ExpiresAt, (*time.Time)(nil)},
		{"enabled", got.Enabled, false},
		{"status", got.Status, store.StatusDisabled},
		{"ip_allowlist", got.IPAllowlist, []string{"10.0.0.0/8"}},
		{"updated_at", got.UpdatedAt.Format(time.RFC3339), start.Add(time.Minute).Format(time.RFC3339)},
		{"created_at", got.CreatedAt.Format(time.RFC3339), start.Format(time.RFC3339)},
	}
	for _, c := range checks {
		if !jsonEq(c.got, c.want) {
			t.Errorf("patched %s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if !jsonEq(f.get(k.ID), got) {
		t.Errorf("Get after Update differs from Update's result")
	}
	if f.changeCount() != before+1 || f.lastChange().KeyID != k.ID {
		t.Errorf("Update made %d OnChange calls, want 1 for %s", f.changeCount()-before, k.ID)
	}
	evs := f.events(k.ID, store.ActionUpdate)
	if len(evs) != 1 {
		t.Fatalf("%d update events, want 1", len(evs))
	}
	if c := change(t, evs[0], "name"); !jsonEq(c.Before, "svc") || !jsonEq(c.After, "svc-renamed") {
		t.Errorf("name change = %+v", c)
	}
	if c := change(t, evs[0], "rate_limit"); !jsonEq(c.Before, store.RateLimit{RPS: 10, Burst: 20}) || !jsonEq(c.After, store.RateLimit{RPS: 5, Burst: 20}) {
		t.Errorf("rate_limit change = %+v", c)
	}
	if c := change(t, evs[0], "expires_at"); c.Before == nil || c.After != nil {
		t.Errorf("expires_at change = %+v, want a time then null", c)
	}
	if _, ok := evs[0].Changes["user"]; ok {
		t.Error("the update event records user, which did not change")
	}

	// Nothing to change: no write, no event.
	if _, err := f.svc.Update(ctx, admin, k.ID, []byte(`{"name": "svc-renamed"}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Update(ctx, admin, k.ID, []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if n := len(f.events(k.ID, store.ActionUpdate)); n != 1 {
		t.Errorf("no-op patches wrote audit events: %d update events, want 1", n)
	}
	// Null resets to defaults; a past expiry is allowed (it expires the key now).
	got, err = f.svc.Update(ctx, admin, k.ID, []byte(`{"enabled": null, "rate_limit": null, "tags": null, "expires_at": "2030-01-01T00:00:00Z"}`))
	if err != nil {
		t.Fatal(err)
	}
	if !got.Enabled || got.RateLimit != nil || len(got.Tags) != 0 || got.Status != store.StatusExpired {
		t.Errorf("after null patch: enabled %v, rate_limit %v, tags %v, status %s", got.Enabled, got.RateLimit, got.Tags, got.Status)
	}
	got, err = f.svc.Update(ctx, admin, k.ID, []byte(`{"expires_in": "2d"}`))
	if err != nil || got.Status != store.StatusActive {
		t.Errorf("extending expiry: %v, status %s; want active again", err, got.Status)
	}

	refused := []struct{ patch, field string }{
		{`{"id": "key_x"}`, "id"},
		{`{"created_at": "2030-01-01T00:00:00Z"}`, "created_at"},
		{`{"last_used_at": null}`, "last_used_at"},
		{`{"previous_secret_expires_at": null}`, "previous_secret_expires_at"},
		{`{"secret_rotated_at": null}`, "secret_rotated_at"},
		{`{"status": "disabled"}`, "status"},
		{`{"secret": "kg_x"}`, "secret"},
		{`{"nmae": "x"}`, "nmae"},
		{`{"name": null}`, "name"},
		{`{"user": ""}`, "user"},
		{`{"ip_allowlist": ["1.2.3.4", "nope"]}`, "ip_allowlist[1]"},
		{`{"metadata": {"k": 1}}`, "metadata.k"},
	}
	snapshot := f.get(k.ID)
	events := len(f.allAudit(nil))
	for _, r := range refused {
		_, err := f.svc.Update(ctx, admin, k.ID, []byte(r.patch))
		var fe *store.FieldError
		if !errors.As(err, &fe) || fe.Field != r.field {
			t.Errorf("Update(%s) = %v, want FieldError for %q", r.patch, err, r.field)
		}
	}
	if _, err := f.svc.Update(ctx, admin, k.ID, []byte(`{"name": `)); !isBadRequest(err) {
		t.Errorf("Update(malformed) = %v, want BadRequestError", err)
	}
	if !jsonEq(f.get(k.ID), snapshot) || len(f.allAudit(nil)) != events {
		t.Error("refused patches changed the key or wrote audit events")
	}
	if _, err := f.svc.Update(ctx, admin, "key_01NOSUCHKEY0000000000000000", []byte(`{"name": "x"}`)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Update(missing) = %v, want ErrNotFound", err)
	}
	other := f.create(`{"name": "other", "user": "u"}`).Key
	if _, err := f.svc.Update(ctx, admin, other.ID, []byte(`{"name": "svc-renamed"}`)); !errors.Is(err, store.ErrNameTaken) {
		t.Errorf("renaming onto a taken name = %v, want ErrNameTaken", err)
	}
	if _, err := f.svc.Update(ctx, admin, other.ID, []byte(`{"name": "svc-renamed", "application": "elsewhere"}`)); err != nil {
		t.Errorf("the same name in another application: %v", err)
	}
}

func isBadRequest(err error) bool {
	var be *store.BadRequestError
	return errors.As(err, &be)
}

func testEnableDisable(t *testing.T, nb newBackendFunc) {
	f := setup(t, nb, store.Options{})
	ctx := context.Background()
	k := f.create(`{"name": "n", "user": "u"}`).Key
	got, err := f.svc.SetEnabled(ctx, admin, k.ID, false)
	if err != nil || got.Enabled || got.Status != store.StatusDisabled {
		t.Fatalf("disable = %+v, %v", got, err)
	}
	if f.get(k.ID).Status != store.StatusDisabled {
		t.Error("Get after disable is not disabled")
	}
	if _, err := f.svc.SetEnabled(ctx, admin, k.ID, false); err != nil {
		t.Fatal(err)
	}
	got, err = f.svc.SetEnabled(ctx, admin, k.ID, true)
	if err != nil || !got.Enabled || got.Status != store.StatusActive {
		t.Fatalf("enable = %+v, %v", got, err)
	}
	dis, en := f.events(k.ID, store.ActionDisable), f.events(k.ID, store.ActionEnable)
	if len(dis) != 1 || len(en) != 1 {
		t.Fatalf("%d disable and %d enable events, want 1 each (disabling twice changes nothing)", len(dis), len(en))
	}
	if c := change(t, dis[0], "enabled"); c.Before != true || c.After != false {
		t.Errorf("disable change = %+v", c)
	}
	if dis[0].Actor != admin.KeyID || dis[0].IP != admin.IP {
		t.Errorf("disable event actor, ip = %q, %q; want %q, %q", dis[0].Actor, dis[0].IP, admin.KeyID, admin.IP)
	}
	if _, err := f.svc.SetEnabled(ctx, admin, "key_01NOSUCHKEY0000000000000000", true); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("SetEnabled(missing) = %v, want ErrNotFound", err)
	}
}

func testRotateWithoutGrace(t *testing.T, nb newBackendFunc) {
	f := setup(t, nb, store.Options{})
	ctx := context.Background()
	c := f.create(`{"name": "n", "user": "u"}`)
	ks := store.NewKeySource(f.b)
	epoch := mustLookupID(t, ks, c.Key.ID).SessionEpoch
	f.clock.Advance(time.Minute)
	r, err := f.svc.Rotate(ctx, admin, c.Key.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.remember(r.Secret)
	if r.Secret == c.Secret || !auth.ValidSecret("kg", []byte(r.Secret)) {
		t.Fatalf("rotated secret %q: not new or not valid", r.Secret)
	}
	if rotatedAt := ptime(start.Add(time.Minute)); !sameTime(r.PreviousExpiresAt, rotatedAt) || !sameTime(r.Key.PreviousSecretExpiresAt, rotatedAt) {
		t.Errorf("no grace: previous expires at %v / %v, want the rotation time", r.PreviousExpiresAt, r.Key.PreviousSecretExpiresAt)
	}
	if !sameTime(r.Key.SecretRotatedAt, ptime(start.Add(time.Minute))) || r.Key.Hint != auth.Hint(r.Secret) {
		t.Errorf("secret_rotated_at %v, hint %q", r.Key.SecretRotatedAt, r.Key.Hint)
	}
	if _, err := f.svc.Lookup(ctx, c.Secret); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Lookup(old secret) after rotation without grace = %v, want ErrNotFound", err)
	}
	// The hot path still finds the old secret, as expired: key_expired.
	if old, err := ks.LookupKey(ctx, auth.Digest([]byte(c.Secret))); err != nil || !old.Previous ||
		!errors.Is(old.CheckState(f.clock.Now()), auth.ErrKeyExpired) {
		t.Errorf("KeySource.LookupKey(old digest) = %+v, %v; want the key as an expired previous secret", old, err)
	}
	if k, err := f.svc.Lookup(ctx, r.Secret); err != nil || k.ID != c.Key.ID {
		t.Errorf("Lookup(new secret) = %v, %v", k, err)
	}
	if got := mustLookupID(t, ks, c.Key.ID).SessionEpoch; got != epoch+1 {
		t.Errorf("session epoch %d → %d, want it bumped: sessions end on rotation without grace", epoch, got)
	}
	ch := f.lastChange()
	if !containsDigest(ch.Digests, auth.Digest([]byte(c.Secret))) || !containsDigest(ch.Digests, auth.Digest([]byte(r.Secret))) {
		t.Errorf("OnChange after rotate has digests %x, want the old and the new one", ch.Digests)
	}
	evs := f.events(c.Key.ID, store.ActionRotate)
	if len(evs) != 1 {
		t.Fatalf("%d rotate events, want 1", len(evs))
	}
	change(t, evs[0], "hint")
	change(t, evs[0], "secret_rotated_at")
	if _, err := f.svc.Rotate(ctx, admin, c.Key.ID, -time.Second); err == nil {
		t.Error("Rotate with a negative grace was accepted")
	}
	if _, err := f.svc.Rotate(ctx, admin, "key_01NOSUCHKEY0000000000000000", 0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Rotate(missing) = %v, want ErrNotFound", err)
	}
}

func mustLookupID(t *testing.T, ks *store.KeySource, id string) *auth.Key {
	t.Helper()
	k, err := ks.LookupKeyID(context.Background(), id)
	if err != nil {
		t.Fatalf("LookupKeyID(%s): %v", id, err)
	}
	return k
}

func testRotateWithGrace(t *testing.T, nb newBackendFunc) {
	f := setup(t, nb, store.Options{})
	ctx := context.Background()
	ks := store.NewKeySource(f.b)
	c := f.create(`{"name": "n", "user": "u"}`)
	epoch := mustLookupID(t, ks, c.Key.ID).SessionEpoch
	r, err := f.svc.Rotate(ctx, admin, c.Key.ID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	f.remember(r.Secret)
	graceEnd := start.Add(time.Hour)
	if !sameTime(r.PreviousExpiresAt, &graceEnd) || !sameTime(r.Key.PreviousSecretExpiresAt, &graceEnd) {
		t.Errorf("previous expires at %v / %v, want %v", r.PreviousExpiresAt, r.Key.PreviousSecretExpiresAt, graceEnd)
	}
	if got := mustLookupID(t, ks, c.Key.ID).SessionEpoch; got != epoch {
		t.Errorf("rotation with grace changed the session epoch %d → %d", epoch, got)
	}

	// During the grace period both secrets work.
	for _, s := range []string{c.Secret, r.Secret} {
		if k, err := f.svc.Lookup(ctx, s); err != nil || k.ID != c.Key.ID {
			t.Errorf("during grace Lookup = %v, %v; want %s", k, err, c.Key.ID)
		}
	}
	old, err := ks.LookupKey(ctx, auth.Digest([]byte(c.Secret)))
	if err != nil {
		t.Fatal(err)
	}
	if !old.Previous || !old.PreviousExpiresAt.Equal(graceEnd) {
		t.Errorf("old secret's auth.Key: Previous %v until %v, want true until %v", old.Previous, old.PreviousExpiresAt, graceEnd)
	}
	if err := old.CheckState(f.clock.Now()); err != nil {
		t.Errorf("old secret during grace: %v", err)
	}
	cur, err := ks.LookupKey(ctx, auth.Digest([]byte(r.Secret)))
	if err != nil || cur.Previous {
		t.Errorf("new secret's auth.Key: %+v, %v; want Previous false", cur, err)
	}

	f.clock.Advance(time.Hour)
	if _, err := f.svc.Lookup(ctx, c.Secret); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Lookup(old secret) after grace = %v, want ErrNotFound", err)
	}
	if err := old.CheckState(f.clock.Now()); !errors.Is(err, auth.ErrKeyExpired) {
		t.Errorf("old secret after grace: %v, want auth.ErrKeyExpired", err)
	}
	if k, err := f.svc.Lookup(ctx, r.Secret); err != nil || k.ID != c.Key.ID {
		t.Errorf("after grace Lookup(new secret) = %v, %v", k, err)
	}

	// Only one previous secret: rotating again drops the first one.
	r2, err := f.svc.Rotate(ctx, admin, c.Key.ID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	f.remember(r2.Secret)
	if _, err := ks.LookupKey(ctx, auth.Digest([]byte(c.Secret))); !errors.Is(err, auth.ErrKeyNotFound) {
		t.Errorf("first secret after a second rotation: %v, want auth.ErrKeyNotFound", err)
	}
	if k, err := f.svc.Lookup(ctx, r.Secret); err != nil || k.ID != c.Key.ID {
		t.Errorf("second secret during the second grace: %v, %v", k, err)
	}
	if n := len(f.events(c.Key.ID, store.ActionRotate)); n != 2 {
		t.Errorf("%d rotate events, want 2", n)
	}
}

func testRevokeSessions(t *testing.T, nb newBackendFunc) {
	f := setup(t, nb, store.Options{})
	ctx := context.Background()
	ks := store.NewKeySource(f.b)
	k := f.create(`{"name": "n", "user": "u"}`).Key
	e0 := mustLookupID(t, ks, k.ID).SessionEpoch
	if _, err := f.svc.RevokeSessions(ctx, admin, k.ID); err != nil {
		t.Fatal(err)
	}
	if e1 := mustLookupID(t, ks, k.ID).SessionEpoch; e1 != e0+1 {
		t.Errorf("session epoch %d → %d, want +1", e0, e1)
	}
	evs := f.events(k.ID, store.ActionRevokeSessions)
	if len(evs) != 1 {
		t.Fatalf("%d revoke_sessions events, want 1", len(evs))
	}
	if c := change(t, evs[0], "session_epoch"); !jsonEq(c.After, e0+1) {
		t.Errorf("session_epoch change = %+v", c)
	}
	if _, err := f.svc.RevokeSessions(ctx, admin, "key_01NOSUCHKEY0000000000000000"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RevokeSessions(missing) = %v, want ErrNotFound", err)
	}
}

// testDisableEndsSessions pins that disabling a key (or its sessions) bumps
// the session epoch, so re-enabling a key disabled because it leaked does
// not bring its cookies back; enabling does not bump it again.
func testDisableEndsSessions(t *testing.T, nb newBackendFunc) {
	f := setup(t, nb, store.Options{})
	ctx := context.Background()
	ks := store.NewKeySource(f.b)
	k := f.create(`{"name": "n", "user": "u"}`).Key
	e0 := mustLookupID(t, ks, k.ID).SessionEpoch
	if _, err := f.svc.SetEnabled(ctx, admin, k.ID, false); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.SetEnabled(ctx, admin, k.ID, true); err != nil {
		t.Fatal(err)
	}
	if e1 := mustLookupID(t, ks, k.ID).SessionEpoch; e1 != e0+1 {
		t.Errorf("after disable+enable session epoch %d → %d, want +1", e0, e1)
	}
	if _, err := f.svc.Update(ctx, admin, k.ID, []byte(`{"sessions_allowed": false}`)); err != nil {
		t.Fatal(err)
	}
	if e2 := mustLookupID(t, ks, k.ID).SessionEpoch; e2 != e0+2 {
		t.Errorf("after sessions_allowed=false session epoch %d → %d, want +2", e0, e2)
	}
}

func testDelete(t *testing.T, nb newBackendFunc) {
	f := setup(t, nb, store.Options{})
	ctx := context.Background()
	c := f.create(`{"name": "n", "user": "u", "application": "app"}`)
	if err := f.svc.Delete(ctx, admin, c.Key.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Get(ctx, c.Key.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get after Delete = %v, want ErrNotFound", err)
	}
	if _, err := f.svc.Lookup(ctx, c.Secret); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Lookup after Delete = %v, want ErrNotFound", err)
	}
	if ch := f.lastChange(); ch.KeyID != c.Key.ID || !containsDigest(ch.Digests, auth.Digest([]byte(c.Secret))) {
		t.Errorf("OnChange after delete = %+v", ch)
	}
	if err := f.svc.Delete(ctx, admin, c.Key.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second Delete = %v, want ErrNotFound", err)
	}
	evs := f.events(c.Key.ID, store.ActionDelete)
	if len(evs) != 1 {
		t.Fatalf("%d delete events, want 1", len(evs))
	}
	if ch := change(t, evs[0], "name"); !jsonEq(ch.Before, "n") || ch.After != nil {
		t.Errorf("delete event name change = %+v", ch)
	}
	// The name and the secret are free again.
	if _, err := f.svc.Create(ctx, admin, []byte(`{"name": "n", "user": "u", "application": "app"}`)); err != nil {
		t.Errorf("reusing a deleted key's name: %v", err)
	}
}

func testBulk(t *testing.T, nb newBackendFunc) {
	f := setup(t, nb, store.Options{})
	ctx := context.Background()
	a := f.create(`{"name": "a", "user": "u"}`).Key
	b := f.create(`{"name": "b", "user": "u"}`).Key
	c := f.create(`{"name": "c", "user": "u"}`).Key
	missing := "key_01NOSUCHKEY0000000000000000"
	res, err := f.svc.Bulk(ctx, admin, "disable", []string{a.ID, missing, b.ID})
	if err != nil {
		t.Fatal(err)
	}
	want := []store.BulkResult{{ID: a.ID, OK: true}, {ID: missing, Error: "not_found"}, {ID: b.ID, OK: true}}
	if !jsonEq(res, want) {
		t.Errorf("Bulk(disable) = %+v, want %+v", res, want)
	}
	for _, k := range []*store.Key{a, b} {
		if f.get(k.ID).Enabled {
			t.Errorf("%s still enabled after bulk disable", k.Name)
		}
	}
	if !f.get(c.ID).Enabled {
		t.Error("bulk disable touched a key not listed")
	}
	if _, err := f.svc.Bulk(ctx, admin, "enable", []string{a.ID}); err != nil || !f.get(a.ID).Enabled {
		t.Errorf("bulk enable: %v", err)
	}
	res, err = f.svc.Bulk(ctx, admin, "delete", []string{missing, c.ID, a.ID})
	if err != nil {
		t.Fatal(err)
	}
	want = []store.BulkResult{{ID: missing, Error: "not_found"}, {ID: c.ID, OK: true}, {ID: a.ID, OK: true}}
	if !jsonEq(res, want) {
		t.Errorf("Bulk(delete) = %+v, want %+v", res, want)
	}
	if got := ids(f.allKeys(nil)); len(got) != 1 || got[0] != b.ID {
		t.Errorf("after bulk delete keys = %v, want only %s", got, b.ID)
	}
	if n := len(f.events(c.ID, store.ActionDelete)); n != 1 {
		t.Errorf("%d delete events for a bulk-deleted key, want 1", n)
	}
	_, err = f.svc.Bulk(ctx, admin, "explode", []string{b.ID})
	wantFieldError(t, err, "action")
}

func testPurgeExpired(t *testing.T, nb newBackendFunc) {
	f := setup(t, nb, store.Options{})
	ctx := context.Background()
	old1 := f.create(`{"name": "old1", "user": "u", "expires_in": "1h"}`).Key
	old2 := f.create(`{"name": "old2", "user": "u", "expires_in": "2h"}`).Key
	recent := f.create(`{"name": "recent", "user": "u", "expires_in": "30d"}`).Key
	never := f.create(`{"name": "never", "user": "u"}`).Key
	live := f.create(`{"name": "live", "user": "u", "expires_in": "60d"}`).Key
	f.clock.Advance(31 * 24 * time.Hour) // old1, old2 expired 31d ago; recent 1d ago
	n, err := f.svc.PurgeExpired(ctx, admin, 7*24*time.Hour, true)
	if err != nil || n != 2 {
		t.Errorf("dry run = %d, %v; want 2", n, err)
	}
	if got := len(f.allKeys(nil)); got != 5 {
		t.Errorf("dry run deleted keys: %d left, want 5", got)
	}
	if evs := f.allAudit(url.Values{"key_id": {old1.ID}}); len(evs) != 1 {
		t.Errorf("dry run wrote audit events: %d for old1, want its create only", len(evs))
	}
	n, err = f.svc.PurgeExpired(ctx, admin, 7*24*time.Hour, false)
	if err != nil || n != 2 {
		t.Errorf("purge = %d, %v; want 2", n, err)
	}
	left := ids(f.allKeys(nil))
	sort.Strings(left)
	want := []string{recent.ID, never.ID, live.ID}
	sort.Strings(want)
	if strings.Join(left, ",") != strings.Join(want, ",") {
		t.Errorf("after purge keys = %v, want %v", left, want)
	}
	for _, k := range []*store.Key{old1, old2} {
		if evs := f.events(k.ID, store.ActionPurge); len(evs) != 1 {
			t.Errorf("%d purge events for %s, want 1", len(evs), k.Name)
		}
	}
	if n, err := f.svc.PurgeExpired(ctx, admin, 0, false); err != nil || n != 1 {
		t.Errorf("purge with expired_for 0 = %d, %v; want 1 (recent)", n, err)
	}
	if _, err := f.svc.PurgeExpired(ctx, admin, -time.Hour, false); err == nil {
		t.Error("a negative expired_for was accepted")
	}
}

func testImport(t *testing.T, nb newBackendFunc) {
	ctx := context.Background()
	native, _ := auth.NewSecret("kg")
	foreign := "sk_live_0123456789abcdefghijklmnop"

	f := setup(t, nb, store.Options{})
	c, err := f.svc.Create(ctx, admin, []byte(`{"name": "imported", "user": "u", "secret": "`+native+`"}`))
	if err != nil {
		t.Fatalf("importing a native key: %v", err)
	}
	f.remember(native)
	if c.Secret != native || c.Key.Hint != auth.Hint(native) {
		t.Errorf("import returned secret %q hint %q", c.Secret, c.Key.Hint)
	}
	if k, err := f.svc.Lookup(ctx, native); err != nil || k.ID != c.Key.ID {
		t.Errorf("Lookup(imported) = %v, %v", k, err)
	}
	if evs := f.events(c.Key.ID, store.ActionImport); len(evs) != 1 {
		t.Errorf("%d import events, want 1", len(evs))
	}
	if evs := f.events(c.Key.ID, store.ActionCreate); len(evs) != 0 {
		t.Errorf("an import was audited as create too")
	}
	_, err = f.svc.Create(ctx, admin, []byte(`{"name": "again", "user": "u", "secret": "`+native+`"}`))
	if !errors.Is(err, store.ErrSecretTaken) {
		t.Errorf("importing a secret in use = %v, want ErrSecretTaken", err)
	}
	bad := native[:len(native)-1] + flip(native[len(native)-1])
	_, err = f.svc.Create(ctx, admin, []byte(`{"name": "bad", "user": "u", "secret": "`+bad+`"}`))
	wantFieldError(t, err, "secret")
	_, err = f.svc.Create(ctx, admin, []byte(`{"name": "foreign", "user": "u", "secret": "`+foreign+`"}`))
	wantFieldError(t, err, "secret")
	other, _ := auth.NewSecret("zz")
	_, err = f.svc.Create(ctx, admin, []byte(`{"name": "prefix", "user": "u", "secret": "`+other+`"}`))
	wantFieldError(t, err, "secret")

	g := setup(t, nb, store.Options{AcceptForeignKeys: true, KeyPrefix: "zz"})
	c, err = g.svc.Create(ctx, admin, []byte(`{"name": "foreign", "user": "u", "secret": "`+foreign+`"}`))
	if err != nil {
		t.Fatalf("importing a foreign key when accepted: %v", err)
	}
	g.remember(foreign)
	if k, err := g.svc.Lookup(ctx, foreign); err != nil || k.ID != c.Key.ID {
		t.Errorf("Lookup(foreign) = %v, %v", k, err)
	}
	if c, err := g.svc.Create(ctx, admin, []byte(`{"name": "gen", "user": "u"}`)); err != nil || !strings.HasPrefix(c.Secret, "zz_") {
		t.Errorf("generated key with prefix zz: %v, %v", c, err)
	}
	for _, s := range []string{"short-but-visible", strings.Repeat("x", 23), strings.Repeat("x", 30) + " y"} {
		_, err = g.svc.Create(ctx, admin, []byte(`{"name": "f2", "user": "u", "secret": "`+s+`"}`))
		wantFieldError(t, err, "secret")
	}
	secretsNeverAudited(t, f)
	secretsNeverAudited(t, g)
}

func testNameUniqueness(t *testing.T, nb newBackendFunc) {
	f := setup(t, nb, store.Options{})
	ctx := context.Background()
	f.create(`{"name": "dup", "user": "u", "application": "a"}`)
	if _, err := f.svc.Create(ctx, admin, []byte(`{"name": "dup", "user": "v", "application": "a"}`)); !errors.Is(err, store.ErrNameTaken) {
		t.Errorf("same name in one application = %v, want ErrNameTaken", err)
	}
	f.create(`{"name": "dup", "user": "u", "application": "b"}`)
	f.create(`{"name": "dup", "user": "u"}`)
	if _, err := f.svc.Create(ctx, admin, []byte(`{"name": "dup", "user": "u"}`)); !errors.Is(err, store.ErrNameTaken) {
		t.Errorf("same name without application = %v, want ErrNameTaken", err)
	}
	if n := len(f.allKeys(nil)); n != 3 {
		t.Errorf("%d keys, want 3", n)
	}
	if n := len(f.allAudit(nil)); n != 3 {
		t.Errorf("%d audit events, want 3 (refused creates write none)", n)
	}
}

// race runs fn n times at once and returns the errors.
func race(n int, fn func(i int) error) []error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	ready := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-ready
			errs[i] = fn(i)
		}()
	}
	close(ready)
	wg.Wait()
	return errs
}

func testConcurrentSameName(t *testing.T, nb newBackendFunc) {
	f := setup(t, nb, store.Options{})
	replica := f.service(store.Options{})
	svcs := []*store.Service{f.svc, replica}
	errs := race(2, func(i int) error {
		_, err := svcs[i].Create(context.Background(), admin, []byte(`{"name": "same", "user": "u", "application": "app"}`))
		return err
	})
	ok, taken := 0, 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, store.ErrNameTaken):
			taken++
		default:
			t.Errorf("concurrent create: %v", err)
		}
	}
	if ok != 1 || taken != 1 {
		t.Errorf("two concurrent creates with one name: %d succeeded, %d ErrNameTaken; want 1 and 1", ok, taken)
	}
	if n := len(f.allKeys(nil)); n != 1 {
		t.Errorf("%d keys stored, want 1", n)
	}
	if n := len(f.allAudit(nil)); n != 1 {
		t.Errorf("%d audit events, want 1", n)
	}
}

func testMaxPerApplication(t *testing.T, nb newBackendFunc) {
	f := setup(t, nb, store.Options{MaxPerApplication: 2})
	ctx := context.Background()
	replica := f.service(store.Options{MaxPerApplication: 2})
	svcs := []*store.Service{f.svc, replica}
	errs := race(6, func(i int) error {
		_, err := svcs[i%2].Create(ctx, admin, []byte(fmt.Sprintf(`{"name": "k%d", "user": "u", "application": "app"}`, i)))
		return err
	})
	ok, limited := 0, 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, store.ErrApplicationLimit):
			limited++
		default:
			t.Errorf("concurrent create: %v", err)
		}
	}
	if ok != 2 || limited != 4 {
		t.Errorf("6 concurrent creates under a limit of 2: %d succeeded, %d refused; want 2 and 4", ok, limited)
	}
	if n := len(f.allKeys(url.Values{"application": {"app"}})); n != 2 {
		t.Errorf("application holds %d keys, want 2", n)
	}
	if n := len(f.allAudit(nil)); n != 2 {
		t.Errorf("%d audit events, want 2", n)
	}
	for i := 0; i < 3; i++ {
		f.create(fmt.Sprintf(`{"name": "free%d", "user": "u"}`, i)) // no application: no cap
	}
	other := f.create(`{"name": "mover", "user": "u", "application": "other"}`).Key
	if _, err := f.svc.Update(ctx, admin, other.ID, []byte(`{"application": "app"}`)); !errors.Is(err, store.ErrApplicationLimit) {
		t.Errorf("moving a key into a full application = %v, want ErrApplicationLimit", err)
	}
	inApp := f.allKeys(url.Values{"application": {"app"}})
	if _, err := f.svc.Update(ctx, admin, inApp[0].ID, []byte(`{"description": "still fits"}`)); err != nil {
		t.Errorf("editing a key of a full application: %v", err)
	}
	if err := f.svc.Delete(ctx, admin, inApp[0].ID); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Update(ctx, admin, other.ID, []byte(`{"application": "app"}`)); err != nil {
		t.Errorf("moving a key into an application with room: %v", err)
	}
}

// secretsNeverAudited searches every audit event's JSON for every secret
// the fixture issued and for its digest in hex and base64.
func secretsNeverAudited(t *testing.T, f *fixture) {
	t.Helper()
	evs := f.allAudit(nil)
	f.mu.Lock()
	secrets := append([]string(nil), f.secrets...)
	f.mu.Unlock()
	for _, ev := range evs {
		j, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		s := string(j)
		for _, secret := range secrets {
			d := auth.Digest([]byte(secret))
			for _, needle := range []string{
				secret, secret[len(secret)-12:], hex.EncodeToString(d[:]), strings.ToUpper(hex.EncodeToString(d[:])),
				base64.StdEncoding.EncodeToString(d[:]), base64.RawURLEncoding.EncodeToString(d[:]),
			} {
				if strings.Contains(s, needle) {
					t.Errorf("audit event %s (%s) holds a secret or its digest: %s", ev.ID, ev.Action, s)
				}
			}
		}
		for _, banned := range []string{"digest", "sealed", `"secret"`} {
			if strings.Contains(s, banned) {
				t.Errorf("audit event %s (%s) mentions %s: %s", ev.ID, ev.Action, banned, s)
			}
		}
	}
}

func testAuditTrail(t *testing.T, nb newBackendFunc) {
	dir := t.TempDir()
	sealer, err := store.NewSealer(dir + "/keystore")
	if err != nil {
		t.Fatal(err)
	}
	f := setup(t, nb, store.Options{Sealer: sealer})
	ctx := context.Background()
	c := f.create(`{"name": "audited", "user": "u", "tags": ["x"], "metadata": {"a": "b"}}`)
	id := c.Key.ID
	steps := []struct {
		action string
		do     func() error
	}{
		{store.ActionUpdate, func() error {
			_, err := f.svc.Update(ctx, admin, id, []byte(`{"description": "new", "tags": ["y"]}`))
			return err
		}},
		{store.ActionDisable, func() error { _, err := f.svc.SetEnabled(ctx, admin, id, false); return err }},
		{store.ActionEnable, func() error { _, err := f.svc.SetEnabled(ctx, admin, id, true); return err }},
		{store.ActionRotate, func() error {
			r, err := f.svc.Rotate(ctx, admin, id, time.Hour)
			if err == nil {
				f.remember(r.Secret)
			}
			return err
		}},
		{store.ActionRevealSecret, func() error { _, err := f.svc.Secret(ctx, admin, id); return err }},
		{store.ActionRevokeSessions, func() error { _, err := f.svc.RevokeSessions(ctx, admin, id); return err }},
		{store.ActionDelete, func() error { return f.svc.Delete(ctx, admin, id) }},
	}
	for _, st := range steps {
		n := len(f.allAudit(nil))
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.action, err)
		}
		evs := f.allAudit(nil)
		if len(evs) != n+1 {
			t.Fatalf("%s wrote %d audit events, want 1", st.action, len(evs)-n)
		}
		ev := evs[len(evs)-1]
		if ev.Action != st.action || ev.KeyID != id || ev.Actor != admin.KeyID || ev.IP != admin.IP || !ev.At.Equal(f.clock.Now()) {
			t.Errorf("%s event = %+v", st.action, ev)
		}
		if st.action != store.ActionRevealSecret && len(ev.Changes) == 0 {
			t.Errorf("%s event records no changes", st.action)
		}
		for field, ch := range ev.Changes {
			if jsonEq(ch.Before, ch.After) {
				t.Errorf("%s event: %s before and after are equal (%v)", st.action, field, ch.Before)
			}
		}
		f.clock.Advance(time.Second)
	}
	upd := f.events(id, store.ActionUpdate)[0]
	if ch := change(t, upd, "tags"); !jsonEq(ch.Before, []string{"x"}) || !jsonEq(ch.After, []string{"y"}) {
		t.Errorf("tags change = %+v", ch)
	}
	if ch := change(t, upd, "description"); !jsonEq(ch.Before, "") || !jsonEq(ch.After, "new") {
		t.Errorf("description change = %+v", ch)
	}
	cr := f.events(id, store.ActionCreate)
	if len(cr) != 1 {
		t.Fatalf("%d create events, want 1", len(cr))
	}
	if ch := change(t, cr[0], "name"); ch.Before != nil || !jsonEq(ch.After, "audited") {
		t.Errorf("create name change = %+v", ch)
	}
	// The system acts when no admin key does.
	if _, err := f.svc.Create(ctx, store.Actor{}, []byte(`{"name": "sys", "user": "u"}`)); err != nil {
		t.Fatal(err)
	}
	evs := f.allAudit(nil)
	if last := evs[len(evs)-1]; last.Actor != store.SystemActor {
		t.Errorf("actor without an admin key = %q, want %q", last.Actor, store.SystemActor)
	}
	for i := 1; i < len(evs); i++ {
		if evs[i-1].ID >= evs[i].ID || !strings.HasPrefix(evs[i].ID, "evt_") {
			t.Errorf("audit ids not ascending evt_ ids: %s, %s", evs[i-1].ID, evs[i].ID)
		}
	}
	secretsNeverAudited(t, f)
}

func testAuditFilters(t *testing.T, nb newBackendFunc) {
	f := setup(t, nb, store.Options{})
	ctx := context.Background()
	a := f.create(`{"name": "a", "user": "u"}`).Key
	f.clock.Advance(time.Hour)
	other := store.Actor{KeyID: "key_01OTHERADMIN", IP: "2001:db8::9"}
	b, err := f.svc.Create(ctx, other, []byte(`{"name": "b", "user": "u"}`))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 4; i++ {
		if _, err := f.svc.Update(ctx, other, a.ID, []byte(fmt.Sprintf(`{"description": "v%d"}`, i))); err != nil {
			t.Fatal(err)
		}
	}
	count := func(q url.Values) int { return len(f.allAudit(q)) }
	if n := count(url.Values{"key_id": {a.ID}}); n != 5 {
		t.Errorf("events of key a = %d, want 5", n)
	}
	if n := count(url.Values{"key_id": {b.Key.ID}}); n != 1 {
		t.Errorf("events of key b = %d, want 1", n)
	}
	if n := count(url.Values{"actor": {other.KeyID}}); n != 5 {
		t.Errorf("events by the other admin = %d, want 5", n)
	}
	if n := count(url.Values{"since": {start.Add(30 * time.Minute).Format(time.RFC3339)}}); n != 5 {
		t.Errorf("events since +30m = %d, want 5", n)
	}
	if n := count(url.Values{"limit": {"2"}}); n != 6 {
		t.Errorf("events through pages of 2 = %d, want 6", n)
	}
	evs, next, err := f.svc.Audit(ctx, url.Values{"limit": {"2"}})
	if err != nil || len(evs) != 2 || next == "" {
		t.Fatalf("Audit(limit 2) = %d events, next %q, %v", len(evs), next, err)
	}
	if _, _, err := f.svc.Audit(ctx, url.Values{"cursor": {flip(next[0]) + next[1:]}}); err == nil {
		t.Error("a tampered audit cursor was accepted")
	} else {
		wantFieldError(t, err, "cursor")
	}
	for _, q := range []url.Values{{"since": {"yesterday"}}, {"limit": {"-1"}}} {
		if _, _, err := f.svc.Audit(ctx, q); err == nil {
			t.Errorf("Audit(%v) accepted", q)
		}
	}
}

func testBootstrap(t *testing.T, nb newBackendFunc) {
	f := setup(t, nb, store.Options{DefaultLifetime: time.Hour})
	ctx := context.Background()
	if ok, err := f.svc.AdminKeyExists(ctx); err != nil || ok {
		t.Fatalf("AdminKeyExists on an empty store = %v, %v", ok, err)
	}
	f.create(`{"name": "bootstrap-admin", "user": "squatter"}`) // a non-admin key with the name
	c, err := f.svc.Bootstrap(ctx, "", false)
	if err != nil {
		t.Fatal(err)
	}
	f.remember(c.Secret)
	k := c.Key
	if k.User != "admin" || !jsonEq(k.Scopes, []string{auth.AdminScope}) || k.ExpiresAt != nil || !k.Enabled {
		t.Errorf("bootstrap key = %+v", k)
	}
	if !strings.HasPrefix(k.Name, "bootstrap-admin") || k.Name == "bootstrap-admin" {
		t.Errorf("bootstrap key name = %q, want bootstrap-admin with a suffix (the name was taken)", k.Name)
	}
	if len(c.Warnings) == 0 {
		t.Error("no least-privilege warning for the bootstrap admin key")
	}
	if ok, err := f.svc.AdminKeyExists(ctx); err != nil || !ok {
		t.Errorf("AdminKeyExists after bootstrap = %v, %v", ok, err)
	}
	if evs := f.events(k.ID, store.ActionBootstrap); len(evs) != 1 || evs[0].Actor != store.SystemActor {
		t.Errorf("bootstrap events = %+v, want one by system", evs)
	}
	if _, err := f.svc.Bootstrap(ctx, "", false); !errors.Is(err, store.ErrAdminExists) {
		t.Errorf("second bootstrap = %v, want ErrAdminExists", err)
	}
	imported, _ := auth.NewSecret("kg")
	c2, err := f.svc.Bootstrap(ctx, imported, true)
	if err != nil {
		t.Fatalf("forced bootstrap: %v", err)
	}
	f.remember(imported)
	if c2.Secret != imported || c2.Key.Name == k.Name {
		t.Errorf("forced bootstrap: secret %q name %q", c2.Secret, c2.Key.Name)
	}
	if got, err := f.svc.Lookup(ctx, imported); err != nil || got.ID != c2.Key.ID {
		t.Errorf("Lookup(imported bootstrap secret) = %v, %v", got, err)
	}
	if _, err := f.svc.Bootstrap(ctx, "not-a-key", true); err == nil {
		t.Error("bootstrap accepted an invalid secret")
	}

	g := setup(t, nb, store.Options{MaxLifetime: 24 * time.Hour})
	c3, err := g.svc.Bootstrap(ctx, "", false)
	if err != nil {
		t.Fatal(err)
	}
	if c3.Key.Name != "bootstrap-admin" || !sameTime(c3.Key.ExpiresAt, ptime(start.Add(24*time.Hour))) {
		t.Errorf("bootstrap under a max lifetime: name %q expires %v", c3.Key.Name, c3.Key.ExpiresAt)
	}
	secretsNeverAudited(t, f)
}

func testSessionSecrets(t *testing.T, nb newBackendFunc) {
	f := setup(t, nb, store.Options{})
	ctx := context.Background()
	replicas := []*store.Service{f.svc, f.service(store.Options{}), f.service(store.Options{})}
	got := make([][][]byte, len(replicas))
	errs := race(len(replicas), func(i int) (err error) {
		got[i], err = replicas[i].SessionSecrets(ctx, nil)
		return err
	})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("replica %d: %v", i, err)
		}
	}
	for i := range got {
		if len(got[i]) != 1 || len(got[i][0]) < 32 {
			t.Fatalf("replica %d secrets = %x, want one of at least 32 bytes", i, got[i])
		}
		if string(got[i][0]) != string(got[0][0]) {
			t.Errorf("replicas disagree on the session secret")
		}
	}
	again, err := f.service(store.Options{}).SessionSecrets(ctx, nil)
	if err != nil || string(again[0]) != string(got[0][0]) {
		t.Errorf("a later replica got another secret: %v", err)
	}
	configured := [][]byte{[]byte("new-secret-0123456789abcdef0123"), []byte("old-secret-0123456789abcdef0123")}
	if s, err := f.svc.SessionSecrets(ctx, configured); err != nil || len(s) != 2 || string(s[0]) != string(configured[0]) {
		t.Errorf("configured secrets = %q, %v; want them as given", s, err)
	}
}

func testRetrievableSecrets(t *testing.T, nb newBackendFunc) {
	ctx := context.Background()
	dir := t.TempDir()
	sealer, err := store.NewSealer(dir + "/ks/key")
	if err != nil {
		t.Fatal(err)
	}
	f := setup(t, nb, store.Options{Sealer: sealer})
	c := f.create(`{"name": "r", "user": "u"}`)
	s, err := f.svc.Secret(ctx, admin, c.Key.ID)
	if err != nil || s != c.Secret {
		t.Fatalf("Secret = %q, %v; want the created secret", s, err)
	}
	if evs := f.events(c.Key.ID, store.ActionRevealSecret); len(evs) != 1 {
		t.Errorf("%d reveal_secret events, want 1", len(evs))
	}
	r, err := f.svc.Rotate(ctx, admin, c.Key.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.remember(r.Secret)
	if s, err := f.svc.Secret(ctx, admin, c.Key.ID); err != nil || s != r.Secret {
		t.Errorf("Secret after rotate = %q, %v; want the new secret", s, err)
	}
	if _, err := f.svc.Secret(ctx, admin, "key_01NOSUCHKEY0000000000000000"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Secret(missing) = %v, want ErrNotFound", err)
	}
	if sealed := f.get(c.Key.ID).SealedSecret; len(sealed) == 0 || strings.Contains(string(sealed), r.Secret) {
		t.Errorf("sealed secret %q: empty or in clear", sealed)
	}

	// Another keystore cannot open it; a service without one has nothing.
	otherSealer, err := store.NewSealer(t.TempDir() + "/key")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.service(store.Options{Sealer: otherSealer}).Secret(ctx, admin, c.Key.ID); !errors.Is(err, store.ErrNotRetrievable) {
		t.Errorf("Secret under another keystore = %v, want ErrNotRetrievable", err)
	}
	plain := f.service(store.Options{})
	if _, err := plain.Secret(ctx, admin, c.Key.ID); !errors.Is(err, store.ErrNotRetrievable) {
		t.Errorf("Secret without a keystore = %v, want ErrNotRetrievable", err)
	}
	unsealed, err := plain.Create(ctx, admin, []byte(`{"name": "plain", "user": "u"}`))
	if err != nil {
		t.Fatal(err)
	}
	f.remember(unsealed.Secret)
	if _, err := f.svc.Secret(ctx, admin, unsealed.Key.ID); !errors.Is(err, store.ErrNotRetrievable) {
		t.Errorf("Secret of a key created without a keystore = %v, want ErrNotRetrievable", err)
	}
	if n := len(f.events(unsealed.Key.ID, store.ActionRevealSecret)); n != 0 {
		t.Errorf("a refused reveal wrote %d audit events", n)
	}
	secretsNeverAudited(t, f)
}

func testCounts(t *testing.T, nb newBackendFunc) {
	f := setup(t, nb, store.Options{})
	ctx := context.Background()
	got, err := f.svc.Counts(ctx)
	if err != nil || !jsonEq(got, map[string]int{"active": 0, "disabled": 0, "expired": 0}) {
		t.Errorf("Counts on an empty store = %v, %v", got, err)
	}
	f.create(`{"name": "a", "user": "u"}`)
	f.create(`{"name": "b", "user": "u", "expires_in": "1h"}`)
	f.create(`{"name": "c", "user": "u", "enabled": false}`)
	f.create(`{"name": "d", "user": "u", "enabled": false, "expires_in": "1h"}`)
	f.clock.Advance(2 * time.Hour)
	got, err = f.svc.Counts(ctx)
	if err != nil || !jsonEq(got, map[string]int{"active": 1, "disabled": 2, "expired": 1}) {
		t.Errorf("Counts = %v, %v; want active 1, disabled 2, expired 1", got, err)
	}
}

func testRecordUsage(t *testing.T, nb newBackendFunc) {
	f := setup(t, nb, store.Options{})
	ctx := context.Background()
	a := f.create(`{"name": "a", "user": "u"}`).Key
	b := f.create(`{"name": "b", "user": "u"}`).Key
	if _, err := f.svc.Rotate(ctx, admin, b.ID, time.Hour); err != nil {
		t.Fatal(err)
	}
	events := len(f.allAudit(nil))
	t1, t2 := start.Add(time.Minute), start.Add(2*time.Minute)
	err := f.b.RecordUsage(ctx, []store.Usage{
		{KeyID: a.ID, At: t2},
		{KeyID: b.ID, At: t1, Previous: true},
		{KeyID: "key_01NOSUCHKEY0000000000000000", At: t1},
	})
	if err != nil {
		t.Fatalf("RecordUsage: %v", err)
	}
	if got := f.get(a.ID); !sameTime(got.LastUsedAt, &t2) {
		t.Errorf("last_used_at = %v, want %v", got.LastUsedAt, t2)
	}
	gb := f.get(b.ID)
	if !sameTime(gb.PreviousSecretLastUsedAt, &t1) || gb.LastUsedAt != nil {
		t.Errorf("previous secret use: previous_secret_last_used_at %v, last_used_at %v; want %v, nil", gb.PreviousSecretLastUsedAt, gb.LastUsedAt, t1)
	}
	// An older report never moves last_used_at back.
	if err := f.b.RecordUsage(ctx, []store.Usage{{KeyID: a.ID, At: t1}}); err != nil {
		t.Fatal(err)
	}
	if got := f.get(a.ID); !sameTime(got.LastUsedAt, &t2) {
		t.Errorf("an older use moved last_used_at to %v, want %v", got.LastUsedAt, t2)
	}
	if n := len(f.allAudit(nil)); n != events {
		t.Errorf("RecordUsage wrote %d audit events, want none", n-events)
	}
	if err := f.b.RecordUsage(ctx, nil); err != nil {
		t.Errorf("RecordUsage(nil) = %v", err)
	}
}

func testWatch(t *testing.T, nb newBackendFunc) {
	f := setup(t, nb, store.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	k := f.create(`{"name": "watched", "user": "u"}`).Key
	got := make(chan store.Change, 64)
	done := make(chan error, 1)
	go func() {
		done <- f.b.Watch(ctx, func(c store.Change, resync bool) {
			if !resync {
				select {
				case got <- c:
				default:
				}
			}
		})
	}()
	// The watcher may need a moment to start listening, and a change
	// committed before that is not owed to it: keep changing the key
	// until a Change for it arrives (the test's own timeout bounds this).
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			if _, err := f.svc.Update(ctx, admin, k.ID, []byte(fmt.Sprintf(`{"description": "v%d"}`, i))); err != nil && ctx.Err() == nil {
				t.Errorf("Update: %v", err)
				return
			}
		}
	}()
	for c := range got {
		if c.KeyID == k.ID {
			break
		}
	}
	close(stop)
	wg.Wait()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Watch after cancel returned %v, want context.Canceled", err)
	}
}

func testScanKeys(t *testing.T, nb newBackendFunc) {
	f := setup(t, nb, store.Options{})
	want := map[string]bool{}
	for i := 0; i < 5; i++ {
		want[f.create(fmt.Sprintf(`{"name": "k%d", "user": "u"}`, i)).Key.ID] = true
	}
	seen := map[string]bool{}
	err := f.b.ScanKeys(context.Background(), func(k *store.Key) error {
		seen[k.ID] = true
		if k.Digest == ([32]byte{}) {
			t.Errorf("scanned key %s has no digest", k.ID)
		}
		return nil
	})
	if err != nil || len(seen) != len(want) {
		t.Errorf("ScanKeys saw %d keys (%v), want %d", len(seen), err, len(want))
	}
	stop := errors.New("stop")
	n := 0
	err = f.b.ScanKeys(context.Background(), func(*store.Key) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 {
		t.Errorf("ScanKeys with fn failing: %d calls, %v; want 1 call and fn's error", n, err)
	}
}

func testKeySource(t *testing.T, nb newBackendFunc) {
	f := setup(t, nb, store.Options{})
	ctx := context.Background()
	c := f.create(`{
		"name": "src", "user": "svc", "application": "app", "tenant": "t",
		"scopes": ["orders", "reports"], "ip_allowlist": ["10.0.0.0/8", "2001:db8::1", "::ffff:192.0.2.7"],
		"rate_limit": {"rps": 5, "burst": 10}, "sessions_allowed": false, "expires_in": "1h"
	}`)
	ks := store.NewKeySource(f.b)
	a, err := ks.LookupKey(ctx, auth.Digest([]byte(c.Secret)))
	if err != nil {
		t.Fatal(err)
	}
	if a.ID != c.Key.ID || a.Name != "src" || a.User != "svc" || a.Application != "app" || a.Tenant != "t" {
		t.Errorf("identity = %+v", a)
	}
	if a.ScopesHeader != "orders,reports" || !a.AllowsRoute("orders") || a.AllowsRoute("admin") {
		t.Errorf("scopes %v header %q", a.Scopes, a.ScopesHeader)
	}
	if !a.ExpiresAt.Equal(start.Add(time.Hour)) || a.Previous || !a.Enabled || a.SessionsAllowed {
		t.Errorf("expires %v previous %v enabled %v sessions %v", a.ExpiresAt, a.Previous, a.Enabled, a.SessionsAllowed)
	}
	if a.RateLimit == nil || a.RateLimit.RPS != 5 || a.RateLimit.Burst != 10 {
		t.Errorf("rate limit = %+v", a.RateLimit)
	}
	wantPrefixes := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::1/128"), netip.MustParsePrefix("192.0.2.7/32")}
	if fmt.Sprint(a.IPAllowlist) != fmt.Sprint(wantPrefixes) {
		t.Errorf("allowlist = %v, want %v", a.IPAllowlist, wantPrefixes)
	}
	for addr, want := range map[string]bool{"10.9.8.7": true, "11.0.0.1": false, "2001:db8::1": true, "2001:db8::2": false, "192.0.2.7": true, "::ffff:10.1.1.1": true} {
		if got := a.AllowsIP(netip.MustParseAddr(addr)); got != want {
			t.Errorf("AllowsIP(%s) = %v, want %v", addr, got, want)
		}
	}
	byID, err := ks.LookupKeyID(ctx, c.Key.ID)
	if err != nil || byID.ID != c.Key.ID || byID.Previous {
		t.Errorf("LookupKeyID = %+v, %v", byID, err)
	}
	if _, err := ks.LookupKeyID(ctx, "key_01NOSUCHKEY0000000000000000"); !errors.Is(err, auth.ErrKeyNotFound) {
		t.Errorf("LookupKeyID(missing) = %v, want auth.ErrKeyNotFound", err)
	}
	if _, err := ks.LookupKey(ctx, [32]byte{1}); !errors.Is(err, auth.ErrKeyNotFound) {
		t.Errorf("LookupKey(unknown) = %v, want auth.ErrKeyNotFound", err)
	}
	if _, err := f.svc.SetEnabled(ctx, admin, c.Key.ID, false); err != nil {
		t.Fatal(err)
	}
	if a, err := ks.LookupKey(ctx, auth.Digest([]byte(c.Secret))); err != nil || a.CheckState(f.clock.Now()) != auth.ErrKeyDisabled {
		t.Errorf("disabled key through KeySource: %+v, %v", a, err)
	}
}
