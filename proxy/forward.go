package proxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/valyala/fasthttp"
)

// forward sends the request upstream and copies the response back
// (CONTRACT §4 step 5). The upstream request's header block is written
// fresh into st.head, from an allowlist pass over the received headers,
// so nothing the client sent survives by accident; the transport sends it
// after the request line (writeRequest). Building the block directly,
// rather than through a fasthttp.RequestHeader, saves a copy and a
// sanitizing pass per header on every request.
func (s *Server) forward(ctx *fasthttp.RequestCtx, st *reqState, rt *route, d *decision, host, query []byte, peer netip.Addr, peerTrusted bool, rid []byte, sent time.Time) {
	in := &ctx.Request
	h := appendHeaderLine(st.head[:0], strHost, host)
	for k, v := range in.Header.All() {
		if s.dropRequestHeader(st, k, v, peerTrusted) {
			continue
		}
		if s.opts.Sessions != nil && equalFold(k, "Cookie") {
			h = s.appendCookiesWithoutSession(h, in)
			continue
		}
		h = appendHeaderLine(h, k, v)
	}

	if k := d.key; k != nil {
		h = appendIdentity(h, s.idKeyID, k.ID)
		h = appendIdentity(h, s.idKeyName, k.Name)
		h = appendIdentity(h, s.idUser, k.User)
		h = appendIdentity(h, s.idApplication, k.Application)
		h = appendIdentity(h, s.idTenant, k.Tenant)
		h = appendIdentity(h, s.idScopes, k.ScopesHeader)
		if d.session {
			h = appendIdentity(h, s.idAuth, "session")
		} else {
			h = appendIdentity(h, s.idAuth, "key")
		}
	}

	h = append(h, "X-Forwarded-For: "...)
	if peerTrusted {
		for _, l := range st.xff {
			h = appendHeaderValue(h, l)
			h = append(h, ", "...)
		}
	}
	h = peer.AppendTo(h)
	h = append(h, "\r\n"...)
	switch {
	case peerTrusted && len(st.proto) > 0:
		h = appendHeaderLine(h, strXForwardedProto, st.proto)
	case s.tls != nil || ctx.IsTLS():
		h = append(h, "X-Forwarded-Proto: https\r\n"...)
	default:
		h = append(h, "X-Forwarded-Proto: http\r\n"...)
	}
	if peerTrusted && len(st.fhost) > 0 {
		h = appendHeaderLine(h, strXForwardedHost, st.fhost)
	} else {
		h = appendHeaderLine(h, strXForwardedHost, host)
	}
	h = appendHeaderLine(h, strXRequestID, rid)
	st.head = h

	var setCookie string
	if s.opts.Sessions != nil && d.key != nil && !d.session && d.key.SessionsAllowed && !d.key.Previous && s.sessionRequested(st, query) {
		var err error
		if setCookie, err = s.opts.Sessions.Issue(d.key, s.opts.Now()); err != nil {
			s.opts.Logger.Warn("issuing session failed", "route", rt.name, "key", d.key, "err", err)
			setCookie = ""
		} else {
			s.m.sessions.Inc()
		}
	}

	resp := &ctx.Response
	err := s.roundTrip(rt, st, in.Header.Method(), in.Body(), resp, query, sent)
	if err != nil {
		s.writeDenial(ctx, err, rid, false)
		return
	}
	if !stripResponseHopByHop(resp) {
		resp.Header.AddBytesV("X-Request-Id", rid) // absent in any letter case
	}
	if setCookie != "" {
		resp.Header.Add("Set-Cookie", setCookie)
	}
}

// appendIdentity appends one identity header line. Empty values are left
// out, and so is a value that could not be sent as one header line: key
// fields are validated by the admin API, but a proxy must not be the place
// where a stray CR or LF splits a header.
func appendIdentity(dst, name []byte, v string) []byte {
	if v == "" {
		return dst
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
			return dst
		}
	}
	dst = append(dst, name...)
	dst = append(dst, ':', ' ')
	dst = append(dst, v...)
	return append(dst, '\r', '\n')
}

var (
	strHost            = []byte("Host")
	strXForwardedProto = []byte("X-Forwarded-Proto")
	strXForwardedHost  = []byte("X-Forwarded-Host")
	strXRequestID      = []byte("X-Request-Id")
)

// appendHeaderLine appends "name: value\r\n".
func appendHeaderLine(dst, name, value []byte) []byte {
	dst = appendHeaderValue(dst, name)
	dst = append(dst, ':', ' ')
	dst = appendHeaderValue(dst, value)
	return append(dst, '\r', '\n')
}

// appendHeaderValue appends v with every CR and LF turned into a space, as
// fasthttp does for each header it sends: its parser keeps a bare CR
// inside a value, and no received byte may end a line we write.
func appendHeaderValue(dst, v []byte) []byte {
	n := len(dst)
	dst = append(dst, v...)
	if bytes.IndexByte(v, '\r') < 0 && bytes.IndexByte(v, '\n') < 0 {
		return dst
	}
	for i := n; i < len(dst); i++ {
		if dst[i] == '\r' || dst[i] == '\n' {
			dst[i] = ' '
		}
	}
	return dst
}

// appendCookiesWithoutSession appends the received cookies, in order,
// as one Cookie header without the session cookie, or nothing when that
// was the only one.
func (s *Server) appendCookiesWithoutSession(dst []byte, in *fasthttp.Request) []byte {
	mark := len(dst)
	dst = append(dst, "Cookie: "...)
	start := len(dst)
	for ck, cv := range in.Header.Cookies() {
		if string(ck) == s.cookieName {
			continue
		}
		if len(dst) > start {
			dst = append(dst, ';', ' ')
		}
		if len(ck) > 0 {
			dst = appendHeaderValue(dst, ck)
			dst = append(dst, '=')
		}
		dst = appendHeaderValue(dst, cv)
	}
	if len(dst) == start {
		return dst[:mark]
	}
	return append(dst, '\r', '\n')
}

// roundTrip picks a target round robin, skipping ones that recently failed
// to connect (all of them failing: try anyway), and sends out. A target
// that cannot be connected to is marked and the next one tried: nothing
// was sent to it. t0, a clock reading made just before forwarding began,
// serves the health check and starts the first attempt's timeout and
// duration.
func (s *Server) roundTrip(rt *route, st *reqState, method, body []byte, resp *fasthttp.Response, query []byte, t0 time.Time) error {
	n := len(rt.targets)
	first := 0
	if n > 1 { // the counter is shared by every CPU: only touched when it matters
		first = int(rt.next.Add(1) % uint32(n))
	}
	now := fromTime(t0)
	healthy := s.anyHealthy(rt, now)
	lastErr := errUpstreamUnavailable
	tried := false
	for i := 0; i < n; i++ {
		u := rt.targets[(first+i)%n]
		if healthy && u.downUntil.Load() > now {
			continue
		}
		st.uri = s.appendForwardURI(st.uri[:0], u.base, rt.forwardPath(st.path), query)
		start := t0
		if tried {
			start = monoNow()
		}
		tried = true
		// exchange bounds the attempt by this deadline.
		st.upDeadline, st.upWait = start.Add(rt.timeout), rt.timeout
		err := sendWithRetries(u.client, st, method, body, resp)
		st.end = monoNow() // also starts the response's write deadline (finish)
		rt.metrics.upDuration.Observe(st.end.Sub(start).Seconds())
		if err == nil {
			if u.downUntil.Load() != 0 { // no write to a shared line on every request
				u.downUntil.Store(0)
			}
			rt.metrics.upCodes[upCode(resp.StatusCode())].Inc()
			return nil
		}
		rt.metrics.upCodes[codeError].Inc()
		s.opts.Logger.LogAttrs(context.Background(), slog.LevelWarn, "upstream request failed",
			slog.String("route", rt.name), slog.String("target", u.client.Addr), slog.String("err", err.Error()))
		dial, timeout := classifyUpstreamError(err)
		if timeout {
			lastErr = errUpstreamTimeout
		} else {
			lastErr = errUpstreamUnavailable
		}
		if !dial {
			return lastErr
		}
		// Nothing reached this target: mark it and try the next healthy
		// one. When none was healthy, one attempt is all we make.
		u.downUntil.Store(fromTime(monoNow().Add(unhealthyFor)))
		if !healthy {
			return lastErr
		}
	}
	return lastErr
}

// maxIdempotentAttempts is how many times an idempotent request is sent
// to one target when the connection fails before any response (as
// fasthttp's HostClient.Do: DefaultMaxIdemponentCallAttempts).
const maxIdempotentAttempts = 5

// sendWithRetries is exchange, repeated as HostClient.Do would: a request
// whose connection failed before any response (typically a kept-alive
// connection the upstream had just closed) is sent again on another one
// when it is idempotent by fasthttp's rule (GET, HEAD, PUT, QUERY).
func sendWithRetries(hc *fasthttp.HostClient, st *reqState, method, body []byte, resp *fasthttp.Response) error {
	for attempt := 1; ; attempt++ {
		retry, err := exchange(hc, st, method, body, resp)
		if err == nil || !retry || attempt >= maxIdempotentAttempts || !retriable(method) {
			if err == io.EOF {
				err = fasthttp.ErrConnectionClosed
			}
			return err
		}
	}
}

func retriable(method []byte) bool {
	switch string(method) {
	case fasthttp.MethodGet, fasthttp.MethodHead, fasthttp.MethodPut, "QUERY":
		return true
	}
	return false
}

func (s *Server) anyHealthy(rt *route, now int64) bool {
	for _, u := range rt.targets {
		if u.downUntil.Load() <= now {
			return true
		}
	}
	return false
}

// classifyUpstreamError tells a failure to connect (safe to try elsewhere)
// and a timeout (504) from the rest (502).
func classifyUpstreamError(err error) (dial, timeout bool) {
	if errors.Is(err, fasthttp.ErrDialTimeout) {
		return true, true
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true, op.Timeout()
	}
	if errors.Is(err, fasthttp.ErrTimeout) {
		return false, true
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false, true
	}
	return false, false
}

// appendForwardURI builds the request-target sent upstream: the target's
// base path, the matched path (prefix stripped when the route says so) and
// the query without credential and session parameters when stripping.
func (s *Server) appendForwardURI(dst []byte, base string, path, query []byte) []byte {
	dst = append(dst, base...)
	if len(path) == 0 || path[0] != '/' {
		dst = append(dst, '/')
	}
	dst = append(dst, path...)
	if len(query) == 0 {
		return dst
	}
	mark := len(dst)
	dst = append(dst, '?')
	kept := false
	// Two kept parameters are joined by ';' only when every separator
	// between them was one: an '&' among them is kept, so that a parser
	// splitting on '&' alone (Go's url.ParseQuery drops a pair holding a
	// ';') still finds each kept parameter whole.
	amp := false
	for len(query) > 0 {
		var pair []byte
		var sep byte
		pair, query, sep = cutQueryPair(query)
		name, _, _ := bytes.Cut(pair, []byte{'='})
		if s.opts.StripCredentials && s.isCredentialParamSpelling(name) || s.isSessionParam(name) {
			amp = amp || sep == '&'
			continue
		}
		if kept {
			if amp {
				dst = append(dst, '&')
			} else {
				dst = append(dst, ';')
			}
		}
		dst = append(dst, pair...)
		kept = true
		amp = sep == '&'
	}
	if !kept {
		dst = dst[:mark]
	}
	return dst
}

// sessionRequested reports whether the client asked for a session cookie
// (query parameter or header, both removed before forwarding).
func (s *Server) sessionRequested(st *reqState, query []byte) bool {
	if st.sessionWanted {
		return true
	}
	for len(query) > 0 {
		var pair []byte
		pair, query, _ = cutQueryPair(query)
		name, value, _ := bytes.Cut(pair, []byte{'='})
		if s.isSessionParam(name) && equalFold(value, "true") {
			return true
		}
	}
	return false
}

// dropRequestHeader decides which received headers are not forwarded:
// hop-by-hop ones and those named in Connection, identity headers in any
// spelling, headers keygate sets itself, URL-override headers, client
// address claims from untrusted peers, and (when stripping) credential
// headers carrying our scheme.
func (s *Server) dropRequestHeader(st *reqState, k, v []byte, peerTrusted bool) bool {
	switch requestHeaderRule(k) {
	case dropAlways:
		return true
	case dropUntrusted:
		if !peerTrusted {
			return true
		}
	}
	if s.isIdentityHeader(k) || !peerTrusted && hasFoldedPrefix(k, "x-forwarded-") {
		return true
	}
	for _, c := range st.conn {
		if bytes.EqualFold(k, c) {
			return true
		}
	}
	if s.opts.StripCredentials {
		for _, hs := range s.hdrSources {
			if !equalFold(k, hs.name) {
				// X_API_Key or X.API.Key: CGI-style upstreams read it as
				// X-API-Key, so a spelling variant of a credential header
				// is never forwarded either.
				if !foldedEqual(k, hs.name) {
					continue
				}
				return true
			}
			if hs.scheme == "" {
				return true
			}
			if _, ok := cutScheme(v, hs.scheme); ok {
				return true
			}
		}
	}
	return false
}

// What happens to a received header by its name (requestHeaderRules).
const (
	forwardHeader = iota
	dropAlways    // never forwarded
	dropUntrusted // forwarded from a trusted proxy only
)

// requestHeaderRules are the received headers dropped by name, lower-case.
var requestHeaderRules = map[string]uint8{
	// Hop-by-hop (RFC 9110 7.6.1 and the older proxy ones).
	"connection": dropAlways, "keep-alive": dropAlways, "proxy-connection": dropAlways,
	"te": dropAlways, "trailer": dropAlways, "transfer-encoding": dropAlways,
	"upgrade": dropAlways, "proxy-authorization": dropAlways, "proxy-authenticate": dropAlways,
	// Set by keygate itself, or framing it redoes.
	"host": dropAlways, "content-length": dropAlways, "x-forwarded-for": dropAlways,
	"x-forwarded-proto": dropAlways, "x-forwarded-host": dropAlways, "x-request-id": dropAlways,
	// The body was read (and 100 Continue answered) here already.
	"expect": dropAlways,
	// URL and method overrides: the upstream would serve something other
	// than what the route decision saw.
	"x-original-url": dropAlways, "x-original-uri": dropAlways, "x-forwarded-uri": dropAlways,
	"x-rewrite-url": dropAlways, "x-forwarded-path": dropAlways, "x-forwarded-prefix": dropAlways,
	"x-envoy-original-path": dropAlways, "x-http-method-override": dropAlways,
	"x-http-method": dropAlways, "x-method-override": dropAlways,
	// Client address and scheme claims frameworks believe (Rack reads
	// X-Forwarded-Ssl before X-Forwarded-Proto, which the X-Forwarded-
	// prefix covers; Rails remote_ip reads X-Cluster-Client-IP): only a
	// trusted proxy may make them.
	"forwarded": dropUntrusted, "x-real-ip": dropUntrusted, "true-client-ip": dropUntrusted,
	"x-client-ip": dropUntrusted, "x-url-scheme": dropUntrusted, "front-end-https": dropUntrusted,
	"x-original-host": dropUntrusted, "x-cluster-client-ip": dropUntrusted,
	"cf-connecting-ip": dropUntrusted,
}

// maxRuleName bounds the names requestHeaderRules can hold.
const maxRuleName = 32

type headerRule struct {
	name string
	rule uint8
}

// rulesByLen is requestHeaderRules by name length: a received name is
// compared with the few of its length (a map lookup would hash every
// name first, and costs more than these comparisons).
var rulesByLen = func() (t [maxRuleName + 1][]headerRule) {
	for name, rule := range requestHeaderRules {
		t[len(name)] = append(t[len(name)], headerRule{name, rule})
	}
	return t
}()

// requestHeaderRule looks k up in requestHeaderRules, ignoring case.
func requestHeaderRule(k []byte) uint8 {
	if len(k) > maxRuleName {
		return forwardHeader
	}
	for _, r := range rulesByLen[len(k)] {
		// In any letter case and with '_' or '.' for '-': CGI-style
		// upstreams (WSGI, Rack, PHP) read X_Real_IP as X-Real-IP.
		if foldedEqual(k, r.name) {
			return r.rule
		}
	}
	return forwardHeader
}

func isHopByHop(k []byte) bool {
	return equalFold(k, "Connection") || equalFold(k, "Keep-Alive") ||
		equalFold(k, "Proxy-Connection") || equalFold(k, "TE") ||
		equalFold(k, "Trailer") || equalFold(k, "Transfer-Encoding") ||
		equalFold(k, "Upgrade") || equalFold(k, "Proxy-Authorization") ||
		equalFold(k, "Proxy-Authenticate")
}

// stripResponseHopByHop removes the upstream's hop-by-hop headers, and
// those it named in Connection, from the response, matching names in any
// letter case (response names are kept as the upstream spelled them); the
// connection to the client is ours to manage. Transfer-Encoding and
// Content-Length are left to fasthttp, which frames the response itself.
// It reports whether the response (still) has an X-Request-Id. A response
// with nothing to remove, the usual one, costs one pass over its headers.
func stripResponseHopByHop(resp *fasthttp.Response) (hasRequestID bool) {
	h := &resp.Header
	// Names are copied out before any is deleted: deleting moves the
	// memory they live in.
	var connBuf, nameBuf [512]byte
	conn, names := connBuf[:0], nameBuf[:0]
	strip := false
	for k, v := range h.All() {
		if len(k) == 0 || !hopByHopInitial(k[0]) {
			continue // Content-Type, Date, Server, most of them
		}
		switch {
		case equalFold(k, "X-Request-Id"):
			hasRequestID = true
		case equalFold(k, "Connection"):
			conn = append(append(conn, v...), ',')
			strip = true
		case equalFold(k, "Transfer-Encoding") || equalFold(k, "Content-Length"):
		case isHopByHop(k):
			strip = true
		}
	}
	if strip {
		for k := range h.All() {
			if equalFold(k, "Transfer-Encoding") || equalFold(k, "Content-Length") {
				continue
			}
			if isHopByHop(k) || listed(conn, k) {
				names = append(append(names, k...), 0)
			}
		}
		for len(names) > 0 {
			var n []byte
			n, names, _ = bytes.Cut(names, []byte{0})
			h.DelBytes(n)
		}
		// Connection may have named X-Request-Id.
		hasRequestID = hasHeader(h, "X-Request-Id")
	}
	h.ResetConnectionClose()
	return hasRequestID
}

// hopByHopInitial reports whether a header name starting with c may be
// hop-by-hop (isHopByHop) or X-Request-Id.
func hopByHopInitial(c byte) bool {
	switch lower(c) {
	case 'c', 'k', 'p', 't', 'u', 'x':
		return true
	}
	return false
}

// hasHeader reports whether the response has name in any letter case.
func hasHeader(h *fasthttp.ResponseHeader, name string) bool {
	for k := range h.All() {
		if equalFold(k, name) {
			return true
		}
	}
	return false
}

// listed reports whether name is one of the comma-separated tokens.
func listed(tokens, name []byte) bool {
	for len(tokens) > 0 {
		var tok []byte
		tok, tokens, _ = bytes.Cut(tokens, []byte{','})
		if bytes.EqualFold(bytes.TrimSpace(tok), name) {
			return true
		}
	}
	return false
}

// foldedEqual reports whether header name k equals name with "_" and "."
// read as "-", ignoring ASCII case.
// hasFoldedPrefix is foldedEqual for a prefix (lower case, '-'-separated).
func hasFoldedPrefix(k []byte, prefix string) bool {
	return len(k) >= len(prefix) && foldedEqual(k[:len(prefix)], prefix)
}

func foldedEqual(k []byte, name string) bool {
	if len(k) != len(name) {
		return false
	}
	for i := 0; i < len(k); i++ {
		if foldHeaderByte(k[i]) != foldHeaderByte(name[i]) {
			return false
		}
	}
	return true
}
