package config

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// env returns a getenv backed by a map.
func env(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

// mustLoad loads data as a config file or fails the test.
func mustLoad(t *testing.T, data string, getenv func(string) string) *Config {
	t.Helper()
	c, err := load([]byte(data), getenv)
	if err != nil {
		t.Fatalf("load:\n%s\nerror:\n%v", data, err)
	}
	return c
}

// TestDefaults pins every default to CONTRACT.md §2, field by field.
func TestDefaults(t *testing.T) {
	c := Default()
	tests := []struct {
		path string
		got  any
		want any
	}{
		{"proxy.listen", c.Proxy.Listen, ":8080"},
		{"proxy.tls.cert_file", c.Proxy.TLS.CertFile, ""},
		{"proxy.tls.key_file", c.Proxy.TLS.KeyFile, ""},
		{"proxy.proxy_protocol", c.Proxy.ProxyProtocol, false},
		{"proxy.trusted_proxies", len(c.Proxy.TrustedProxies), 0},
		{"proxy.max_request_body", c.Proxy.MaxRequestBody, ByteSize(10 << 20)},
		{"proxy.max_header_bytes", c.Proxy.MaxHeaderBytes, ByteSize(16 << 10)},
		{"proxy.read_timeout", c.Proxy.ReadTimeout.Std(), 30 * time.Second},
		{"proxy.write_timeout", c.Proxy.WriteTimeout.Std(), 30 * time.Second},
		{"proxy.idle_timeout", c.Proxy.IdleTimeout.Std(), 120 * time.Second},
		{"proxy.identity_header_prefix", c.Proxy.IdentityHeaderPrefix, "X-Keygate-"},
		{"admin.listen", c.Admin.Listen, "127.0.0.1:9090"},
		{"store.driver", c.Store.Driver, "embedded"},
		{"store.path", c.Store.Path, "./keygate-data"},
		{"store.url", c.Store.URL, ""},
		{"store.auto_migrate", c.Store.AutoMigrate, true},
		{"store.max_conns", c.Store.MaxConns, 16},
		{"store.query_timeout", c.Store.QueryTimeout.Std(), 2 * time.Second},
		{"cache.max_keys", c.Cache.MaxKeys, 1000000},
		{"cache.positive_ttl", c.Cache.PositiveTTL.Std(), 5 * time.Minute},
		{"cache.negative_ttl", c.Cache.NegativeTTL.Std(), 30 * time.Second},
		{"cache.stale_if_error", c.Cache.StaleIfError.Std(), time.Hour},
		{"auth.key_prefix", c.Auth.KeyPrefix, "kg"},
		{"auth.accept_foreign_keys", c.Auth.AcceptForeignKeys, false},
		{"auth.sources", c.Auth.Sources, []Source{
			{Header: "X-API-Key"},
			{Header: "Authorization", Scheme: "ApiKey"},
			{Header: "X-Authorization", Scheme: "ApiKey"},
			{Header: "appKey"},
			{Query: "appKey"},
			{Query: "api_key"},
		}},
		{"auth.strip_credentials", c.Auth.StripCredentials, true},
		{"keys.default_lifetime", c.Keys.DefaultLifetime.Std(), 24 * time.Hour},
		{"keys.max_lifetime", c.Keys.MaxLifetime.Std(), time.Duration(0)},
		{"keys.max_per_application", c.Keys.MaxPerApplication, 0},
		{"keys.retrievable", c.Keys.Retrievable, false},
		{"keys.keystore", c.Keys.Keystore, "./keygate-data/keystore"},
		{"sessions.enabled", c.Sessions.Enabled, false},
		{"sessions.cookie_name", c.Sessions.CookieName, "keygate_session"},
		{"sessions.request_param", c.Sessions.RequestParam, "keygate-session"},
		{"sessions.ttl", c.Sessions.TTL.Std(), time.Hour},
		{"sessions.secure", c.Sessions.Secure, true},
		{"sessions.same_site", c.Sessions.SameSite, "lax"},
		{"sessions.secrets", len(c.Sessions.Secrets), 0},
		{"rate_limit.default", c.RateLimit.Default, RateLimit{RPS: 0, Burst: 0}},
		{"routes", c.Routes, []Route{{
			Name:  "default",
			Match: Match{Host: "", PathPrefix: "/"},
			Upstream: Upstream{
				Targets:           []string{"http://127.0.0.1:3000"},
				Timeout:           Duration(30 * time.Second),
				MaxConnsPerTarget: 1024,
			},
			Auth:        AuthRequired,
			StripPrefix: false,
		}}},
		{"log.level", c.Log.Level, "info"},
		{"log.format", c.Log.Format, "json"},
		{"log.access_log", c.Log.AccessLog, true},
		{"shutdown_timeout", c.ShutdownTimeout.Std(), 15 * time.Second},
	}
	for _, tt := range tests {
		if !reflect.DeepEqual(tt.got, tt.want) {
			t.Errorf("Default() %s = %#v, want %#v", tt.path, tt.got, tt.want)
		}
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Default().Validate() = %v, want nil", err)
	}
}

// TestContractFile loads the illustrative file of CONTRACT.md §2 verbatim:
// it must be valid and equal to the defaults, and so must no file at all.
func TestContractFile(t *testing.T) {
	for _, path := range []string{filepath.Join("testdata", "contract_defaults.yaml"), ""} {
		got, err := Load(path, env(nil))
		if err != nil {
			t.Fatalf("Load(%q) error: %v", path, err)
		}
		got.derived = derived{}
		if want := Default(); !reflect.DeepEqual(got, want) {
			t.Errorf("Load(%q) =\n%+v\nwant Default() =\n%+v", path, got, want)
		}
	}
}

// TestMarshalRoundTrip checks that a Config written with yaml.v3 (for
// example to show the effective configuration) loads back unchanged.
func TestMarshalRoundTrip(t *testing.T) {
	want := mustLoad(t, "", env(map[string]string{
		"KEYGATE_PROXY_TRUSTED_PROXIES":    "10.0.0.0/8",
		"KEYGATE_KEYS_MAX_LIFETIME":        "90d",
		"KEYGATE_PROXY_MAX_REQUEST_BODY":   "1000001",
		"KEYGATE_RATE_LIMIT_DEFAULT_RPS":   "2.5",
		"KEYGATE_RATE_LIMIT_DEFAULT_BURST": "4",
		"KEYGATE_ROUTES_0_MATCH_METHODS":   "GET",
	}))
	out, err := yaml.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	got := mustLoad(t, string(out), env(nil))
	if !reflect.DeepEqual(got, want) {
		t.Errorf("round trip through\n%s\ngave\n%+v\nwant\n%+v", out, got, want)
	}
}

func TestLoadFile(t *testing.T) {
	c := mustLoad(t, `
proxy:
  listen: "0.0.0.0:8443"
  tls: {cert_file: /tls/crt.pem, key_file: /tls/key.pem}
  max_request_body: 1MB
  trusted_proxies: [10.0.0.0/8, "::1"]
cache:
  positive_ttl: 1d12h
keys:
  default_lifetime: 30d
  max_lifetime: 90d
rate_limit:
  default: {rps: 2.5, burst: 5}
routes:
  - name: api
    match: {host: api.example.com, path_prefix: /v1, methods: [GET, POST]}
    upstream: {targets: ["http://a:1", "https://b"]}
  - name: health
    match: {path_prefix: /healthz}
    upstream: {targets: ["http://a:1"], timeout: 2s, max_conns_per_target: 8}
    auth: none
    strip_prefix: true
`, env(nil))
	if !c.Proxy.TLS.Enabled() || c.Proxy.Listen != "0.0.0.0:8443" || c.Proxy.MaxRequestBody != 1000000 {
		t.Errorf("proxy = %+v", c.Proxy)
	}
	if c.Proxy.MaxHeaderBytes != 16*KiB {
		t.Errorf("proxy.max_header_bytes = %v, want the default 16KiB kept", c.Proxy.MaxHeaderBytes)
	}
	if c.Cache.PositiveTTL.Std() != 36*time.Hour || c.Cache.NegativeTTL.Std() != 30*time.Second {
		t.Errorf("cache = %+v", c.Cache)
	}
	if c.Keys.DefaultLifetime.Std() != 30*24*time.Hour || c.Keys.MaxLifetime.Std() != 90*24*time.Hour {
		t.Errorf("keys = %+v", c.Keys)
	}
	if c.RateLimit.Default != (RateLimit{RPS: 2.5, Burst: 5}) {
		t.Errorf("rate_limit.default = %+v", c.RateLimit.Default)
	}
	// The file's routes replace the default route; unset route fields take
	// the route defaults.
	want := []Route{
		{
			Name:     "api",
			Match:    Match{Host: "api.example.com", PathPrefix: "/v1", Methods: []string{"GET", "POST"}},
			Upstream: Upstream{Targets: []string{"http://a:1", "https://b"}, Timeout: Duration(30 * time.Second), MaxConnsPerTarget: 1024},
			Auth:     AuthRequired,
		},
		{
			Name:        "health",
			Match:       Match{PathPrefix: "/healthz"},
			Upstream:    Upstream{Targets: []string{"http://a:1"}, Timeout: Duration(2 * time.Second), MaxConnsPerTarget: 8},
			Auth:        AuthNone,
			StripPrefix: true,
		},
	}
	if !reflect.DeepEqual(c.Routes, want) {
		t.Errorf("routes =\n%+v\nwant\n%+v", c.Routes, want)
	}
}

func TestLoadNullsAnchorsAndMergeKeys(t *testing.T) {
	// A null value keeps the default; aliases repeat an anchored value.
	c := mustLoad(t, `
proxy:
  tls:
  trusted_proxies:
routes:
auth:
  sources:
    - &xkey {header: X-Key}
    - *xkey
    - {query: key}
`, env(nil))
	if d := Default(); !reflect.DeepEqual(c.Routes, d.Routes) || c.Proxy.TLS != d.Proxy.TLS || c.Proxy.TrustedProxies != nil {
		t.Errorf("null values changed defaults: proxy %+v, routes %+v", c.Proxy, c.Routes)
	}
	if want := []Source{{Header: "X-Key"}, {Header: "X-Key"}, {Query: "key"}}; !reflect.DeepEqual(c.Auth.Sources, want) {
		t.Errorf("auth.sources = %+v, want %+v", c.Auth.Sources, want)
	}

	// A merge key fills fields; explicit keys win whatever their order.
	c = mustLoad(t, `
routes:
  - &r
    name: a
    match: {path_prefix: /a}
    upstream: {targets: ["http://x"], timeout: 5s}
  - name: b
    <<: *r
    match: {path_prefix: /b}
`, env(nil))
	want := Route{
		Name:     "b",
		Match:    Match{PathPrefix: "/b"},
		Upstream: Upstream{Targets: []string{"http://x"}, Timeout: Duration(5 * time.Second), MaxConnsPerTarget: 1024},
		Auth:     AuthRequired,
	}
	if len(c.Routes) != 2 || !reflect.DeepEqual(c.Routes[1], want) {
		t.Errorf("routes = %+v, want routes[1] = %+v", c.Routes, want)
	}
}

func TestIntegersAreDecimal(t *testing.T) {
	tests := []struct {
		in   string
		want int
	}{
		{"cache: {max_keys: 010}", 10},
		{"cache: {max_keys: 1_000_000}", 1000000},
		{"cache: {max_keys: '42'}", 42},
	}
	for _, tt := range tests {
		if got := mustLoad(t, tt.in, env(nil)).Cache.MaxKeys; got != tt.want {
			t.Errorf("load(%q) cache.max_keys = %d, want %d", tt.in, got, tt.want)
		}
	}
	if got := mustLoad(t, "", env(map[string]string{"KEYGATE_CACHE_MAX_KEYS": "010"})).Cache.MaxKeys; got != 10 {
		t.Errorf("KEYGATE_CACHE_MAX_KEYS=010 gives %d, want 10", got)
	}
}

func TestEnvOverrides(t *testing.T) {
	c := mustLoad(t, `
proxy:
  listen: ":9999"
routes:
  - name: api
    upstream: {targets: ["http://file:1"]}
auth:
  sources: [{header: X-Key}, {query: key}]
`, env(map[string]string{
		"KEYGATE_PROXY_LISTEN":              ":7000",
		"KEYGATE_PROXY_TLS_CERT_FILE":       "/c.pem",
		"KEYGATE_PROXY_TLS_KEY_FILE":        "/k.pem",
		"KEYGATE_PROXY_PROXY_PROTOCOL":      "true",
		"KEYGATE_PROXY_TRUSTED_PROXIES":     "10.0.0.0/8, 127.0.0.1/32,",
		"KEYGATE_PROXY_MAX_REQUEST_BODY":    "2MiB",
		"KEYGATE_ADMIN_LISTEN":              ":9091",
		"KEYGATE_STORE_URL":                 "postgres://kg@db/keygate",
		"KEYGATE_STORE_MAX_CONNS":           "40",
		"KEYGATE_CACHE_POSITIVE_TTL":        "1d",
		"KEYGATE_SESSIONS_ENABLED":          "true",
		"KEYGATE_SESSIONS_SECRETS":          strings.Repeat("a", 32) + "," + strings.Repeat("b", 40),
		"KEYGATE_RATE_LIMIT_DEFAULT_RPS":    "0.5",
		"KEYGATE_RATE_LIMIT_DEFAULT_BURST":  "3",
		"KEYGATE_ROUTES_0_UPSTREAM_TARGETS": "http://env:1,http://env:2",
		"KEYGATE_ROUTES_0_MATCH_METHODS":    "GET,HEAD",
		"KEYGATE_ROUTES_0_AUTH":             "optional",
		"KEYGATE_AUTH_SOURCES_1_QUERY":      "token",
		"KEYGATE_LOG_LEVEL":                 "debug",
		"KEYGATE_SHUTDOWN_TIMEOUT":          "1m",
		// Out of range: routes can be changed, not added, from the environment.
		"KEYGATE_ROUTES_1_NAME": "ignored",
	}))
	checks := []struct {
		name string
		got  any
		want any
	}{
		{"proxy.listen", c.Proxy.Listen, ":7000"},
		{"proxy.tls", c.Proxy.TLS, TLSConfig{CertFile: "/c.pem", KeyFile: "/k.pem"}},
		{"proxy.proxy_protocol", c.Proxy.ProxyProtocol, true},
		{"proxy.trusted_proxies", c.Proxy.TrustedProxies, []string{"10.0.0.0/8", "127.0.0.1/32"}},
		{"proxy.max_request_body", c.Proxy.MaxRequestBody, 2 * MiB},
		{"admin.listen", c.Admin.Listen, ":9091"},
		{"store.url", c.Store.URL, "postgres://kg@db/keygate"},
		{"store.driver", c.Store.Driver, DriverPostgres},
		{"store.max_conns", c.Store.MaxConns, 40},
		{"cache.positive_ttl", c.Cache.PositiveTTL, Duration(24 * time.Hour)},
		{"sessions.enabled", c.Sessions.Enabled, true},
		{"sessions.secrets", len(c.Sessions.Secrets), 2},
		{"rate_limit.default", c.RateLimit.Default, RateLimit{RPS: 0.5, Burst: 3}},
		{"routes[0].upstream.targets", c.Routes[0].Upstream.Targets, []string{"http://env:1", "http://env:2"}},
		{"routes[0].match.methods", c.Routes[0].Match.Methods, []string{"GET", "HEAD"}},
		{"routes[0].auth", c.Routes[0].Auth, AuthOptional},
		{"len(routes)", len(c.Routes), 1},
		{"auth.sources", c.Auth.Sources, []Source{{Header: "X-Key"}, {Query: "token"}}},
		{"log.level", c.Log.Level, "debug"},
		{"shutdown_timeout", c.ShutdownTimeout, Duration(time.Minute)},
	}
	for _, tt := range checks {
		if !reflect.DeepEqual(tt.got, tt.want) {
			t.Errorf("%s = %#v, want %#v", tt.name, tt.got, tt.want)
		}
	}
}

func TestDatabaseURL(t *testing.T) {
	tests := []struct {
		name       string
		file       string
		env        map[string]string
		wantURL    string
		wantDriver string
	}{
		{
			name:       "unset",
			wantDriver: DriverEmbedded,
		},
		{
			name:       "DATABASE_URL alone selects postgres",
			env:        map[string]string{"DATABASE_URL": "postgres://d/db"},
			wantURL:    "postgres://d/db",
			wantDriver: DriverPostgres,
		},
		{
			name:       "KEYGATE_STORE_URL wins",
			env:        map[string]string{"DATABASE_URL": "postgres://d/db", "KEYGATE_STORE_URL": "postgres://k/db"},
			wantURL:    "postgres://k/db",
			wantDriver: DriverPostgres,
		},
		{
			name:       "DATABASE_URL beats the file",
			file:       "store: {url: postgres://f/db}",
			env:        map[string]string{"DATABASE_URL": "postgres://d/db"},
			wantURL:    "postgres://d/db",
			wantDriver: DriverPostgres,
		},
		{
			name:       "file URL selects postgres",
			file:       "store: {url: postgres://f/db}",
			wantURL:    "postgres://f/db",
			wantDriver: DriverPostgres,
		},
		{
			name:       "explicit embedded driver is kept",
			file:       "store: {driver: embedded}",
			env:        map[string]string{"DATABASE_URL": "postgres://d/db"},
			wantURL:    "postgres://d/db",
			wantDriver: DriverEmbedded,
		},
		{
			name:       "explicit embedded driver from the environment is kept",
			env:        map[string]string{"DATABASE_URL": "postgres://d/db", "KEYGATE_STORE_DRIVER": "embedded"},
			wantURL:    "postgres://d/db",
			wantDriver: DriverEmbedded,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustLoad(t, tt.file, env(tt.env))
			if c.Store.URL != tt.wantURL || c.Store.Driver != tt.wantDriver {
				t.Errorf("store = {driver %q, url %q}, want {driver %q, url %q}", c.Store.Driver, c.Store.URL, tt.wantDriver, tt.wantURL)
			}
		})
	}
}

// problemLines runs load and returns its problems as "path: msg" lines.
func problemLines(t *testing.T, data string, kv map[string]string) []string {
	t.Helper()
	c, err := load([]byte(data), env(kv))
	if err == nil {
		t.Fatalf("load(%q) succeeded, want problems", data)
	}
	if c != nil {
		t.Errorf("load(%q) returned a Config with its error", data)
	}
	var lines []string
	for _, p := range Problems(err) {
		lines = append(lines, p.Error())
	}
	return lines
}

func TestUnknownFieldPaths(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"listen: x", []string{"listen: unknown field"}},
		{"proxy: {listne: x}", []string{"proxy.listne: unknown field"}},
		{"proxy: {tls: {cert: x}}", []string{"proxy.tls.cert: unknown field"}},
		{"rate_limit: {default: {rsp: 1}}", []string{"rate_limit.default.rsp: unknown field"}},
		{"routes: [{name: a, match: {hostt: x}, upstream: {targets: [http://a]}}]", []string{"routes[0].match.hostt: unknown field"}},
		{"routes: [{name: a, upstream: {targets: [http://a]}}, {name: b, match: {path_prefix: /b}, upstream: {target: http://a}}]", []string{
			"routes[1].upstream.target: unknown field",
			"routes[1].upstream.targets: at least one target is required",
		}},
		{"auth: {sources: [{header: a}, {heder: b}]}", []string{
			"auth.sources[1].heder: unknown field",
			"auth.sources[1]: must set exactly one of header or query",
		}},
		{"proxy: {listne: x, listen: ':1', tsl: {}}\nlog: {lvl: debug}", []string{
			"proxy.listne: unknown field",
			"proxy.tsl: unknown field",
			"log.lvl: unknown field",
		}},
	}
	for _, tt := range tests {
		if got := problemLines(t, tt.in, nil); !slices.Equal(got, tt.want) {
			t.Errorf("load(%q) problems =\n%s\nwant\n%s", tt.in, strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
		}
	}
}

func TestEnvProblemsNameTheVariable(t *testing.T) {
	got := problemLines(t, "", map[string]string{
		"KEYGATE_CACHE_POSITIVE_TTL":     "5 minutes",
		"KEYGATE_SESSIONS_ENABLED":       "yes please",
		"KEYGATE_STORE_MAX_CONNS":        "many",
		"KEYGATE_PROXY_MAX_HEADER_BYTES": "-1",
		"KEYGATE_RATE_LIMIT_DEFAULT_RPS": "NaN",
	})
	want := []string{
		`KEYGATE_PROXY_MAX_HEADER_BYTES: invalid size "-1"`,
		`KEYGATE_STORE_MAX_CONNS: want an integer, got "many"`,
		`KEYGATE_CACHE_POSITIVE_TTL: invalid duration "5 minutes"`,
		`KEYGATE_SESSIONS_ENABLED: want true or false, got "yes please"`,
		`KEYGATE_RATE_LIMIT_DEFAULT_RPS: want a number, got "NaN"`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("problems =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestEnvName(t *testing.T) {
	tests := []struct{ path, want string }{
		{"store.url", "KEYGATE_STORE_URL"},
		{"proxy.listen", "KEYGATE_PROXY_LISTEN"},
		{"cache.positive_ttl", "KEYGATE_CACHE_POSITIVE_TTL"},
		{"sessions.enabled", "KEYGATE_SESSIONS_ENABLED"},
		{"proxy.tls.cert_file", "KEYGATE_PROXY_TLS_CERT_FILE"},
		{"routes[12].upstream.targets", "KEYGATE_ROUTES_12_UPSTREAM_TARGETS"},
		{"shutdown_timeout", "KEYGATE_SHUTDOWN_TIMEOUT"},
	}
	for _, tt := range tests {
		if got := EnvName(tt.path); got != tt.want {
			t.Errorf("EnvName(%q) = %q, want %q", tt.path, got, tt.want)
		}
	}
}

// TestEveryFieldHasAnEnvOverride walks every scalar leaf of the default
// Config and checks that its KEYGATE_ variable is read.
func TestEveryFieldHasAnEnvOverride(t *testing.T) {
	var paths []string
	var walk func(path string, typ reflect.Type)
	walk = func(path string, typ reflect.Type) {
		switch {
		case isScalar(typ):
			paths = append(paths, path)
		case typ.Kind() == reflect.Struct:
			for i := range typ.NumField() {
				if sf := typ.Field(i); sf.IsExported() {
					walk(join(path, yamlName(sf)), sf.Type)
				}
			}
		case typ.Kind() == reflect.Slice && isScalar(typ.Elem()):
			paths = append(paths, path)
		case typ.Kind() == reflect.Slice:
			walk(path+"[0]", typ.Elem())
		}
	}
	walk("", reflect.TypeFor[Config]())
	if len(paths) < 50 {
		t.Fatalf("found only %d leaf fields: %v", len(paths), paths)
	}
	owner := map[string]string{}
	for _, p := range paths {
		if o, dup := owner[EnvName(p)]; dup {
			t.Errorf("%s and %s share the variable %s", o, p, EnvName(p))
		}
		owner[EnvName(p)] = p
	}
	read := map[string]bool{}
	getenv := func(k string) string { read[k] = true; return "" }
	if _, err := load(nil, getenv); err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		if !read[EnvName(p)] {
			t.Errorf("%s: %s is never read", p, EnvName(p))
		}
	}
}

func TestValidateProblems(t *testing.T) {
	secret := strings.Repeat("s", 32)
	tests := []struct {
		name   string
		modify func(c *Config)
		want   []string
	}{
		{"defaults", func(*Config) {}, nil},
		{"target not a URL", func(c *Config) {
			c.Routes = append(c.Routes, Route{Name: "b", Match: Match{PathPrefix: "/b"}, Auth: AuthNone,
				Upstream: Upstream{Targets: []string{"127.0.0.1:80", "ftp://x", "http://u:p@x", "http://x/?q", "https://ok/base"}, Timeout: 1, MaxConnsPerTarget: 1}})
		}, []string{
			"routes[1].upstream.targets[0]: not a URL",
			"routes[1].upstream.targets[1]: scheme must be http or https",
			"routes[1].upstream.targets[2]: must not contain user info",
			"routes[1].upstream.targets[3]: must not have a query or fragment",
		}},
		{"postgres without url", func(c *Config) { c.Store.Driver = DriverPostgres }, []string{
			"store.url: required when store.driver is postgres",
		}},
		{"postgres url forms", func(c *Config) {
			c.Store.Driver = DriverPostgres
			c.Store.URL = "mysql://u:hunter2@db/x"
		}, []string{"store.url: not a postgres:// URL or key=value connection string"}},
		{"postgres dsn", func(c *Config) {
			c.Store.Driver = DriverPostgres
			c.Store.URL = "host=db user=kg dbname=keygate"
		}, nil},
		{"unknown driver, no path", func(c *Config) { c.Store.Driver = "sqlite"; c.Store.Path = "" }, []string{
			"store.driver: must be embedded or postgres",
		}},
		{"embedded without path", func(c *Config) { c.Store.Path = "" }, []string{
			"store.path: required when store.driver is embedded",
		}},
		{"trusted proxies", func(c *Config) {
			c.Proxy.TrustedProxies = []string{"10.0.0.0/8", "::1", "10.0.0.0/33", "fe80::1%eth0", "example.com"}
		}, []string{
			"proxy.trusted_proxies[2]: not an IP or CIDR",
			"proxy.trusted_proxies[4]: not an IP or CIDR",
		}},
		{"bad auth mode", func(c *Config) { c.Routes[0].Auth = "maybe" }, []string{
			"routes[0].auth: must be required, optional or none",
		}},
		{"negative rate limit", func(c *Config) { c.RateLimit.Default = RateLimit{RPS: -1, Burst: -1} }, []string{
			"rate_limit.default.rps: must not be negative",
			"rate_limit.default.burst: must not be negative",
		}},
		{"absurd rate limit", func(c *Config) { c.RateLimit.Default = RateLimit{RPS: 2e9, Burst: 2e9} }, []string{
			"rate_limit.default.rps: must be at most 1e9",
			"rate_limit.default.burst: must be at most 1e9",
		}},
		{"rps without burst", func(c *Config) { c.RateLimit.Default = RateLimit{RPS: 10} }, []string{
			"rate_limit.default.burst: must be at least 1 when rps is set",
		}},
		{"burst without rps is unlimited", func(c *Config) { c.RateLimit.Default = RateLimit{Burst: 10} }, nil},
		{"non-finite rps", func(c *Config) { c.RateLimit.Default.RPS = posInf() }, []string{
			"rate_limit.default.rps: must be a finite number",
		}},
		{"negative durations", func(c *Config) {
			c.Proxy.ReadTimeout = -1
			c.Proxy.WriteTimeout = -1
			c.Proxy.IdleTimeout = -1
			c.Cache.PositiveTTL = -1
			c.Cache.NegativeTTL = -1
			c.Cache.StaleIfError = -1
			c.Keys.DefaultLifetime = -1
			c.Keys.MaxLifetime = -1
			c.Sessions.TTL = -1
			c.Store.QueryTimeout = -1
			c.Routes[0].Upstream.Timeout = -1
			c.ShutdownTimeout = -1
		}, []string{
			"proxy.read_timeout: must not be negative",
			"proxy.write_timeout: must not be negative",
			"proxy.idle_timeout: must not be negative",
			"store.query_timeout: must not be negative",
			"cache.positive_ttl: must not be negative",
			"cache.negative_ttl: must not be negative",
			"cache.stale_if_error: must not be negative",
			"keys.default_lifetime: must not be negative",
			"keys.max_lifetime: must not be negative",
			"sessions.ttl: must not be negative",
			"routes[0].upstream.timeout: must not be negative",
			"shutdown_timeout: must not be negative",
		}},
		{"zero where a bound is needed", func(c *Config) {
			c.Store.QueryTimeout = 0
			c.Routes[0].Upstream.Timeout = 0
			c.Sessions.Enabled = true
			c.Sessions.TTL = 0
		}, []string{
			"store.query_timeout: must be positive",
			"sessions.ttl: must be positive",
			"routes[0].upstream.timeout: must be positive",
		}},
		{"zero timeouts that mean no limit", func(c *Config) {
			c.Proxy.ReadTimeout, c.Proxy.WriteTimeout, c.Proxy.IdleTimeout = 0, 0, 0
			c.Cache.PositiveTTL, c.Cache.NegativeTTL, c.Cache.StaleIfError = 0, 0, 0
			c.ShutdownTimeout = 0
			c.Keys.DefaultLifetime = 0
		}, nil},
		{"counts", func(c *Config) {
			c.Store.MaxConns = 0
			c.Cache.MaxKeys = 0
			c.Routes[0].Upstream.MaxConnsPerTarget = -3
			c.Keys.MaxPerApplication = -1
			c.Proxy.MaxRequestBody = 0
			c.Proxy.MaxHeaderBytes = -1
		}, []string{
			"proxy.max_request_body: must be positive",
			"proxy.max_header_bytes: must be positive",
			"store.max_conns: must be at least 1",
			"cache.max_keys: must be at least 1",
			"keys.max_per_application: must not be negative",
			"routes[0].upstream.max_conns_per_target: must be at least 1",
		}},
		{"log", func(c *Config) { c.Log.Level = "verbose"; c.Log.Format = "xml" }, []string{
			"log.level: must be debug, info, warn or error",
			"log.format: must be json or text",
		}},
		{"same_site", func(c *Config) { c.Sessions.SameSite = "Lax" }, []string{
			"sessions.same_site: must be lax, strict or none",
		}},
		{"same_site none needs secure", func(c *Config) { c.Sessions.SameSite = "none"; c.Sessions.Secure = false }, []string{
			"sessions.same_site: none requires sessions.secure",
		}},
		{"tls halves", func(c *Config) { c.Proxy.TLS.CertFile = "c.pem" }, []string{
			"proxy.tls.key_file: required when proxy.tls.cert_file is set",
		}},
		{"tls other half", func(c *Config) { c.Proxy.TLS.KeyFile = "k.pem" }, []string{
			"proxy.tls.cert_file: required when proxy.tls.key_file is set",
		}},
		{"listen", func(c *Config) { c.Proxy.Listen = "8080"; c.Admin.Listen = "" }, []string{
			"proxy.listen: not host:port",
			"admin.listen: required",
		}},
		{"listeners conflict", func(c *Config) { c.Admin.Listen = "127.0.0.1:8080" }, []string{
			"admin.listen: conflicts with proxy.listen",
		}},
		{"listeners on different interfaces", func(c *Config) {
			c.Proxy.Listen = "10.0.0.1:8080"
			c.Admin.Listen = "127.0.0.1:8080"
		}, nil},
		{"listen port", func(c *Config) { c.Proxy.Listen = ":http"; c.Admin.Listen = "[::1]:70000" }, []string{
			"proxy.listen: port must be a number from 0 to 65535",
			"admin.listen: port must be a number from 0 to 65535",
		}},
		{"route names", func(c *Config) {
			r := c.Routes[0]
			c.Routes = nil
			for i, name := range []string{"", "a b", "a,b", "keygate:admin", "ok", "ok"} {
				r.Name = name
				r.Match.PathPrefix = fmt.Sprintf("/%d", i)
				c.Routes = append(c.Routes, r)
			}
		}, []string{
			"routes[0].name: required",
			"routes[1].name: must not contain commas, spaces or control characters",
			"routes[2].name: must not contain commas, spaces or control characters",
			`routes[3].name: the "keygate:" prefix is reserved`,
			"routes[5].name: duplicate of routes[4].name",
		}},
		{"no routes", func(c *Config) { c.Routes = nil }, []string{"routes: at least one route is required"}},
		{"path prefixes", func(c *Config) {
			r := c.Routes[0]
			c.Routes = nil
			for i, pp := range []string{"api", "", "/a//b", "/a/../b", "/a/.", "/a?x", "/ok/"} {
				r.Name = fmt.Sprint("r", i)
				r.Match.PathPrefix = pp
				c.Routes = append(c.Routes, r)
			}
		}, []string{
			`routes[0].match.path_prefix: must start with "/"`,
			`routes[1].match.path_prefix: must start with "/"`,
			"routes[2].match.path_prefix: must be a normalized path (no //, . or .. segments, ? or #)",
			"routes[3].match.path_prefix: must be a normalized path (no //, . or .. segments, ? or #)",
			"routes[4].match.path_prefix: must be a normalized path (no //, . or .. segments, ? or #)",
			"routes[5].match.path_prefix: must be a normalized path (no //, . or .. segments, ? or #)",
		}},
		{"methods and hosts", func(c *Config) {
			c.Routes[0].Match.Methods = []string{"GET", "BAD METHOD", "", "PO(ST"}
			c.Routes[0].Match.Host = "http://example.com"
		}, []string{
			"routes[0].match.host: not a host name",
			"routes[0].match.methods[1]: not a valid HTTP method",
			"routes[0].match.methods[2]: not a valid HTTP method",
			"routes[0].match.methods[3]: not a valid HTTP method",
		}},
		{"overlapping matches", func(c *Config) {
			a, b, d := c.Routes[0], c.Routes[0], c.Routes[0]
			a.Name, a.Match = "get", Match{PathPrefix: "/x", Methods: []string{"GET"}}
			b.Name, b.Match = "post", Match{PathPrefix: "/x", Methods: []string{"POST"}}
			d.Name, d.Match = "get-too", Match{PathPrefix: "/x", Methods: []string{"PUT", "GET"}}
			c.Routes = append(c.Routes, a, b, d)
		}, []string{"routes[3].match: overlaps routes[1].match (same host, path_prefix and methods)"}},
		{"other hosts do not overlap", func(c *Config) {
			a := c.Routes[0]
			a.Name, a.Match.Host = "other", "api.example.com"
			c.Routes = append(c.Routes, a)
		}, nil},
		{"sources", func(c *Config) {
			c.Auth.Sources = []Source{
				{Header: "X-Key", Query: "key"},
				{},
				{Query: "key", Scheme: "ApiKey"},
				{Header: "Bad Header"},
				{Query: "a=b"},
				{Header: "Authorization", Scheme: "Api Key"},
			}
		}, []string{
			"auth.sources[0]: must set exactly one of header or query",
			"auth.sources[1]: must set exactly one of header or query",
			"auth.sources[2].scheme: only valid with header",
			"auth.sources[3].header: not a valid header name",
			"auth.sources[4].query: not a plain query parameter name",
			"auth.sources[5].scheme: not a valid auth scheme",
		}},
		{"no sources", func(c *Config) { c.Auth.Sources = nil }, []string{"auth.sources: at least one source is required"}},
		{"key prefix", func(c *Config) { c.Auth.KeyPrefix = "k_g" }, []string{
			"auth.key_prefix: must be 1 to 16 ASCII letters or digits",
		}},
		{"empty key prefix", func(c *Config) { c.Auth.KeyPrefix = "" }, []string{
			"auth.key_prefix: must be 1 to 16 ASCII letters or digits",
		}},
		{"identity prefix", func(c *Config) { c.Proxy.IdentityHeaderPrefix = "X Keygate" }, []string{
			"proxy.identity_header_prefix: not a valid header name prefix",
		}},
		{"session secrets", func(c *Config) {
			c.Sessions.Secrets = []string{secret, "short", secret[:31]}
		}, []string{
			"sessions.secrets[1]: must be at least 32 bytes",
			"sessions.secrets[2]: must be at least 32 bytes",
		}},
		{"session names", func(c *Config) { c.Sessions.CookieName = "a;b"; c.Sessions.RequestParam = "" }, []string{
			"sessions.cookie_name: not a valid cookie name",
			"sessions.request_param: not a plain query parameter name",
		}},
		{"lifetimes", func(c *Config) { c.Keys.MaxLifetime = Duration(time.Hour) }, []string{
			"keys.default_lifetime: 1d exceeds keys.max_lifetime 1h0m0s",
		}},
		{"never-expiring default under a cap", func(c *Config) {
			c.Keys.MaxLifetime = Duration(time.Hour)
			c.Keys.DefaultLifetime = 0
		}, []string{"keys.default_lifetime: 0 (never expires) is refused by keys.max_lifetime 1h0m0s"}},
		{"keystore", func(c *Config) { c.Keys.Retrievable = true; c.Keys.Keystore = "" }, []string{
			"keys.keystore: required when keys.retrievable is true",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.modify(c)
			before := fmt.Sprintf("%#v", c)
			var got []string
			for _, p := range Problems(c.Validate()) {
				got = append(got, p.Error())
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("Validate() =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			if after := fmt.Sprintf("%#v", c); after != before {
				t.Errorf("Validate changed the Config:\n%s\n%s", before, after)
			}
		})
	}
}

func posInf() float64 {
	var zero float64
	return 1 / zero
}

func TestValidateNeverEchoesSecrets(t *testing.T) {
	c := Default()
	c.Store.Driver = DriverPostgres
	c.Store.URL = "mysql://u:hunter2@db/x"
	c.Sessions.Secrets = []string{"tooshort-hunter2"}
	err := c.Validate()
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("Validate() = %v, want problems that do not contain the secret", err)
	}
}

func TestProblems(t *testing.T) {
	a := &Problem{Path: "a", Msg: "x"}
	b := &Problem{Path: "b", Msg: "y"}
	other := errors.New("plain")
	tests := []struct {
		name string
		err  error
		want []*Problem
	}{
		{"nil", nil, nil},
		{"one", a, []*Problem{a}},
		{"joined", errors.Join(a, b), []*Problem{a, b}},
		{"wrapped join", fmt.Errorf("config: %w", errors.Join(a, b)), []*Problem{a, b}},
		{"wrapped plain error", fmt.Errorf("config: %w", other), []*Problem{{Msg: "config: plain"}}},
		{"nested and wrapped", errors.Join(fmt.Errorf("ctx: %w", a), errors.Join(b, other)), []*Problem{a, b, {Msg: "plain"}}},
	}
	for _, tt := range tests {
		if got := Problems(tt.err); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: Problems(%v) = %v, want %v", tt.name, tt.err, got, tt.want)
		}
	}
	if got := (&Problem{Msg: "whole file"}).Error(); got != "whole file" {
		t.Errorf("Problem without path Error() = %q", got)
	}
	if got := a.Error(); got != "a: x" {
		t.Errorf("Problem.Error() = %q, want %q", got, "a: x")
	}
}

func TestTrustedProxyPrefixes(t *testing.T) {
	in := []string{"10.0.0.0/8", "192.168.1.7", "::1", "2001:db8::/32", "10.1.2.3/16", "::ffff:172.16.0.0/108", "::ffff:127.0.0.1", "fe80::1%eth0"}
	want := []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("192.168.1.7/32"),
		netip.MustParsePrefix("::1/128"),
		netip.MustParsePrefix("2001:db8::/32"),
		netip.MustParsePrefix("10.1.0.0/16"),
		netip.MustParsePrefix("172.16.0.0/12"),
		netip.MustParsePrefix("127.0.0.1/32"),
		netip.MustParsePrefix("fe80::1/128"),
	}
	c := mustLoad(t, "", env(map[string]string{"KEYGATE_PROXY_TRUSTED_PROXIES": strings.Join(in, ",")}))
	if got := c.TrustedProxyPrefixes(); !slices.Equal(got, want) {
		t.Errorf("TrustedProxyPrefixes() from Load = %v, want %v", got, want)
	}
	d := Default()
	d.Proxy.TrustedProxies = in
	if got := d.TrustedProxyPrefixes(); !slices.Equal(got, want) {
		t.Errorf("TrustedProxyPrefixes() on a hand-built Config = %v, want %v", got, want)
	}
	if got := Default().TrustedProxyPrefixes(); got != nil {
		t.Errorf("TrustedProxyPrefixes() by default = %v, want nil", got)
	}
}

func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, []byte("log: {level: warn}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.yaml")
	tests := []struct {
		name     string
		path     string
		env      map[string]string
		wantCode int
		wantOut  string
	}{
		{"no file", "", nil, 0, "ok\n"},
		{"good file", good, nil, 0, "ok\n"},
		{"bad env", good, map[string]string{"KEYGATE_LOG_FORMAT": "xml"}, 1, "log.format: must be json or text\n"},
		{"missing file", missing, nil, 1, "open " + missing + ": no such file or directory\n"},
	}
	for _, tt := range tests {
		var out bytes.Buffer
		code := CheckConfig(tt.path, env(tt.env), &out)
		if code != tt.wantCode || out.String() != tt.wantOut {
			t.Errorf("%s: CheckConfig = %d, %q; want %d, %q", tt.name, code, out.String(), tt.wantCode, tt.wantOut)
		}
	}
}

func TestSlogLevel(t *testing.T) {
	for _, tt := range []struct {
		level string
		want  string
	}{{"debug", "DEBUG"}, {"info", "INFO"}, {"warn", "WARN"}, {"error", "ERROR"}} {
		if got := (LogConfig{Level: tt.level}).SlogLevel().String(); got != tt.want {
			t.Errorf("SlogLevel(%q) = %s, want %s", tt.level, got, tt.want)
		}
	}
}
