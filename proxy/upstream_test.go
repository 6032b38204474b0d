package proxy

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/auth"
	"github.com/valyala/fasthttp"
)

func serveUpstream(t *testing.T, h fasthttp.RequestHandler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: h}
	go srv.Serve(ln) //nolint:errcheck
	t.Cleanup(func() { srv.Shutdown() })
	return "http://" + ln.Addr().String()
}

// TestResponseHopByHopRaw: the same, with names in odd letter cases, from
// an upstream that writes its response by hand.
func TestResponseHopByHopRaw(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					io.WriteString(c, "HTTP/1.1 200 OK\r\nconnection: x-internal, keep-alive\r\nx-internal: secret\r\n"+
						"keep-alive: timeout=1\r\nUPGRADE: h2c\r\nproxy-authenticate: Basic\r\nx-public: yes\r\nx-request-id: up-1\r\n"+
						"Content-Length: 2\r\n\r\nhi")
				}
			}()
		}
	}()
	f := newFixture(t, func(_ *fixture, o *Options) {
		o.Routes = []Route{{Name: "r", Targets: []string{"http://" + ln.Addr().String()}, Auth: AuthNone}}
	})
	for range 2 {
		r := f.get("/x")
		if r.status != 200 || r.body != "hi" || r.header.Get("X-Public") != "yes" {
			t.Fatalf("%d %q %v", r.status, r.body, r.header)
		}
		for _, h := range []string{"X-Internal", "Keep-Alive", "Proxy-Authenticate", "Upgrade"} {
			if v := r.header.Get(h); v != "" {
				t.Errorf("response header %s: %q forwarded", h, v)
			}
		}
		if ids := r.header.Values("X-Request-Id"); len(ids) != 1 || ids[0] != "up-1" {
			t.Errorf("X-Request-Id = %q, want the upstream's alone", ids)
		}
	}
}

// TestResponseHopByHop: the upstream's hop-by-hop headers, and those it
// names in Connection, do not reach the client, and an upstream
// "Connection: close" does not close the client's connection.
func TestResponseHopByHop(t *testing.T) {
	up := serveUpstream(t, func(ctx *fasthttp.RequestCtx) {
		h := &ctx.Response.Header
		h.Set("Connection", "X-Internal")
		h.Set("X-Internal", "secret")
		h.Set("Keep-Alive", "timeout=1")
		h.Set("Proxy-Authenticate", "Basic")
		h.Set("Upgrade", "h2c")
		h.Set("X-Public", "yes")
		ctx.SetBodyString("hi")
	})
	f := newFixture(t, func(_ *fixture, o *Options) {
		o.Routes = []Route{{Name: "r", Targets: []string{up}, Auth: AuthNone}}
	})
	for _, method := range []string{"GET", "HEAD"} {
		r := f.raw(method + " /x HTTP/1.1\r\nHost: a\r\n\r\n")
		if r.status != 200 || r.header.Get("X-Public") != "yes" {
			t.Fatalf("%s: %d %v", method, r.status, r.header)
		}
		for _, h := range []string{"X-Internal", "Keep-Alive", "Proxy-Authenticate", "Upgrade"} {
			if v := r.header.Get(h); v != "" {
				t.Errorf("%s: response header %s: %q forwarded", method, h, v)
			}
		}
		if r.closed {
			t.Errorf("%s: client connection closed", method)
		}
		if r.header.Get("X-Request-Id") == "" {
			t.Errorf("%s: no X-Request-Id on the response", method)
		}
	}
}

// TestUpstreamReset: an upstream that drops the connection is 502
// upstream_unavailable.
func TestUpstreamReset(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			buf := make([]byte, 4096)
			c.Read(buf)
			if tc, ok := c.(*net.TCPConn); ok {
				tc.SetLinger(0) // RST
			}
			c.Close()
		}
	}()
	f := newFixture(t, func(_ *fixture, o *Options) {
		o.Routes = []Route{{Name: "r", Targets: []string{"http://" + ln.Addr().String()}, Auth: AuthNone}}
	})
	r := f.raw("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi")
	if code, _ := r.denial(t); r.status != 502 || code != "upstream_unavailable" {
		t.Errorf("reset upstream: %d %s, want 502 upstream_unavailable", r.status, code)
	}
}

// TestShutdownDrains: a request in flight when Shutdown starts still gets
// its upstream response.
func TestShutdownDrains(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	up := serveUpstream(t, func(ctx *fasthttp.RequestCtx) {
		started <- struct{}{}
		<-release
		ctx.SetBodyString("done")
	})
	keys := newMapKeys()
	s, err := New(Options{Keys: keys, Routes: []Route{{Name: "r", Targets: []string{up}}}})
	if err != nil {
		t.Fatal(err)
	}
	key := keys.add(t, &auth.Key{ID: "key_sd", User: "u", Enabled: true})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()

	c := &fasthttp.HostClient{Addr: ln.Addr().String()}
	type result struct {
		status int
		body   string
		err    error
	}
	got := make(chan result, 1)
	go func() {
		req, resp := &fasthttp.Request{}, &fasthttp.Response{}
		req.SetRequestURI("http://" + ln.Addr().String() + "/x")
		req.Header.Set("X-API-Key", key)
		err := c.Do(req, resp)
		got <- result{resp.StatusCode(), string(resp.Body()), err}
	}()
	<-started
	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(context.Background()) }()
	// Shutdown must wait for the request; give it a moment to not wait.
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned (%v) with a request in flight", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	r := <-got
	if r.err != nil || r.status != 200 || r.body != "done" {
		t.Errorf("in-flight request: %d %q %v", r.status, r.body, r.err)
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve: %v", err)
	}
}

// TestPanicIsContained: a panicking hook costs its request a 500, not the
// process its other connections.
func TestPanicIsContained(t *testing.T) {
	f := newFixture(t, func(_ *fixture, o *Options) {
		o.OnAuthenticated = func(k *auth.Key, _ bool, _ time.Time) {
			if k.ID == "key_boom" {
				panic("boom")
			}
		}
	})
	boom := f.keys.add(t, &auth.Key{ID: "key_boom", User: "u", Enabled: true})
	fine := f.keys.add(t, &auth.Key{ID: "key_fine", User: "u", Enabled: true})
	r := f.get("/x", "X-API-Key: "+boom)
	if code, _ := r.denial(t); r.status != 500 || code != "internal_error" || !r.closed {
		t.Errorf("panicking request: %d %s closed=%v", r.status, code, r.closed)
	}
	if r := f.get("/x", "X-API-Key: "+fine); r.status != 200 {
		t.Errorf("after a panic: %d", r.status)
	}
	if !strings.Contains(f.logs.String(), "boom") || strings.Contains(f.logs.String(), boom) {
		t.Errorf("panic not logged, or logged with the key")
	}
}

// TestResponseRequestIDNamedInConnection: an upstream X-Request-Id that its
// Connection header names is hop-by-hop, so the client gets the proxy's.
func TestResponseRequestIDNamedInConnection(t *testing.T) {
	up := rawUpstream(t, "HTTP/1.1 200 OK\r\nConnection: X-Request-Id\r\nX-Request-Id: up-1\r\nContent-Length: 2\r\n\r\nhi")
	f := newFixture(t, func(_ *fixture, o *Options) {
		o.Routes = []Route{{Name: "r", Targets: []string{up}, Auth: AuthNone}}
	})
	r := f.get("/x")
	if ids := r.header.Values("X-Request-Id"); r.status != 200 || len(ids) != 1 || ids[0] == "up-1" || !validRequestID([]byte(ids[0])) {
		t.Fatalf("status %d, X-Request-Id %q: want one id of the proxy's", r.status, ids)
	}
}

// TestStaleKeepAliveRetry: an upstream that closes a kept-alive
// connection without saying so (after answering one request on it) costs
// an idempotent request nothing: it is sent again on a new connection. A
// POST is not sent twice; it gets 502.
func TestStaleKeepAliveRetry(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var conns, requests atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func(c net.Conn) {
				defer c.Close()
				br := bufio.NewReader(c)
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				io.Copy(io.Discard, req.Body)
				requests.Add(1)
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				// Keep-alive promised; close once the next request has
				// been sent on this connection, unanswered.
				br.ReadByte()
			}(c)
		}
	}()
	f := newFixture(t, func(_ *fixture, o *Options) {
		o.Routes = []Route{{Name: "r", Targets: []string{"http://" + ln.Addr().String()}, Auth: AuthNone}}
	})
	for i := 0; i < 3; i++ {
		if r := f.raw("GET /x HTTP/1.1\r\nHost: a\r\n\r\n"); r.status != 200 || r.body != "ok" {
			t.Fatalf("GET %d: %d %q, want 200 ok", i, r.status, r.body)
		}
	}
	if n := requests.Load(); n != 3 {
		t.Errorf("upstream answered %d requests, want 3", n)
	}
	if n := conns.Load(); n < 3 {
		t.Errorf("upstream saw %d connections, want ≥ 3 (each reuse fails and is retried)", n)
	}
	r := f.raw("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi")
	if code, _ := r.denial(t); r.status != 502 || code != "upstream_unavailable" {
		t.Errorf("POST on a stale connection: %d %s, want 502 upstream_unavailable (not retried)", r.status, code)
	}
	if n := requests.Load(); n != 3 {
		t.Errorf("upstream answered %d requests, want still 3", n)
	}
}

// TestRoundRobin: requests are spread over a route's targets in turn.
func TestRoundRobin(t *testing.T) {
	var hits [3]atomic.Int32
	var urls []string
	for i := range hits {
		urls = append(urls, serveUpstream(t, func(ctx *fasthttp.RequestCtx) { hits[i].Add(1) }))
	}
	f := newFixture(t, func(_ *fixture, o *Options) {
		o.Routes = []Route{{Name: "rr", Targets: urls, Auth: AuthNone}}
	})
	for i := range 30 {
		if r := f.get("/x"); r.status != 200 {
			t.Fatalf("request %d: %d", i, r.status)
		}
	}
	for i := range hits {
		if n := hits[i].Load(); n != 10 {
			t.Errorf("target %d served %d of 30 requests, want 10", i, n)
		}
	}
}
