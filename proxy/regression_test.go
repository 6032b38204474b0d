package proxy

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/auth"
)

// A session minted with a rotated-out (previous) secret must not outlive
// that secret's grace period.
func TestRegressionSessionFromPreviousSecretOutlivesGrace(t *testing.T) {
	signer, err := auth.NewSessionSigner([][]byte{[]byte(strings.Repeat("s", 32))})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, func(_ *fixture, o *Options) {
		o.Sessions = &SignedSessions{Signer: signer, TTL: time.Hour}
	})
	graceEnd := f.now.Add(time.Minute)
	// Looked up by the old secret's digest: Previous, grace ends in 1 min.
	old := f.keys.add(t, &auth.Key{ID: "key_rot", User: "u", Enabled: true, SessionsAllowed: true,
		Previous: true, PreviousExpiresAt: graceEnd})
	// Looked up by id (what a session does): Previous is always false.
	f.keys.mu.Lock()
	f.keys.byID["key_rot"] = &auth.Key{ID: "key_rot", User: "u", Enabled: true, SessionsAllowed: true}
	f.keys.mu.Unlock()

	r := f.get("/x?keygate-session=true", "X-API-Key: "+old)
	if r.status != 200 {
		t.Fatalf("old secret within grace: %d", r.status)
	}
	c, err := http.ParseSetCookie(r.header.Get("Set-Cookie"))
	if err != nil {
		return // no session minted from a rotated-out secret: fine
	}
	later := f.now.Add(10 * time.Minute) // grace over, cookie ttl not
	f.clock.Store(&later)
	if r := f.get("/x", "X-API-Key: "+old); r.status != 401 {
		t.Fatalf("old secret after grace: %d, want 401", r.status)
	}
	if r := f.get("/x", "Cookie: "+c.Name+"="+c.Value); r.status != 401 {
		t.Errorf("session minted from the old secret still works after its grace: status %d", r.status)
	}
}

// The upstream must not be told a different method than the one the route
// decision saw.
func TestRegressionMethodOverrideHeadersForwarded(t *testing.T) {
	f := newFixture(t, func(f *fixture, o *Options) {
		o.Routes = []Route{
			{Name: "write", PathPrefix: "/api", Methods: []string{"POST"}, Targets: []string{f.up}},
			{Name: "delete", PathPrefix: "/api", Methods: []string{"DELETE"}, Targets: []string{f.up}},
		}
	})
	writer := f.keys.add(t, &auth.Key{ID: "key_w", User: "u", Enabled: true, Scopes: []string{"write"}})
	if r := f.raw("DELETE /api/x HTTP/1.1\r\nHost: a\r\nX-API-Key: " + writer + "\r\n\r\n"); r.status != 403 {
		t.Fatalf("DELETE with a write-only key: %d, want 403", r.status)
	}
	r := f.raw("POST /api/x HTTP/1.1\r\nHost: a\r\nX-API-Key: " + writer + "\r\nContent-Length: 0\r\n" +
		"X-HTTP-Method-Override: DELETE\r\nX-HTTP-Method: DELETE\r\nX-Method-Override: DELETE\r\n\r\n")
	e := r.upstream(t)
	for _, h := range []string{"X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"} {
		if v := e.Values(h); len(v) != 0 {
			t.Errorf("route %q (POST) forwarded %s: %q", "write", h, v)
		}
	}
}

// HTTP/1.0 without Host is not an upstream failure.
func TestRegressionHTTP10WithoutHost(t *testing.T) {
	f := newFixture(t, nil)
	key := f.keys.add(t, &auth.Key{ID: "key_h", User: "u", Enabled: true})
	r := f.raw("GET /x HTTP/1.0\r\nX-API-Key: " + key + "\r\n\r\n")
	if code, _ := r.denial(t); r.status != 400 || code != "bad_request" {
		t.Errorf("HTTP/1.0 without Host: %d %s, want 400 bad_request", r.status, code)
	}
	if n := f.echo.Hits(); n != 0 {
		t.Errorf("HTTP/1.0 without Host reached the upstream %d times", n)
	}
}

// A host route must not be side-stepped by spelling its host as the same
// FQDN with a trailing dot (nginx, Envoy and most vhost servers treat
// "admin.example." as "admin.example").
func TestRegressionTrailingDotHostSkipsHostRoute(t *testing.T) {
	f := newFixture(t, func(f *fixture, o *Options) {
		o.Routes = []Route{
			{Name: "admin", Host: "admin.example", PathPrefix: "/", Targets: []string{f.up}},
			{Name: "public", PathPrefix: "/", Targets: []string{f.up}, Auth: AuthNone},
		}
	})
	if r := f.raw("GET /users HTTP/1.1\r\nHost: admin.example\r\n\r\n"); r.status != 401 {
		t.Fatalf("admin host without key: %d, want 401", r.status)
	}
	r := f.raw("GET /users HTTP/1.1\r\nHost: admin.example.\r\n\r\n")
	if r.status == 200 {
		e := r.upstream(t)
		t.Errorf("Host %q reached the upstream without a key via route public (upstream Host %q)", "admin.example.", e.Host)
	}
}

// A method-restricted route must not be side-stepped by spelling the method
// in lower case: frameworks such as Symfony/Laravel (strtoupper) and
// Werkzeug (.upper()) read "delete" as DELETE.
func TestRegressionLowercaseMethodSkipsMethodRoute(t *testing.T) {
	f := newFixture(t, func(f *fixture, o *Options) {
		o.Routes = []Route{
			{Name: "delete", PathPrefix: "/api", Methods: []string{"DELETE"}, Targets: []string{f.up}},
			{Name: "read", PathPrefix: "/api", Targets: []string{f.up}},
		}
	})
	reader := f.keys.add(t, &auth.Key{ID: "key_r", User: "u", Enabled: true, Scopes: []string{"read"}})
	if r := f.raw("DELETE /api/x HTTP/1.1\r\nHost: a\r\nX-API-Key: " + reader + "\r\n\r\n"); r.status != 403 {
		t.Fatalf("DELETE with a read key: %d, want 403", r.status)
	}
	r := f.raw("delete /api/x HTTP/1.1\r\nHost: a\r\nX-API-Key: " + reader + "\r\n\r\n")
	if r.status == 200 {
		e := r.upstream(t)
		t.Errorf("read-scoped key got method %q to the upstream through route read", e.Method)
	}
}

// "host, then longest path prefix, then method": on equal host and prefix
// a route naming the method must win over a method-less one whatever the
// configuration order (today the later one is silently unreachable).
func TestRegressionMethodRouteShadowedByOrder(t *testing.T) {
	f := newFixture(t, func(f *fixture, o *Options) {
		o.Routes = []Route{
			{Name: "read", PathPrefix: "/api", Targets: []string{f.up}},
			{Name: "delete", PathPrefix: "/api", Methods: []string{"DELETE"}, Targets: []string{f.up}},
		}
	})
	reader := f.keys.add(t, &auth.Key{ID: "key_r", User: "u", Enabled: true, Scopes: []string{"read"}})
	if r := f.raw("DELETE /api/x HTTP/1.1\r\nHost: a\r\nX-API-Key: " + reader + "\r\n\r\n"); r.status != 403 {
		t.Errorf("DELETE with a read-scoped key: %d, want 403 route_not_allowed (route delete)", r.status)
	}
}

// No secret in logs, whatever the level: fasthttp's parse errors quote the
// request buffer even with SecureErrorLogMessage on some paths.
func TestRegressionParseErrorLogsKey(t *testing.T) {
	f := newFixture(t, nil) // fixture logs at Debug
	key := f.keys.add(t, &auth.Key{ID: "key_l", User: "u", Enabled: true})
	for _, req := range []string{
		"GET /x?api_key=" + key + "\r\nHost: a\r\n\r\n",                            // no HTTP version
		"GET /x HTTP/1.1x\r\nHost: a\r\nX-API-Key: " + key + "\r\n\r\n",            // bad version
		"GET /x?api_key=" + key + "\x01 HTTP/1.1\r\nHost: a\r\n\r\n",               // CTL in URI
		"GET /x HTTP/1.1\r\nHost: a\r\nX-API-Key: " + key + "\r\nBad Line\r\n\r\n", // malformed header
	} {
		f.raw(req)
	}
	time.Sleep(100 * time.Millisecond) // let the server finish logging the refused connections
	for _, l := range strings.Split(f.logs.String(), "\n") {
		if strings.Contains(l, key) {
			t.Errorf("log line carries the key: %.300s", l)
		}
	}
}

// Scheme/port claims from an untrusted client reach the upstream next to
// the X-Forwarded-Proto keygate sets.
func TestRegressionForwardingClaimsFromUntrustedPeer(t *testing.T) {
	f := newFixture(t, nil)
	e := f.raw("GET /pub/x HTTP/1.1\r\nHost: a\r\nX-Forwarded-Ssl: on\r\nX-Forwarded-Scheme: https\r\n" +
		"X-Url-Scheme: https\r\nFront-End-Https: on\r\nX-Forwarded-Port: 443\r\nX-Original-Host: admin.example\r\n" +
		"X-Cluster-Client-IP: 6.6.6.6\r\nCF-Connecting-IP: 6.6.6.6\r\n\r\n").upstream(t)
	for _, h := range []string{"X-Forwarded-Ssl", "X-Forwarded-Scheme", "X-Url-Scheme", "Front-End-Https",
		"X-Forwarded-Port", "X-Original-Host", "X-Cluster-Client-IP", "CF-Connecting-IP"} {
		if v := e.Values(h); len(v) != 0 {
			t.Errorf("untrusted peer's %s forwarded: %q (X-Forwarded-Proto %q)", h, v, e.Values("X-Forwarded-Proto"))
		}
	}
}

// With accept_foreign_keys, a string carrying keygate's own prefix is
// still judged as a keygate key: a bad checksum is invalid_key and never
// reaches the store, even though a foreign key of that length would.
func TestRegressionForeignKeysKeepTheChecksum(t *testing.T) {
	f := newFixture(t, func(_ *fixture, o *Options) { o.AcceptForeignKeys = true })
	good := f.keys.add(t, &auth.Key{ID: "key_f", User: "u", Enabled: true})
	last := byte('A')
	if good[len(good)-1] == last {
		last = 'B'
	}
	bad := good[:len(good)-1] + string(last)
	before := f.keys.lookups.Load()
	for _, k := range []string{bad, "kg_dddddddddddddddddddddddddd"} {
		r := f.get("/x", "X-API-Key: "+k)
		if code, _ := r.denial(t); r.status != 401 || code != "invalid_key" {
			t.Errorf("key %.8s…: %d %s, want 401 invalid_key", k, r.status, code)
		}
	}
	if n := f.keys.lookups.Load() - before; n != 0 {
		t.Errorf("%d store lookups for keygate-prefixed keys with bad checksums, want 0", n)
	}
	if r := f.get("/x", "X-API-Key: "+good); r.status != 200 {
		t.Errorf("valid key with foreign keys accepted: %d, want 200", r.status)
	}
}

// A spelling variant of a credential header (X_API_Key, which CGI-style
// upstreams read as X-API-Key) is not forwarded.
func TestRegressionCredentialHeaderSpellingStripped(t *testing.T) {
	f := newFixture(t, func(_ *fixture, o *Options) { o.StripCredentials = true })
	key := f.keys.add(t, &auth.Key{ID: "key_v", User: "u", Enabled: true})
	e := f.raw("GET /x HTTP/1.1\r\nHost: a\r\nX-API-Key: " + key + "\r\nX_API_Key: " + key + "\r\nX.Api.Key: " + key + "\r\n\r\n").upstream(t)
	for _, h := range e.Headers {
		if strings.Contains(h[1], key) {
			t.Errorf("key forwarded in header %q", h[0])
		}
	}
}

// Our scheme followed by a tab instead of the space ("ApiKey<TAB>key",
// which lenient upstream parsers read as "ApiKey key") is our credential
// header too: 401 invalid_key where a key is checked, and never forwarded
// where it is not.
func TestRegressionSchemeTabStripped(t *testing.T) {
	f := newFixture(t, nil)
	key := f.keys.add(t, &auth.Key{ID: "key_t", User: "u", Enabled: true})
	r := f.get("/pub/x", "Authorization: ApiKey\t"+key)
	if r.status != 200 {
		t.Fatalf("auth: none route: status %d, want 200", r.status)
	}
	if e := r.upstream(t); len(e.Values("Authorization")) != 0 {
		t.Errorf("ApiKey<TAB> credential forwarded: %q", e.Values("Authorization"))
	}
	r = f.get("/x", "Authorization: apikey\t"+key)
	if code, _ := r.denial(t); r.status != 401 || code != "invalid_key" {
		t.Errorf("auth: required route: %d %s, want 401 invalid_key", r.status, code)
	}
	if n := f.keys.lookups.Load(); n != 0 {
		t.Errorf("%d store lookups, want 0", n)
	}
}

// Headers dropped by name are dropped in every spelling CGI-style
// upstreams (WSGI, Rack, PHP) read as the same name: '_' or '.' for '-'.
func TestRegressionDroppedHeaderSpellings(t *testing.T) {
	f := newFixture(t, nil)
	key := f.keys.add(t, &auth.Key{ID: "key_s", User: "u", Enabled: true})
	r := f.get("/x", "X-API-Key: "+key,
		"X_Real_IP: 6.6.6.6",
		"X_Original_URL: /admin/delete",
		"X_HTTP_Method_Override: DELETE",
		"X_Forwarded_Host: evil.example",
		"X_Forwarded_Proto: https",
		"X_Forwarded_Ssl: on",
		"X_Forwarded_For: 6.6.6.6",
		"X.Forwarded.For: 6.6.6.6",
		"X_Cluster_Client_IP: 6.6.6.6",
		"True_Client_IP: 6.6.6.6",
		"X_Request_Id: evil",
		"Proxy_Connection: keep-alive",
		"X_Custom: keep",
	)
	e := r.upstream(t)
	for _, h := range e.Headers {
		switch strings.ToLower(strings.NewReplacer("_", "-", ".", "-").Replace(h[0])) {
		case "x-keygate-key-id", "x-keygate-user", "x-keygate-auth", "host", "x-forwarded-for",
			"x-forwarded-proto", "x-forwarded-host", "x-request-id", "x-custom":
		default:
			t.Errorf("forwarded %s: %s", h[0], h[1])
		}
		if strings.Contains(h[1], "6.6.6.6") || strings.Contains(h[1], "evil") || strings.Contains(h[1], "/admin") {
			t.Errorf("client claim reached the upstream: %s: %s", h[0], h[1])
		}
	}
	if len(e.Values("X_Custom")) != 1 {
		t.Errorf("an unrelated header with '_' was dropped: %q", e.Headers)
	}
}

// A Host (or absolute-form authority) that upstreams may read another way
// than the route decision did is 400 (RFC 9112 3.2), and nothing is
// forwarded.
func TestRegressionInvalidHost(t *testing.T) {
	f := newFixture(t, nil)
	key := f.keys.add(t, &auth.Key{ID: "key_h", User: "u", Enabled: true})
	for _, req := range []string{
		"GET /x HTTP/1.1\r\nHost: u@internal.example\r\n",
		"GET /x HTTP/1.1\r\nHost: a,internal.example\r\n",
		"GET /x HTTP/1.1\r\nHost: internal.example;x\r\n",
		"GET /x HTTP/1.1\r\nHost: internal%2eexample\r\n",
		"GET /x HTTP/1.1\r\nHost: internal.example:80x\r\n",
		"GET /x HTTP/1.1\r\nHost: [::1\r\n",
		"GET http://h\"x/x HTTP/1.1\r\nHost: h\r\n",
	} {
		r := f.raw(req + "X-API-Key: " + key + "\r\n\r\n")
		if code, _ := r.denial(t); r.status != 400 || code != "bad_request" {
			t.Errorf("%q: %d %s, want 400 bad_request", req, r.status, code)
		}
	}
	if n := f.echo.Hits(); n != 0 {
		t.Errorf("%d requests reached the upstream", n)
	}
	for _, host := range []string{"api.example", "API.Example:8080", "my_host.internal", "127.0.0.1:80", "[::1]:8080", "[2001:db8::1]"} {
		if r := f.raw("GET /x HTTP/1.1\r\nHost: " + host + "\r\nX-API-Key: " + key + "\r\n\r\n"); r.status != 200 {
			t.Errorf("Host %s: status %d, want 200", host, r.status)
		}
	}
}
