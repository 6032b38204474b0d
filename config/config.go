// Package config holds keygate's configuration: the YAML file described in
// CONTRACT.md §2, its defaults, the KEYGATE_* environment overrides, and the
// checks that run before anything is started.
//
// The flow is struct → defaults → Validate → provision: Default returns the
// documented defaults, Load lays a file and the environment over them,
// validates the result and parses the derived values (such as
// TrustedProxyPrefixes) once. Every problem is reported at once, each as a
// *Problem naming its dotted YAML path, so `keygate check-config` can print
// them all.
//
// The package imports no other keygate package.
package config

import "net/netip"

// Store drivers.
const (
	DriverEmbedded = "embedded"
	DriverPostgres = "postgres"
)

// AuthMode says whether a route needs an API key.
type AuthMode string

// Route authentication modes.
const (
	// AuthRequired rejects requests without a valid key or session (401).
	AuthRequired AuthMode = "required"
	// AuthOptional forwards requests without a credential anonymously, but a
	// credential that is given must be valid.
	AuthOptional AuthMode = "optional"
	// AuthNone forwards every request without looking at credentials.
	AuthNone AuthMode = "none"
)

// Config is the whole keygate configuration. The zero value is not useful;
// start from Default or Load.
type Config struct {
	// Proxy configures the public proxy listener.
	Proxy ProxyConfig `yaml:"proxy"`
	// Admin configures the admin listener (admin API, /metrics, /healthz,
	// /readyz, /ui/).
	Admin AdminConfig `yaml:"admin"`
	// Store selects and configures where keys are kept.
	Store StoreConfig `yaml:"store"`
	// Cache configures the in-process key cache in front of the store.
	Cache CacheConfig `yaml:"cache"`
	// Auth configures how API keys are recognised and taken from requests.
	Auth AuthConfig `yaml:"auth"`
	// Keys configures key lifetimes and retrievability.
	Keys KeysConfig `yaml:"keys"`
	// Sessions configures session cookies issued for key requests.
	Sessions SessionsConfig `yaml:"sessions"`
	// RateLimit configures the rate limit of keys without their own.
	RateLimit RateLimitConfig `yaml:"rate_limit"`
	// Routes maps requests to upstreams. A routes list in the file replaces
	// the default catch-all route; it must not be empty. Each listed route
	// starts from the route defaults (path_prefix "/", upstream timeout 30s,
	// 1024 connections per target, auth required) and must give its name
	// and targets. Among routes whose host matches, the longest path_prefix
	// wins.
	Routes []Route `yaml:"routes"`
	// Log configures logging.
	Log LogConfig `yaml:"log"`
	// ShutdownTimeout bounds the graceful drain of in-flight requests after
	// SIGINT/SIGTERM. Default 15s; zero means close at once.
	ShutdownTimeout Duration `yaml:"shutdown_timeout"`

	// derived holds values parsed once by Load; see derived.go.
	derived derived
}

// ProxyConfig configures the public proxy listener.
type ProxyConfig struct {
	// Listen is the proxy's host:port. Default ":8080" (all interfaces).
	Listen string `yaml:"listen"`
	// TLS serves HTTPS when both files are set; default plain HTTP.
	TLS TLSConfig `yaml:"tls"`
	// ProxyProtocol accepts PROXY protocol v1/v2 headers, only from
	// TrustedProxies. Default false.
	ProxyProtocol bool `yaml:"proxy_protocol"`
	// TrustedProxies lists IPs or CIDRs whose X-Forwarded-For (and PROXY
	// header) is believed. Empty (the default) trusts no one. See
	// Config.TrustedProxyPrefixes for the parsed form.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// MaxRequestBody caps a request body. Default 10MiB; must be positive.
	MaxRequestBody ByteSize `yaml:"max_request_body"`
	// MaxHeaderBytes caps all request headers together; over it the proxy
	// answers 431. Default 16KiB; must be positive.
	MaxHeaderBytes ByteSize `yaml:"max_header_bytes"`
	// ReadTimeout bounds reading a whole request. Default 30s; zero means no
	// limit.
	ReadTimeout Duration `yaml:"read_timeout"`
	// WriteTimeout bounds writing a response. Default 30s; zero means no
	// limit.
	WriteTimeout Duration `yaml:"write_timeout"`
	// IdleTimeout bounds how long a keep-alive connection waits for the next
	// request. Default 120s; zero means no limit.
	IdleTimeout Duration `yaml:"idle_timeout"`
	// IdentityHeaderPrefix starts every identity header sent upstream
	// (X-Keygate-User, …). Default "X-Keygate-"; must not be empty.
	IdentityHeaderPrefix string `yaml:"identity_header_prefix"`
}

// TLSConfig names the certificate and key for HTTPS. Both empty (the
// default) means plain HTTP; one without the other is an error.
type TLSConfig struct {
	// CertFile is the PEM certificate chain. Default "".
	CertFile string `yaml:"cert_file"`
	// KeyFile is the PEM private key. Default "".
	KeyFile string `yaml:"key_file"`
}

// Enabled reports whether HTTPS is configured.
func (t TLSConfig) Enabled() bool { return t.CertFile != "" && t.KeyFile != "" }

// AdminConfig configures the admin listener.
type AdminConfig struct {
	// Listen is the admin host:port. Default "127.0.0.1:9090" (loopback
	// only); must not be empty.
	Listen string `yaml:"listen"`
}

// StoreConfig selects and configures the key store.
type StoreConfig struct {
	// Driver is "embedded" (default, single node) or "postgres". When the
	// driver is not set in the file or KEYGATE_STORE_DRIVER but a URL is
	// (file, KEYGATE_STORE_URL or DATABASE_URL), Load picks "postgres".
	Driver string `yaml:"driver"`
	// Path is the embedded store's directory. Default "./keygate-data";
	// required for the embedded driver.
	Path string `yaml:"path"`
	// URL is the PostgreSQL connection string (postgres://… or key=value),
	// required for the postgres driver and ignored otherwise. Default "".
	// KEYGATE_STORE_URL, else DATABASE_URL, overrides it.
	URL string `yaml:"url"`
	// AutoMigrate makes serve apply schema migrations at start. Default
	// true.
	AutoMigrate bool `yaml:"auto_migrate"`
	// MaxConns caps the store's connection pool. Default 16; must be at
	// least 1.
	MaxConns int `yaml:"max_conns"`
	// QueryTimeout bounds each store query. Default 2s; must be positive.
	QueryTimeout Duration `yaml:"query_timeout"`
}

// CacheConfig configures the in-process key cache.
type CacheConfig struct {
	// MaxKeys caps the number of cached keys. Default 1000000; must be at
	// least 1.
	MaxKeys int `yaml:"max_keys"`
	// PositiveTTL is how long a looked-up key is trusted without asking the
	// store. Default 5m; zero means keys are not cached.
	PositiveTTL Duration `yaml:"positive_ttl"`
	// NegativeTTL is how long an unknown key is remembered as unknown.
	// Default 30s; zero means unknown keys are not remembered.
	NegativeTTL Duration `yaml:"negative_ttl"`
	// StaleIfError is how long past PositiveTTL a cached key is still served
	// while the store is down. Default 1h; zero means not at all.
	StaleIfError Duration `yaml:"stale_if_error"`
}

// AuthConfig configures how keys are recognised and where they come from.
type AuthConfig struct {
	// KeyPrefix starts every keygate key (`kg_…`). Default "kg"; 1 to 16
	// ASCII letters or digits.
	KeyPrefix string `yaml:"key_prefix"`
	// AcceptForeignKeys also accepts imported keys not in keygate's format.
	// Default false.
	AcceptForeignKeys bool `yaml:"accept_foreign_keys"`
	// Sources lists where a key may come from, tried in order. Default:
	// X-API-Key, Authorization: ApiKey, X-Authorization: ApiKey, appKey
	// header, appKey and api_key query parameters. A list in the file
	// replaces the default; it must not be empty.
	Sources []Source `yaml:"sources"`
	// StripCredentials removes the key's header or query parameter before
	// forwarding. Default true.
	StripCredentials bool `yaml:"strip_credentials"`
}

// Source is one place a key may come from: exactly one of Header or Query.
type Source struct {
	// Header is a request header name; "" means this is a query source.
	Header string `yaml:"header"`
	// Scheme, with Header, is the auth scheme before the key (`ApiKey`,
	// matched case-insensitively); "" means the whole header value is the
	// key.
	Scheme string `yaml:"scheme"`
	// Query is a query parameter name; "" means this is a header source.
	Query string `yaml:"query"`
}

// KeysConfig configures key lifetimes and secret retrievability.
type KeysConfig struct {
	// DefaultLifetime is the expiry of a key created without one. Default
	// 24h; zero means such keys never expire.
	DefaultLifetime Duration `yaml:"default_lifetime"`
	// MaxLifetime caps key lifetimes; longer or never-expiring keys are
	// refused. Default 0: no cap.
	MaxLifetime Duration `yaml:"max_lifetime"`
	// MaxPerApplication caps keys per application (2 gives the two-key
	// rotation pattern). Default 0: no cap.
	MaxPerApplication int `yaml:"max_per_application"`
	// Retrievable also keeps secrets encrypted under the keystore so admins
	// can copy them later. Default false.
	Retrievable bool `yaml:"retrievable"`
	// Keystore is the key-encryption key file for retrievable secrets,
	// generated if missing. Default "./keygate-data/keystore"; required when
	// Retrievable.
	Keystore string `yaml:"keystore"`
}

// SessionsConfig configures session cookies.
type SessionsConfig struct {
	// Enabled lets key requests ask for a session cookie. Default false.
	Enabled bool `yaml:"enabled"`
	// CookieName names the session cookie. Default "keygate_session".
	CookieName string `yaml:"cookie_name"`
	// RequestParam is the query parameter that asks for a session
	// (`?keygate-session=true`). Default "keygate-session".
	RequestParam string `yaml:"request_param"`
	// TTL is a session's lifetime (cookie Max-Age). Default 1h; must be
	// positive when sessions are enabled.
	TTL Duration `yaml:"ttl"`
	// Secure marks the cookie Secure. Default true.
	Secure bool `yaml:"secure"`
	// SameSite is the cookie's SameSite: "lax" (default), "strict" or
	// "none" (which needs Secure).
	SameSite string `yaml:"same_site"`
	// Secrets are signing secrets, newest first, each at least 32 bytes.
	// Empty (the default) means generated and kept in the store.
	Secrets []string `yaml:"secrets"`
}

// RateLimitConfig configures rate limiting.
type RateLimitConfig struct {
	// Default applies to keys without their own limit. Default {0, 0}:
	// unlimited.
	Default RateLimit `yaml:"default"`
}

// RateLimit is a token bucket: RPS tokens a second, at most Burst at once.
type RateLimit struct {
	// RPS is the sustained rate in requests a second. Zero means unlimited;
	// at most 1e9.
	RPS float64 `yaml:"rps"`
	// Burst is the bucket size. Ignored when RPS is zero, otherwise at least
	// 1 and at most 1e9.
	Burst int `yaml:"burst"`
}

// Route sends matching requests to an upstream.
type Route struct {
	// Name identifies the route in key scopes and metrics; required, unique,
	// without commas or whitespace, and not starting with "keygate:". The
	// default route is "default".
	Name string `yaml:"name"`
	// Match selects the requests this route handles.
	Match Match `yaml:"match"`
	// Upstream is where matching requests go.
	Upstream Upstream `yaml:"upstream"`
	// Auth is required (the default), optional or none.
	Auth AuthMode `yaml:"auth"`
	// StripPrefix removes Match.PathPrefix from the forwarded path. Default
	// false.
	StripPrefix bool `yaml:"strip_prefix"`
}

// Match selects requests by host, path prefix and method.
type Match struct {
	// Host is the request host to match; "" (the default) matches any host.
	Host string `yaml:"host"`
	// PathPrefix is the normalized path prefix to match, starting with "/".
	// Default "/" (everything).
	PathPrefix string `yaml:"path_prefix"`
	// Methods lists the HTTP methods to match; empty (the default) matches
	// every method.
	Methods []string `yaml:"methods"`
}

// Upstream is a set of equivalent targets.
type Upstream struct {
	// Targets are http(s) base URLs, used round robin with unhealthy ones
	// skipped; at least one. The default route's is
	// "http://127.0.0.1:3000"; a route listed in the file has none unless
	// given.
	Targets []string `yaml:"targets"`
	// Timeout bounds one upstream exchange. Default 30s; must be positive.
	Timeout Duration `yaml:"timeout"`
	// MaxConnsPerTarget caps connections to each target. Default 1024; must
	// be at least 1.
	MaxConnsPerTarget int `yaml:"max_conns_per_target"`
}

// LogConfig configures logging.
type LogConfig struct {
	// Level is debug, info (default), warn or error.
	Level string `yaml:"level"`
	// Format is json (default) or text.
	Format string `yaml:"format"`
	// AccessLog logs one line per proxied request, never containing a
	// secret. Default true.
	AccessLog bool `yaml:"access_log"`
}

// derived holds values parsed once from a validated Config.
type derived struct {
	ok      bool
	trusted []netip.Prefix
}

// Default returns the documented defaults (CONTRACT.md §2): embedded store
// in ./keygate-data, proxy on :8080, admin on 127.0.0.1:9090 and one
// catch-all route named "default" requiring a key.
func Default() *Config {
	r := defaultRoute()
	r.Name = "default"
	r.Upstream.Targets = []string{"http://127.0.0.1:3000"}
	return &Config{
		Proxy: ProxyConfig{
			Listen:               ":8080",
			MaxRequestBody:       10 * MiB,
			MaxHeaderBytes:       16 * KiB,
			ReadTimeout:          Duration(30 * second),
			WriteTimeout:         Duration(30 * second),
			IdleTimeout:          Duration(120 * second),
			IdentityHeaderPrefix: "X-Keygate-",
		},
		Admin: AdminConfig{Listen: "127.0.0.1:9090"},
		Store: StoreConfig{
			Driver:       DriverEmbedded,
			Path:         "./keygate-data",
			AutoMigrate:  true,
			MaxConns:     16,
			QueryTimeout: Duration(2 * second),
		},
		Cache: CacheConfig{
			MaxKeys:      1000000,
			PositiveTTL:  Duration(5 * minute),
			NegativeTTL:  Duration(30 * second),
			StaleIfError: Duration(hour),
		},
		Auth: AuthConfig{
			KeyPrefix: "kg",
			Sources: []Source{
				{Header: "X-API-Key"},
				{Header: "Authorization", Scheme: "ApiKey"},
				{Header: "X-Authorization", Scheme: "ApiKey"},
				{Header: "appKey"},
				{Query: "appKey"},
				{Query: "api_key"},
			},
			StripCredentials: true,
		},
		Keys: KeysConfig{
			DefaultLifetime: Duration(24 * hour),
			Keystore:        "./keygate-data/keystore",
		},
		Sessions: SessionsConfig{
			CookieName:   "keygate_session",
			RequestParam: "keygate-session",
			TTL:          Duration(hour),
			Secure:       true,
			SameSite:     "lax",
		},
		Routes:          []Route{r},
		Log:             LogConfig{Level: "info", Format: "json", AccessLog: true},
		ShutdownTimeout: Duration(15 * second),
	}
}

// defaultRoute is the template every route listed in a file starts from:
// everything but Name and Upstream.Targets has its default.
func defaultRoute() Route {
	return Route{
		Match:    Match{PathPrefix: "/"},
		Upstream: Upstream{Timeout: Duration(30 * second), MaxConnsPerTarget: 1024},
		Auth:     AuthRequired,
	}
}
