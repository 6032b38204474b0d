package admin_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/admin/admintest"
	"github.com/keygate/keygate/store"
)

// api calls one admin server as one admin key and remembers every secret
// it saw and every response body, so tests can check that no secret
// leaks anywhere it must not.
type api struct {
	t       *testing.T
	srv     *admintest.Server
	key     string
	secrets []string
}

func newAPI(t *testing.T, b admintest.Backend, so store.Options) *api {
	srv := admintest.Start(t, b, so)
	return &api{t: t, srv: srv, key: srv.AdminKey, secrets: []string{srv.AdminKey}}
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("response %d %q is not a JSON object: %v", r.status, r.body, err)
	}
	return m
}

// errCode returns the error code and field of an error response.
func (r response) errCode(t *testing.T) (string, string) {
	t.Helper()
	m := r.json(t)
	if m["request_id"] == "" || m["message"] == "" {
		t.Errorf("error response lacks request_id or message: %s", r.body)
	}
	field, _ := m["field"].(string)
	code, _ := m["error"].(string)
	return code, field
}

func (a *api) do(method, path string, body any, hdr ...string) response {
	a.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			a.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, a.srv.URL+path, rd)
	if err != nil {
		a.t.Fatal(err)
	}
	if a.key != "" {
		req.Header.Set("X-API-Key", a.key)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		a.t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// must asserts the status and returns the decoded object.
func (a *api) must(status int, method, path string, body any) map[string]any {
	a.t.Helper()
	r := a.do(method, path, body)
	if r.status != status {
		a.t.Fatalf("%s %s = %d %s, want %d", method, path, r.status, r.body, status)
	}
	if status == http.StatusNoContent {
		return nil
	}
	return r.json(a.t)
}

// create makes a key and returns its id and secret.
func (a *api) create(body map[string]any) (string, string) {
	a.t.Helper()
	m := a.must(201, "POST", "/v1/keys", body)
	secret := m["secret"].(string)
	a.secrets = append(a.secrets, secret)
	return m["key"].(map[string]any)["id"].(string), secret
}

// asAdmin returns a client of the same server with another key.
func (a *api) as(key string) *api {
	return &api{t: a.t, srv: a.srv, key: key, secrets: a.secrets}
}

func keyOf(m map[string]any) map[string]any { return m["key"].(map[string]any) }

func forEachBackend(t *testing.T, fn func(t *testing.T, b admintest.Backend)) {
	for _, b := range admintest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			fn(t, b)
		})
	}
}

func TestE2EKeyLifecycle(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b admintest.Backend) {
		a := newAPI(t, b, store.Options{})
		r := a.do("POST", "/v1/keys", map[string]any{
			"name": "billing", "user": "alice", "application": "shop", "tenant": "acme",
			"tags": []string{"prod"}, "scopes": []string{"default"}, "ip_allowlist": []string{"10.0.0.0/8", "2001:db8::/32"},
			"expires_in": "30d", "rate_limit": map[string]any{"rps": 10, "burst": 20}, "metadata": map[string]string{"team": "a"},
		})
		if r.status != 201 {
			t.Fatalf("create = %d %s", r.status, r.body)
		}
		m := r.json(t)
		k := keyOf(m)
		id, secret := k["id"].(string), m["secret"].(string)
		a.secrets = append(a.secrets, secret)
		if !strings.HasPrefix(id, "key_") || !strings.HasPrefix(secret, "kg_") || len(secret) != 49 {
			t.Errorf("id %q, secret of length %d", id, len(secret))
		}
		if r.header.Get("Location") != "/v1/keys/"+id {
			t.Errorf("Location = %q", r.header.Get("Location"))
		}
		if w, ok := m["warnings"].([]any); !ok || len(w) != 0 {
			t.Errorf("warnings = %v, want []", m["warnings"])
		}
		if k["status"] != "active" || k["hint"] != secret[:11] || k["user"] != "alice" || k["expires_at"] == nil {
			t.Errorf("created key = %v", k)
		}
		exp, _ := time.Parse(time.RFC3339, k["expires_at"].(string))
		if want := a.srv.Clock.Now().Add(30 * 24 * time.Hour); !exp.Equal(want) {
			t.Errorf("expires_at = %v, want %v", exp, want)
		}

		// A proxy key is no admin key; this one is also refused for its
		// allowlist (checked first, as on the proxy).
		if r := a.as(secret).do("GET", "/v1/keys", nil); r.status != 403 {
			t.Errorf("non-admin key outside its allowlist: %d %s", r.status, r.body)
		} else if code, _ := r.errCode(t); code != "ip_not_allowed" {
			t.Errorf("non-admin key outside its allowlist: %s", code)
		}
		_, plain := a.create(map[string]any{"name": "plain", "user": "bob"})
		if r := a.as(plain).do("GET", "/v1/keys", nil); r.status != 403 {
			t.Errorf("non-admin key: %d %s", r.status, r.body)
		} else if code, _ := r.errCode(t); code != "forbidden" {
			t.Errorf("non-admin key: %s", code)
		}

		got := keyOf(a.must(200, "GET", "/v1/keys/"+id, nil))
		if got["name"] != "billing" || got["tenant"] != "acme" || fmt.Sprint(got["ip_allowlist"]) != "[10.0.0.0/8 2001:db8::/32]" {
			t.Errorf("get = %v", got)
		}
		if code, _ := a.do("GET", "/v1/keys/key_doesnotexist", nil).errCode(t); code != "not_found" {
			t.Errorf("get missing: %s", code)
		}

		up := keyOf(a.must(200, "PATCH", "/v1/keys/"+id, map[string]any{"name": "billing-2", "expires_at": nil}))
		if up["name"] != "billing-2" || up["expires_at"] != nil || up["user"] != "alice" {
			t.Errorf("patch = %v", up)
		}
		if st := keyOf(a.must(200, "POST", "/v1/keys/"+id+"/disable", nil))["status"]; st != "disabled" {
			t.Errorf("after disable: status %v", st)
		}
		if st := keyOf(a.must(200, "POST", "/v1/keys/"+id+"/enable", nil))["status"]; st != "active" {
			t.Errorf("after enable: status %v", st)
		}

		if got := keyOf(a.must(200, "POST", "/v1/keys/lookup", map[string]string{"secret": secret}))["id"]; got != id {
			t.Errorf("lookup = %v, want %s", got, id)
		}
		if r := a.do("POST", "/v1/keys/lookup", map[string]string{"secret": "kg_" + strings.Repeat("a", 46)}); r.status != 404 {
			t.Errorf("lookup of an unknown secret: %d %s", r.status, r.body)
		}

		rot := a.must(200, "POST", "/v1/keys/"+id+"/rotate", map[string]string{"grace": "1h"})
		secret2 := rot["secret"].(string)
		a.secrets = append(a.secrets, secret2)
		if secret2 == secret || !strings.HasPrefix(secret2, "kg_") {
			t.Errorf("rotated secret %q", secret2)
		}
		prev, _ := time.Parse(time.RFC3339, fmt.Sprint(rot["previous_expires_at"]))
		if want := a.srv.Clock.Now().Add(time.Hour); !prev.Equal(want) {
			t.Errorf("previous_expires_at = %v, want %v", rot["previous_expires_at"], want)
		}
		if keyOf(rot)["hint"] != secret2[:11] {
			t.Errorf("hint after rotation = %v", keyOf(rot)["hint"])
		}
		// Without a body the grace is zero: the second secret stops now and
		// the first is forgotten.
		rot2 := a.must(200, "POST", "/v1/keys/"+id+"/rotate", nil)
		a.secrets = append(a.secrets, rot2["secret"].(string))
		if r := a.do("POST", "/v1/keys/lookup", map[string]string{"secret": secret}); r.status != 404 {
			t.Errorf("lookup of a secret two rotations ago: %d", r.status)
		}

		if code, _ := a.do("GET", "/v1/keys/"+id+"/secret", nil).errCode(t); code != "not_retrievable" {
			t.Errorf("secret without keys.retrievable: %s", code)
		}
		a.must(200, "POST", "/v1/keys/"+id+"/revoke-sessions", nil)

		r = a.do("DELETE", "/v1/keys/"+id, nil)
		if r.status != 204 || len(r.body) != 0 {
			t.Fatalf("delete = %d %q", r.status, r.body)
		}
		for _, p := range []string{"GET /v1/keys/" + id, "DELETE /v1/keys/" + id, "POST /v1/keys/" + id + "/enable", "POST /v1/keys/" + id + "/rotate"} {
			method, path, _ := strings.Cut(p, " ")
			if r := a.do(method, path, nil); r.status != 404 {
				t.Errorf("%s after delete: %d", p, r.status)
			}
		}
		// A secret pasted where an id belongs: 404, and never in the log
		// (noSecretLeaks below searches it for every secret seen).
		_, pasted := a.create(map[string]any{"name": "pasted", "user": "u"})
		if r := a.do("GET", "/v1/keys/"+pasted, nil); r.status != 404 {
			t.Errorf("GET /v1/keys/<secret> = %d, want 404", r.status)
		}
		logs := a.srv.Logs()
		for _, want := range []string{`"msg":"admin request"`, `"op":"keys.create"`, `"status":201`, `"actor":"` + a.srv.AdminID + `"`, `"op":"keys.delete"`} {
			if !strings.Contains(logs, want) {
				t.Errorf("request log lacks %s", want)
			}
		}
		if strings.Contains(logs, "ip_allowlist") || strings.Contains(logs, "billing") {
			t.Error("the request log holds a request or response body")
		}
		a.noSecretLeaks()
	})
}

// noSecretLeaks searches the whole audit log, every key listing and the
// handler's log for every secret the test saw.
func (a *api) noSecretLeaks() {
	a.t.Helper()
	var bodies []string
	for cursor := ""; ; {
		r := a.do("GET", "/v1/audit?limit=1000&cursor="+url.QueryEscape(cursor), nil)
		if r.status != 200 {
			a.t.Fatalf("audit: %d %s", r.status, r.body)
		}
		bodies = append(bodies, string(r.body))
		cursor, _ = r.json(a.t)["next_cursor"].(string)
		if cursor == "" {
			break
		}
	}
	for cursor := ""; ; {
		r := a.do("GET", "/v1/keys?limit=1000&cursor="+url.QueryEscape(cursor), nil)
		bodies = append(bodies, string(r.body))
		cursor, _ = r.json(a.t)["next_cursor"].(string)
		if cursor == "" {
			break
		}
	}
	bodies = append(bodies, a.srv.Logs())
	for _, s := range a.secrets {
		for _, b := range bodies {
			if strings.Contains(b, s) || strings.Contains(b, s[3:]) {
				a.t.Errorf("secret %s… found in an audit, list or log: %.300s", s[:11], b)
			}
		}
	}
}

func TestE2ERetrievableSecret(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b admintest.Backend) {
		sealer, err := store.NewSealer(filepath.Join(t.TempDir(), "keystore"))
		if err != nil {
			t.Fatal(err)
		}
		a := newAPI(t, b, store.Options{Sealer: sealer})
		id, secret := a.create(map[string]any{"name": "copyable", "user": "bob"})
		if got := a.must(200, "GET", "/v1/keys/"+id+"/secret", nil)["secret"]; got != secret {
			t.Errorf("secret = %v, want the created one", got)
		}
		events := a.must(200, "GET", "/v1/audit?key_id="+id, nil)["events"].([]any)
		if last := events[len(events)-1].(map[string]any); !strings.Contains(fmt.Sprint(last["action"]), "secret") {
			t.Errorf("retrieving a secret is not audited: last event %v", last)
		}
	})
}

func TestE2EErrors(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b admintest.Backend) {
		a := newAPI(t, b, store.Options{MaxPerApplication: 2})
		pad := func(obj string, size int) string { return obj[:len(obj)-1] + strings.Repeat(" ", size-len(obj)) + "}" }
		exact := pad(`{"name":"padded","user":"u"}`, 1<<20)
		tests := []struct {
			name, method, path string
			body               any
			status             int
			code, field        string
		}{
			{"malformed JSON", "POST", "/v1/keys", `{"name": "x",`, 400, "bad_request", ""},
			{"not an object", "POST", "/v1/keys", `["x"]`, 400, "bad_request", ""},
			{"malformed patch", "PATCH", "/v1/keys/key_x", `{`, 400, "bad_request", ""},
			{"body over 1 MiB", "POST", "/v1/keys", pad(`{"name":"big","user":"u"}`, 1<<20+1), 413, "body_too_large", ""},
			{"unknown field", "POST", "/v1/keys", `{"name":"x","user":"u","colour":"red"}`, 422, "invalid_field", "colour"},
			{"bad CIDR", "POST", "/v1/keys", `{"name":"x","user":"u","ip_allowlist":["10.0.0.0/33"]}`, 422, "invalid_field", "ip_allowlist[0]"},
			{"second bad CIDR", "POST", "/v1/keys", `{"name":"x","user":"u","ip_allowlist":["10.0.0.1","nope"]}`, 422, "invalid_field", "ip_allowlist[1]"},
			{"missing user", "POST", "/v1/keys", `{"name":"x"}`, 422, "invalid_field", "user"},
			{"bad expires_in", "POST", "/v1/keys", `{"name":"x","user":"u","expires_in":"soon"}`, 422, "invalid_field", "expires_in"},
			{"patch read-only", "PATCH", "/v1/keys/" + a.srv.AdminID, `{"id":"key_other"}`, 422, "invalid_field", "id"},
			{"patch missing key", "PATCH", "/v1/keys/key_missing", `{"name":"x"}`, 404, "not_found", ""},
			{"bulk bad action", "POST", "/v1/keys/bulk", `{"action":"rename","ids":["key_1"]}`, 422, "invalid_field", "action"},
			{"wrong method", "PUT", "/v1/keys/key_1", `{}`, 405, "method_not_allowed", ""},
			{"unknown path", "GET", "/v1/nothing", nil, 404, "not_found", ""},
		}
		for _, tt := range tests {
			r := a.do(tt.method, tt.path, tt.body)
			if r.status != tt.status {
				t.Errorf("%s: %s %s = %d %.200s, want %d", tt.name, tt.method, tt.path, r.status, r.body, tt.status)
				continue
			}
			if code, field := r.errCode(t); code != tt.code || field != tt.field {
				t.Errorf("%s: error %q field %q, want %q field %q", tt.name, code, field, tt.code, tt.field)
			}
		}
		if r := a.do("POST", "/v1/keys", exact); r.status != 201 {
			t.Errorf("a body of exactly 1 MiB: %d %.200s, want 201", r.status, r.body)
		}

		a.create(map[string]any{"name": "one", "user": "u", "application": "app"})
		r := a.do("POST", "/v1/keys", map[string]any{"name": "one", "user": "u2", "application": "app"})
		if code, _ := r.errCode(t); r.status != 409 || code != "name_taken" {
			t.Errorf("same name in the application: %d %s", r.status, r.body)
		}
		a.create(map[string]any{"name": "one", "user": "u", "application": "other-app"})
		a.create(map[string]any{"name": "two", "user": "u", "application": "app"})
		r = a.do("POST", "/v1/keys", map[string]any{"name": "three", "user": "u", "application": "app"})
		if code, _ := r.errCode(t); r.status != 409 || code != "application_key_limit" {
			t.Errorf("third key with max_per_application 2: %d %s", r.status, r.body)
		}
		m := a.must(201, "POST", "/v1/keys", map[string]any{"name": "ops", "user": "root", "scopes": []string{"keygate:admin"}})
		a.secrets = append(a.secrets, m["secret"].(string))
		if w, _ := m["warnings"].([]any); len(w) == 0 {
			t.Errorf("an admin key was created without a warning")
		}
		a.noSecretLeaks()
	})
}

func TestE2EAdminAuth(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b admintest.Backend) {
		a := newAPI(t, b, store.Options{})
		code := func(c *api) string {
			t.Helper()
			r := c.do("GET", "/v1/keys", nil)
			if r.status == 200 {
				return "ok"
			}
			if r.status == 401 && r.header.Get("WWW-Authenticate") == "" {
				t.Errorf("401 without WWW-Authenticate")
			}
			c2, _ := r.errCode(t)
			return fmt.Sprint(r.status, " ", c2)
		}
		if got := code(a.as("")); got != "401 missing_key" {
			t.Errorf("no key: %s", got)
		}
		if got := code(a.as("kg_nope")); got != "401 invalid_key" {
			t.Errorf("malformed key: %s", got)
		}
		if r := a.do("GET", "/v1/keys", nil, "X-API-Key", "", "Authorization", "ApiKey "+a.key); r.status != 200 {
			t.Errorf("Authorization: ApiKey: %d", r.status)
		}
		id, second := a.create(map[string]any{"name": "admin2", "user": "ops", "scopes": []string{"keygate:admin"}, "expires_in": "1h"})
		b2 := a.as(second)
		if got := code(b2); got != "ok" {
			t.Fatalf("second admin key: %s", got)
		}
		a.must(200, "POST", "/v1/keys/"+id+"/disable", nil)
		if got := code(b2); got != "401 key_disabled" {
			t.Errorf("disabled admin key: %s", got)
		}
		a.must(200, "POST", "/v1/keys/"+id+"/enable", nil)
		a.srv.Clock.Advance(time.Hour)
		if got := code(b2); got != "401 key_expired" {
			t.Errorf("admin key at its second of expiry: %s", got)
		}
		a.must(204, "DELETE", "/v1/keys/"+id, nil)
		if got := code(b2); got != "401 invalid_key" {
			t.Errorf("deleted admin key: %s", got)
		}
		// A rotated admin key: the old secret works for its grace, then not.
		rot := a.must(200, "POST", "/v1/keys/"+a.srv.AdminID+"/rotate", map[string]string{"grace": "10m"})
		newKey := rot["secret"].(string)
		a.secrets = append(a.secrets, newKey)
		if got := code(a); got != "ok" {
			t.Errorf("old admin secret within grace: %s", got)
		}
		a.srv.Clock.Advance(10 * time.Minute)
		if got := code(a); got != "401 key_expired" {
			t.Errorf("old admin secret after grace: %s", got)
		}
		if got := code(a.as(newKey)); got != "ok" {
			t.Errorf("new admin secret: %s", got)
		}
		for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
			if r := a.as("").do("GET", p, nil); r.status != 200 {
				t.Errorf("GET %s without a key: %d", p, r.status)
			}
		}
		if r := a.as("").do("GET", "/v1/openapi.json", nil); r.status != 401 {
			t.Errorf("GET /v1/openapi.json without a key: %d", r.status)
		}
	})
}

func TestE2EBulk(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b admintest.Backend) {
		a := newAPI(t, b, store.Options{})
		k1, _ := a.create(map[string]any{"name": "k1", "user": "u"})
		k2, _ := a.create(map[string]any{"name": "k2", "user": "u"})
		res := a.must(200, "POST", "/v1/keys/bulk", map[string]any{"action": "disable", "ids": []string{k1, "key_missing", k2}})
		got, _ := json.Marshal(res["results"])
		want := fmt.Sprintf(`[{"id":%q,"ok":true},{"error":"not_found","id":"key_missing","ok":false},{"id":%q,"ok":true}]`, k1, k2)
		if string(got) != want {
			t.Errorf("bulk disable = %s, want %s", got, want)
		}
		for _, id := range []string{k1, k2} {
			if st := keyOf(a.must(200, "GET", "/v1/keys/"+id, nil))["status"]; st != "disabled" {
				t.Errorf("%s after bulk disable: %v", id, st)
			}
		}
		a.must(200, "POST", "/v1/keys/bulk", map[string]any{"action": "enable", "ids": []string{k1}})
		if st := keyOf(a.must(200, "GET", "/v1/keys/"+k1, nil))["status"]; st != "active" {
			t.Errorf("after bulk enable: %v", st)
		}
		res = a.must(200, "POST", "/v1/keys/bulk", map[string]any{"action": "delete", "ids": []string{k1, k2, k1}})
		results := res["results"].([]any)
		if len(results) != 3 || results[0].(map[string]any)["ok"] != true || results[2].(map[string]any)["ok"] != false {
			t.Errorf("bulk delete with a repeated id = %v", results)
		}
		if r := a.do("GET", "/v1/keys/"+k2, nil); r.status != 404 {
			t.Errorf("key after bulk delete: %d", r.status)
		}
	})
}

func TestE2EPagination(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b admintest.Backend) {
		a := newAPI(t, b, store.Options{})
		before := map[string]bool{a.srv.AdminID: true}
		for i := 0; i < 23; i++ {
			id, _ := a.create(map[string]any{"name": fmt.Sprintf("page-%02d", i), "user": "u"})
			before[id] = true
		}
		seen := map[string]int{}
		cursor, pages := "", 0
		for {
			m := a.must(200, "GET", "/v1/keys?limit=5&cursor="+url.QueryEscape(cursor), nil)
			keys := m["keys"].([]any)
			if len(keys) > 5 {
				t.Fatalf("page of %d keys with limit 5", len(keys))
			}
			for _, k := range keys {
				seen[k.(map[string]any)["id"].(string)]++
			}
			pages++
			// Inserts and deletes between pages must not make the walk miss
			// or repeat a key that existed throughout.
			a.create(map[string]any{"name": fmt.Sprintf("inserted-%02d", pages), "user": "u"})
			cursor, _ = m["next_cursor"].(string)
			if cursor == "" || pages > 50 {
				break
			}
		}
		for id := range before {
			if seen[id] != 1 {
				t.Errorf("key %s seen %d times", id, seen[id])
			}
		}
		for id, n := range seen {
			if n > 1 {
				t.Errorf("key %s repeated (%d times)", id, n)
			}
		}
		// Filters.
		a.create(map[string]any{"name": "Needle-Key", "user": "zoe", "application": "hay", "tags": []string{"rare"}})
		for _, q := range []string{"q=needle", "user=zoe", "application=hay", "tag=rare", "q=NEEDLE&status=active"} {
			keys := a.must(200, "GET", "/v1/keys?"+q, nil)["keys"].([]any)
			if len(keys) != 1 || keys[0].(map[string]any)["name"] != "Needle-Key" {
				t.Errorf("list ?%s = %d keys", q, len(keys))
			}
		}
		if keys := a.must(200, "GET", "/v1/keys?status=disabled", nil)["keys"].([]any); len(keys) != 0 {
			t.Errorf("status=disabled = %d keys, want 0", len(keys))
		}
		for _, q := range []string{"limit=0", "limit=1001", "limit=x", "status=sleeping", "cursor=not-a-cursor", "expires_before=tomorrow"} {
			if r := a.do("GET", "/v1/keys?"+q, nil); r.status != 422 && r.status != 400 {
				t.Errorf("list ?%s = %d %.300s, want 400 or 422", q, r.status, r.body)
			}
		}
	})
}

func TestE2EAudit(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b admintest.Backend) {
		a := newAPI(t, b, store.Options{})
		id, _ := a.create(map[string]any{"name": "audited", "user": "u", "tags": []string{"a"}})
		a.must(200, "PATCH", "/v1/keys/"+id, map[string]any{"name": "audited-2", "tags": []string{"a", "b"}})
		a.must(200, "POST", "/v1/keys/"+id+"/disable", nil)
		rot := a.must(200, "POST", "/v1/keys/"+id+"/rotate", map[string]string{"grace": "1h"})
		a.secrets = append(a.secrets, rot["secret"].(string))
		a.must(204, "DELETE", "/v1/keys/"+id, nil)

		events := a.must(200, "GET", "/v1/audit?key_id="+id, nil)["events"].([]any)
		if len(events) != 5 {
			t.Fatalf("%d events for the key, want 5: %v", len(events), events)
		}
		var actions []string
		for _, e := range events {
			ev := e.(map[string]any)
			actions = append(actions, fmt.Sprint(ev["action"]))
			if ev["actor"] != a.srv.AdminID || ev["ip"] != "127.0.0.1" || ev["key_id"] != id || ev["id"] == "" {
				t.Errorf("event %v: want actor %s, ip 127.0.0.1", ev, a.srv.AdminID)
			}
			if _, err := time.Parse(time.RFC3339, fmt.Sprint(ev["at"])); err != nil {
				t.Errorf("event time %v: %v", ev["at"], err)
			}
		}
		t.Logf("actions: %v", actions)
		upd := events[1].(map[string]any)["changes"].(map[string]any)
		name, _ := upd["name"].(map[string]any)
		if name["before"] != "audited" || name["after"] != "audited-2" {
			t.Errorf("update changes = %v", upd)
		}
		if tags, _ := upd["tags"].(map[string]any); fmt.Sprint(tags["after"]) != "[a b]" {
			t.Errorf("tags change = %v", upd["tags"])
		}
		dis := events[2].(map[string]any)["changes"].(map[string]any)["enabled"].(map[string]any)
		if dis["before"] != true || dis["after"] != false {
			t.Errorf("disable changes = %v", dis)
		}
		// Filters and pagination.
		if ev := a.must(200, "GET", "/v1/audit?actor="+a.srv.AdminID+"&limit=2", nil); len(ev["events"].([]any)) != 2 || ev["next_cursor"] == "" {
			t.Errorf("audit ?actor&limit=2 = %v", ev)
		}
		since := url.QueryEscape(a.srv.Clock.Now().Add(time.Hour).Format(time.RFC3339))
		if ev := a.must(200, "GET", "/v1/audit?since="+since, nil)["events"].([]any); len(ev) != 0 {
			t.Errorf("audit since the future = %d events", len(ev))
		}
		a.noSecretLeaks()
	})
}

func TestE2EPurgeExpired(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b admintest.Backend) {
		a := newAPI(t, b, store.Options{})
		old, _ := a.create(map[string]any{"name": "old", "user": "u", "expires_in": "1h"})
		keep, _ := a.create(map[string]any{"name": "keep", "user": "u", "expires_in": "30d"})
		a.srv.Clock.Advance(3 * time.Hour)
		if st := keyOf(a.must(200, "GET", "/v1/keys/"+old, nil))["status"]; st != "expired" {
			t.Errorf("status after expiry: %v", st)
		}
		if n := a.must(200, "POST", "/v1/keys/purge-expired", map[string]any{"expired_for": "720h"})["deleted"]; n != 0.0 {
			t.Errorf("purge expired_for 720h deleted %v, want 0", n)
		}
		if n := a.must(200, "POST", "/v1/keys/purge-expired", map[string]any{"expired_for": "1h", "dry_run": true})["deleted"]; n != 1.0 {
			t.Errorf("dry run counted %v, want 1", n)
		}
		a.must(200, "GET", "/v1/keys/"+old, nil)
		if n := a.must(200, "POST", "/v1/keys/purge-expired", map[string]any{"expired_for": "1h"})["deleted"]; n != 1.0 {
			t.Errorf("purge deleted %v, want 1", n)
		}
		if r := a.do("GET", "/v1/keys/"+old, nil); r.status != 404 {
			t.Errorf("purged key: %d", r.status)
		}
		a.must(200, "GET", "/v1/keys/"+keep, nil)
		if n := a.must(200, "POST", "/v1/keys/purge-expired", nil)["deleted"]; n != 0.0 {
			t.Errorf("empty-body purge deleted %v", n)
		}
	})
}

func TestE2EMetrics(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b admintest.Backend) {
		a := newAPI(t, b, store.Options{})
		id, _ := a.create(map[string]any{"name": "m1", "user": "u"})
		a.create(map[string]any{"name": "m2", "user": "u"})
		a.must(200, "POST", "/v1/keys/"+id+"/disable", nil)
		r := a.as("").do("GET", "/metrics", nil)
		text := string(r.body)
		for _, want := range []string{
			`keygate_keys{status="active"} 2`, // the bootstrap key and m2
			`keygate_keys{status="disabled"} 1`,
			`keygate_keys{status="expired"} 0`,
			`keygate_admin_requests_total{code="201",op="keys.create"} 2`,
			`keygate_admin_requests_total{code="200",op="keys.disable"} 1`,
		} {
			if !strings.Contains(text, want) {
				t.Errorf("/metrics lacks %s:\n%s", want, text)
			}
		}
		if strings.Contains(text, id) {
			t.Error("/metrics holds a key id")
		}
	})
}

func TestMain(m *testing.M) { os.Exit(admintest.Main(m)) }
