package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/keygate/keygate/auth"
	proxyproto "github.com/pires/go-proxyproto"
	"github.com/valyala/fasthttp"
)

// requestLineAllowance is read-buffer room for the request line on top of
// MaxHeaderBytes; a longer request head is refused with 431 as well.
const requestLineAllowance = 8 << 10

// unhealthyFor is how long a target that failed to connect is skipped.
const unhealthyFor = 5 * time.Second

// Server is the proxy. Create it with New; it is safe for concurrent use.
type Server struct {
	opts      Options
	realClock bool // Options.Now was left to time.Now
	// keysAt is Keys when it can take the request's clock reading (the
	// cache does), and the clock is the real one; nil otherwise.
	keysAt timedKeyStore
	keys   auth.KeyStore
	tls    *tls.Config

	hdrSources   []headerSource
	querySources []string
	// queryPHPNames are querySources as PHP reads names back
	// (isCredentialParamSpelling).
	queryPHPNames []string
	maxQueryName  int

	idPrefix      string // lower case, "-" separated
	idKeyID       []byte
	idKeyName     []byte
	idUser        []byte
	idApplication []byte
	idTenant      []byte
	idScopes      []byte
	idAuth        []byte
	sessionHeader string
	cookieName    string

	routes *routeTable
	all    []*route
	m      *metrics

	srv     *fasthttp.Server
	baseCtx context.Context
	cancel  context.CancelFunc
	states  sync.Pool
}

// New validates o, applies its defaults and builds a Server. Nothing is
// listened on until Serve.
func New(o Options) (*Server, error) {
	realClock := o.Now == nil
	o.setDefaults()
	if err := o.validate(); err != nil {
		return nil, err
	}
	s := &Server{opts: o, keys: o.Keys, tls: o.TLS, realClock: realClock}
	if tk, ok := o.Keys.(timedKeyStore); ok && realClock {
		s.keysAt = tk
	}
	if s.tls == nil && o.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("proxy: tls: %w", err)
		}
		s.tls = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	for _, src := range o.Sources {
		if src.Header != "" {
			s.hdrSources = append(s.hdrSources, headerSource{name: src.Header, scheme: src.Scheme})
		} else {
			s.querySources = append(s.querySources, src.Query)
			s.queryPHPNames = append(s.queryPHPNames, phpName(src.Query))
			s.maxQueryName = max(s.maxQueryName, len(src.Query))
		}
	}
	if o.Sessions != nil {
		s.cookieName = o.Sessions.CookieName()
		s.sessionHeader = o.IdentityPrefix + "Session"
	}
	s.idPrefix = foldHeaderName(o.IdentityPrefix)
	id := func(n string) []byte { return []byte(o.IdentityPrefix + n) }
	s.idKeyID, s.idKeyName, s.idUser = id("Key-Id"), id("Key-Name"), id("User")
	s.idApplication, s.idTenant, s.idScopes, s.idAuth = id("Application"), id("Tenant"), id("Scopes"), id("Auth")

	m, err := newMetrics(o.Registerer)
	if err != nil {
		return nil, fmt.Errorf("proxy: metrics: %w", err)
	}
	s.m = m
	for _, r := range o.Routes {
		rt, err := s.newRoute(r)
		if err != nil {
			return nil, err
		}
		s.all = append(s.all, rt)
	}
	s.routes = newRouteTable(s.all)
	s.states.New = func() any { return newReqState() }
	s.baseCtx, s.cancel = context.WithCancel(context.Background())
	s.srv = &fasthttp.Server{
		Handler:        s.handle,
		ErrorHandler:   s.handleParseError,
		ReadBufferSize: o.MaxHeaderBytes + requestLineAllowance,
		// The timeouts are applied by connState and finish, not by
		// fasthttp (see connState).
		ConnState:                     s.connState,
		MaxRequestBodySize:            o.MaxRequestBody,
		DisableHeaderNamesNormalizing: true,
		DisablePreParseMultipartForm:  true,
		SecureErrorLogMessage:         true,
		NoDefaultServerHeader:         true,
		NoDefaultContentType:          true,
		CloseOnShutdown:               true,
		TCPKeepalive:                  true,
		// Nothing here reads RequestCtx.Time: no clock read for it.
		LazyRequestTime: true,
		Logger:          fasthttpLogger{o.Logger},
	}
	return s, nil
}

func (s *Server) newRoute(r Route) (*route, error) {
	prefix, err := normalizePrefix(r.PathPrefix)
	if err != nil {
		return nil, fmt.Errorf("proxy: route %q: %w", r.Name, err)
	}
	methods := make([]string, len(r.Methods))
	for i, m := range r.Methods {
		methods[i] = strings.ToUpper(m) // methods are case-sensitive; config is not
	}
	rt := &route{
		name:    r.Name,
		host:    strings.ToLower(string(hostOnly([]byte(r.Host)))),
		prefix:  prefix,
		methods: methods,
		strip:   r.StripPrefix,
		timeout: r.Timeout,
		metrics: s.m.forRoute(r.Name),
	}
	switch r.Auth {
	case AuthOptional:
		rt.auth = authOptional
	case AuthNone:
		rt.auth = authNone
	}
	if rt.timeout == 0 {
		rt.timeout = 30 * time.Second
	}
	maxConns := r.MaxConnsPerTarget
	if maxConns == 0 {
		maxConns = 1024
	}
	for _, ts := range r.Targets {
		t, _ := parseTarget(ts) // validated
		rt.targets = append(rt.targets, &upstream{
			base: t.basePath,
			client: &fasthttp.HostClient{
				Addr:               t.addr,
				IsTLS:              t.tls,
				MaxConns:           maxConns,
				MaxConnWaitTimeout: rt.timeout,
				ReadTimeout:        rt.timeout,
				WriteTimeout:       rt.timeout,
				// Used for its connection pool only: requests go through
				// exchange, not Do.
				DialTimeout:                   lazyDeadlineDial(t.tls, deadlineSlack(rt.timeout)),
				DisablePathNormalizing:        true,
				DisableHeaderNamesNormalizing: true,
				NoDefaultUserAgentHeader:      true,
				SecureErrorLogMessage:         true,
			},
		})
	}
	return rt, nil
}

// Handler is the request handler, for serving from a fasthttp.Server of
// one's own (tests, benchmarks). Serve adds what a bare handler lacks: the
// server limits and timeouts from Options, the JSON answers to requests
// fasthttp cannot parse (400, 413, 431), PROXY protocol and TLS.
func (s *Server) Handler() fasthttp.RequestHandler { return s.handle }

// Serve accepts connections on ln until Shutdown. With ProxyProtocol, a
// PROXY header is read from trusted peers (optional for them) and a
// connection from anyone else that sends one is refused; with TLS the
// connection is then TLS.
func (s *Server) Serve(ln net.Listener) error {
	o := &s.opts
	ln = &lazyDeadlineListener{Listener: ln, slack: deadlineSlack(o.ReadTimeout, o.WriteTimeout, o.IdleTimeout)}
	if s.opts.ProxyProtocol {
		ln = &proxyproto.Listener{
			Listener:          ln,
			ReadHeaderTimeout: s.opts.ReadTimeout,
			ConnPolicy: func(o proxyproto.ConnPolicyOptions) (proxyproto.Policy, error) {
				if s.trusted(peerAddr(o.Upstream)) {
					return proxyproto.USE, nil
				}
				return proxyproto.REJECT, nil
			},
		}
	}
	if s.tls != nil {
		ln = tls.NewListener(ln, s.tls)
	}
	return s.srv.Serve(ln)
}

// Shutdown stops accepting connections and waits, until ctx ends, for
// in-flight requests to finish; idle keep-alive connections are closed.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.ShutdownWithContext(ctx)
	s.cancel()
	for _, rt := range s.all {
		for _, u := range rt.targets {
			u.client.CloseIdleConnections()
		}
	}
	return err
}

// handleParseError answers requests fasthttp could not read: over-long
// headers (431), over-long bodies (413), timeouts (408) and malformed
// framing (400). fasthttp closes the connection after it.
func (s *Server) handleParseError(ctx *fasthttp.RequestCtx, err error) {
	var e error
	var small *fasthttp.ErrSmallBuffer
	var ne net.Error
	switch {
	case errors.As(err, &small):
		e = errHeaderTooLarge
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		e = errBodyTooLarge
	case errors.As(err, &ne) && ne.Timeout():
		e = errRequestTimeout
	default:
		e = errBadRequest
	}
	var rid [32]byte
	newRequestID(&rid)
	s.m.noRoute.auth[resBadRequest][srcNone].Inc()
	s.writeDenial(ctx, e, rid[:], false)
	ctx.SetConnectionClose()
	s.armWrite(ctx, time.Now())
	if s.opts.AccessLog {
		s.opts.Logger.LogAttrs(context.Background(), slog.LevelInfo, "request",
			slog.Int("status", ctx.Response.StatusCode()),
			slog.String("error", statusFor(e).code),
			slog.String("client_ip", peerAddr(ctx.RemoteAddr()).String()),
			slog.String("request_id", string(rid[:])))
	}
}

// fasthttpLogger sends fasthttp's own messages (connection-level errors)
// to the logger at Debug: they are per-connection noise, not failures of
// keygate.
type fasthttpLogger struct{ l *slog.Logger }

// Printf logs only the format string: fasthttp's arguments can quote raw
// request bytes (a request line or URI with a key in it) even with
// SecureErrorLogMessage set, and no secret may reach a log line.
func (f fasthttpLogger) Printf(format string, _ ...any) {
	if f.l.Enabled(context.Background(), slog.LevelDebug) {
		f.l.Debug(format, "component", "fasthttp")
	}
}
