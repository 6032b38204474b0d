package admin

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/keygate/keygate/auth"
	"github.com/keygate/keygate/store"
)

// MaxBodyBytes is the largest request body the admin API reads (1 MiB);
// larger bodies get 413 body_too_large.
const MaxBodyBytes = 1 << 20

// Source is one place an admin credential may come from. Only header
// sources are honoured (Query is accepted so the configured auth.sources
// list can be passed as is, and ignored): a key in a URL ends up in logs,
// proxies and browser history.
type Source struct {
	// Header is the request header holding the key.
	Header string
	// Scheme, when set, is the Authorization-style scheme that must precede
	// the key ("ApiKey"), matched case-insensitively. Empty: the whole
	// header value is the key.
	Scheme string
	// Query is a query parameter; ignored by the admin API.
	Query string
}

// DefaultSources are the header sources of the default auth.sources
// (CONTRACT §2).
func DefaultSources() []Source {
	return []Source{
		{Header: "X-API-Key"},
		{Header: "Authorization", Scheme: "ApiKey"},
		{Header: "X-Authorization", Scheme: "ApiKey"},
		{Header: "appKey"},
	}
}

// Options configure the admin handler. Zero values are documented per
// field.
type Options struct {
	// Service manages keys. Required.
	Service *store.Service
	// Keys authenticates admin credentials, normally the cache in front of
	// the store, so admin keys are found, disabled and expired exactly as
	// proxy keys are. Required.
	Keys auth.KeyStore
	// KeyPrefix is the prefix of keygate's key format; "kg" when empty.
	KeyPrefix string
	// AcceptForeignKeys also accepts admin keys not in keygate's format
	// (imported ones, at least 24 characters), as auth.accept_foreign_keys
	// does for the proxy.
	AcceptForeignKeys bool
	// Sources are where an admin credential may come from, in order; only
	// header sources count. None (nil, or only query sources) means
	// DefaultSources, so the admin API stays usable.
	Sources []Source
	// Registerer receives keygate_admin_requests_total and keygate_keys.
	// Nil means the metrics are kept but not registered anywhere.
	Registerer prometheus.Registerer
	// Gatherer is what /metrics exposes. Nil means Registerer when that is
	// also a Gatherer (a *prometheus.Registry), else an empty exposition.
	Gatherer prometheus.Gatherer
	// Ready reports for /readyz: the detail of each part, and a non-nil
	// error when the process cannot serve (503). Nil means always ready.
	Ready func(ctx context.Context) (map[string]any, error)
	// UI serves the web console under /ui/ (without an admin key check:
	// the console authenticates its own API calls). Nil means /ui/ is 404.
	UI http.Handler
	// Logger gets one line per admin request (Info; Debug for /healthz,
	// /readyz and /metrics) and internal errors. Never a secret or a body.
	// Nil means no logging.
	Logger *slog.Logger
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Timeout bounds the store work of one request. Zero means 30s.
	Timeout time.Duration
	// KeysCountTTL is how long keygate_keys reuses one Service.Counts
	// result, so several scrapers cost one count query. Zero means 15s.
	KeysCountTTL time.Duration
}

// Handler is the admin listener's http.Handler.
type Handler struct {
	svc       *store.Service
	keys      auth.KeyStore
	prefix    string
	foreign   bool
	sources   []Source
	ready     func(ctx context.Context) (map[string]any, error)
	log       *slog.Logger
	now       func() time.Time
	timeout   time.Duration
	mux       *http.ServeMux
	metrics   *metrics
	gatherer  prometheus.Gatherer
	routes    []route
	routeByOp map[string]*route
}

var _ http.Handler = (*Handler)(nil)

// New returns the admin handler. Metric registration problems are logged,
// not fatal: the API works without them.
func New(o Options) *Handler {
	h := &Handler{
		svc:     o.Service,
		keys:    o.Keys,
		prefix:  o.KeyPrefix,
		foreign: o.AcceptForeignKeys,
		ready:   o.Ready,
		log:     o.Logger,
		now:     o.Now,
		timeout: o.Timeout,
	}
	if h.prefix == "" {
		h.prefix = "kg"
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	h.log = h.log.With("component", "admin")
	for _, s := range o.Sources {
		if s.Header != "" {
			h.sources = append(h.sources, s)
		}
	}
	if len(h.sources) == 0 {
		if len(o.Sources) > 0 {
			h.log.Warn("auth.sources has no header source; the admin API takes its key from the default headers (X-API-Key, Authorization: ApiKey)")
		}
		h.sources = DefaultSources()
	}
	if h.now == nil {
		h.now = time.Now
	}
	if h.timeout <= 0 {
		h.timeout = 30 * time.Second
	}
	ttl := o.KeysCountTTL
	if ttl <= 0 {
		ttl = 15 * time.Second
	}
	h.metrics = newMetrics(o.Registerer, h.svc, ttl, h.now, h.log)
	h.gatherer = o.Gatherer
	if h.gatherer == nil {
		if g, ok := o.Registerer.(prometheus.Gatherer); ok {
			h.gatherer = g
		} else {
			h.gatherer = prometheus.NewRegistry()
		}
	}

	h.routes = routeTable()
	h.routeByOp = make(map[string]*route, len(h.routes))
	h.mux = http.NewServeMux()
	byPattern := map[string][]*route{}
	var patterns []string
	for i := range h.routes {
		rt := &h.routes[i]
		h.routeByOp[rt.Op] = rt
		if _, ok := byPattern[rt.Path]; !ok {
			patterns = append(patterns, rt.Path)
		}
		byPattern[rt.Path] = append(byPattern[rt.Path], rt)
	}
	for _, p := range patterns {
		h.mux.Handle(p, h.dispatch(byPattern[p]))
	}
	if o.UI != nil {
		h.mux.Handle("/ui/", o.UI)
	}
	h.mux.Handle("/", h.dispatch(nil))
	return h
}

// ServeHTTP serves one admin request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// request is what a route handler gets besides the request itself.
type request struct {
	id    string
	actor store.Actor
}

// statusWriter records the status for the log line and the metric.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// dispatch serves every route of one path: it picks the route by method
// (405 with Allow otherwise; none at all is 404), authenticates, limits the
// body, runs the route, maps its error, counts and logs.
func (h *Handler) dispatch(rts []*route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		rq := &request{id: requestID(r)}
		sw.Header().Set("X-Request-Id", rq.id)
		sw.Header().Set("Cache-Control", "no-store")
		r.Body = http.MaxBytesReader(sw, r.Body, MaxBodyBytes)

		var rt *route
		for _, c := range rts {
			if c.Method == r.Method || (c.Method == http.MethodGet && r.Method == http.MethodHead) {
				rt = c
				break
			}
		}
		op := "other"
		var err error
		switch {
		case len(rts) == 0:
			err = errorf(http.StatusNotFound, "not_found", "no such admin endpoint")
		case rt == nil:
			allow := make([]string, 0, len(rts))
			for _, c := range rts {
				allow = append(allow, c.Method)
			}
			sw.Header().Set("Allow", strings.Join(allow, ", "))
			err = errorf(http.StatusMethodNotAllowed, "method_not_allowed", r.Method+" is not allowed here; use "+strings.Join(allow, " or "))
		default:
			op = rt.Op
			rq.actor.IP = peerIP(r)
			if !rt.Public {
				var k *auth.Key
				k, err = h.authenticate(r)
				if k != nil {
					rq.actor.KeyID = k.ID
				}
			}
			if err == nil {
				err = rt.handle(h, sw, r, rq)
			}
		}
		if err != nil {
			he := statusFor(err)
			if he.Status >= 500 && he.Err != nil {
				h.log.Error("admin request failed", "op", op, "request_id", rq.id, "err", he.Err)
			}
			writeError(sw, he, rq.id)
			sw.status = he.Status
		}
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		h.metrics.request(op, sw.status)
		level := slog.LevelInfo
		if rt != nil && rt.Public {
			level = slog.LevelDebug
		}
		// The route's pattern, never the raw path: a secret pasted where an
		// id belongs must not reach the log.
		pattern := ""
		if rt != nil {
			pattern = rt.Path
		}
		h.log.Log(r.Context(), level, "admin request",
			"op", op, "method", r.Method, "route", pattern, "status", sw.status,
			"duration_s", time.Since(start).Seconds(), "actor", rq.actor.KeyID,
			"ip", rq.actor.IP, "request_id", rq.id)
	})
}

// requestID keeps a sane incoming X-Request-Id (so a caller can correlate)
// and makes one otherwise.
func requestID(r *http.Request) string {
	if id := r.Header.Get("X-Request-Id"); id != "" && len(id) <= 128 {
		ok := true
		for i := 0; i < len(id); i++ {
			c := id[i]
			if c <= ' ' || c >= 0x7f || c == '"' || c == '\\' {
				ok = false
				break
			}
		}
		if ok {
			return id
		}
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// peerIP is the TCP peer: the admin listener is internal, and a client
// choosing its own audit IP through X-Forwarded-For would defeat the audit.
func peerIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func (h *Handler) serveMetrics(w http.ResponseWriter, r *http.Request, _ *request) error {
	promhttp.HandlerFor(h.gatherer, promhttp.HandlerOpts{}).ServeHTTP(w, r)
	return nil
}

func (h *Handler) serveHealthz(w http.ResponseWriter, _ *http.Request, _ *request) error {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

func (h *Handler) serveReadyz(w http.ResponseWriter, r *http.Request, _ *request) error {
	if h.ready == nil {
		writeJSON(w, http.StatusOK, map[string]any{"status": "ready"})
		return nil
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.timeout)
	defer cancel()
	detail, err := h.ready(ctx)
	body := map[string]any{"status": "ready", "checks": detail}
	status := http.StatusOK
	if err != nil {
		status = http.StatusServiceUnavailable
		body["status"] = "not_ready"
		body["error"] = err.Error()
	}
	writeJSON(w, status, body)
	return nil
}

func codeLabel(status int) string { return strconv.Itoa(status) }
