package proxy

import (
	"crypto/tls"
	"math"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
	"github.com/valyala/fasthttp"
)

// lazyDeadlineListener hands out connections whose deadlines are applied
// lazily and coarsely (lazyDeadlineConn). A keep-alive connection's
// deadlines move several times per request (request read, response write,
// idle wait: connState and armWrite); on a net.Conn each move is a runtime
// timer update and two clock reads, a noticeable share of a proxied
// request's cost.
type lazyDeadlineListener struct {
	net.Listener
	slack time.Duration
}

func (l *lazyDeadlineListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &lazyDeadlineConn{Conn: c, slack: l.slack.Nanoseconds(), peer: peerAddr(c.RemoteAddr())}, nil
}

// deadlineSlack is how late a lazily applied deadline may fire: 1/16 of
// the shortest timeout, at most a second (the default 30 s read timeout
// then fires between 30 and 31 s).
func deadlineSlack(timeouts ...time.Duration) time.Duration {
	slack := time.Second
	for _, d := range timeouts {
		if d > 0 {
			slack = min(slack, d/16)
		}
	}
	return slack
}

// lazyDeadlineConn keeps a read and a write deadline the way net.Conn
// does, with two differences that never make one fire early:
//   - a deadline is applied to the socket only when the next Read (or
//     Write) is about to happen, so a deadline replaced before any I/O
//     (the request-read deadline, when the whole request arrived with its
//     first byte) costs nothing;
//   - a socket deadline is armed slack past the one asked for, and left in
//     place while it is no earlier than the one asked for and at most
//     slack past it: on a busy keep-alive connection, the socket's timer
//     moves at most once per slack instead of on every request.
//
// A deadline set while a Read or Write is in progress (another goroutine
// cutting it short) is applied at once, as net.Conn would.
type lazyDeadlineConn struct {
	net.Conn
	slack int64 // ns
	// peer is the connection's remote address, parsed once (accepted
	// connections only): the proxy needs it on every request.
	peer netip.Addr
	// requests counts the requests begun on an accepted connection, and
	// idleSet records that finish already set the idle deadline for the
	// wait after the current one. Both belong to the goroutine serving
	// the connection (connState, finish).
	requests int
	idleSet  bool

	rd, wd lazyDeadline
}

// lazyDeadline is one direction's state. want and armed are deadlines
// as fromTime keeps them, 0 meaning none; want is what was asked for, armed
// what the socket has. mu orders the (rare) updates of the socket's
// deadline, so that armed always says what the socket has.
type lazyDeadline struct {
	want  atomic.Int64
	armed atomic.Int64
	busy  atomic.Bool // a Read (Write) is in progress
	mu    sync.Mutex
}

// monoBase anchors deadlines kept as integers: nanoseconds since it, on
// the monotonic clock when the deadline has a monotonic reading (fasthttp's
// do), so a wall-clock step moves none of them.
var monoBase = time.Now()

// external is the want (and armed) of a direction whose socket holds a
// deadline set exactly, not managed lazily: one without a monotonic
// reading (setExternal).
const external = math.MinInt64

// monoNow is a clock reading for measuring and deadlines only: it reads
// just the monotonic clock (half the cost of time.Now, which also reads
// the wall clock) and carries a wall time derived from monoBase. Never use
// it where the wall clock matters (key expiry, timestamps).
func monoNow() time.Time { return monoBase.Add(time.Since(monoBase)) }

func fromTime(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	switch n := int64(t.Sub(monoBase)); n {
	case 0:
		return 1
	case external:
		return external + 1
	default:
		return n
	}
}

func toTime(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return monoBase.Add(time.Duration(n))
}

// hasMonotonic reports whether t carries a monotonic clock reading
// (Round(0) strips it; a time without one is left unchanged).
func hasMonotonic(t time.Time) bool { return t != t.Round(0) }

// covered reports whether the socket's deadline may stand for want: the
// same, or no earlier and at most slack later.
func covered(want, armed, slack int64) bool {
	if want == armed {
		return true
	}
	if want == 0 || armed == 0 || want == external || armed == external {
		return false
	}
	// In uint64: armed-want overflows int64 when they are far apart.
	return armed >= want && uint64(armed)-uint64(want) <= uint64(slack)
}

// setExternal applies t, a deadline without a monotonic reading, exactly
// and at once: converting it to monoBase's terms would use the wall clock,
// which may have been stepped since. Every caller today (fasthttp,
// crypto/tls, PROXY protocol) passes time.Now().Add(…) or a zero time.
func (d *lazyDeadline) setExternal(t time.Time, set func(time.Time) error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.want.Store(external)
	d.armed.Store(external)
	return set(t)
}

// sync makes the socket's deadline cover want, arming it slack late when
// it must move. exact (a deadline set while I/O is in progress, perhaps to
// cut it short) arms want itself.
func (d *lazyDeadline) sync(slack int64, exact bool, set func(time.Time) error) error {
	if !exact && covered(d.want.Load(), d.armed.Load(), slack) {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	want, armed := d.want.Load(), d.armed.Load()
	if exact && want == armed || !exact && covered(want, armed, slack) {
		return nil
	}
	if want == external {
		return nil // set by setExternal
	}
	at := want
	if want != 0 && !exact && at <= math.MaxInt64-slack {
		at += slack
	}
	if err := set(toTime(at)); err != nil {
		return err
	}
	d.armed.Store(at)
	return nil
}

func (c *lazyDeadlineConn) Read(b []byte) (int, error) {
	c.rd.busy.Store(true)
	defer c.rd.busy.Store(false)
	if err := c.rd.sync(c.slack, false, c.Conn.SetReadDeadline); err != nil {
		return 0, err
	}
	return c.Conn.Read(b)
}

func (c *lazyDeadlineConn) Write(b []byte) (int, error) {
	c.wd.busy.Store(true)
	defer c.wd.busy.Store(false)
	if err := c.wd.sync(c.slack, false, c.Conn.SetWriteDeadline); err != nil {
		return 0, err
	}
	return c.Conn.Write(b)
}

// SetReadDeadline records t for the next Read; a Read in progress gets it
// at once, exactly. (busy is stored before a Read syncs, and checked here
// after want: one of the two always sees the new deadline.)
func (c *lazyDeadlineConn) SetReadDeadline(t time.Time) error {
	if !t.IsZero() && !hasMonotonic(t) {
		return c.rd.setExternal(t, c.Conn.SetReadDeadline)
	}
	c.rd.want.Store(fromTime(t))
	if c.rd.busy.Load() {
		return c.rd.sync(c.slack, true, c.Conn.SetReadDeadline)
	}
	return nil
}

func (c *lazyDeadlineConn) SetWriteDeadline(t time.Time) error {
	if !t.IsZero() && !hasMonotonic(t) {
		return c.wd.setExternal(t, c.Conn.SetWriteDeadline)
	}
	c.wd.want.Store(fromTime(t))
	if c.wd.busy.Load() {
		return c.wd.sync(c.slack, true, c.Conn.SetWriteDeadline)
	}
	return nil
}

func (c *lazyDeadlineConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

// SetKeepAlive and SetKeepAlivePeriod pass fasthttp's TCPKeepalive on to
// a TCP connection.
func (c *lazyDeadlineConn) SetKeepAlive(on bool) error {
	if tc, ok := c.Conn.(*net.TCPConn); ok {
		return tc.SetKeepAlive(on)
	}
	return nil
}

func (c *lazyDeadlineConn) SetKeepAlivePeriod(d time.Duration) error {
	if tc, ok := c.Conn.(*net.TCPConn); ok {
		return tc.SetKeepAlivePeriod(d)
	}
	return nil
}

// lazyDeadlineDial dials upstreams as fasthttp does by default, with
// deadlines that are lazy like the listener's: the transport sets one per
// exchange on a kept-alive connection, and it moves by the time between
// two requests.
func lazyDeadlineDial(tls bool, slack time.Duration) fasthttp.DialFuncWithTimeout {
	return func(addr string, timeout time.Duration) (net.Conn, error) {
		addr = fasthttp.AddMissingPort(addr, tls)
		var (
			c   net.Conn
			err error
		)
		if timeout > 0 {
			c, err = fasthttp.DialTimeout(addr, timeout)
		} else {
			c, err = fasthttp.Dial(addr)
		}
		if err != nil {
			return nil, err
		}
		return &lazyDeadlineConn{Conn: c, slack: slack.Nanoseconds()}, nil
	}
}

// connState applies the server's timeouts as fasthttp would with
// ReadTimeout, WriteTimeout and IdleTimeout set, with fewer clock reads:
// fasthttp reads the clock for each of the three deadlines it moves per
// request, here the idle and write deadlines share the reading finish
// makes (usually the one that ended the upstream exchange).
//   - a new connection has ReadTimeout for its first request, TLS
//     handshake included, from the moment it was accepted;
//   - every later request has ReadTimeout from its first byte;
//   - the response has WriteTimeout from the end of the handler (finish,
//     and handleParseError for the answers to unreadable requests);
//   - the wait for the next request has IdleTimeout from the end of the
//     response (from the end of the handler when the response was not
//     streamed, which is when it was written).
func (s *Server) connState(c net.Conn, state fasthttp.ConnState) {
	lc := innerLazy(c)
	switch state {
	case fasthttp.StateNew:
		now := monoNow()
		setDeadline(c.SetReadDeadline, now, s.opts.ReadTimeout)
		// Also bounds the TLS handshake's writes.
		setDeadline(c.SetWriteDeadline, now, s.opts.WriteTimeout)
	case fasthttp.StateActive:
		if lc != nil {
			lc.requests++
			if lc.requests == 1 {
				return // the deadlines set when it was accepted stand
			}
		}
		now := monoNow()
		setDeadline(c.SetReadDeadline, now, s.opts.ReadTimeout)
		// fasthttp may write "100 Continue" before the handler runs: the
		// previous response's write deadline may have passed by now.
		setDeadline(c.SetWriteDeadline, now, s.opts.WriteTimeout)
	case fasthttp.StateIdle:
		if lc != nil && lc.idleSet {
			lc.idleSet = false
			return
		}
		setDeadline(c.SetReadDeadline, monoNow(), s.opts.IdleTimeout)
	}
}

// setDeadline sets a deadline d after now, or none when d is not
// positive (Options: no limit).
func setDeadline(set func(time.Time) error, now time.Time, d time.Duration) {
	if d > 0 {
		set(now.Add(d))
	} else {
		set(time.Time{})
	}
}

// armWrite sets the response's write deadline from now, a clock reading
// made at the end of the handler, and, when the response is written at
// once (not streamed), the idle deadline that follows it.
func (s *Server) armWrite(ctx *fasthttp.RequestCtx, now time.Time) {
	c := ctx.Conn()
	if c == nil {
		return
	}
	setDeadline(c.SetWriteDeadline, now, s.opts.WriteTimeout)
	if lc := innerLazy(c); lc != nil && !ctx.Response.IsBodyStream() && !ctx.Response.ConnectionClose() {
		setDeadline(c.SetReadDeadline, now, s.opts.IdleTimeout)
		lc.idleSet = true
	}
}

// innerLazy finds the lazyDeadlineConn Serve's listener put under c (TLS
// and PROXY protocol wrap it), or nil.
func innerLazy(c net.Conn) *lazyDeadlineConn {
	for range 3 {
		switch x := c.(type) {
		case *lazyDeadlineConn:
			return x
		case *tls.Conn:
			c = x.NetConn()
		case *proxyproto.Conn:
			c = x.Raw()
		default:
			return nil
		}
	}
	return nil
}
