package proxy

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/keygate/keygate/auth"
	"github.com/prometheus/client_golang/prometheus"
)

// Auth modes of a route.
const (
	AuthRequired = "required"
	AuthOptional = "optional"
	AuthNone     = "none"
)

// Source is one place a key may come from. Exactly one of Header and Query
// is set.
type Source struct {
	// Header is a request header name, matched case-insensitively.
	Header string
	// Scheme, with Header, requires the value to be "<Scheme> <key>" (the
	// scheme matched case-insensitively, exactly one space). A value with
	// another scheme is not a key. Empty: the whole value is the key.
	Scheme string
	// Query is a query parameter name, matched case-insensitively.
	Query string
}

// Route sends matching requests to a set of targets.
type Route struct {
	// Name labels metrics and is what a key's scopes name. Required, unique.
	Name string
	// Host matches the request's host (port ignored, case-insensitive).
	// Empty matches any host. Among the routes whose host matches, the
	// longest PathPrefix wins; on equal prefixes, one naming the host
	// beats a host-less one.
	Host string
	// PathPrefix matches on a segment boundary ("/pub" matches "/pub" and
	// "/pub/x", not "/public"). Empty means "/".
	PathPrefix string
	// Methods restricts the route to these methods. Empty: any method.
	Methods []string
	// Targets are upstream base URLs (http:// or https://, optionally with a
	// base path), used round robin. At least one is required.
	Targets []string
	// Timeout bounds each upstream exchange. Zero means 30s.
	Timeout time.Duration
	// MaxConnsPerTarget bounds the connections to each target. Zero means
	// 1024.
	MaxConnsPerTarget int
	// Auth is AuthRequired, AuthOptional or AuthNone. Empty means
	// AuthRequired.
	Auth string
	// StripPrefix removes PathPrefix from the forwarded path.
	StripPrefix bool
}

// UsageFunc is told about every successful authentication (key or
// session), with the Key, whether the previous (rotated-out) secret was
// used, and the time. It
// runs on the request path: it must not block and must not keep k's
// request-scoped data (a Key itself is immutable and may be kept).
type UsageFunc func(k *auth.Key, previous bool, now time.Time)

// RateLimiter decides whether a key may make one more request.
type RateLimiter interface {
	// Allow reports whether k may proceed at now; when it may not,
	// retryAfter says when to try again.
	Allow(k *auth.Key, now time.Time) (ok bool, retryAfter time.Duration)
}

// Sessions mints and verifies session cookies (CONTRACT §4.6).
type Sessions interface {
	// CookieName is the session cookie's name.
	CookieName() string
	// Verify checks a cookie value at now and appends the key id it was
	// minted for to dst (so the hot path needs no allocation), returning
	// the extended slice and the key's session epoch. Any error means
	// session_invalid.
	Verify(dst, value []byte, now time.Time) (keyID []byte, epoch int64, err error)
	// Issue returns the complete Set-Cookie header value for a new session
	// of k.
	Issue(k *auth.Key, now time.Time) (setCookie string, err error)
	// Clear returns the Set-Cookie header value that deletes the cookie.
	Clear() string
}

// Options configure a Server. The zero value of each field is documented;
// Keys and Routes are required.
type Options struct {
	// Keys looks keys up by digest (and by id, for sessions). Required.
	// Lookups get a context that ends when Shutdown has drained; bounding
	// a store query is the KeyStore's business (the cache applies the
	// store's query timeout), so a cache hit costs no timer.
	Keys auth.KeyStore
	// KeyPrefix is the prefix of keygate-format keys. Empty means "kg".
	KeyPrefix string
	// AcceptForeignKeys also accepts keys in other formats
	// (auth.ValidForeignSecret).
	AcceptForeignKeys bool
	// Sources are where a key may come from, in order. Nil means the
	// CONTRACT §2 defaults (X-API-Key, Authorization ApiKey,
	// X-Authorization ApiKey, appKey header, appKey and api_key query).
	Sources []Source
	// StripCredentials removes, on every route, every credential header
	// carrying our scheme (another scheme's Authorization is kept) and
	// every case variant of a credential query parameter before
	// forwarding. False forwards them.
	StripCredentials bool
	// IdentityPrefix prefixes the identity headers added upstream; incoming
	// headers starting with it (any case, "_" or "." for "-") are removed.
	// Empty means "X-Keygate-".
	IdentityPrefix string
	// TrustedProxies are peers whose X-Forwarded-For is believed and whose
	// PROXY protocol header is accepted. Nil trusts nobody.
	TrustedProxies []netip.Prefix
	// ProxyProtocol accepts PROXY protocol v1/v2 headers from
	// TrustedProxies (optional for them; a connection from anyone else that
	// sends one is refused). False reads plain HTTP.
	ProxyProtocol bool
	// TLS serves HTTPS with this configuration. Nil: CertFile and KeyFile
	// (PEM paths, both or neither), when set, are loaded by New; otherwise
	// plain HTTP.
	TLS      *tls.Config
	CertFile string
	KeyFile  string
	// MaxRequestBody bounds a request body in bytes (413 over it; a
	// Content-Length over it is refused before any body is read). Zero
	// means 10 MiB.
	MaxRequestBody int
	// MaxHeaderBytes bounds all request header lines together (431 over
	// it). Zero means 16 KiB.
	MaxHeaderBytes int
	// ReadTimeout bounds reading one request, WriteTimeout writing one
	// response, IdleTimeout the wait for the next request on a keep-alive
	// connection. Zero means 30s, 30s and 120s; a negative value means no
	// limit.
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	IdleTimeout  time.Duration
	// Routes are matched by host, then longest PathPrefix, then method
	// (see Route.Host). At least one is required.
	Routes []Route
	// Registerer receives the proxy's metrics. Nil: metrics are collected
	// but not registered anywhere.
	Registerer prometheus.Registerer
	// Logger receives errors and, with AccessLog, one line per request.
	// Nil discards everything.
	Logger *slog.Logger
	// AccessLog logs every request at Info (method, path with credential
	// query values redacted, status, route, key id, duration, client ip,
	// request id). False logs none.
	AccessLog bool
	// Now is the clock used for expiry and hooks. Nil means time.Now.
	Now func() time.Time
	// OnAuthenticated is called after each successful authentication, by
	// key or session (usage recording). Nil: nothing is called.
	OnAuthenticated UsageFunc
	// RateLimiter limits requests per key (429 rate_limited). Nil: no
	// limit.
	RateLimiter RateLimiter
	// Sessions enables session cookies. Nil: sessions are off, cookies are
	// neither read nor issued.
	Sessions Sessions
	// SessionParam is the query parameter (and, after IdentityPrefix, the
	// header: "X-Keygate-Session") whose value "true" asks for a session.
	// Empty means "keygate-session". Ignored without Sessions.
	SessionParam string
}

// DefaultSources is the CONTRACT §2 default list of key sources.
func DefaultSources() []Source {
	return []Source{
		{Header: "X-API-Key"},
		{Header: "Authorization", Scheme: "ApiKey"},
		{Header: "X-Authorization", Scheme: "ApiKey"},
		{Header: "appKey"},
		{Query: "appKey"},
		{Query: "api_key"},
	}
}

func (o *Options) setDefaults() {
	if o.KeyPrefix == "" {
		o.KeyPrefix = "kg"
	}
	if o.Sources == nil {
		o.Sources = DefaultSources()
	}
	if o.IdentityPrefix == "" {
		o.IdentityPrefix = "X-Keygate-"
	}
	if o.MaxRequestBody == 0 {
		o.MaxRequestBody = 10 << 20
	}
	if o.MaxHeaderBytes == 0 {
		o.MaxHeaderBytes = 16 << 10
	}
	if o.ReadTimeout == 0 {
		o.ReadTimeout = 30 * time.Second
	}
	if o.WriteTimeout == 0 {
		o.WriteTimeout = 30 * time.Second
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = 120 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.SessionParam == "" {
		o.SessionParam = "keygate-session"
	}
}

// validate reports every problem at once; it has no side effects.
func (o *Options) validate() error {
	var errs []error
	if o.Keys == nil {
		errs = append(errs, errors.New("proxy: Keys is required"))
	}
	if len(o.Routes) == 0 {
		errs = append(errs, errors.New("proxy: at least one route is required"))
	}
	for i, s := range o.Sources {
		if (s.Header == "") == (s.Query == "") {
			errs = append(errs, fmt.Errorf("proxy: sources[%d]: exactly one of header and query", i))
		}
		if s.Query != "" && s.Scheme != "" {
			errs = append(errs, fmt.Errorf("proxy: sources[%d]: scheme needs a header", i))
		}
		if s.Header != "" && !validToken(s.Header) {
			errs = append(errs, fmt.Errorf("proxy: sources[%d]: header %q is not a header name", i, s.Header))
		}
		if s.Scheme != "" && !validToken(s.Scheme) {
			errs = append(errs, fmt.Errorf("proxy: sources[%d]: scheme %q is not a token", i, s.Scheme))
		}
	}
	if !validToken(o.IdentityPrefix) {
		errs = append(errs, fmt.Errorf("proxy: identity prefix %q is not a header name", o.IdentityPrefix))
	}
	if o.MaxRequestBody < 0 || o.MaxHeaderBytes < 0 {
		errs = append(errs, errors.New("proxy: negative size limit"))
	}
	if (o.CertFile == "") != (o.KeyFile == "") {
		errs = append(errs, errors.New("proxy: tls needs both cert_file and key_file"))
	}
	names := map[string]bool{}
	for i, r := range o.Routes {
		if r.Name == "" {
			errs = append(errs, fmt.Errorf("proxy: routes[%d]: name is required", i))
		} else if names[r.Name] {
			errs = append(errs, fmt.Errorf("proxy: routes[%d]: duplicate name %q", i, r.Name))
		}
		names[r.Name] = true
		switch r.Auth {
		case "", AuthRequired, AuthOptional, AuthNone:
		default:
			errs = append(errs, fmt.Errorf("proxy: routes[%d]: auth %q is not required, optional or none", i, r.Auth))
		}
		if r.PathPrefix != "" && !strings.HasPrefix(r.PathPrefix, "/") {
			errs = append(errs, fmt.Errorf("proxy: routes[%d]: path_prefix %q does not start with /", i, r.PathPrefix))
		}
		if len(r.Targets) == 0 {
			errs = append(errs, fmt.Errorf("proxy: routes[%d]: no targets", i))
		}
		for j, t := range r.Targets {
			if _, err := parseTarget(t); err != nil {
				errs = append(errs, fmt.Errorf("proxy: routes[%d].targets[%d]: %w", i, j, err))
			}
		}
		if r.Timeout < 0 || r.MaxConnsPerTarget < 0 {
			errs = append(errs, fmt.Errorf("proxy: routes[%d]: negative timeout or max_conns_per_target", i))
		}
	}
	return errors.Join(errs...)
}

// target is one parsed upstream base URL.
type target struct {
	addr     string // host:port
	tls      bool
	basePath string // without trailing slash; "" for none
}

func parseTarget(s string) (target, error) {
	u, err := url.Parse(s)
	if err != nil {
		return target{}, errors.New("not a URL")
	}
	var t target
	switch u.Scheme {
	case "http":
	case "https":
		t.tls = true
	default:
		return target{}, errors.New("not an http or https URL")
	}
	if u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return target{}, errors.New("needs a host and no user, query or fragment")
	}
	t.addr = u.Host
	if u.Port() == "" {
		if t.tls {
			t.addr += ":443"
		} else {
			t.addr += ":80"
		}
	}
	t.basePath = strings.TrimRight(u.EscapedPath(), "/")
	return t, nil
}

// validToken reports whether s is a non-empty RFC 9110 token.
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTokenChar(s[i]) {
			return false
		}
	}
	return true
}

func isTokenChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}
