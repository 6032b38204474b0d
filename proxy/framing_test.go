package proxy

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/auth"
)

// TestFraming: requests that could be read two ways are refused with 400
// bad_request and a closed connection, and nothing reaches the upstream.
func TestFraming(t *testing.T) {
	f := newFixture(t, nil)
	key := f.keys.add(t, &auth.Key{ID: "key_f", User: "u", Enabled: true})
	h := "POST /x HTTP/1.1\r\nHost: a\r\nX-API-Key: " + key + "\r\n"
	tests := []struct{ name, req string }{
		{"CL and TE", h + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{"TE and CL", h + "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"},
		{"two different CL", h + "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"},
		{"two equal CL", h + "Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello"},
		{"TE identity", h + "Transfer-Encoding: identity\r\n\r\n"},
		{"TE gzip, chunked", h + "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"},
		{"TE chunked twice", h + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{"TE xchunked", h + "Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"},
		{"obs-fold", h + "X-Folded: a\r\n b\r\nContent-Length: 0\r\n\r\n"},
		{"obs-fold tab", h + "X-Folded: a\r\n\tX-Keygate-User: x\r\nContent-Length: 0\r\n\r\n"},
		{"space in name", h + "X Keygate-User: x\r\nContent-Length: 0\r\n\r\n"},
		{"space before colon", h + "Content-Length : 0\r\n\r\n"},
		{"control in name", h + "X-\x01Foo: x\r\nContent-Length: 0\r\n\r\n"},
		{"NUL in value", h + "X-Foo: a\x00b\r\nContent-Length: 0\r\n\r\n"},
		{"trailer announces key", h + "Transfer-Encoding: chunked\r\nTrailer: X-API-Key\r\n\r\n0\r\nX-API-Key: " + key + "\r\n\r\n"},
		{"trailer carries key", h + "Transfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\nx-api-key: " + key + "\r\n\r\n"},
		{"trailer carries identity", h + "Transfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\nX_Keygate_User: mallory\r\n\r\n"},
		{"trailer announces identity", h + "Transfer-Encoding: chunked\r\nTrailer: X-Foo, x-keygate-key-id\r\n\r\n0\r\n\r\n"},
		{"trailer carries authorization", h + "Transfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\nAuthorization: ApiKey " + key + "\r\n\r\n"},
		{"HTTP/1.1 without Host", "GET /x HTTP/1.1\r\nX-API-Key: " + key + "\r\n\r\n"},
		{"two Hosts", "GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\nX-API-Key: " + key + "\r\n\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := f.raw(tt.req)
			if r.status != 400 {
				t.Fatalf("status = %d, want 400 (%s)", r.status, r.body)
			}
			if code, _ := r.denial(t); code != "bad_request" {
				t.Errorf("error = %q, want bad_request", code)
			}
			if !r.closed {
				t.Errorf("connection left open")
			}
			if strings.Contains(r.body, key) {
				t.Errorf("body echoes the key")
			}
		})
	}
	if n := f.echo.Hits(); n != 0 {
		t.Errorf("%d malformed requests reached the upstream", n)
	}
	// Well-framed variants pass, the body intact.
	r := f.raw(h + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Other: fine\r\n\r\n")
	if e := r.upstream(t); e.Body != "hello" || len(e.Values("X-Other")) != 0 {
		t.Errorf("chunked: body %q, headers %q", e.Body, e.Headers)
	}
	r = f.raw(h + "Content-Length: 5\r\n\r\nhello")
	if e := r.upstream(t); e.Body != "hello" {
		t.Errorf("content-length: body %q", e.Body)
	}
	if strings.Contains(f.logs.String(), key) {
		t.Errorf("logs contain the key")
	}
}

// TestLimits: 431 for headers over MaxHeaderBytes, 413 for a body over
// MaxRequestBody declared up front (answered without reading it), a slow
// client cut by the read timeout, and the server keeps serving.
func TestLimits(t *testing.T) {
	f := newFixture(t, func(_ *fixture, o *Options) {
		o.MaxHeaderBytes = 1024
		o.MaxRequestBody = 1000
		o.ReadTimeout = 200 * time.Millisecond
	})
	key := f.keys.add(t, &auth.Key{ID: "key_l", User: "u", Enabled: true})

	r := f.get("/x", "X-API-Key: "+key, "X-Big: "+strings.Repeat("a", 1100))
	if code, _ := r.denial(t); r.status != 431 || code != "bad_request" {
		t.Errorf("headers over the limit: %d %s, want 431 bad_request", r.status, code)
	}
	r = f.get("/x", "X-API-Key: "+key, "X-Big: "+strings.Repeat("a", 20000))
	if code, _ := r.denial(t); r.status != 431 || code != "bad_request" {
		t.Errorf("headers over the read buffer: %d %s, want 431 bad_request", r.status, code)
	}
	r = f.get("/x", "X-API-Key: "+key, "X-Big: "+strings.Repeat("a", 900))
	if r.status != 200 {
		t.Errorf("headers under the limit: %d", r.status)
	}

	// The body is never sent: the answer must come from the header alone.
	r = f.raw("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 100000000\r\n\r\n")
	if code, _ := r.denial(t); r.status != 413 || code != "body_too_large" {
		t.Errorf("declared body over the limit: %d %s, want 413 body_too_large", r.status, code)
	}
	r = f.raw("POST /x HTTP/1.1\r\nHost: a\r\nX-API-Key: " + key + "\r\nTransfer-Encoding: chunked\r\n\r\n" +
		"3e8\r\n" + strings.Repeat("b", 1000) + "\r\n1\r\nc\r\n0\r\n\r\n")
	if code, _ := r.denial(t); r.status != 413 || code != "body_too_large" {
		t.Errorf("chunked body over the limit: %d %s, want 413 body_too_large", r.status, code)
	}

	// A client that never finishes its request is disconnected by the
	// server (the test waits for that, whatever it takes).
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Write([]byte("GET /x HTTP/1.1\r\nHost: a\r\nX-API-Key: ")); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	var got []byte
	for {
		b, err := br.ReadByte()
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("slow client was not disconnected")
			}
			break
		}
		got = append(got, b)
	}
	if len(got) > 0 && !strings.Contains(string(got), " 408 ") {
		t.Errorf("slow client got %q", got)
	}

	if hits := f.echo.Hits(); hits != 1 {
		t.Errorf("upstream hits = %d, want 1 (only the request under the limit)", hits)
	}
	if r := f.get("/x", "X-API-Key: "+key); r.status != 200 {
		t.Errorf("after all that, status %d", r.status)
	}
}
