package proxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/auth"
	"github.com/valyala/fasthttp"
)

// The server's timeouts, through real sockets (connState, armWrite). Each
// test checks that the connection is cut, and not before the timeout
// asked for; how late is left to the deadline tests (never a wall-clock
// upper bound here).

const (
	tREAD  = 300 * time.Millisecond
	tIDLE  = 500 * time.Millisecond
	tWRITE = 300 * time.Millisecond
)

func timeoutFixture(t *testing.T, edit func(f *fixture, o *Options)) (*fixture, string) {
	f := newFixture(t, func(f *fixture, o *Options) {
		o.ReadTimeout, o.IdleTimeout, o.WriteTimeout = tREAD, tIDLE, tWRITE
		if edit != nil {
			edit(f, o)
		}
	})
	return f, f.keys.add(t, &auth.Key{ID: "key_to", User: "u", Enabled: true})
}

// dialKeepAlive opens a connection and completes one request on it.
func dialKeepAlive(t *testing.T, f *fixture, key string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second)) // a guard against a hung test
	io.WriteString(c, "GET /x HTTP/1.1\r\nHost: a\r\nX-API-Key: "+key+"\r\n\r\n")
	br := bufio.NewReader(c)
	if r := readResponse(t, br, c); r.status != 200 {
		t.Fatalf("first request: %d", r.status)
	}
	return c, br
}

// waitClosed reads until the server ends the connection and returns
// what it sent meanwhile.
func waitClosed(t *testing.T, br *bufio.Reader) string {
	t.Helper()
	var got []byte
	for {
		b, err := br.ReadByte()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatal("the server never closed the connection")
			}
			return string(got)
		}
		got = append(got, b)
	}
}

// TestIdleTimeout: a kept-alive connection left idle is closed after
// IdleTimeout, not before (and not after ReadTimeout, which is shorter).
func TestIdleTimeout(t *testing.T) {
	f, key := timeoutFixture(t, nil)
	c, br := dialKeepAlive(t, f, key)
	_ = c
	start := time.Now()
	if got := waitClosed(t, br); got != "" {
		t.Errorf("idle connection got %q before closing", got)
	}
	if d := time.Since(start); d < tIDLE {
		t.Errorf("idle connection closed after %v, before the idle timeout %v", d, tIDLE)
	}
}

// TestReadTimeoutKeepAlive: on a kept-alive connection, a request whose
// first bytes arrive but whose rest never does is cut ReadTimeout after
// its first byte (with 408), not the idle timeout.
func TestReadTimeoutKeepAlive(t *testing.T) {
	f, key := timeoutFixture(t, nil)
	c, br := dialKeepAlive(t, f, key)
	time.Sleep(tIDLE / 2) // well into the idle wait
	start := time.Now()
	io.WriteString(c, "GET /x HTTP/1.1\r\nHost: a\r\n")
	got := waitClosed(t, br)
	if d := time.Since(start); d < tREAD {
		t.Errorf("slow request cut after %v, before the read timeout %v", d, tREAD)
	}
	if got != "" && !strings.HasPrefix(got, "HTTP/1.1 408") {
		t.Errorf("slow request answered %q, want 408 or nothing", got)
	}
}

// TestReadTimeoutFirstRequest: a new connection that never completes its
// first request is cut ReadTimeout after it was accepted.
func TestReadTimeoutFirstRequest(t *testing.T) {
	f, _ := timeoutFixture(t, nil)
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	start := time.Now()
	waitClosed(t, bufio.NewReader(c))
	if d := time.Since(start); d < tREAD {
		t.Errorf("silent new connection cut after %v, before the read timeout %v", d, tREAD)
	}
}

// TestBusyKeepAlive: requests that keep coming on one connection for
// longer than every timeout are all served (the deadlines move with
// them).
func TestBusyKeepAlive(t *testing.T) {
	f, key := timeoutFixture(t, nil)
	c, br := dialKeepAlive(t, f, key)
	end := time.Now().Add(tREAD + tIDLE + tWRITE)
	for n := 0; time.Now().Before(end); n++ {
		io.WriteString(c, "GET /x HTTP/1.1\r\nHost: a\r\nX-API-Key: "+key+"\r\n\r\n")
		if r := readResponse(t, br, c); r.status != 200 {
			t.Fatalf("request %d: %d", n, r.status)
		}
		time.Sleep(tIDLE / 5)
	}
}

// TestWriteTimeout: a client that stops reading a large response is cut
// off after WriteTimeout instead of holding the connection (and the
// upstream's) forever: once it reads again it gets what the kernels had
// buffered, then the end of the connection, not the whole body.
func TestWriteTimeout(t *testing.T) {
	big := strings.Repeat("x", 64<<20)
	up := serveUpstream(t, func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString(big) })
	f, _ := timeoutFixture(t, func(_ *fixture, o *Options) {
		o.Routes = []Route{{Name: "big", Targets: []string{up}, Auth: AuthNone}}
	})
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second)) // a guard against a hung test
	io.WriteString(c, "GET /big HTTP/1.1\r\nHost: a\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(tWRITE + 2*deadlineSlack(tREAD, tWRITE, tIDLE)) // stop reading past the write timeout
	n, err := io.Copy(io.Discard, resp.Body)
	if !errors.Is(err, io.ErrUnexpectedEOF) || n >= int64(len(big)) {
		t.Errorf("client that stopped reading got %d of %d bytes, then %v; want the connection cut (unexpected EOF)", n, len(big), err)
	}
}

// TestNoTimeouts: negative timeouts mean no limit (config's 0): a kept-alive
// connection idle past the lazy-deadline slack is still served.
func TestNoTimeouts(t *testing.T) {
	f := newFixture(t, func(_ *fixture, o *Options) {
		o.ReadTimeout, o.IdleTimeout, o.WriteTimeout = -1, -1, -1
	})
	key := f.keys.add(t, &auth.Key{ID: "key_nt", User: "u", Enabled: true})
	c, br := dialKeepAlive(t, f, key)
	time.Sleep(deadlineSlack() + 200*time.Millisecond)
	io.WriteString(c, "GET /x HTTP/1.1\r\nHost: a\r\nX-API-Key: "+key+"\r\n\r\n")
	if r := readResponse(t, br, c); r.status != 200 {
		t.Fatalf("after an idle second with no timeouts: %d", r.status)
	}
}

// TestContinueAfterIdle: a request with Expect: 100-continue on a
// connection idle for longer than the write timeout (but not the idle
// one) gets its 100 Continue: fasthttp writes it before the handler runs,
// so the write deadline moves when the request starts.
func TestContinueAfterIdle(t *testing.T) {
	f, key := timeoutFixture(t, nil)
	c, br := dialKeepAlive(t, f, key)
	time.Sleep(tWRITE + 2*deadlineSlack(tREAD, tWRITE, tIDLE))
	io.WriteString(c, "POST /x HTTP/1.1\r\nHost: a\r\nX-API-Key: "+key+"\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
	line, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "HTTP/1.1 100") {
		t.Fatalf("interim response: %q, %v; want 100 Continue", line, err)
	}
	if blank, err := br.ReadString('\n'); err != nil || blank != "\r\n" {
		t.Fatalf("after 100 Continue: %q, %v", blank, err)
	}
	io.WriteString(c, "hi")
	if r := readResponseTo(t, br, "POST"); r.status != 200 {
		t.Fatalf("final response: %d", r.status)
	}
}
