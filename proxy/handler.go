package proxy

import (
	"bytes"
	"context"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"runtime/debug"
	"time"

	"github.com/keygate/keygate/auth"
	"github.com/valyala/fasthttp"
)

// reqState is per-request scratch memory, pooled so the hot path does not
// allocate. Slices in it alias the request and are dropped by reset.
type reqState struct {
	path  []byte   // normalized path
	uri   []byte   // request-target sent upstream
	head  []byte   // header block sent upstream (forward)
	qbuf  []byte   // decoded credential query values
	xff   [][]byte // X-Forwarded-For lines received
	conn  [][]byte // tokens of the Connection header(s)
	rid   [32]byte // generated request id
	ridIn []byte   // acceptable X-Request-Id received
	proto []byte   // X-Forwarded-Proto received
	fhost []byte   // X-Forwarded-Host received
	sid   []byte   // key id of a session cookie

	upDeadline time.Time     // bounds the exchange with the upstream (exchange)
	upWait     time.Duration // time left until upDeadline, when just computed
	end        time.Time     // when the upstream exchange ended (roundTrip)

	sessionWanted bool
}

func newReqState() *reqState {
	return &reqState{
		path: make([]byte, 0, 256),
		uri:  make([]byte, 0, 512),
		head: make([]byte, 0, 1024),
		qbuf: make([]byte, 0, 256),
		xff:  make([][]byte, 0, 4),
		conn: make([][]byte, 0, 4),
		sid:  make([]byte, 0, 64),
	}
}

func (st *reqState) reset() {
	clear(st.xff)
	clear(st.conn)
	*st = reqState{
		path: st.path[:0], uri: st.uri[:0], head: st.head[:0], qbuf: st.qbuf[:0],
		xff: st.xff[:0], conn: st.conn[:0], sid: st.sid[:0],
	}
}

// requestID is the kept X-Request-Id, or a new one.
func (st *reqState) requestID() []byte {
	if len(st.ridIn) > 0 {
		return st.ridIn
	}
	newRequestID(&st.rid)
	return st.rid[:]
}

// newRequestID writes 16 random bytes as hex. Request ids need to be
// unique, not secret: the runtime's per-thread generator is enough and
// does not allocate or lock.
func newRequestID(dst *[32]byte) {
	a, b := rand.Uint64(), rand.Uint64()
	for i := 0; i < 16; i++ {
		dst[i] = upperHexLower[a>>60]
		a <<= 4
		dst[16+i] = upperHexLower[b>>60]
		b <<= 4
	}
}

const upperHexLower = "0123456789abcdef"

// validRequestID accepts a received X-Request-Id worth keeping: up to 128
// characters of [A-Za-z0-9._:-]. Anything else is replaced, so a request
// id can be written into JSON and logs as is.
func validRequestID(v []byte) bool {
	if len(v) == 0 || len(v) > 128 {
		return false
	}
	for _, c := range v {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':') {
			return false
		}
	}
	return true
}

// scanHeaders collects, in one pass, the headers later steps need.
func (s *Server) scanHeaders(st *reqState, req *fasthttp.Request) {
	for k, v := range req.Header.All() {
		switch {
		case equalFold(k, "X-Forwarded-For"):
			st.xff = append(st.xff, v)
		case equalFold(k, "Connection"):
			for len(v) > 0 {
				var tok []byte
				tok, v, _ = bytes.Cut(v, []byte{','})
				if tok = bytes.TrimSpace(tok); len(tok) > 0 {
					st.conn = append(st.conn, tok)
				}
			}
		case equalFold(k, "X-Request-Id"):
			if st.ridIn == nil && validRequestID(v) {
				st.ridIn = v
			}
		case equalFold(k, "X-Forwarded-Proto"):
			if st.proto == nil {
				st.proto = v
			}
		case equalFold(k, "X-Forwarded-Host"):
			if st.fhost == nil {
				st.fhost = v
			}
		case s.sessionHeader != "" && equalFold(k, s.sessionHeader):
			st.sessionWanted = st.sessionWanted || equalFold(v, "true")
		}
	}
}

// handle serves one request: CONTRACT §4 in order.
func (s *Server) handle(ctx *fasthttp.RequestCtx) {
	start := time.Now()
	st := s.states.Get().(*reqState)
	defer func() {
		// fasthttp does not recover handler panics: one bad request (or
		// hook) would take every connection down with the process.
		if p := recover(); p != nil {
			s.recovered(ctx, p)
		}
		s.finish(ctx, st)
		s.release(st)
	}()
	req := &ctx.Request

	s.scanHeaders(st, req)
	rid := st.requestID()

	// Framing first: nothing is decided on a request that can be read two
	// ways.
	if len(req.Header.RawHeaders()) > s.opts.MaxHeaderBytes {
		s.refuse(ctx, st, start, errHeaderTooLarge, rid, true)
		return
	}
	if !s.framingOK(req) || req.Header.IsHTTP11() && len(req.Header.Host()) == 0 {
		s.refuse(ctx, st, start, errBadRequest, rid, true)
		return
	}
	host, rawPath, query, ok := splitTarget(req.Header.RequestURI())
	if !ok {
		s.refuse(ctx, st, start, errBadRequest, rid, false)
		return
	}
	if host == nil {
		host = req.Header.Host()
	}
	if !validHost(host) || !upperMethod(req.Header.Method()) {
		s.refuse(ctx, st, start, errBadRequest, rid, true)
		return
	}
	if st.path, ok = normalizePath(st.path[:0], rawPath); !ok {
		s.refuse(ctx, st, start, errBadRequest, rid, false)
		return
	}
	rt := s.routes.match(hostOnly(host), st.path, req.Header.Method())
	if rt != nil && bytes.IndexByte(st.path, ';') >= 0 {
		// Servlet containers drop ";" path parameters before mapping
		// ("/admin;x/users" is their "/admin/users"): a path whose route
		// depends on how it is read is refused, so that the decision and
		// the upstream cannot disagree. (st.uri is rebuilt for the
		// upstream later.)
		st.uri = stripPathParams(st.uri[:0], st.path)
		if s.routes.match(hostOnly(host), st.uri, req.Header.Method()) != rt {
			s.refuse(ctx, st, start, errBadRequest, rid, false)
			return
		}
	}
	if rt == nil {
		s.writeDenial(ctx, errNoRoute, rid, false)
		s.logAccess(ctx, st, nil, nil, start, netip.Addr{}, query, rid)
		return
	}

	peer := connPeer(ctx)
	peerTrusted := s.trusted(peer)
	client := s.clientIP(peer, peerTrusted, st.xff)

	var d decision
	// sent is when forwarding begins, the start of the upstream timeout
	// and duration: the request's start, or the end of the auth decision
	// (one monotonic reading that also times the decision).
	sent := start
	if rt.auth != authNone {
		now := start // the default clock: no second read
		if !s.realClock {
			now = s.opts.Now()
		}
		var err error
		d, err = s.authenticate(s.baseCtx, st, req, query, rt, client, now)
		res := resultFor(err)
		rt.metrics.auth[res][d.cred.src].Inc()
		sent = monoNow()
		s.m.authDurationBy[res].Observe(sent.Sub(start).Seconds())
		if err != nil {
			s.writeDenial(ctx, err, rid, d.session && res == resSessionInvalid)
			s.logAccess(ctx, st, rt, d.key, start, client, query, rid)
			return
		}
		if d.key != nil && s.opts.OnAuthenticated != nil {
			s.opts.OnAuthenticated(d.key, d.key.Previous, now)
		}
	}
	s.forward(ctx, st, rt, &d, host, query, peer, peerTrusted, rid, sent)
	s.logAccess(ctx, st, rt, d.key, start, client, query, rid)
}

// recovered answers a request whose handling panicked with 500
// internal_error, closes its connection and logs the panic with its stack.
func (s *Server) recovered(ctx *fasthttp.RequestCtx, p any) {
	s.opts.Logger.LogAttrs(context.Background(), slog.LevelError, "panic serving a request",
		slog.Any("panic", p), slog.String("stack", string(debug.Stack())))
	var rid [32]byte
	newRequestID(&rid)
	s.writeDenial(ctx, errInternal, rid[:], false)
	ctx.SetConnectionClose()
}

// finish arms the response's write deadline (and the idle one after it)
// from the last clock reading of the request, made when the upstream
// exchange ended; a request that was not forwarded reads the clock here.
func (s *Server) finish(ctx *fasthttp.RequestCtx, st *reqState) {
	end := st.end
	if end.IsZero() {
		end = monoNow()
	}
	s.armWrite(ctx, end)
}

func (s *Server) release(st *reqState) {
	st.reset()
	s.states.Put(st)
}

// refuse answers a request that is refused before routing (bad framing or
// path): bad_request, counted under route "".
func (s *Server) refuse(ctx *fasthttp.RequestCtx, st *reqState, start time.Time, err error, rid []byte, closeConn bool) {
	s.m.noRoute.auth[resBadRequest][srcNone].Inc()
	s.writeDenial(ctx, err, rid, false)
	if closeConn {
		ctx.SetConnectionClose()
	}
	s.logAccess(ctx, st, nil, nil, start, netip.Addr{}, nil, rid)
}

// logAccess writes the access log line, when enabled. The path is the
// normalized one (empty when the request never got that far) and the
// query has every credential and session parameter's value redacted.
func (s *Server) logAccess(ctx *fasthttp.RequestCtx, st *reqState, rt *route, k *auth.Key, start time.Time, client netip.Addr, query []byte, rid []byte) {
	if !s.opts.AccessLog {
		return
	}
	routeName, keyID := "", ""
	if rt != nil {
		routeName = rt.name
	}
	if k != nil {
		keyID = k.ID
	}
	path := string(st.path)
	if len(query) > 0 {
		path += "?" + string(s.redactQuery(nil, query))
	}
	if !client.IsValid() {
		client = connPeer(ctx)
	}
	s.opts.Logger.LogAttrs(context.Background(), slog.LevelInfo, "request",
		slog.String("method", string(ctx.Method())),
		slog.String("path", path),
		slog.Int("status", ctx.Response.StatusCode()),
		slog.String("route", routeName),
		slog.String("key_id", keyID),
		slog.Float64("duration_seconds", time.Since(start).Seconds()),
		slog.String("client_ip", client.String()),
		slog.String("request_id", string(rid)),
	)
}

// redactQuery appends query with the value of every credential or session
// parameter replaced by "REDACTED" ('&' and ';' both separate parameters:
// cutQueryPair).
func (s *Server) redactQuery(dst, query []byte) []byte {
	for len(query) > 0 {
		var pair []byte
		var sep byte
		pair, query, sep = cutQueryPair(query)
		name, _, hasValue := bytes.Cut(pair, []byte{'='})
		if s.isCredentialParamSpelling(name) || s.isSessionParam(name) {
			dst = append(dst, name...)
			if hasValue {
				dst = append(dst, "=REDACTED"...)
			}
		} else {
			dst = append(dst, pair...)
		}
		if sep != 0 {
			dst = append(dst, sep)
		}
	}
	return dst
}

func (s *Server) isSessionParam(name []byte) bool {
	return s.opts.Sessions != nil && equalFold(name, s.opts.SessionParam)
}

// upperMethod refuses methods with lower-case letters: methods are
// case-sensitive, but upstreams that upper-case them would run a method
// the route decision never saw.
func upperMethod(m []byte) bool {
	for _, c := range m {
		if c >= 'a' && c <= 'z' {
			return false
		}
	}
	return true
}

// connPeer is the address of the request's peer: parsed when the
// connection was accepted when it is a plain one of Serve's, otherwise
// from RemoteAddr (which, behind PROXY protocol, is the address the
// header declared).
func connPeer(ctx *fasthttp.RequestCtx) netip.Addr {
	if c, ok := ctx.Conn().(*lazyDeadlineConn); ok && c.peer.IsValid() {
		return c.peer
	}
	return peerAddr(ctx.RemoteAddr())
}
