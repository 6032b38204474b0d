package proxy

import (
	"bufio"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/auth"
)

// TestStatusTable covers every row of CONTRACT §4's status table through
// real sockets, and checks each denial's shape: JSON, request id, the 401
// challenge, Retry-After, and no trace of the key.
func TestStatusTable(t *testing.T) {
	f := newFixture(t, func(f *fixture, o *Options) {
		o.Sessions = fakeSessions{}
		o.Routes = append(o.Routes,
			Route{Name: "limited", PathPrefix: "/limited", Targets: []string{f.up}},
			Route{Name: "dead", PathPrefix: "/dead", Targets: []string{"http://127.0.0.1:1"}},
			Route{Name: "onlyhost", Host: "other.example", PathPrefix: "/", Targets: []string{f.up}, Auth: AuthNone},
		)
	})
	slow, slowURL := startEcho(t, 300*time.Millisecond)
	_ = slow
	limited := newFixture(t, func(_ *fixture, o *Options) { o.RateLimiter = denyAll{} })
	slowFix := newFixture(t, func(_ *fixture, o *Options) {
		o.Routes = []Route{{Name: "slow", Targets: []string{slowURL}, Timeout: 20 * time.Millisecond}}
	})
	down := newFixture(t, nil)
	down.keys.down.Store(true)

	now := f.now
	good := f.keys.add(t, &auth.Key{ID: "key_good", Name: "good", User: "u", Enabled: true, SessionsAllowed: true})
	disabled := f.keys.add(t, &auth.Key{ID: "key_dis", Name: "dis", User: "u"})
	expired := f.keys.add(t, &auth.Key{ID: "key_exp", Name: "exp", User: "u", Enabled: true, ExpiresAt: now})
	rotated := f.keys.add(t, &auth.Key{ID: "key_rot", Name: "rot", User: "u", Enabled: true, Previous: true, PreviousExpiresAt: now.Add(-time.Second)})
	fenced := f.keys.add(t, &auth.Key{ID: "key_ip", Name: "ip", User: "u", Enabled: true,
		IPAllowlist: []netip.Prefix{mustPrefix(t, "10.0.0.0/8")}})
	scoped := f.keys.add(t, &auth.Key{ID: "key_scope", Name: "scope", User: "u", Enabled: true, Scopes: []string{"pub"}})
	adminOnly := f.keys.add(t, &auth.Key{ID: "key_adm", Name: "adm", User: "u", Enabled: true, Scopes: []string{auth.AdminScope}})
	f.keys.add(t, &auth.Key{ID: "key_sess", Name: "sess", User: "u", Enabled: true, SessionsAllowed: true, SessionEpoch: 2})
	limitedKey := limited.keys.add(t, &auth.Key{ID: "key_l", Name: "l", User: "u", Enabled: true})
	slowKey := slowFix.keys.add(t, &auth.Key{ID: "key_s", Name: "s", User: "u", Enabled: true})
	unknown, _ := auth.NewSecret("kg")
	badSum := good[:len(good)-1] + string("0123456789"[(strings.IndexByte("0123456789", good[len(good)-1])+1)%10])
	if !strings.ContainsAny(good[len(good)-1:], "0123456789") {
		badSum = good[:len(good)-1] + "!"
	}
	keys := []string{good, disabled, expired, rotated, fenced, scoped, adminOnly, limitedKey, slowKey, unknown}

	tests := []struct {
		name    string
		fx      *fixture
		target  string
		headers []string
		status  int
		code    string
	}{
		{"ok", f, "/x", []string{"X-API-Key: " + good}, 200, ""},
		{"ambiguous", f, "/x", []string{"X-API-Key: " + good, "Authorization: ApiKey " + unknown}, 400, "ambiguous_credentials"},
		{"bad path", f, "/a%2Fb", []string{"X-API-Key: " + good}, 400, "bad_request"},
		{"missing", f, "/x", nil, 401, "missing_key"},
		{"malformed", f, "/x", []string{"X-API-Key: nope"}, 401, "invalid_key"},
		{"bad checksum", f, "/x", []string{"X-API-Key: " + badSum}, 401, "invalid_key"},
		{"unknown", f, "/x", []string{"X-API-Key: " + unknown}, 401, "invalid_key"},
		{"disabled", f, "/x", []string{"X-API-Key: " + disabled}, 401, "key_disabled"},
		{"expired at its second", f, "/x", []string{"X-API-Key: " + expired}, 401, "key_expired"},
		{"rotated past grace", f, "/x", []string{"X-API-Key: " + rotated}, 401, "key_expired"},
		{"session bad", f, "/x", []string{"Cookie: kgs=garbage"}, 401, "session_invalid"},
		{"session revoked", f, "/x", []string{"Cookie: kgs=key_sess.1"}, 401, "session_invalid"},
		{"session ok", f, "/x", []string{"Cookie: kgs=key_sess.2"}, 200, ""},
		{"ip", f, "/x", []string{"X-API-Key: " + fenced}, 403, "ip_not_allowed"},
		{"scope", f, "/x", []string{"X-API-Key: " + scoped}, 403, "route_not_allowed"},
		{"admin-only key on proxy", f, "/x", []string{"X-API-Key: " + adminOnly}, 403, "route_not_allowed"},
		{"no route", f, "/nothing", []string{"Host: other.example"}, 0, ""},
		{"rate limited", limited, "/x", []string{"X-API-Key: " + limitedKey}, 429, "rate_limited"},
		{"upstream unavailable", f, "/dead", []string{"X-API-Key: " + good}, 502, "upstream_unavailable"},
		{"auth unavailable", down, "/x", []string{"X-API-Key: " + unknown}, 503, "auth_unavailable"},
		{"upstream timeout", slowFix, "/x", []string{"X-API-Key: " + slowKey}, 504, "upstream_timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r response
			if tt.name == "no route" {
				// Only "other.example" routes are considered for that host.
				r = tt.fx.raw("GET /nothing/here HTTP/1.1\r\nHost: other.example:8080\r\n\r\n")
				if r.status != 200 {
					t.Fatalf("host route: status %d", r.status)
				}
				nr := newFixture(t, func(f *fixture, o *Options) {
					o.Routes = []Route{{Name: "only", PathPrefix: "/only", Targets: []string{f.up}}}
				})
				r = nr.get("/nothing")
				tt.status, tt.code = 404, "no_route"
				if nr.echo.Hits() != 0 {
					t.Errorf("no_route reached the upstream")
				}
			} else {
				r = tt.fx.get(tt.target, tt.headers...)
			}
			if r.status != tt.status {
				t.Fatalf("status = %d, want %d (body %s)", r.status, tt.status, r.body)
			}
			for _, k := range keys {
				if strings.Contains(r.body, k) || strings.Contains(r.header.Get("Set-Cookie"), k) {
					t.Errorf("response echoes a key: %s", r.body)
				}
			}
			if tt.code == "" {
				return
			}
			code, rid := r.denial(t)
			if code != tt.code {
				t.Errorf("error = %q, want %q", code, tt.code)
			}
			if got := r.header.Get("X-Request-Id"); got != rid {
				t.Errorf("X-Request-Id header %q != body request_id %q", got, rid)
			}
			challenge := r.header.Get("WWW-Authenticate")
			if (tt.status == 401) != (challenge == `ApiKey realm="keygate"`) {
				t.Errorf("WWW-Authenticate = %q with status %d", challenge, tt.status)
			}
			retry := r.header.Get("Retry-After")
			if (tt.status == 429 || tt.status == 503) != (retry != "") {
				t.Errorf("Retry-After = %q with status %d", retry, tt.status)
			}
			if tt.status == 429 && retry != "2" {
				t.Errorf("Retry-After = %q, want 2 (1.5s rounded up)", retry)
			}
			if tt.code == "session_invalid" && !strings.Contains(r.header.Get("Set-Cookie"), "Max-Age=0") {
				t.Errorf("session_invalid does not clear the cookie: %q", r.header.Get("Set-Cookie"))
			}
		})
	}
	if hits := limited.echo.Hits() + down.echo.Hits(); hits != 0 {
		t.Errorf("refused requests reached the upstream %d times", hits)
	}
	for _, fx := range []*fixture{f, limited, slowFix, down} {
		for _, k := range keys {
			if strings.Contains(fx.logs.String(), k) || strings.Contains(fx.metrics(), k) {
				t.Errorf("a key appears in logs or metrics")
			}
		}
	}
	if got := f.authCount("disabled", "header", "default"); got != 1 {
		t.Errorf("auth_requests_total{disabled,header,default} = %v, want 1", got)
	}
	if got := f.authCount("session_invalid", "cookie", "default"); got != 2 {
		t.Errorf("auth_requests_total{session_invalid,cookie,default} = %v, want 2", got)
	}
}

// TestFormatFailuresSkipTheStore: nothing that cannot be a key reaches the
// KeyStore.
func TestFormatFailuresSkipTheStore(t *testing.T) {
	f := newFixture(t, nil)
	good := f.keys.add(t, &auth.Key{ID: "key_a", User: "u", Enabled: true})
	tests := []struct {
		name    string
		target  string
		headers []string
	}{
		{"empty header", "/x", []string{"X-API-Key:"}},
		{"scheme without value", "/x", []string{"Authorization: ApiKey"}},
		{"scheme with trailing space", "/x", []string{"Authorization: ApiKey "}},
		{"two spaces", "/x", []string{"Authorization: ApiKey  " + good}},
		{"lower-case scheme two spaces", "/x", []string{"authorization: apikey  " + good}},
		{"tab after scheme", "/x", []string{"Authorization: ApiKey\t" + good}},
		{"over-long", "/x", []string{"X-API-Key: kg_" + strings.Repeat("a", 600)}},
		{"NUL in query", "/x?api_key=" + good[:10] + "%00" + good[11:], nil},
		{"space in query", "/x?api_key=" + good[:10] + "+" + good[11:], nil},
		{"non-ASCII", "/x?appKey=" + good[:10] + "%C3%A9" + good[12:], nil},
		{"non-ASCII header", "/x", []string{"X-API-Key: " + good[:10] + "\xc3\xa9" + good[12:]}},
		{"bad checksum", "/x", []string{"X-API-Key: " + good[:len(good)-6] + "000000"}},
		{"wrong prefix", "/x", []string{"X-API-Key: xx" + good[2:]}},
		{"empty query value", "/x?appKey=", nil},
		{"bare query name", "/x?APPKEY", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := f.keys.lookups.Load()
			r := f.get(tt.target, tt.headers...)
			if r.status != 401 {
				t.Fatalf("status = %d, want 401 (body %s)", r.status, r.body)
			}
			if code, _ := r.denial(t); code != "invalid_key" {
				t.Errorf("error = %q, want invalid_key", code)
			}
			if n := f.keys.lookups.Load() - before; n != 0 {
				t.Errorf("%d store lookups, want 0", n)
			}
		})
	}
	if f.echo.Hits() != 0 {
		t.Errorf("upstream hit %d times", f.echo.Hits())
	}
	// A scheme that is not ours is not a key source at all.
	r := f.get("/x", "Authorization: Bearer abc")
	if code, _ := r.denial(t); r.status != 401 || code != "missing_key" {
		t.Errorf("Bearer only: %d %s, want 401 missing_key", r.status, code)
	}
	r = f.get("/x", "Authorization: ApiKeyX "+good)
	if code, _ := r.denial(t); r.status != 401 || code != "missing_key" {
		t.Errorf("ApiKeyX scheme: %d %s, want 401 missing_key", r.status, code)
	}
	if f.keys.lookups.Load() != 0 {
		t.Errorf("store was consulted")
	}
}

// TestAmbiguousCredentials: every value of every source is examined.
func TestAmbiguousCredentials(t *testing.T) {
	f := newFixture(t, nil)
	a := f.keys.add(t, &auth.Key{ID: "key_a", User: "u", Enabled: true})
	b := f.keys.add(t, &auth.Key{ID: "key_b", User: "u", Enabled: true})
	ambiguous := []struct {
		name    string
		target  string
		headers []string
	}{
		{"repeated header", "/x", []string{"X-API-Key: " + a, "X-API-Key: " + b}},
		{"repeated header other case", "/x", []string{"X-API-Key: " + a, "x-api-key: " + b}},
		{"header and authorization", "/x", []string{"X-API-Key: " + a, "Authorization: apikey " + b}},
		{"two authorization lines", "/x", []string{"Authorization: ApiKey " + a, "Authorization: ApiKey " + b}},
		{"header and query", "/x?api_key=" + b, []string{"X-API-Key: " + a}},
		{"query repeated", "/x?api_key=" + a + "&api_key=" + b, nil},
		{"query case variants", "/x?appKey=" + a + "&APPKEY=" + b, nil},
		{"query encoded name", "/x?appKey=" + a + "&app%4Bey=" + b, nil},
		{"two query sources", "/x?appKey=" + a + "&api_key=" + b, nil},
		{"query split by semicolon", "/x?api_key=" + a + ";api_key=" + b, nil},
		{"header and semicolon query", "/x?q=1;api_key=" + b, []string{"X-API-Key: " + a}},
		{"valid and empty", "/x", []string{"X-API-Key: " + a, "appKey:"}},
	}
	for _, tt := range ambiguous {
		t.Run(tt.name, func(t *testing.T) {
			r := f.get(tt.target, tt.headers...)
			if code, _ := r.denial(t); r.status != 400 || code != "ambiguous_credentials" {
				t.Errorf("got %d %s, want 400 ambiguous_credentials", r.status, code)
			}
		})
	}
	if f.keys.lookups.Load() != 0 || f.echo.Hits() != 0 {
		t.Errorf("ambiguous requests reached the store (%d) or upstream (%d)", f.keys.lookups.Load(), f.echo.Hits())
	}
	same := [][]string{
		{"X-API-Key: " + a, "X-API-Key: " + a},
		{"X-API-Key: " + a, "Authorization: ApiKey " + a},
		{"Authorization: Bearer other", "X-API-Key: " + a},
	}
	for _, h := range same {
		if r := f.get("/x?APP_KEY=x&appkey="+a, h...); r.status != 200 {
			t.Errorf("%q: status %d, want 200 (same key twice is fine)", h, r.status)
		}
	}
}

// TestForwardedRequest checks what the upstream sees on success: identity
// added, credentials and spoofed identity removed in every spelling,
// hop-by-hop and Connection-named headers removed, forwarding headers set.
func TestForwardedRequest(t *testing.T) {
	f := newFixture(t, nil)
	key := f.keys.add(t, &auth.Key{ID: "key_fw", Name: "fw", User: "alice", Application: "app", Tenant: "t1",
		Scopes: []string{"default", "strip"}, ScopesHeader: "default,strip", Enabled: true})
	r := f.get("/x/y?a=1&api_key="+key+"&API_KEY="+key+"&b=2",
		"X-Keygate-User: mallory",
		"x-keygate-key-id: key_evil",
		"X_Keygate_Tenant: evil",
		"X.Keygate.Scopes: admin",
		"X-KEYGATE-AUTH: session",
		"X-Custom: keep",
		"X-Drop-Me: secret",
		"Connection: keep-alive, X-Drop-Me",
		"Keep-Alive: timeout=5",
		"Proxy-Authorization: Basic Zm9v",
		"Upgrade: websocket",
		"TE: trailers",
		"X-Original-URL: /admin",
		"X-Forwarded-Uri: /admin",
		"X-Rewrite-URL: /admin",
		"X-Forwarded-For: 6.6.6.6",
		"X-Real-IP: 6.6.6.6",
		"True-Client-IP: 6.6.6.6",
		"Forwarded: for=6.6.6.6",
		"X-Forwarded-Host: evil.example",
		"X-Forwarded-Proto: https",
		"X-Request-Id: req-123",
		"Authorization: Bearer upstream-token",
		"Cookie: a=b; c=d",
		"User-Agent: test/1",
		"Content-Type: text/plain",
		"X-API-Key: "+key,
	)
	e := r.upstream(t)
	if e.URI != "/x/y?a=1&b=2" {
		t.Errorf("upstream URI = %q, want /x/y?a=1&b=2", e.URI)
	}
	want := map[string]string{
		"X-Keygate-Key-Id":      "key_fw",
		"X-Keygate-Key-Name":    "fw",
		"X-Keygate-User":        "alice",
		"X-Keygate-Application": "app",
		"X-Keygate-Tenant":      "t1",
		"X-Keygate-Scopes":      "default,strip",
		"X-Keygate-Auth":        "key",
		"X-Custom":              "keep",
		"X-Forwarded-For":       "127.0.0.1",
		"X-Forwarded-Proto":     "http",
		"X-Forwarded-Host":      "api.example",
		"X-Request-Id":          "req-123",
		"Authorization":         "Bearer upstream-token",
		"Cookie":                "a=b; c=d",
		"User-Agent":            "test/1",
		"Content-Type":          "text/plain",
	}
	for name, v := range want {
		if got := e.Values(name); len(got) != 1 || got[0] != v {
			t.Errorf("upstream %s = %q, want [%q]", name, got, v)
		}
	}
	for _, h := range e.Headers {
		n := strings.ToLower(strings.NewReplacer("_", "-", ".", "-").Replace(h[0]))
		if strings.HasPrefix(n, "x-keygate-") && !strings.HasPrefix(h[0], "X-Keygate-") {
			t.Errorf("spoofed identity header forwarded: %q", h)
		}
		switch n {
		case "x-drop-me", "keep-alive", "proxy-authorization", "upgrade", "te", "x-original-url",
			"x-forwarded-uri", "x-rewrite-url", "x-real-ip", "true-client-ip", "forwarded", "x-api-key", "connection":
			t.Errorf("header %q forwarded", h)
		}
		if strings.Contains(h[1], key) {
			t.Errorf("the key was forwarded in %q", h[0])
		}
	}

	// Identity headers are removed on auth: none routes too, and a fresh
	// request id is made when none (or a bad one) is sent.
	r = f.get("/pub/z", "X-Keygate-User: mallory", "X-Request-Id: bad id\"")
	e = r.upstream(t)
	if e.HasPrefix("X-Keygate-") {
		t.Errorf("identity header reached an auth: none route: %q", e.Headers)
	}
	if id := e.Values("X-Request-Id"); len(id) != 1 || len(id[0]) != 32 {
		t.Errorf("X-Request-Id = %q, want a new 32-hex id", id)
	}

	// strip_prefix with a target base path.
	r = f.get("/strip/a?q=%41", "X-API-Key: "+key)
	if e = r.upstream(t); e.URI != "/base/a?q=%41" {
		t.Errorf("strip_prefix URI = %q, want /base/a?q=%%41", e.URI)
	}
	r = f.get("/strip", "X-API-Key: "+key)
	if e = r.upstream(t); e.URI != "/base/" {
		t.Errorf("strip_prefix of the prefix itself = %q, want /base/", e.URI)
	}

	// ';' separates parameters as '&' does (frameworks split on both): a
	// key after one is a credential, and it is stripped with the
	// separators around the kept parameters left as they were.
	// Kept parameters are joined by ';' only when every separator between
	// them was one.
	for target, want := range map[string]string{
		"/x?a=1;api_key=" + key + "&b=2": "/x?a=1&b=2",
		"/x?a=1&api_key=" + key + ";b=2": "/x?a=1&b=2",
		"/x?a=1;api_key=" + key + ";b=2": "/x?a=1;b=2",
		"/x?q=a;b;api_key=" + key:        "/x?q=a;b",
		"/x?api_key=" + key + ";":        "/x",
	} {
		r = f.get(target)
		if r.status != 200 {
			t.Errorf("%s: status %d, want 200", target, r.status)
			continue
		}
		if e = r.upstream(t); e.URI != want || e.Values("X-Keygate-Key-Id")[0] != "key_fw" {
			t.Errorf("%s: upstream URI %q (key id %q), want %q", target, e.URI, e.Values("X-Keygate-Key-Id"), want)
		}
	}

	// Spellings that PHP or Rack read as a credential parameter are not
	// key sources, but they are stripped too.
	r = f.get("/x?a=1&api.key=k1&api_key[]=k2&+api_key=k3&api%20key=k4&api[key=k5&API_KEY%5Bx%5D=k6&api[key]=keep&b=2", "X-API-Key: "+key)
	if e = r.upstream(t); r.status != 200 || e.URI != "/x?a=1&api[key]=keep&b=2" {
		t.Errorf("credential parameter spellings: status %d, upstream URI %q", r.status, e.URI)
	}
	// However long the name, and up to a NUL (PHP reads a C string).
	r = f.get("/x?"+strings.Repeat("+", 200)+"api_key=k1&api_key["+strings.Repeat("a", 200)+"]=k2&api_key%00x=k3&b=2", "X-API-Key: "+key)
	if e = r.upstream(t); r.status != 200 || e.URI != "/x?b=2" {
		t.Errorf("long or NUL credential parameter spellings: status %d, upstream URI %q", r.status, e.URI)
	}

	// StripCredentials off forwards them.
	g := newFixture(t, func(_ *fixture, o *Options) { o.StripCredentials = false })
	gk := g.keys.add(t, &auth.Key{ID: "key_g", User: "u", Enabled: true})
	e = g.get("/x?appKey="+gk, "X-API-Key: "+gk).upstream(t)
	if e.URI != "/x?appKey="+gk || len(e.Values("X-API-Key")) != 1 {
		t.Errorf("StripCredentials=false: URI %q, headers %q", e.URI, e.Headers)
	}
}

// TestConnectionNamedIdentity: a header the client names in Connection is
// dropped, and identity headers are dropped whatever Connection says.
func TestConnectionNamedIdentity(t *testing.T) {
	f := newFixture(t, nil)
	key := f.keys.add(t, &auth.Key{ID: "key_c", User: "bob", Enabled: true})
	e := f.get("/x", "Connection: X-Keygate-User", "X-Keygate-User: mallory", "X-API-Key: "+key).upstream(t)
	if got := e.Values("X-Keygate-User"); len(got) != 1 || got[0] != "bob" {
		t.Errorf("X-Keygate-User = %q, want [bob]", got)
	}
	// Naming our own X-Forwarded-For in Connection cannot remove the one we add.
	e = f.get("/x", "Connection: X-Forwarded-For, X-Keygate-Key-Id", "X-API-Key: "+key).upstream(t)
	if got := e.Values("X-Forwarded-For"); len(got) != 1 || got[0] != "127.0.0.1" {
		t.Errorf("X-Forwarded-For = %q", got)
	}
	if got := e.Values("X-Keygate-Key-Id"); len(got) != 1 || got[0] != "key_c" {
		t.Errorf("X-Keygate-Key-Id = %q", got)
	}
}

// TestPaths: normalization decides, and the upstream gets what was matched.
func TestPaths(t *testing.T) {
	f := newFixture(t, nil)
	key := f.keys.add(t, &auth.Key{ID: "key_p", User: "u", Enabled: true, Scopes: []string{"pub", "admin"}})
	tests := []struct {
		target  string
		status  int
		code    string
		upstrem string // URI the upstream must see on 200
	}{
		{"//pub//x", 200, "", "/pub/x"},
		{"/pub/%2e%2e/admin", 401, "missing_key", ""},
		{"/pub/%2E%2e/admin", 401, "missing_key", ""},
		{"/pub/./../admin/", 401, "missing_key", ""},
		{"/pub/.%2e/admin", 401, "missing_key", ""},
		{"/pub%2F..%2Fadmin", 400, "bad_request", ""},
		{"/pub%2f..%2fadmin", 400, "bad_request", ""},
		{"/pub/%00", 400, "bad_request", ""},
		{"/pub/..;/admin", 400, "bad_request", ""},
		{"/pub/.;x/admin", 400, "bad_request", ""},
		{"/pub/x#frag", 400, "bad_request", ""},
		{"/pub/a\\..\\admin", 400, "bad_request", ""},
		{"/pub/%zz", 400, "bad_request", ""},
		{"/pub/;x", 200, "", "/pub/;x"},
		// ";" parameters are kept when the route is the same with them
		// removed, as servlet containers map paths, and refused when not.
		{"/pub/a;x/b;y", 200, "", "/pub/a;x/b;y"},
		{"/pub;x/y", 400, "bad_request", ""},
		{"/admin;x/users", 400, "bad_request", ""},
		{"/admin;jsessionid=1/users", 400, "bad_request", ""},
		{"/;x/admin", 400, "bad_request", ""},
		{"/pub/%3Bx", 200, "", "/pub/%3Bx"},
		{"/pub/%7Euser/%41%3b", 200, "", "/pub/~user/A%3B"},
		{"/pub/../../..", 401, "missing_key", ""},
		{"/publication", 401, "missing_key", ""},
		{"http://api.example/pub/abs?x=1", 200, "", "/pub/abs?x=1"},
		{"*", 400, "bad_request", ""},
	}
	for _, tt := range tests {
		t.Run(tt.target, func(t *testing.T) {
			r := f.get(tt.target, "X-Original-URL: /admin", "X-Rewrite-URL: /admin")
			if r.status != tt.status {
				t.Fatalf("status = %d, want %d (%s)", r.status, tt.status, r.body)
			}
			if tt.status == 200 {
				if e := r.upstream(t); e.URI != tt.upstrem {
					t.Errorf("upstream URI = %q, want %q", e.URI, tt.upstrem)
				}
				return
			}
			if code, _ := r.denial(t); code != tt.code {
				t.Errorf("error = %q, want %q", code, tt.code)
			}
		})
	}
	// With a key, the traversal lands on /admin and is sent there.
	if e := f.get("/pub/%2e%2e/admin/x", "X-API-Key: "+key).upstream(t); e.URI != "/admin/x" {
		t.Errorf("upstream URI = %q, want /admin/x", e.URI)
	}
}

// TestKeepAliveAuthenticatesEachRequest: a connection is never trusted.
func TestKeepAliveAuthenticatesEachRequest(t *testing.T) {
	f := newFixture(t, nil)
	key := f.keys.add(t, &auth.Key{ID: "key_k", User: "u", Enabled: true})
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Write([]byte("GET /x HTTP/1.1\r\nHost: a\r\nX-API-Key: " + key + "\r\n\r\n" +
		"GET /y HTTP/1.1\r\nHost: a\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	if r := readResponse(t, br, c); r.status != 200 {
		t.Fatalf("first: %d", r.status)
	}
	r := readResponse(t, br, c)
	if code, _ := r.denial(t); r.status != 401 || code != "missing_key" {
		t.Errorf("second request without key: %d %s, want 401 missing_key", r.status, code)
	}
	if f.echo.Hits() != 1 {
		t.Errorf("upstream hits = %d, want 1", f.echo.Hits())
	}
}

// TestOptionalRoute: no key forwards without identity; a given key must
// be valid.
func TestOptionalRoute(t *testing.T) {
	f := newFixture(t, nil)
	key := f.keys.add(t, &auth.Key{ID: "key_o", User: "u", Enabled: true})
	if e := f.get("/opt/a", "X-Keygate-User: x").upstream(t); e.HasPrefix("X-Keygate-") {
		t.Errorf("optional without key forwarded identity: %q", e.Headers)
	}
	if e := f.get("/opt/a", "X-API-Key: "+key).upstream(t); len(e.Values("X-Keygate-Key-Id")) != 1 {
		t.Errorf("optional with key: no identity")
	}
	r := f.get("/opt/a", "X-API-Key: garbage")
	if code, _ := r.denial(t); code != "invalid_key" {
		t.Errorf("optional with bad key: %s", code)
	}
}

// TestUsageHookAndSession: OnAuthenticated sees every key success; a
// session is issued when asked for and allowed.
func TestUsageHookAndSession(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	f := newFixture(t, func(_ *fixture, o *Options) {
		o.Sessions = fakeSessions{}
		o.OnAuthenticated = func(k *auth.Key, previous bool, _ time.Time) {
			mu.Lock()
			seen = append(seen, k.ID)
			mu.Unlock()
		}
	})
	key := f.keys.add(t, &auth.Key{ID: "key_u", User: "u", Enabled: true, SessionsAllowed: true, SessionEpoch: 7})
	noSess := f.keys.add(t, &auth.Key{ID: "key_n", User: "u", Enabled: true})
	r := f.get("/x?keygate-session=true&z=1", "X-API-Key: "+key, "Cookie: a=b; kgs=zzz")
	e := r.upstream(t)
	if got := r.header.Get("Set-Cookie"); got != "kgs=key_u.7; Path=/; HttpOnly" {
		t.Errorf("Set-Cookie = %q", got)
	}
	if e.URI != "/x?z=1" {
		t.Errorf("session param forwarded: %q", e.URI)
	}
	if c := e.Values("Cookie"); len(c) != 1 || c[0] != "a=b" {
		t.Errorf("Cookie forwarded = %q, want session cookie removed", c)
	}
	if r := f.get("/x", "X-API-Key: "+noSess, "X-Keygate-Session: true"); r.header.Get("Set-Cookie") != "" {
		t.Errorf("session issued to a key that disallows it")
	}
	e = f.get("/x", "Cookie: kgs=key_u.7").upstream(t)
	if a := e.Values("X-Keygate-Auth"); len(a) != 1 || a[0] != "session" {
		t.Errorf("X-Keygate-Auth = %q, want session", a)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 3 || seen[0] != "key_u" || seen[1] != "key_n" || seen[2] != "key_u" {
		t.Errorf("OnAuthenticated saw %q", seen)
	}
}

// TestSessionParamSemicolon: ';' separates the session parameter as '&'
// does: it asks for a session and is not forwarded.
func TestSessionParamSemicolon(t *testing.T) {
	f := newFixture(t, func(_ *fixture, o *Options) { o.Sessions = fakeSessions{} })
	key := f.keys.add(t, &auth.Key{ID: "key_u", User: "u", Enabled: true, SessionsAllowed: true, SessionEpoch: 7})
	r := f.get("/x?z=1;keygate-session=true", "X-API-Key: "+key)
	if got := r.header.Get("Set-Cookie"); got != "kgs=key_u.7; Path=/; HttpOnly" {
		t.Errorf("Set-Cookie = %q", got)
	}
	if e := r.upstream(t); e.URI != "/x?z=1" {
		t.Errorf("session param forwarded: %q", e.URI)
	}
}
