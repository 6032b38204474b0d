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

func newAuthFixture(tb testing.TB) *authFixture {
	keys := newMapKeys()
	s, err := New(Options{
		Keys:   keys,
		Routes: []Route{{Name: "default", Targets: []string{"http://127.0.0.1:1"}}},
	})
	if err != nil {
		tb.Fatal(err)
	}
	secret := keys.add(tb, &auth.Key{ID: "key_b", User: "u", Enabled: true, Scopes: []string{"default"},
		IPAllowlist: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	req := &fasthttp.Request{}
	req.Header.DisableNormalizing()
	req.SetRequestURI("/orders/1")
	req.Header.SetHost("api.example")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "bench")
	req.Header.Set("Authorization", "ApiKey "+secret)
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
// counts client, proxy and upstream together.
func BenchmarkProxyEndToEnd(b *testing.B) {
	upLn := fasthttputil.NewInmemoryListener()
	up := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("application/json")
		ctx.SetBodyString(`{"ok":true}`)
	}}
	go up.Serve(upLn) //nolint:errcheck
	defer up.Shutdown()

	keys := newMapKeys()
	s, err := New(Options{
		Keys:             keys,
		StripCredentials: true,
		Routes:           []Route{{Name: "default", Targets: []string{"http://upstream.invalid"}}},
	})
	if err != nil {
		b.Fatal(err)
	}
	s.all[0].targets[0].client.Dial = func(string) (net.Conn, error) { return upLn.Dial() }
	secret := keys.add(b, &auth.Key{ID: "key_e", Name: "e", User: "u", Enabled: true})

	ln := fasthttputil.NewInmemoryListener()
	go s.Serve(ln) //nolint:errcheck
	defer s.Shutdown(context.Background())

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
