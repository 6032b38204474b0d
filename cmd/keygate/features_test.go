package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/auth"
	"github.com/keygate/keygate/internal/echo"
	"github.com/keygate/keygate/internal/pgtest"
	"github.com/keygate/keygate/proxy"
)

// These tests run `keygate serve` in-process (startServe) with sessions,
// rate limits and usage tracking switched on, on the embedded store and on
// PostgreSQL, and check CONTRACT §2–§4 through real sockets.

// featStore is one store driver: it returns the configuration's store
// block for a test (a fresh database for PostgreSQL).
type featStore struct {
	name  string
	block func(t *testing.T, dir string) string
}

var featStores = []featStore{
	{"embedded", func(_ *testing.T, dir string) string {
		return fmt.Sprintf("store:\n  driver: embedded\n  path: %q\n", filepath.Join(dir, "data"))
	}},
	{"postgres", func(t *testing.T, _ string) string {
		return fmt.Sprintf("store:\n  driver: postgres\n  url: %q\n", pgtest.NewDatabase(t))
	}},
}

// forEachStore runs f as a subtest per store driver.
func forEachStore(t *testing.T, f func(t *testing.T, st featStore)) {
	for _, st := range featStores {
		t.Run(st.name, func(t *testing.T) { f(t, st) })
	}
}

// featServe is a running serve with its bootstrap admin key, configured
// with extra YAML (top-level sections) on top of one catch-all route.
type featServe struct {
	t        *testing.T
	in       *instance
	up       *echo.Server
	adminKey string
	env      map[string]string
	cfg      string
	addrs    [2]string // proxy, admin
}

func startFeat(t *testing.T, storeBlock, extra string) *featServe {
	t.Helper()
	dir := t.TempDir()
	up, upstream := startEcho(t, 0)
	f := &featServe{t: t, up: up, adminKey: newSecret(t), addrs: [2]string{freeAddr(t), freeAddr(t)}}
	f.env = map[string]string{"KEYGATE_BOOTSTRAP_ADMIN_KEY": f.adminKey}
	f.cfg = writeConfig(t, dir, fmt.Sprintf(`proxy:
  listen: %q
admin:
  listen: %q
%skeys:
  keystore: %q
routes:
  - name: api
    match: {path_prefix: /}
    upstream:
      targets: [%q]
log:
  level: warn
shutdown_timeout: 10s
%s`, f.addrs[0], f.addrs[1], storeBlock, filepath.Join(dir, "keystore"), upstream, extra))
	f.start()
	return f
}

func (f *featServe) start() {
	f.t.Helper()
	f.in = startServe(f.t, f.env, f.addrs[0], f.addrs[1], "serve", "--config", f.cfg)
}

// restart stops serve gracefully (which flushes recorded usage) and starts
// it again on the same store.
func (f *featServe) restart() {
	f.t.Helper()
	if code := f.in.stop(); code != 0 {
		f.t.Fatalf("serve exited %d; stderr:\n%s", code, f.in.stderr.String())
	}
	f.start()
}

// get sends GET path through the proxy with the given "Name: value"
// header lines.
func (f *featServe) get(path string, headers ...string) reply {
	f.t.Helper()
	req, err := http.NewRequest("GET", f.in.proxy+path, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	for _, h := range headers {
		name, value, ok := strings.Cut(h, ": ")
		if !ok {
			f.t.Fatalf("bad header line %q", h)
		}
		req.Header.Add(name, value)
	}
	resp, err := f.in.client.Do(req)
	if err != nil {
		f.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		f.t.Fatalf("GET %s: reading the body: %v", path, err)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: b}
}

func (f *featServe) createKey(fields map[string]any) createdKey {
	f.t.Helper()
	return f.in.createKey(f.adminKey, fields)
}

func (f *featServe) admin(want int, method, path string, body any) reply {
	f.t.Helper()
	return f.in.mustAdmin(f.adminKey, want, method, path, body)
}

// keyField returns one field of GET /v1/keys/{id}'s key.
func (f *featServe) keyField(id, field string) any {
	f.t.Helper()
	r := f.admin(http.StatusOK, "GET", "/v1/keys/"+id, nil)
	k, _ := r.json()["key"].(map[string]any)
	if k == nil {
		f.t.Fatalf("GET /v1/keys/%s = %s: no key", id, r)
	}
	return k[field]
}

// setCookie is one Set-Cookie header split up: the name, the value and
// the attributes as written.
type setCookie struct {
	name, value string
	attrs       []string
}

// theSetCookie returns r's only Set-Cookie, failing unless there is
// exactly one.
func theSetCookie(t *testing.T, what string, r reply) setCookie {
	t.Helper()
	vs := r.header.Values("Set-Cookie")
	if len(vs) != 1 {
		t.Fatalf("%s: %d Set-Cookie headers %q, want 1 (response %s)", what, len(vs), vs, r)
	}
	parts := strings.Split(vs[0], "; ")
	name, value, _ := strings.Cut(parts[0], "=")
	attrs := parts[1:]
	slices.Sort(attrs)
	return setCookie{name: name, value: value, attrs: attrs}
}

// cookieAttrs is the attribute set sessions.secure: true, same_site:
// strict give, sorted like theSetCookie's.
func cookieAttrs(maxAge string) []string {
	a := []string{"HttpOnly", "Max-Age=" + maxAge, "Path=/", "SameSite=Strict", "Secure"}
	slices.Sort(a)
	return a
}

// wantSessionCookie checks that r issued a session cookie with every
// CONTRACT §4.6 attribute and returns its value.
func wantSessionCookie(t *testing.T, what string, r reply, secret string) string {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("%s = %s, want 200 with a session cookie", what, r)
	}
	c := theSetCookie(t, what, r)
	if c.name != "keygate_session" || c.value == "" {
		t.Errorf("%s: cookie %q=%q, want keygate_session with a value", what, c.name, c.value)
	}
	if want := cookieAttrs("1800"); !slices.Equal(c.attrs, want) {
		t.Errorf("%s: cookie attributes %q, want exactly %q", what, c.attrs, want)
	}
	if strings.Contains(c.value, secret) || strings.Contains(c.value, secret[3:]) {
		t.Errorf("%s: the cookie carries the key's secret", what)
	}
	return c.value
}

// wantNoCookie fails the test if r set a cookie.
func wantNoCookie(t *testing.T, what string, r reply) {
	t.Helper()
	if r.status != http.StatusOK {
		t.Errorf("%s = %s, want 200", what, r)
	}
	if v := r.header.Values("Set-Cookie"); len(v) != 0 {
		t.Errorf("%s: Set-Cookie %q, want none", what, v)
	}
}

// wantSessionInvalid checks a 401 session_invalid that clears the cookie.
func wantSessionInvalid(t *testing.T, what string, r reply) {
	t.Helper()
	wantDenied(t, what, r, http.StatusUnauthorized, "session_invalid")
	if got := r.header.Get("WWW-Authenticate"); got != `ApiKey realm="keygate"` {
		t.Errorf("%s: WWW-Authenticate %q", what, got)
	}
	if len(r.header.Values("Set-Cookie")) != 1 {
		t.Errorf("%s: Set-Cookie %q, want one that clears the session", what, r.header.Values("Set-Cookie"))
		return
	}
	c := theSetCookie(t, what, r)
	if c.name != "keygate_session" || c.value != "" || !slices.Equal(c.attrs, cookieAttrs("0")) {
		t.Errorf("%s: Set-Cookie %q=%q %q, want keygate_session emptied with %q", what, c.name, c.value, c.attrs, cookieAttrs("0"))
	}
}

// wantSession checks that r reached the upstream authenticated by the
// session of key id, without the session cookie.
func wantSession(t *testing.T, what string, r reply, id, user string) {
	t.Helper()
	if r.status != http.StatusOK {
		t.Errorf("%s = %s, want 200 through the session", what, r)
		return
	}
	e := forwarded(t, r)
	for name, want := range map[string]string{
		"X-Keygate-Auth":   "session",
		"X-Keygate-Key-Id": id,
		"X-Keygate-User":   user,
	} {
		if got := e.Values(name); len(got) != 1 || got[0] != want {
			t.Errorf("%s: upstream saw %s %q, want %q", what, name, got, want)
		}
	}
	for _, c := range e.Values("Cookie") {
		if strings.Contains(c, "keygate_session") {
			t.Errorf("%s: the session cookie reached the upstream: %q", what, c)
		}
	}
	if v := r.header.Values("Set-Cookie"); len(v) != 0 {
		t.Errorf("%s: Set-Cookie %q on a session request, want none", what, v)
	}
}

const sessionsYAML = `sessions:
  enabled: true
  ttl: 30m
  secure: true
  same_site: strict
`

// TestFeatSessions is the ThingWorx-style flow: a key request with
// ?keygate-session=true (or X-Keygate-Session: true) gets a cookie, the
// cookie alone then authenticates, and it stops working as soon as its
// key may no longer be used. The signing secret is generated and kept in
// the store (no sessions.secrets).
func TestFeatSessions(t *testing.T) {
	forEachStore(t, func(t *testing.T, st featStore) {
		f := startFeat(t, st.block(t, t.TempDir()), sessionsYAML)
		k := f.createKey(map[string]any{"name": "thingworx", "user": "alice"})

		r := f.get("/Thingworx/Things/T1?keygate-session=true&x=1", "X-API-Key: "+k.Secret)
		cookie := wantSessionCookie(t, "key with ?keygate-session=true", r, k.Secret)
		if e := forwarded(t, r); e.URI != "/Thingworx/Things/T1?x=1" {
			t.Errorf("upstream saw %q, want the session parameter removed", e.URI)
		}

		// The browser now sends only the cookie (next to its own).
		r = f.get("/Thingworx/Things/T1", "Cookie: theme=dark; keygate_session="+cookie)
		wantSession(t, "cookie alone", r, k.ID, "alice")
		if r.status == http.StatusOK {
			if got := forwarded(t, r).Values("Cookie"); len(got) != 1 || got[0] != "theme=dark" {
				t.Errorf("upstream saw Cookie %q, want the other cookie kept: theme=dark", got)
			}
		}

		r = f.get("/x", "X-API-Key: "+k.Secret, "X-Keygate-Session: true")
		wantSessionCookie(t, "key with X-Keygate-Session: true", r, k.Secret)
		if forwarded(t, r).HasPrefix("X-Keygate-Session") {
			t.Errorf("X-Keygate-Session reached the upstream")
		}

		for _, tt := range []struct{ what, path, header string }{
			{"?keygate-session=false", "/x?keygate-session=false", ""},
			{"?keygate-session=1", "/x?keygate-session=1", ""},
			{"?keygate-session=", "/x?keygate-session=", ""},
			{"X-Keygate-Session: yes", "/x", "X-Keygate-Session: yes"},
		} {
			hs := []string{"X-API-Key: " + k.Secret}
			if tt.header != "" {
				hs = append(hs, tt.header)
			}
			r := f.get(tt.path, hs...)
			wantNoCookie(t, tt.what, r)
			if r.status == http.StatusOK {
				if e := forwarded(t, r); e.URI != "/x" || e.HasPrefix("X-Keygate-Session") {
					t.Errorf("%s: upstream saw %q with X-Keygate-Session %q, want neither", tt.what, e.URI, e.Values("X-Keygate-Session"))
				}
			}
		}
		wantNoCookie(t, "no session asked for", f.get("/x", "X-API-Key: "+k.Secret))

		noSess := f.createKey(map[string]any{"name": "nosess", "user": "bob", "sessions_allowed": false})
		wantNoCookie(t, "sessions_allowed false", f.get("/x?keygate-session=true", "X-API-Key: "+noSess.Secret))

		// An explicit key beats a cookie.
		r = f.get("/x", "X-API-Key: "+noSess.Secret, "Cookie: keygate_session="+cookie)
		wantForwarded(t, "key and cookie", r, noSess.ID, "bob")

		// A session asked for over a session is not re-issued.
		wantSession(t, "cookie with ?keygate-session=true", f.get("/x?keygate-session=true", "Cookie: keygate_session="+cookie), k.ID, "alice")

		// Each way a key stops being usable ends its sessions at once.
		issue := func(k createdKey) string {
			t.Helper()
			return wantSessionCookie(t, "issuing", f.get("/x?keygate-session=true", "X-API-Key: "+k.Secret), k.Secret)
		}
		use := func(c string) reply { t.Helper(); return f.get("/x", "Cookie: keygate_session="+c) }

		c := issue(k)
		f.admin(http.StatusOK, "POST", "/v1/keys/"+k.ID+"/disable", nil)
		wantSessionInvalid(t, "after disable", use(c))
		f.admin(http.StatusOK, "POST", "/v1/keys/"+k.ID+"/enable", nil)
		// Disabling ends sessions for good: re-enabling does not revive them.
		wantSessionInvalid(t, "after disable and enable", use(c))

		c = issue(k)
		f.admin(http.StatusOK, "PATCH", "/v1/keys/"+k.ID, map[string]any{"sessions_allowed": false})
		wantSessionInvalid(t, "after sessions_allowed false", use(c))
		f.admin(http.StatusOK, "PATCH", "/v1/keys/"+k.ID, map[string]any{"sessions_allowed": true})
		wantSessionInvalid(t, "after sessions_allowed false and true", use(c))

		c = issue(k)
		f.admin(http.StatusOK, "POST", "/v1/keys/"+k.ID+"/revoke-sessions", nil)
		wantSessionInvalid(t, "after revoke-sessions", use(c))
		wantForwarded(t, "the key after revoke-sessions", f.get("/x", "X-API-Key: "+k.Secret), k.ID, "alice")

		c = issue(k)
		r = f.admin(http.StatusOK, "POST", "/v1/keys/"+k.ID+"/rotate", map[string]any{"grace": "1h"})
		wantSession(t, "after rotate with grace", use(c), k.ID, "alice")
		newSecret, _ := r.json()["secret"].(string)
		k.Secret = newSecret

		c = issue(k)
		k.Secret = f.in.rotate(f.adminKey, k.ID)
		wantSessionInvalid(t, "after rotate without grace", use(c))

		c = issue(k)
		f.admin(http.StatusNoContent, "DELETE", "/v1/keys/"+k.ID, nil)
		wantSessionInvalid(t, "after delete", use(c))

		// Expiry is checked against the clock: the cookie outlives the key
		// by nothing.
		exp := time.Now().Add(3 * time.Second).UTC().Truncate(time.Second)
		short := f.createKey(map[string]any{"name": "short", "user": "carol", "expires_at": exp.Format(time.RFC3339)})
		c = issue(short)
		wantSession(t, "before the key expires", use(c), short.ID, "carol")
		time.Sleep(time.Until(exp) + 50*time.Millisecond)
		wantSessionInvalid(t, "after the key expired", use(c))
	})
}

// TestFeatSessionConfig: cookie_name, request_param, ttl, secure and
// same_site reach the cookie and the request.
func TestFeatSessionConfig(t *testing.T) {
	f := startFeat(t, featStores[0].block(t, t.TempDir()), `sessions:
  enabled: true
  cookie_name: tw_session
  request_param: tw-session
  ttl: 90s
  secure: false
  same_site: lax
`)
	k := f.createKey(map[string]any{"name": "k", "user": "frank"})
	r := f.get("/x?keygate-session=true", "X-API-Key: "+k.Secret)
	wantNoCookie(t, "the default parameter when request_param is another", r)
	if e := forwarded(t, r); e.URI != "/x?keygate-session=true" {
		t.Errorf("upstream saw %q, want a parameter that is not the session parameter kept", e.URI)
	}
	r = f.get("/x?TW-Session=true", "X-API-Key: "+k.Secret)
	if r.status != http.StatusOK {
		t.Fatalf("?TW-Session=true = %s", r)
	}
	if e := forwarded(t, r); e.URI != "/x" {
		t.Errorf("upstream saw %q, want the session parameter removed in any case", e.URI)
	}
	c := theSetCookie(t, "?TW-Session=true", r)
	want := []string{"HttpOnly", "Max-Age=90", "Path=/", "SameSite=Lax"}
	if c.name != "tw_session" || c.value == "" || !slices.Equal(c.attrs, want) {
		t.Errorf("Set-Cookie %q=%q %q, want tw_session with exactly %q", c.name, c.value, c.attrs, want)
	}
	r = f.get("/x", "Cookie: tw_session="+c.value)
	if r.status != http.StatusOK || !slices.Equal(forwarded(t, r).Values("X-Keygate-Auth"), []string{"session"}) {
		t.Errorf("the tw_session cookie = %s, want 200 through the session", r)
	}
	wantDenied(t, "a keygate_session cookie when the name is tw_session", f.get("/x", "Cookie: keygate_session="+c.value), http.StatusUnauthorized, "missing_key")
}

// featSecrets are configured signing secrets: the first signs, both
// verify.
var featSecrets = [2]string{
	"feat-signing-secret-0123456789abcdef",
	"feat-old-secret-0123456789abcdefghij",
}

// TestFeatSessionCookieForgery: a cookie that is not exactly one this
// keygate minted, and still within its ttl, is session_invalid and
// cleared. Cookies are minted here with the configured secrets, so each
// case changes one thing from a cookie that is accepted.
func TestFeatSessionCookieForgery(t *testing.T) {
	forEachStore(t, func(t *testing.T, st featStore) {
		f := startFeat(t, st.block(t, t.TempDir()), sessionsYAML+fmt.Sprintf("  secrets: [%q, %q]\n", featSecrets[0], featSecrets[1]))
		k := f.createKey(map[string]any{"name": "k", "user": "dave"})
		use := func(c string) reply { t.Helper(); return f.get("/x", "Cookie: keygate_session="+c) }

		mint := func(secret string, epoch int64, issued, expires time.Time) string {
			t.Helper()
			s, err := auth.NewSessionSigner([][]byte{[]byte(secret)})
			if err != nil {
				t.Fatal(err)
			}
			v, err := s.AppendCookieValue(nil, k.ID, epoch, issued, expires)
			if err != nil {
				t.Fatal(err)
			}
			return string(v)
		}
		now := time.Now()
		// The controls: a new key's sessions are at epoch 0, and the older
		// configured secret still verifies.
		good := mint(featSecrets[0], 0, now, now.Add(time.Hour))
		wantSession(t, "cookie minted with the signing secret", use(good), k.ID, "dave")
		wantSession(t, "cookie minted with the older secret", use(mint(featSecrets[1], 0, now, now.Add(time.Hour))), k.ID, "dave")
		issued := wantSessionCookie(t, "issued cookie", f.get("/x?keygate-session=true", "X-API-Key: "+k.Secret), k.Secret)

		raw, err := base64.RawURLEncoding.DecodeString(good)
		if err != nil {
			t.Fatal(err)
		}
		tampered := func(i int) string {
			b := slices.Clone(raw)
			b[i] ^= 1
			return base64.RawURLEncoding.EncodeToString(b)
		}
		for _, tt := range []struct{ what, cookie string }{
			{"truncated by one character", issued[:len(issued)-1]},
			{"truncated to half", issued[:len(issued)/2]},
			{"extended", issued + "A"},
			{"padded", good + "="},
			{"standard base64", strings.NewReplacer("-", "+", "_", "/").Replace(good)},
			{"signed with a secret keygate does not hold", mint("another-secret-0123456789abcdefghijk", 0, now, now.Add(time.Hour))},
			{"tampered epoch", tampered(9)},
			{"tampered expiry", tampered(25)},
			{"tampered key id", tampered(26)},
			{"tampered signature", tampered(len(raw) - 1)},
			{"from an older epoch", mint(featSecrets[0], -1, now, now.Add(time.Hour))},
			{"issued in the future", mint(featSecrets[0], 0, now.Add(10*time.Minute), now.Add(time.Hour))},
			{"expired", mint(featSecrets[0], 0, now.Add(-2*time.Hour), now.Add(-time.Hour))},
			{"not base64", "%%%"},
		} {
			if tt.cookie == good {
				continue // standard base64 of a cookie without + or /
			}
			wantSessionInvalid(t, tt.what, use(tt.cookie))
		}
		wantSession(t, "the good cookie after all that", use(good), k.ID, "dave")
	})
}

// TestFeatSessionSecretShared: without sessions.secrets the signing secret
// is generated once and kept in the store, so a cookie survives a restart
// and another replica on the same PostgreSQL accepts it.
func TestFeatSessionSecretShared(t *testing.T) {
	t.Run("embedded restart", func(t *testing.T) {
		f := startFeat(t, featStores[0].block(t, t.TempDir()), sessionsYAML)
		k := f.createKey(map[string]any{"name": "k", "user": "erin"})
		c := wantSessionCookie(t, "issue", f.get("/x?keygate-session=true", "X-API-Key: "+k.Secret), k.Secret)
		f.restart()
		wantSession(t, "cookie after restart", f.get("/x", "Cookie: keygate_session="+c), k.ID, "erin")
	})
	t.Run("postgres replicas", func(t *testing.T) {
		block := featStores[1].block(t, "")
		a := startFeat(t, block, sessionsYAML)
		b := startFeat(t, block, sessionsYAML)
		k := a.createKey(map[string]any{"name": "k", "user": "erin"})
		c := wantSessionCookie(t, "issue at replica a", a.get("/x?keygate-session=true", "X-API-Key: "+k.Secret), k.Secret)
		wantSession(t, "cookie at replica b", b.get("/x", "Cookie: keygate_session="+c), k.ID, "erin")
	})
}

// TestFeatSessionsIssuedMetric: keygate_sessions_issued_total (CONTRACT §7)
// counts the cookies issued.
func TestFeatSessionsIssuedMetric(t *testing.T) {
	f := startFeat(t, featStores[0].block(t, t.TempDir()), sessionsYAML)
	k := f.createKey(map[string]any{"name": "k", "user": "u"})
	for range 3 {
		wantSessionCookie(t, "issue", f.get("/x?keygate-session=true", "X-API-Key: "+k.Secret), k.Secret)
	}
	wantNoCookie(t, "not asked", f.get("/x", "X-API-Key: "+k.Secret))
	r := f.in.adminDo("", "GET", "/metrics", nil)
	if got := metricValue(string(r.body), "keygate_sessions_issued_total"); got != "3" {
		t.Errorf("keygate_sessions_issued_total = %q after 3 issued sessions, want 3", got)
	}
}

// metricValue returns the value of the unlabelled series name in a
// Prometheus text exposition, or "" when it is absent.
func metricValue(exposition, name string) string {
	for _, line := range strings.Split(exposition, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v
		}
	}
	return ""
}

// TestFeatRateLimit: a key's own limit, the configured default for keys
// without one, and a key's own zero meaning unlimited; a refusal is 429
// rate_limited with Retry-After in whole seconds and is not forwarded.
func TestFeatRateLimit(t *testing.T) {
	forEachStore(t, func(t *testing.T, st featStore) {
		// The default refills one token every 100 s: nothing refills
		// during the test.
		f := startFeat(t, st.block(t, t.TempDir()), "rate_limit:\n  default: {rps: 0.01, burst: 1}\n")
		own := f.createKey(map[string]any{"name": "own", "user": "u", "rate_limit": map[string]any{"rps": 1, "burst": 2}})
		def := f.createKey(map[string]any{"name": "def", "user": "u"})
		free := f.createKey(map[string]any{"name": "free", "user": "u", "rate_limit": map[string]any{"rps": 0}})
		if rl := f.keyField(own.ID, "rate_limit"); !jsonEqual(rl, map[string]any{"rps": 1, "burst": 2}) {
			t.Errorf("rate_limit in the admin API = %v, want {rps: 1, burst: 2}", rl)
		}

		wantLimited := func(what string, r reply, minRetry int) {
			t.Helper()
			wantDenied(t, what, r, http.StatusTooManyRequests, "rate_limited")
			ra := r.header.Get("Retry-After")
			if n, err := strconv.Atoi(ra); err != nil || n < minRetry {
				t.Errorf("%s: Retry-After %q, want whole seconds ≥ %d", what, ra, minRetry)
			}
		}
		for i := range 2 {
			wantForwarded(t, fmt.Sprintf("own limit, request %d", i+1), f.get("/x", "X-API-Key: "+own.Secret), own.ID, "u")
		}
		hits := f.up.Hits()
		wantLimited("own limit, third immediate request", f.get("/x", "X-API-Key: "+own.Secret), 1)
		if f.up.Hits() != hits {
			t.Errorf("a rate-limited request reached the upstream")
		}

		wantForwarded(t, "default limit, request 1", f.get("/x", "X-API-Key: "+def.Secret), def.ID, "u")
		wantLimited("default limit, request 2", f.get("/x", "X-API-Key: "+def.Secret), 90)

		for i := range 5 {
			wantForwarded(t, fmt.Sprintf("own rps 0, request %d", i+1), f.get("/x", "X-API-Key: "+free.Secret), free.ID, "u")
		}

		// An edited limit applies to the next request.
		f.admin(http.StatusOK, "PATCH", "/v1/keys/"+def.ID, map[string]any{"rate_limit": map[string]any{"rps": 0}})
		wantForwarded(t, "default-limited key after its limit was lifted", f.get("/x", "X-API-Key: "+def.Secret), def.ID, "u")

		for _, tt := range []struct {
			rl    map[string]any
			field string
		}{
			{map[string]any{"rps": -1, "burst": 1}, "rate_limit.rps"},
			{map[string]any{"rps": 1e12, "burst": 1}, "rate_limit.rps"},
			{map[string]any{"rps": 1, "burst": -1}, "rate_limit.burst"},
			{map[string]any{"rps": 1, "burst": 1e12}, "rate_limit.burst"},
		} {
			r := f.in.adminDo(f.adminKey, "POST", "/v1/keys", map[string]any{"name": "bad", "user": "u", "rate_limit": tt.rl})
			if r.status != http.StatusUnprocessableEntity || r.errCode() != "invalid_field" || r.json()["field"] != tt.field {
				t.Errorf("create with rate_limit %v = %s, want 422 invalid_field %s", tt.rl, r, tt.field)
			}
			r = f.in.adminDo(f.adminKey, "PATCH", "/v1/keys/"+own.ID, map[string]any{"rate_limit": tt.rl})
			if r.status != http.StatusUnprocessableEntity || r.errCode() != "invalid_field" || r.json()["field"] != tt.field {
				t.Errorf("patch with rate_limit %v = %s, want 422 invalid_field %s", tt.rl, r, tt.field)
			}
		}
		if rl := f.keyField(own.ID, "rate_limit"); !jsonEqual(rl, map[string]any{"rps": 1, "burst": 2}) {
			t.Errorf("rate_limit after refused patches = %v, want it unchanged", rl)
		}
	})
}

// jsonEqual compares a decoded JSON value with want by their encodings.
func jsonEqual(got, want any) bool {
	a, _ := json.Marshal(got)
	b, _ := json.Marshal(want)
	return string(a) == string(b)
}

// TestFeatRateLimitConfig: check-config and serve refuse a bad default
// limit and name the field.
func TestFeatRateLimitConfig(t *testing.T) {
	for _, tt := range []struct{ yaml, field string }{
		{"rate_limit:\n  default: {rps: -1, burst: 1}\n", "rate_limit.default.rps"},
		{"rate_limit:\n  default: {rps: 1e12, burst: 1}\n", "rate_limit.default.rps"},
		{"rate_limit:\n  default: {rps: 5, burst: -1}\n", "rate_limit.default.burst"},
		{"rate_limit:\n  default: {rps: 5, burst: 0}\n", "rate_limit.default.burst"},
	} {
		dir := t.TempDir()
		cfg := writeConfig(t, dir, embeddedConfig(dir, freeAddr(t), freeAddr(t), "http://127.0.0.1:1")+tt.yaml)
		for _, cmd := range []string{"check-config", "serve"} {
			code, out, errOut := keygateCmd(nil, cmd, "--config", cfg)
			if code == 0 || !strings.Contains(out+errOut, tt.field+":") {
				t.Errorf("%s with %q = exit %d, output %q; want a failure naming %s", cmd, tt.yaml, code, out+errOut, tt.field)
			}
		}
	}
}

// TestFeatUsage: last_used_at reaches the admin API once usage is flushed
// (at the latest when serve stops), and using a rotated-out secret in its
// grace sets previous_secret_last_used_at.
func TestFeatUsage(t *testing.T) {
	forEachStore(t, func(t *testing.T, st featStore) {
		f := startFeat(t, st.block(t, t.TempDir()), sessionsYAML)
		used := f.createKey(map[string]any{"name": "used", "user": "u"})
		idle := f.createKey(map[string]any{"name": "idle", "user": "u"})
		rot := f.createKey(map[string]any{"name": "rot", "user": "u"})
		if v := f.keyField(used.ID, "last_used_at"); v != nil {
			t.Fatalf("last_used_at of a new key = %v, want null", v)
		}
		r := f.admin(http.StatusOK, "POST", "/v1/keys/"+rot.ID+"/rotate", map[string]any{"grace": "1h"})
		rotNew, _ := r.json()["secret"].(string)

		before := time.Now().UTC().Truncate(time.Second)
		wantForwarded(t, "used", f.get("/x", "X-API-Key: "+used.Secret), used.ID, "u")
		wantForwarded(t, "rotated key, old secret in grace", f.get("/x", "X-API-Key: "+rot.Secret), rot.ID, "u")
		after := time.Now().UTC()
		f.restart()

		at := func(id, field string) time.Time {
			t.Helper()
			s, _ := f.keyField(id, field).(string)
			ts, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				t.Errorf("%s of %s = %q, want a time", field, id, s)
			}
			return ts
		}
		inRange := func(what string, ts time.Time) {
			t.Helper()
			if ts.Before(before) || ts.After(after) {
				t.Errorf("%s = %v, want between %v and %v", what, ts, before, after)
			}
		}
		inRange("last_used_at after a request", at(used.ID, "last_used_at"))
		inRange("previous_secret_last_used_at after the old secret was used", at(rot.ID, "previous_secret_last_used_at"))
		if v := f.keyField(rot.ID, "last_used_at"); v != nil {
			t.Errorf("last_used_at of a key used only through its old secret = %v, want null", v)
		}
		if v := f.keyField(idle.ID, "last_used_at"); v != nil {
			t.Errorf("last_used_at of an unused key = %v, want null", v)
		}

		// The new secret and a session both count as use of the key.
		before = time.Now().UTC().Truncate(time.Second)
		c := wantSessionCookie(t, "issue", f.get("/x?keygate-session=true", "X-API-Key: "+rotNew), rotNew)
		wantSession(t, "session", f.get("/x", "Cookie: keygate_session="+c), rot.ID, "u")
		after = time.Now().UTC()
		f.restart()
		inRange("last_used_at after the new secret", at(rot.ID, "last_used_at"))
	})
}

// BenchmarkKeyLimiterAllow is the rate-limit hook serve wires, on a key
// with its own limit that never runs out.
func BenchmarkKeyLimiterAllow(b *testing.B) {
	l := proxy.KeyLimiter{Limiter: auth.NewLimiter(0, 0), Default: auth.RateLimit{RPS: 10, Burst: 10}}
	k := &auth.Key{ID: "key_01JDXYZABCDEFGHJKMNPQRSTV", RateLimit: &auth.RateLimit{RPS: 1e9, Burst: 1e9}}
	now := time.Now()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if ok, _ := l.Allow(k, now); !ok {
				b.Error("refused")
			}
		}
	})
}

// BenchmarkSignedSessionsVerify is the session hook serve wires verifying
// a cookie signed by the older of two secrets (the slower case).
func BenchmarkSignedSessionsVerify(b *testing.B) {
	signer, err := auth.NewSessionSigner([][]byte{[]byte(featSecrets[0]), []byte(featSecrets[1])})
	if err != nil {
		b.Fatal(err)
	}
	old, _ := auth.NewSessionSigner([][]byte{[]byte(featSecrets[1])})
	now := time.Now()
	v, err := old.AppendCookieValue(nil, "key_01JDXYZABCDEFGHJKMNPQRSTV", 1, now, now.Add(time.Hour))
	if err != nil {
		b.Fatal(err)
	}
	s := &proxy.SignedSessions{Signer: signer, TTL: time.Hour, Secure: true}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		buf := make([]byte, 0, 64)
		for pb.Next() {
			if _, _, err := s.Verify(buf[:0], v, now); err != nil {
				b.Error(err)
			}
		}
	})
}
