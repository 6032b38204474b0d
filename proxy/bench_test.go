package proxy

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/keygate/keygate/auth"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"
)

// authFixture is a Server and a request carrying a known key, for the
// authentication hot path alone.
type authFixture struct {
	s      *Server
	st     *reqState
	req    *fasthttp.Request
	rt     *route
	client netip.Addr
	now    time.Time
}

func newAuthFixture(tb testing.TB) *authFixture { return newAuthFixtureWith(tb, authPlain) }

// What the benchmarked request authenticates with.
const (
	authPlain     = iota // a key, no rate limit
	authRateLimit        // a key with its own rate limit (never reached)
	authSession          // a signed session cookie, with a rate limit
)

func newAuthFixtureWith(tb testing.TB, mode int) *authFixture {
	keys := newMapKeys()
	o := Options{
		Keys:   keys,
		Routes: []Route{{Name: "default", Targets: []string{"http://127.0.0.1:1"}}},
	}
	k := &auth.Key{ID: "key_b", User: "u", Enabled: true, Scopes: []string{"default"},
		IPAllowlist: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, SessionsAllowed: true}
	var signer *auth.SessionSigner
	if mode != authPlain {
		k.RateLimit = &auth.RateLimit{RPS: 1e9, Burst: 1e9}
		o.RateLimiter = KeyLimiter{Limiter: auth.NewLimiter(0, 0)}
	}
	if mode == authSession {
		var err error
		if signer, err = auth.NewSessionSigner([][]byte{[]byte("0123456789abcdef0123456789abcdef")}); err != nil {
			tb.Fatal(err)
		}
		o.Sessions = &SignedSessions{Signer: signer, TTL: time.Hour}
	}
	s, err := New(o)
	if err != nil {
		tb.Fatal(err)
	}
	secret := keys.add(tb, k)
	req := &fasthttp.Request{}
	req.Header.DisableNormalizing()
	req.SetRequestURI("/orders/1")
	req.Header.SetHost("api.example")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "bench")
	if mode == authSession {
		now := time.Now()
		v, err := signer.AppendCookieValue(nil, k.ID, k.SessionEpoch, now, now.Add(time.Hour))
		if err != nil {
			tb.Fatal(err)
		}
		req.Header.SetCookie(s.cookieName, string(v))
	} else {
		req.Header.Set("Authorization", "ApiKey "+secret)
	}
	return &authFixture{
		s: s, st: newReqState(), req: req, rt: s.all[0],
		client: netip.MustParseAddr("10.1.2.3"), now: time.Now(),
	}
}

// once runs extraction, format check, digest, lookup and policy.
func (a *authFixture) once() error {
	d, err := a.s.authenticate(context.Background(), a.st, a.req, nil, a.rt, a.client, a.now)
	if err == nil && d.key == nil {
		return auth.ErrMissingKey
	}
	return err
}

func BenchmarkAuthDecisionHit(b *testing.B) {
	a := newAuthFixture(b)
	if err := a.once(); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := a.once(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAuthDecisionRateLimitedHit adds a per-key token bucket.
func BenchmarkAuthDecisionRateLimitedHit(b *testing.B) { benchAuth(b, authRateLimit) }

// BenchmarkAuthDecisionSessionHit authenticates by a signed session
// cookie (HMAC check, lookup by key id, epoch) with a rate limit.
func BenchmarkAuthDecisionSessionHit(b *testing.B) { benchAuth(b, authSession) }

func benchAuth(b *testing.B, mode int) {
	a := newAuthFixtureWith(b, mode)
	if err := a.once(); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := a.once(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAuthDecisionHitParallel is the same decision from every CPU at
// once, each with its own request, sharing the Server and KeyStore.
func BenchmarkAuthDecisionHitParallel(b *testing.B) {
	a := newAuthFixture(b)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		mine := *a
		mine.st = newReqState()
		mine.req = &fasthttp.Request{}
		a.req.CopyTo(mine.req)
		for pb.Next() {
			if err := mine.once(); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkProxyEndToEnd sends keyed requests through the real server and
// HostClient over in-memory connections to a trivial upstream; allocs/op
// counts client, proxy and upstream together. BenchmarkBareProxyEndToEnd
// is the same with bench/bareproxy's handler in keygate's place: the
// ratio of the two is keygate's own cost, without the kernel's.
func BenchmarkProxyEndToEnd(b *testing.B) {
	upLn := startBenchUpstream(b)
	keys := newMapKeys()
	s, err := New(Options{
		Keys:             keys,
		StripCredentials: true,
		Routes:           []Route{{Name: "default", Targets: []string{"http://upstream.invalid"}}},
	})
	if err != nil {
		b.Fatal(err)
	}
	s.all[0].targets[0].client.DialTimeout = func(string, time.Duration) (net.Conn, error) {
		c, err := upLn.Dial()
		return &lazyDeadlineConn{Conn: c, slack: time.Second.Nanoseconds()}, err // as lazyDeadlineDial
	}
	secret := keys.add(b, &auth.Key{ID: "key_e", Name: "e", User: "u", Enabled: true})

	ln := fasthttputil.NewInmemoryListener()
	go s.Serve(ln) //nolint:errcheck
	defer s.Shutdown(context.Background())
	benchClient(b, ln, secret)
}

func BenchmarkBareProxyEndToEnd(b *testing.B) {
	upLn := startBenchUpstream(b)
	client := &fasthttp.HostClient{
		Addr: "upstream.invalid", MaxConns: 1024, DisablePathNormalizing: true,
		ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second,
		Dial: func(string) (net.Conn, error) { return upLn.Dial() },
	}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) { // bench/bareproxy
		req := &ctx.Request
		req.Header.Del("Connection")
		if err := client.Do(req, &ctx.Response); err != nil {
			ctx.Error("upstream unavailable", fasthttp.StatusBadGateway)
			return
		}
		ctx.Response.Header.Del("Connection")
	}}
	ln := fasthttputil.NewInmemoryListener()
	go srv.Serve(ln) //nolint:errcheck
	defer srv.Shutdown()
	benchClient(b, ln, "kg_unused")
}

func startBenchUpstream(b *testing.B) *fasthttputil.InmemoryListener {
	upLn := fasthttputil.NewInmemoryListener()
	up := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("application/json")
		ctx.SetBodyString(`{"ok":true}`)
	}}
	go up.Serve(upLn) //nolint:errcheck
	b.Cleanup(func() { up.Shutdown() })
	return upLn
}

func benchClient(b *testing.B, ln *fasthttputil.InmemoryListener, secret string) {
	client := &fasthttp.HostClient{Addr: "proxy", Dial: func(string) (net.Conn, error) { return ln.Dial() }}
	req, resp := &fasthttp.Request{}, &fasthttp.Response{}
	req.SetRequestURI("http://api.example/orders/1?x=1")
	req.Header.Set("X-API-Key", secret)
	b.ReportAllocs()
	for b.Loop() {
		if err := client.Do(req, resp); err != nil {
			b.Fatal(err)
		}
		if resp.StatusCode() != 200 {
			b.Fatalf("status %d: %s", resp.StatusCode(), resp.Body())
		}
	}
}
