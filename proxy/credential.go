package proxy

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"strings"
	"time"
	"unsafe"

	"github.com/keygate/keygate/auth"
	"github.com/valyala/fasthttp"
)

// maxKeyLen bounds a credential; anything longer is invalid_key without a
// lookup.
const maxKeyLen = 512

// sourceKind is where the credential came from (the metrics' source label).
type sourceKind uint8

const (
	srcNone sourceKind = iota
	srcHeader
	srcQuery
	srcCookie
	numSources
)

func (k sourceKind) String() string {
	switch k {
	case srcHeader:
		return "header"
	case srcQuery:
		return "query"
	case srcCookie:
		return "cookie"
	}
	return "none"
}

type headerSource struct {
	name   string
	scheme string // "" for the whole value
}

// credential is what extraction found. key aliases request memory (or the
// request state's scratch buffer) and is valid until the request ends.
type credential struct {
	key   []byte
	src   sourceKind
	found bool
}

// add records one more value of a credential; a different value than one
// already seen makes the request ambiguous.
func (c *credential) add(v []byte, src sourceKind) error {
	if !c.found {
		*c = credential{key: v, src: src, found: true}
		return nil
	}
	if !bytes.Equal(c.key, v) {
		return auth.ErrAmbiguous
	}
	return nil
}

// extractCredential looks at every value of every configured source: all
// lines of a repeated header and every case variant of a query parameter.
// The source reported is that of the first value found, headers before the
// query.
func (s *Server) extractCredential(st *reqState, req *fasthttp.Request, query []byte) (credential, error) {
	var c credential
	var err error
	for k, v := range req.Header.All() {
		for i := range s.hdrSources {
			hs := &s.hdrSources[i]
			if !equalFold(k, hs.name) {
				continue
			}
			val, ok := v, true
			if hs.scheme != "" {
				val, ok = cutScheme(v, hs.scheme)
			}
			if ok {
				if err = c.add(val, srcHeader); err != nil {
					return c, err
				}
			}
		}
	}
	if len(s.querySources) == 0 {
		return c, nil
	}
	st.qbuf = st.qbuf[:0]
	for len(query) > 0 {
		var pair []byte
		pair, query, _ = cutQueryPair(query)
		name, val, _ := bytes.Cut(pair, equals())
		if !s.isCredentialParam(name) {
			continue
		}
		n := len(st.qbuf)
		st.qbuf = appendUnescapeQuery(st.qbuf, val)
		if err = c.add(st.qbuf[n:len(st.qbuf):len(st.qbuf)], srcQuery); err != nil {
			return c, err
		}
	}
	return c, nil
}

func equals() []byte { return []byte{'='} }

// cutQueryPair cuts the query at its first '&' or ';'. Both separate
// parameters here: many frameworks (older Rails, Python's cgi, Java
// servlet containers) split on ';' too, so "a=1;api_key=K" is treated as
// carrying the credential parameter an upstream would see — taken as a
// credential, stripped and redacted like any other. sep is the separator
// found, 0 at the end.
func cutQueryPair(q []byte) (pair, rest []byte, sep byte) {
	for i, c := range q {
		if c == '&' || c == ';' {
			return q[:i], q[i+1:], c
		}
	}
	return q, nil, 0
}

// cutScheme returns the credential in "<scheme> <credential>". ok is false
// when the value uses another scheme: it is not a key source then. Our
// scheme with no value, with more than one space, or followed by a tab
// (which lenient upstream parsers take for the space) yields a value that
// fails validation (empty, or starting with a space or tab): 401, and the
// header is stripped like any other of ours.
func cutScheme(v []byte, scheme string) (cred []byte, ok bool) {
	if len(v) < len(scheme) || !hasPrefixFold(v, scheme) {
		return nil, false
	}
	rest := v[len(scheme):]
	switch {
	case len(rest) == 0 || rest[0] == '\t':
		return rest, true
	case rest[0] != ' ':
		return nil, false // "ApiKeyX …" is another scheme
	}
	return rest[1:], true
}

// isCredentialParam reports whether a raw (still escaped) query parameter
// name is, case-insensitively after unescaping, a credential parameter.
func (s *Server) isCredentialParam(raw []byte) bool {
	const maxRaw = 192
	if len(raw) == 0 || len(raw) > 3*s.maxQueryName || len(raw) > maxRaw {
		return false
	}
	name := raw
	if bytes.IndexByte(raw, '%') >= 0 || bytes.IndexByte(raw, '+') >= 0 {
		var buf [maxRaw]byte // decoding never grows: no heap
		name = appendUnescapeQuery(buf[:0], raw)
	}
	for _, q := range s.querySources {
		if equalFold(name, q) {
			return true
		}
	}
	return false
}

// isCredentialParamSpelling reports whether a raw query parameter name is
// a credential parameter (isCredentialParam) or a spelling that some
// frameworks read as one: PHP ends a name at a NUL, drops leading spaces,
// turns spaces, dots and an unmatched '[' into '_', and PHP and Rack read
// "api_key[]" or "api_key[x]" as api_key. Like a spelling variant of a
// credential header, such a parameter is not a key source (it would turn
// unrelated parameters into 401s), but it is never forwarded when
// stripping, and never logged.
func (s *Server) isCredentialParamSpelling(raw []byte) bool {
	if s.isCredentialParam(raw) {
		return true
	}
	if len(raw) == 0 || bytes.IndexAny(raw, " .[+%") < 0 {
		return false
	}
	var buf [192]byte // decoding never grows: no heap for usual names
	dst := buf[:0]
	if len(raw) > len(buf) {
		dst = make([]byte, 0, len(raw)) // a long name is odd, never rejected for it
	}
	name := appendUnescapeQuery(dst, raw)
	if i := bytes.IndexByte(name, 0); i >= 0 {
		name = name[:i] // PHP reads the name as a C string
	}
	name = bytes.TrimLeft(name, " ")
	if i := bytes.IndexByte(name, '['); i >= 0 && bytes.IndexByte(name[i:], ']') > 0 {
		name = name[:i]
	}
	for i, c := range name {
		if c == ' ' || c == '.' || c == '[' {
			name[i] = '_'
		}
	}
	for _, q := range s.queryPHPNames {
		if equalFold(name, q) {
			return true
		}
	}
	return false
}

// phpName is a configured parameter name as PHP reads it back
// (isCredentialParamSpelling): dots and '[' become '_' (config allows
// both in a name).
func phpName(q string) string {
	if strings.IndexAny(q, " .[") < 0 {
		return q
	}
	return strings.Map(func(r rune) rune {
		if r == ' ' || r == '.' || r == '[' {
			return '_'
		}
		return r
	}, q)
}

// appendUnescapeQuery appends the form-decoded b ("+" is a space, %XX a
// byte; a bad escape is kept literally, as fasthttp's Args does).
func appendUnescapeQuery(dst, b []byte) []byte {
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case c == '+':
			dst = append(dst, ' ')
		case c == '%' && i+2 < len(b) && unhex(b[i+1]) >= 0 && unhex(b[i+2]) >= 0:
			dst = append(dst, byte(unhex(b[i+1])<<4|unhex(b[i+2])))
			i += 2
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

// validKeyBytes is the check before any format check or lookup: 1 to 512
// visible ASCII characters.
func validKeyBytes(k []byte) bool {
	if len(k) == 0 || len(k) > maxKeyLen {
		return false
	}
	for _, c := range k {
		if c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

// checkFormat rejects, without touching the store, anything that is not a
// well-formed key (CONTRACT §3: a mistyped key never reaches the cache).
func (s *Server) checkFormat(k []byte) bool {
	if !validKeyBytes(k) {
		return false
	}
	return auth.AcceptableSecret(s.opts.KeyPrefix, s.opts.AcceptForeignKeys, k)
}

// decision is the outcome of authenticating one request.
type decision struct {
	key     *auth.Key
	cred    credential
	session bool // the credential was a session cookie
}

// authenticate runs CONTRACT §4 steps 2–4 for a route that is not
// auth: none. A nil key with a nil error is an auth: optional request
// without a credential.
func (s *Server) authenticate(ctx context.Context, st *reqState, req *fasthttp.Request, query []byte, rt *route, client netip.Addr, now time.Time) (decision, error) {
	var d decision
	c, err := s.extractCredential(st, req, query)
	d.cred = c
	if err != nil {
		return d, err
	}
	if !c.found {
		if s.opts.Sessions != nil {
			if cookie := req.Header.Cookie(s.cookieName); len(cookie) > 0 {
				d.cred.src, d.session = srcCookie, true
				d.key, err = s.sessionKey(ctx, st, cookie, now)
				if err != nil {
					return d, err
				}
				return d, s.policy(d.key, rt, client, now)
			}
		}
		if rt.auth == authOptional {
			return d, nil
		}
		return d, auth.ErrMissingKey
	}
	if !s.checkFormat(c.key) {
		return d, auth.ErrInvalidKey
	}
	var k *auth.Key
	if s.keysAt != nil {
		k, err = s.keysAt.LookupKeyAt(ctx, auth.Digest(c.key), now)
	} else {
		k, err = s.keys.LookupKey(ctx, auth.Digest(c.key))
	}
	if err != nil {
		if errors.Is(err, auth.ErrKeyNotFound) {
			return d, auth.ErrInvalidKey
		}
		return d, auth.ErrStoreUnavailable
	}
	if k == nil {
		return d, auth.ErrInvalidKey
	}
	d.key = k
	if err := k.CheckState(now); err != nil {
		return d, err
	}
	return d, s.policy(k, rt, client, now)
}

// sessionKey resolves a session cookie to its key; every failure is
// ErrSessionInvalid except a store that cannot answer.
func (s *Server) sessionKey(ctx context.Context, st *reqState, cookie []byte, now time.Time) (*auth.Key, error) {
	var epoch int64
	var err error
	st.sid, epoch, err = s.opts.Sessions.Verify(st.sid[:0], cookie, now)
	if err != nil || len(st.sid) == 0 {
		return nil, auth.ErrSessionInvalid
	}
	// A view of the request's own buffer, valid for this call only:
	// auth.KeyStore.LookupKeyID copies the id if it keeps it.
	k, err := s.keys.LookupKeyID(ctx, unsafe.String(unsafe.SliceData(st.sid), len(st.sid)))
	if err != nil {
		if errors.Is(err, auth.ErrKeyNotFound) {
			return nil, auth.ErrSessionInvalid
		}
		return nil, auth.ErrStoreUnavailable
	}
	if k == nil || k.SessionEpoch != epoch || !k.SessionsAllowed || k.CheckState(now) != nil {
		return nil, auth.ErrSessionInvalid
	}
	return k, nil
}

// policy applies the checks after the key's state: IP allowlist, route
// scope, rate limit.
func (s *Server) policy(k *auth.Key, rt *route, client netip.Addr, now time.Time) error {
	if !k.AllowsIP(client) {
		return auth.ErrIPNotAllowed
	}
	if !k.AllowsRoute(rt.name) {
		return auth.ErrRouteNotAllowed
	}
	if s.opts.RateLimiter != nil {
		if ok, retry := s.opts.RateLimiter.Allow(k, now); !ok {
			return &rateLimitedError{retryAfter: retry}
		}
	}
	return nil
}

// rateLimitedError carries Retry-After for a 429.
type rateLimitedError struct{ retryAfter time.Duration }

func (e *rateLimitedError) Error() string { return auth.ErrRateLimited.Error() }
func (e *rateLimitedError) Unwrap() error { return auth.ErrRateLimited }
