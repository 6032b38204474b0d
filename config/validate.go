package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"unicode"
)

// Problem is one thing wrong with a configuration.
type Problem struct {
	// Path is the dotted YAML path with list indexes
	// ("routes[1].upstream.targets[0]"), the environment variable's name
	// for a bad override, or "" for the file as a whole (unreadable, bad
	// YAML syntax).
	Path string
	// Msg says what is wrong; it never contains a secret.
	Msg string
}

// Error returns "path: msg", or msg alone when Path is empty.
func (p *Problem) Error() string {
	if p.Path == "" {
		return p.Msg
	}
	return p.Path + ": " + p.Msg
}

// Problems flattens err (as returned by Load or Validate, possibly joined or
// wrapped) into its problems, in order. An error that is not a *Problem
// becomes one with an empty Path. Problems(nil) is nil.
func Problems(err error) []*Problem {
	if err == nil {
		return nil
	}
	if p, ok := err.(*Problem); ok {
		return []*Problem{p}
	}
	switch u := err.(type) {
	case interface{ Unwrap() []error }:
		var ps []*Problem
		for _, e := range u.Unwrap() {
			ps = append(ps, Problems(e)...)
		}
		return ps
	case interface{ Unwrap() error }:
		// A wrapped Load error ("config: %w") still yields every problem.
		var p *Problem
		if errors.As(err, &p) {
			return Problems(u.Unwrap())
		}
	}
	return []*Problem{{Msg: err.Error()}}
}

// Upper bounds on rate limits: anything above is a typo, not a plan.
const (
	maxRPS   = 1e9
	maxBurst = 1e9
	// minSecretLen is the shortest session signing secret accepted.
	minSecretLen = 32
)

// problems collects Problems for Validate.
type problems []error

func (ps *problems) addf(path, format string, args ...any) {
	*ps = append(*ps, &Problem{Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (ps *problems) nonNegative(path string, d Duration) {
	if d < 0 {
		ps.addf(path, "must not be negative")
	}
}

func (ps *problems) positive(path string, d Duration) {
	switch {
	case d < 0:
		ps.addf(path, "must not be negative")
	case d == 0:
		ps.addf(path, "must be positive")
	}
}

func (ps *problems) atLeast(path string, n, min int) {
	if n < min {
		ps.addf(path, "must be at least %d", min)
	}
}

func (ps *problems) oneOf(path, v string, allowed ...string) {
	for _, a := range allowed {
		if v == a {
			return
		}
	}
	q := make([]string, len(allowed))
	copy(q, allowed)
	last := q[len(q)-1]
	ps.addf(path, "must be %s or %s", strings.Join(q[:len(q)-1], ", "), last)
}

func (ps *problems) listen(path, addr string) {
	if addr == "" {
		ps.addf(path, "required")
		return
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		ps.addf(path, "not host:port")
		return
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || (n == 0 && port != "0") {
		ps.addf(path, "port must be a number from 0 to 65535")
	}
}

// sameListener reports whether two listen addresses would bind the same
// port on overlapping interfaces.
func sameListener(a, b string) bool {
	ha, pa, err1 := net.SplitHostPort(a)
	hb, pb, err2 := net.SplitHostPort(b)
	if err1 != nil || err2 != nil || pa != pb || pa == "0" {
		return false
	}
	wild := func(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }
	return ha == hb || wild(ha) || wild(hb)
}

// Validate reports every problem with c at once, joined with errors.Join,
// each a *Problem. It has no side effects. Load calls it; call it again
// after changing a Config.
func (c *Config) Validate() error {
	var ps problems
	c.validateProxy(&ps)
	ps.listen("admin.listen", c.Admin.Listen)
	if sameListener(c.Proxy.Listen, c.Admin.Listen) {
		ps.addf("admin.listen", "conflicts with proxy.listen")
	}
	c.validateStore(&ps)
	ps.atLeast("cache.max_keys", c.Cache.MaxKeys, 1)
	ps.nonNegative("cache.positive_ttl", c.Cache.PositiveTTL)
	ps.nonNegative("cache.negative_ttl", c.Cache.NegativeTTL)
	ps.nonNegative("cache.stale_if_error", c.Cache.StaleIfError)
	c.validateAuth(&ps)
	c.validateKeys(&ps)
	c.validateSessions(&ps)
	validateRateLimit(&ps, "rate_limit.default", c.RateLimit.Default)
	c.validateRoutes(&ps)
	ps.oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	ps.oneOf("log.format", c.Log.Format, "json", "text")
	ps.nonNegative("shutdown_timeout", c.ShutdownTimeout)
	return errors.Join(ps...)
}

func (c *Config) validateProxy(ps *problems) {
	p := &c.Proxy
	ps.listen("proxy.listen", p.Listen)
	switch {
	case p.TLS.CertFile != "" && p.TLS.KeyFile == "":
		ps.addf("proxy.tls.key_file", "required when proxy.tls.cert_file is set")
	case p.TLS.CertFile == "" && p.TLS.KeyFile != "":
		ps.addf("proxy.tls.cert_file", "required when proxy.tls.key_file is set")
	}
	for i, s := range p.TrustedProxies {
		if _, ok := parsePrefix(s); !ok {
			ps.addf(fmt.Sprintf("proxy.trusted_proxies[%d]", i), "not an IP or CIDR")
		}
	}
	if p.MaxRequestBody <= 0 {
		ps.addf("proxy.max_request_body", "must be positive")
	}
	if p.MaxHeaderBytes <= 0 {
		ps.addf("proxy.max_header_bytes", "must be positive")
	}
	ps.nonNegative("proxy.read_timeout", p.ReadTimeout)
	ps.nonNegative("proxy.write_timeout", p.WriteTimeout)
	ps.nonNegative("proxy.idle_timeout", p.IdleTimeout)
	if p.IdentityHeaderPrefix == "" {
		ps.addf("proxy.identity_header_prefix", "required")
	} else if !isToken(p.IdentityHeaderPrefix) {
		ps.addf("proxy.identity_header_prefix", "not a valid header name prefix")
	}
}

func (c *Config) validateStore(ps *problems) {
	s := &c.Store
	ps.oneOf("store.driver", s.Driver, DriverEmbedded, DriverPostgres)
	switch s.Driver {
	case DriverEmbedded:
		if s.Path == "" {
			ps.addf("store.path", "required when store.driver is embedded")
		}
	case DriverPostgres:
		switch {
		case s.URL == "":
			ps.addf("store.url", "required when store.driver is postgres")
		case !isPostgresURL(s.URL):
			// The URL may hold a password: never echo it.
			ps.addf("store.url", "not a postgres:// URL or key=value connection string")
		}
	}
	ps.atLeast("store.max_conns", s.MaxConns, 1)
	ps.positive("store.query_timeout", s.QueryTimeout)
}

func isPostgresURL(s string) bool {
	if strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://") {
		_, err := url.Parse(s)
		return err == nil
	}
	// libpq key=value form: "host=db user=kg dbname=keygate".
	k, _, ok := strings.Cut(strings.TrimSpace(s), "=")
	return ok && k != "" && !strings.ContainsAny(k, " \t/:")
}

func (c *Config) validateAuth(ps *problems) {
	a := &c.Auth
	if n := len(a.KeyPrefix); n < 1 || n > 16 || !isAlnum(a.KeyPrefix) {
		ps.addf("auth.key_prefix", "must be 1 to 16 ASCII letters or digits")
	}
	if len(a.Sources) == 0 {
		ps.addf("auth.sources", "at least one source is required")
	}
	for i, s := range a.Sources {
		p := fmt.Sprintf("auth.sources[%d]", i)
		switch {
		case (s.Header == "") == (s.Query == ""):
			ps.addf(p, "must set exactly one of header or query")
		case s.Header != "" && !isToken(s.Header):
			ps.addf(p+".header", "not a valid header name")
		case s.Query != "" && strings.ContainsAny(s.Query, "&=#?+% \t\r\n"):
			ps.addf(p+".query", "not a plain query parameter name")
		}
		if s.Scheme != "" {
			if s.Header == "" {
				ps.addf(p+".scheme", "only valid with header")
			} else if !isToken(s.Scheme) {
				ps.addf(p+".scheme", "not a valid auth scheme")
			}
		}
	}
}

func (c *Config) validateKeys(ps *problems) {
	k := &c.Keys
	ps.nonNegative("keys.default_lifetime", k.DefaultLifetime)
	ps.nonNegative("keys.max_lifetime", k.MaxLifetime)
	if k.MaxLifetime > 0 {
		switch {
		case k.DefaultLifetime == 0:
			ps.addf("keys.default_lifetime", "0 (never expires) is refused by keys.max_lifetime %s", k.MaxLifetime)
		case k.DefaultLifetime > k.MaxLifetime:
			ps.addf("keys.default_lifetime", "%s exceeds keys.max_lifetime %s", k.DefaultLifetime, k.MaxLifetime)
		}
	}
	if k.MaxPerApplication < 0 {
		ps.addf("keys.max_per_application", "must not be negative")
	}
	if k.Retrievable && k.Keystore == "" {
		ps.addf("keys.keystore", "required when keys.retrievable is true")
	}
}

func (c *Config) validateSessions(ps *problems) {
	s := &c.Sessions
	if !isToken(s.CookieName) {
		ps.addf("sessions.cookie_name", "not a valid cookie name")
	}
	if s.RequestParam == "" || strings.ContainsAny(s.RequestParam, "&=#?+% \t\r\n") {
		ps.addf("sessions.request_param", "not a plain query parameter name")
	}
	if s.Enabled {
		ps.positive("sessions.ttl", s.TTL)
	} else {
		ps.nonNegative("sessions.ttl", s.TTL)
	}
	ps.oneOf("sessions.same_site", s.SameSite, "lax", "strict", "none")
	if s.SameSite == "none" && !s.Secure {
		// Browsers drop SameSite=None cookies that are not Secure.
		ps.addf("sessions.same_site", "none requires sessions.secure")
	}
	for i, sec := range s.Secrets {
		if len(sec) < minSecretLen {
			ps.addf(fmt.Sprintf("sessions.secrets[%d]", i), "must be at least %d bytes", minSecretLen)
		}
	}
}

func validateRateLimit(ps *problems, path string, r RateLimit) {
	switch {
	case math.IsNaN(r.RPS) || math.IsInf(r.RPS, 0):
		ps.addf(path+".rps", "must be a finite number")
	case r.RPS < 0:
		ps.addf(path+".rps", "must not be negative")
	case r.RPS > maxRPS:
		ps.addf(path+".rps", "must be at most 1e9")
	}
	switch {
	case r.Burst < 0:
		ps.addf(path+".burst", "must not be negative")
	case r.Burst > maxBurst:
		ps.addf(path+".burst", "must be at most 1e9")
	case r.Burst == 0 && r.RPS > 0 && !math.IsInf(r.RPS, 0):
		ps.addf(path+".burst", "must be at least 1 when rps is set")
	}
}

func (c *Config) validateRoutes(ps *problems) {
	if len(c.Routes) == 0 {
		ps.addf("routes", "at least one route is required")
	}
	names := map[string]int{}
	for i := range c.Routes {
		r := &c.Routes[i]
		p := fmt.Sprintf("routes[%d]", i)
		switch {
		case r.Name == "":
			ps.addf(p+".name", "required")
		case strings.IndexFunc(r.Name, func(r rune) bool { return r == ',' || unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
			// X-Keygate-Scopes is a comma-separated list of route names.
			ps.addf(p+".name", "must not contain commas, spaces or control characters")
		case strings.HasPrefix(r.Name, "keygate:"):
			ps.addf(p+".name", `the "keygate:" prefix is reserved`)
		}
		if j, dup := names[r.Name]; dup && r.Name != "" {
			ps.addf(p+".name", "duplicate of routes[%d].name", j)
		} else {
			names[r.Name] = i
		}
		validateMatch(ps, p+".match", r.Match)
		for j := range i {
			if o := &c.Routes[j]; sameMatch(o.Match, r.Match) {
				ps.addf(p+".match", "overlaps routes[%d].match (same host, path_prefix and methods)", j)
				break
			}
		}
		validateUpstream(ps, p+".upstream", r.Upstream)
		ps.oneOf(p+".auth", string(r.Auth), string(AuthRequired), string(AuthOptional), string(AuthNone))
	}
}

func validateMatch(ps *problems, p string, m Match) {
	if m.Host != "" && (strings.Contains(m.Host, "://") ||
		strings.ContainsAny(m.Host, "/?#@ \t\r\n") ||
		strings.IndexFunc(m.Host, unicode.IsControl) >= 0) {
		ps.addf(p+".host", "not a host name")
	}
	switch pp := m.PathPrefix; {
	case !strings.HasPrefix(pp, "/"):
		ps.addf(p+".path_prefix", `must start with "/"`)
	case !isNormalPath(pp):
		// The proxy matches normalized paths, so this prefix could never match.
		ps.addf(p+".path_prefix", "must be a normalized path (no //, . or .. segments, ? or #)")
	}
	for i, meth := range m.Methods {
		if !isToken(meth) {
			ps.addf(fmt.Sprintf("%s.methods[%d]", p, i), "not a valid HTTP method")
		}
	}
}

func isNormalPath(p string) bool {
	if strings.ContainsAny(p, "?#\x00") || strings.Contains(p, "//") {
		return false
	}
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "." || seg == ".." {
			return false
		}
	}
	return true
}

// sameMatch reports whether two routes would compete for the same
// requests with nothing to choose between them.
func sameMatch(a, b Match) bool {
	if !strings.EqualFold(a.Host, b.Host) || a.PathPrefix != b.PathPrefix {
		return false
	}
	if len(a.Methods) == 0 || len(b.Methods) == 0 {
		return true
	}
	for _, x := range a.Methods {
		for _, y := range b.Methods {
			if x == y {
				return true
			}
		}
	}
	return false
}

func validateUpstream(ps *problems, p string, u Upstream) {
	if len(u.Targets) == 0 {
		ps.addf(p+".targets", "at least one target is required")
	}
	for i, t := range u.Targets {
		tp := fmt.Sprintf("%s.targets[%d]", p, i)
		pu, err := url.Parse(t)
		switch {
		case err != nil || pu.Scheme == "" || pu.Host == "":
			ps.addf(tp, "not a URL")
		case pu.Scheme != "http" && pu.Scheme != "https":
			ps.addf(tp, "scheme must be http or https")
		case pu.User != nil:
			ps.addf(tp, "must not contain user info")
		case pu.RawQuery != "" || pu.Fragment != "" || pu.ForceQuery:
			ps.addf(tp, "must not have a query or fragment")
		}
	}
	ps.positive(p+".timeout", u.Timeout)
	ps.atLeast(p+".max_conns_per_target", u.MaxConnsPerTarget, 1)
}

// parsePrefix parses an IP or CIDR; a single IP becomes a /32 or /128, an
// IPv4-mapped IPv6 address or prefix becomes IPv4 (client IPs are
// unmapped too), and host bits are masked off.
func parsePrefix(s string) (netip.Prefix, bool) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, false
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		return p.Masked(), true
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, false
	}
	a = a.WithZone("").Unmap()
	return netip.PrefixFrom(a, a.BitLen()), true
}

// isToken reports whether s is an RFC 9110 token (header names, methods,
// auth schemes, cookie names).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

func isAlnum(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}
