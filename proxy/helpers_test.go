package proxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/auth"
	"github.com/keygate/keygate/internal/echo"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// mapKeys is a KeyStore over maps that counts lookups, so tests can prove
// a request never reached the store.
type mapKeys struct {
	mu      sync.Mutex
	byHash  map[[32]byte]*auth.Key
	byID    map[string]*auth.Key
	lookups atomic.Int64
	down    atomic.Bool
}

func newMapKeys() *mapKeys {
	return &mapKeys{byHash: map[[32]byte]*auth.Key{}, byID: map[string]*auth.Key{}}
}

func (m *mapKeys) LookupKey(_ context.Context, d [32]byte) (*auth.Key, error) {
	m.lookups.Add(1)
	if m.down.Load() {
		return nil, fmt.Errorf("lookup: %w", auth.ErrStoreUnavailable)
	}
	m.mu.Lock()
	k, ok := m.byHash[d]
	m.mu.Unlock()
	if !ok {
		return nil, auth.ErrKeyNotFound
	}
	return k, nil
}

func (m *mapKeys) LookupKeyID(_ context.Context, id string) (*auth.Key, error) {
	m.lookups.Add(1)
	if m.down.Load() {
		return nil, auth.ErrStoreUnavailable
	}
	m.mu.Lock()
	k, ok := m.byID[id]
	m.mu.Unlock()
	if !ok {
		return nil, auth.ErrKeyNotFound
	}
	return k, nil
}

// add stores k under a fresh secret and returns the secret.
func (m *mapKeys) add(t testing.TB, k *auth.Key) string {
	t.Helper()
	secret, err := auth.NewSecret("kg")
	if err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	m.byHash[auth.Digest([]byte(secret))] = k
	m.byID[k.ID] = k
	m.mu.Unlock()
	return secret
}

// fakeSessions uses "id.epoch" as the cookie value.
type fakeSessions struct{}

func (fakeSessions) CookieName() string { return "kgs" }
func (fakeSessions) Verify(dst, v []byte, _ time.Time) ([]byte, int64, error) {
	id, ep, ok := strings.Cut(string(v), ".")
	if !ok {
		return dst, 0, errors.New("bad cookie")
	}
	n, err := strconv.ParseInt(ep, 10, 64)
	return append(dst, id...), n, err
}
func (fakeSessions) Issue(k *auth.Key, _ time.Time) (string, error) {
	return fmt.Sprintf("kgs=%s.%d; Path=/; HttpOnly", k.ID, k.SessionEpoch), nil
}
func (fakeSessions) Clear() string { return "kgs=; Path=/; Max-Age=0" }

// denyAll is a RateLimiter that refuses every request.
type denyAll struct{}

func (denyAll) Allow(*auth.Key, time.Time) (bool, time.Duration) {
	return false, 1500 * time.Millisecond
}

// lockedBuffer collects log output from concurrent handlers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// fixture is a proxy in front of an echo upstream on real sockets.
type fixture struct {
	t     testing.TB
	keys  *mapKeys
	echo  *echo.Server
	up    string // upstream base URL
	srv   *Server
	addr  string
	reg   *prometheus.Registry
	logs  *lockedBuffer
	now   time.Time
	clock atomic.Pointer[time.Time]
}

func startEcho(t testing.TB, delay time.Duration) (*echo.Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &echo.Server{Delay: delay}
	go e.Serve(ln) //nolint:errcheck // ends with Close
	t.Cleanup(func() { e.Close() })
	return e, "http://" + ln.Addr().String()
}

// newFixture starts an echo upstream and a proxy; edit adjusts the
// options (Routes already point at the echo server).
func newFixture(t testing.TB, edit func(f *fixture, o *Options)) *fixture {
	t.Helper()
	f := &fixture{t: t, keys: newMapKeys(), reg: prometheus.NewRegistry(), logs: &lockedBuffer{}}
	f.now = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	f.clock.Store(&f.now)
	f.echo, f.up = startEcho(t, 0)
	o := Options{
		Keys:             f.keys,
		StripCredentials: true,
		Routes: []Route{
			{Name: "default", PathPrefix: "/", Targets: []string{f.up}},
			{Name: "pub", PathPrefix: "/pub", Targets: []string{f.up}, Auth: AuthNone},
			{Name: "opt", PathPrefix: "/opt", Targets: []string{f.up}, Auth: AuthOptional},
			{Name: "admin", PathPrefix: "/admin", Targets: []string{f.up}},
			{Name: "strip", PathPrefix: "/strip/", Targets: []string{f.up + "/base"}, StripPrefix: true},
		},
		Registerer: f.reg,
		Logger:     slog.New(slog.NewJSONHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		AccessLog:  true,
		Now:        func() time.Time { return *f.clock.Load() },
	}
	if edit != nil {
		edit(f, &o)
	}
	srv, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	f.srv = srv
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = ln.Addr().String()
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		if err := srv.Shutdown(context.Background()); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return f
}

// response is a parsed proxy response.
type response struct {
	status int
	header http.Header
	body   string
	closed bool // the server closed the connection after it
}

// denial decodes a JSON denial body.
func (r response) denial(t *testing.T) (code, requestID string) {
	t.Helper()
	var d struct {
		Error, Message string
		RequestID      string `json:"request_id"`
	}
	if err := json.Unmarshal([]byte(r.body), &d); err != nil {
		t.Fatalf("denial body %q: %v", r.body, err)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("denial Content-Type = %q", ct)
	}
	if d.Message == "" || d.RequestID == "" {
		t.Errorf("denial %q lacks message or request_id", r.body)
	}
	return d.Error, d.RequestID
}

// upstream decodes what the echo server reported.
func (r response) upstream(t *testing.T) echo.Request {
	t.Helper()
	var e echo.Request
	if r.status != 200 {
		t.Fatalf("status %d, body %s; want 200 from upstream", r.status, r.body)
	}
	if err := json.Unmarshal([]byte(r.body), &e); err != nil {
		t.Fatalf("upstream body %q: %v", r.body, err)
	}
	return e
}

// raw sends raw bytes on a new connection and reads one response.
func (f *fixture) raw(req string) response {
	f.t.Helper()
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		f.t.Fatal(err)
	}
	defer c.Close()
	// A guard against a hung test, not a timing assertion.
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		f.t.Fatal(err)
	}
	br := bufio.NewReader(c)
	method, _, _ := strings.Cut(req, " ")
	return readResponseTo(f.t, br, method)
}

func readResponse(t testing.TB, br *bufio.Reader, _ net.Conn) response {
	t.Helper()
	return readResponseTo(t, br, "GET")
}

func readResponseTo(t testing.TB, br *bufio.Reader, method string) response {
	t.Helper()
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("reading response: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	r := response{status: resp.StatusCode, header: resp.Header, body: string(body)}
	if resp.Close {
		// Confirm the server really closes: the next read sees EOF.
		_, err := br.ReadByte()
		r.closed = err != nil
	}
	return r
}

// get sends a GET for target with the given header lines.
func (f *fixture) get(target string, headers ...string) response {
	f.t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: api.example\r\n", target)
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("\r\n")
	return f.raw(b.String())
}

// metrics returns the registry's exposition text.
func (f *fixture) metrics() string {
	f.t.Helper()
	mfs, err := f.reg.Gather()
	if err != nil {
		f.t.Fatal(err)
	}
	var b strings.Builder
	for _, mf := range mfs {
		fmt.Fprintln(&b, mf.String())
	}
	return b.String()
}

func (f *fixture) authCount(result, source, route string) float64 {
	return testutil.ToFloat64(f.srv.m.authRequests.WithLabelValues(result, source, route))
}

func mustPrefix(t testing.TB, s string) netip.Prefix {
	t.Helper()
	p, err := netip.ParsePrefix(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
