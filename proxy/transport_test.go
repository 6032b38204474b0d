package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// TestResponseBodies: bodies of every size and framing reach the client
// whole, whether read whole (Content-Length up to maxBufferedBody) or
// streamed (larger, or of unknown length), and the upstream connection is
// reused afterwards.
func TestResponseBodies(t *testing.T) {
	var conns atomic.Int32
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{
		ConnState: func(_ net.Conn, s fasthttp.ConnState) {
			if s == fasthttp.StateNew {
				conns.Add(1)
			}
		},
		Handler: func(ctx *fasthttp.RequestCtx) {
			n, _ := strconv.Atoi(string(ctx.QueryArgs().Peek("n")))
			body := bytes.Repeat([]byte("0123456789abcdef"), n/16+1)[:n]
			if ctx.QueryArgs().Has("chunked") {
				ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
					for len(body) > 0 {
						k := min(len(body), 1000)
						w.Write(body[:k]) //nolint:errcheck
						w.Flush()         //nolint:errcheck
						body = body[k:]
					}
				})
				return
			}
			ctx.SetBody(body)
		},
	}
	go srv.Serve(ln) //nolint:errcheck
	t.Cleanup(func() { srv.Shutdown() })

	f := newFixture(t, func(_ *fixture, o *Options) {
		o.Routes = []Route{{Name: "r", Targets: []string{"http://" + ln.Addr().String()}, Auth: AuthNone}}
	})
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second)) // a guard against a hung test
	br := bufio.NewReader(c)
	sizes := []int{0, 1, 11, maxBufferedBody - 1, maxBufferedBody, maxBufferedBody + 1, 1 << 20}
	for _, chunked := range []bool{false, true} {
		for _, n := range sizes {
			target := fmt.Sprintf("/x?n=%d", n)
			if chunked {
				target += "&chunked"
			}
			fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: a\r\n\r\n", target)
			r := readResponse(t, br, c)
			want := string(bytes.Repeat([]byte("0123456789abcdef"), n/16+1)[:n])
			if r.status != 200 || r.body != want {
				t.Fatalf("%s: status %d, body of %d bytes, want %d", target, r.status, len(r.body), n)
			}
			if r.closed {
				t.Fatalf("%s: client connection closed", target)
			}
		}
	}
	// One client connection, one request at a time: one upstream
	// connection serves them all.
	if n := conns.Load(); n != 1 {
		t.Errorf("upstream connections = %d, want 1 (reused)", n)
	}
}

// rawUpstream answers every request on a connection with resp.
func rawUpstream(t *testing.T, resp string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
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
					if _, err := io.WriteString(c, resp); err != nil {
						return
					}
				}
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}

// TestResponseTrailers: trailers after a streamed chunked body reach the
// client.
func TestResponseTrailers(t *testing.T) {
	up := rawUpstream(t, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n"+
		"5\r\nhello\r\n6\r\n world\r\n0\r\nX-Checksum: abc\r\n\r\n")
	f := newFixture(t, func(_ *fixture, o *Options) {
		o.Routes = []Route{{Name: "r", Targets: []string{up}, Auth: AuthNone}}
	})
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second)) // a guard against a hung test
	io.WriteString(c, "GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil || string(body) != "hello world" {
		t.Fatalf("body %q, %v", body, err)
	}
	if v := resp.Trailer.Get("X-Checksum"); v != "abc" {
		t.Errorf("trailer X-Checksum = %q, want abc (trailers %v)", v, resp.Trailer)
	}
}

// TestResponseTruncated: an upstream that closes in the middle of a large
// body does not leave the client waiting for the rest on a connection
// that looks healthy.
func TestResponseTruncated(t *testing.T) {
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
				if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
					return
				}
				fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", 1<<20, strings.Repeat("x", 1000))
			}()
		}
	}()
	f := newFixture(t, func(_ *fixture, o *Options) {
		o.Routes = []Route{{Name: "r", Targets: []string{"http://" + ln.Addr().String()}, Auth: AuthNone}}
	})
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second)) // a guard against a hung test
	io.WriteString(c, "GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
	// The head may or may not have been flushed before the proxy gave up;
	// either way the client must see an error, not a whole response.
	if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil {
		body, err := io.ReadAll(resp.Body)
		if err == nil || len(body) >= 1<<20 {
			t.Fatalf("read %d bytes, err %v; want a short body and an error", len(body), err)
		}
	}
}

// TestHeadLargeLength: a HEAD answered with a large Content-Length and no
// body is passed on without waiting for a body.
func TestHeadLargeLength(t *testing.T) {
	up := rawUpstream(t, "HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n")
	f := newFixture(t, func(_ *fixture, o *Options) {
		o.Routes = []Route{{Name: "r", Targets: []string{up}, Auth: AuthNone}}
	})
	for range 2 {
		r := f.raw("HEAD /x HTTP/1.1\r\nHost: a\r\n\r\n")
		if r.status != 200 || r.header.Get("Content-Length") != "1000000" || r.body != "" {
			t.Fatalf("HEAD: %d %v %q", r.status, r.header, r.body)
		}
	}
}

// TestSmallBodyTruncated: an upstream that closes before the small body it
// announced is a 502, and the request is not sent again.
func TestSmallBodyTruncated(t *testing.T) {
	var hits atomic.Int32
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
				if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
					return
				}
				hits.Add(1)
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this")
			}()
		}
	}()
	f := newFixture(t, func(_ *fixture, o *Options) {
		o.Routes = []Route{{Name: "r", Targets: []string{"http://" + ln.Addr().String()}, Auth: AuthNone}}
	})
	r := f.get("/x")
	if code, _ := r.denial(t); r.status != 502 || code != "upstream_unavailable" {
		t.Errorf("status %d %s, want 502 upstream_unavailable", r.status, code)
	}
	if n := hits.Load(); n != 1 {
		t.Errorf("upstream saw the request %d times, want 1", n)
	}
}

// TestResponseUntilClose: a body framed by the upstream closing its
// connection reaches the client whole, and the next request gets a fresh
// upstream connection.
func TestResponseUntilClose(t *testing.T) {
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
				if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
					return
				}
				io.WriteString(c, "HTTP/1.1 200 OK\r\n\r\n"+strings.Repeat("z", 50000))
			}()
		}
	}()
	f := newFixture(t, func(_ *fixture, o *Options) {
		o.Routes = []Route{{Name: "r", Targets: []string{"http://" + ln.Addr().String()}, Auth: AuthNone}}
	})
	for range 3 {
		if r := f.get("/x"); r.status != 200 || r.body != strings.Repeat("z", 50000) {
			t.Fatalf("status %d, %d bytes", r.status, len(r.body))
		}
	}
}
