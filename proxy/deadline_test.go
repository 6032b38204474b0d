package proxy

import (
	"errors"
	"math"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"
)

// countingConn counts the deadlines that reach the socket.
type countingConn struct {
	net.Conn
	reads, writes atomic.Int32
	lastRead      atomic.Pointer[time.Time]
}

func (c *countingConn) SetReadDeadline(t time.Time) error {
	c.reads.Add(1)
	c.lastRead.Store(&t)
	return c.Conn.SetReadDeadline(t)
}

func (c *countingConn) SetWriteDeadline(t time.Time) error {
	c.writes.Add(1)
	return c.Conn.SetWriteDeadline(t)
}

func lazyPair(t *testing.T, slack time.Duration) (*lazyDeadlineConn, *countingConn, net.Conn) {
	t.Helper()
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	cc := &countingConn{Conn: a}
	return &lazyDeadlineConn{Conn: cc, slack: slack.Nanoseconds()}, cc, b
}

// TestLazyDeadlineCoalesces: a keep-alive loop that moves its deadlines
// on every request (as fasthttp does) touches the socket's timer once
// while the moves stay within slack, and a deadline replaced before any
// read is never applied.
func TestLazyDeadlineCoalesces(t *testing.T) {
	c, cc, peer := lazyPair(t, time.Hour)
	go func() {
		buf := make([]byte, 1)
		for range 100 {
			peer.Write([]byte{'x'})
			peer.Read(buf)
		}
	}()
	buf := make([]byte, 1)
	base := time.Now()
	for i := range 100 {
		now := base.Add(time.Duration(i) * time.Millisecond)
		c.SetReadDeadline(now.Add(2 * time.Minute)) // idle wait
		if _, err := c.Read(buf); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(now.Add(30 * time.Second)) // request read: no read follows
		c.SetWriteDeadline(now.Add(30 * time.Second))
		if _, err := c.Write(buf); err != nil {
			t.Fatal(err)
		}
	}
	if n := cc.reads.Load(); n != 1 {
		t.Errorf("socket read deadline set %d times, want 1", n)
	}
	if n := cc.writes.Load(); n != 1 {
		t.Errorf("socket write deadline set %d times, want 1", n)
	}
	// What the socket has is never earlier than what was asked for last.
	if got := *cc.lastRead.Load(); got.Before(base.Add(99*time.Millisecond + 2*time.Minute)) {
		t.Errorf("socket read deadline %v is earlier than the one asked for", got)
	}
}

// TestLazyDeadlineMovesWhenNeeded: an earlier deadline, one later by more
// than slack, and clearing all reach the socket before the next read.
func TestLazyDeadlineMovesWhenNeeded(t *testing.T) {
	c, cc, peer := lazyPair(t, time.Second)
	go func() {
		for range 4 {
			peer.Write([]byte{'x'})
		}
	}()
	buf := make([]byte, 1)
	now := time.Now()
	steps := []struct {
		at   time.Time
		sets int32
	}{
		{now.Add(time.Minute), 1},
		{now.Add(30 * time.Second), 2},                      // earlier: must move
		{now.Add(30*time.Second + 500*time.Millisecond), 2}, // within slack: stays
		{time.Time{}, 3},                                    // cleared
	}
	for i, s := range steps {
		c.SetReadDeadline(s.at)
		if _, err := c.Read(buf); err != nil {
			t.Fatal(err)
		}
		if n := cc.reads.Load(); n != s.sets {
			t.Errorf("step %d: socket deadline set %d times, want %d", i, n, s.sets)
		}
	}
	if got := *cc.lastRead.Load(); !got.IsZero() {
		t.Errorf("socket deadline %v after clearing", got)
	}
}

// TestLazyDeadlineNeverEarly: a read under a deadline times out, and not
// before the deadline asked for.
func TestLazyDeadlineNeverEarly(t *testing.T) {
	c, _, _ := lazyPair(t, 20*time.Millisecond)
	deadline := time.Now().Add(50 * time.Millisecond)
	c.SetReadDeadline(deadline)
	_, err := c.Read(make([]byte, 1))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read: %v, want a deadline error", err)
	}
	if time.Now().Before(deadline) {
		t.Errorf("deadline fired before %v", deadline)
	}
}

// TestLazyDeadlineCutsShort: a deadline set from another goroutine while
// a Read is blocked applies at once, exactly, as on a net.Conn.
func TestLazyDeadlineCutsShort(t *testing.T) {
	c, _, _ := lazyPair(t, time.Hour)
	c.SetReadDeadline(time.Now().Add(time.Hour))
	done := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 1))
		done <- err
	}()
	for !c.rd.busy.Load() {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(10 * time.Millisecond) // let the read block
	c.SetReadDeadline(time.Now())
	if err := <-done; !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read: %v, want a deadline error", err)
	}
}

func TestDeadlineSlack(t *testing.T) {
	for _, tt := range []struct {
		in   []time.Duration
		want time.Duration
	}{
		{[]time.Duration{30 * time.Second, 30 * time.Second, 120 * time.Second}, time.Second},
		{[]time.Duration{160 * time.Millisecond, 0, time.Minute}, 10 * time.Millisecond},
		{[]time.Duration{0, 0, 0}, time.Second},
	} {
		if got := deadlineSlack(tt.in...); got != tt.want {
			t.Errorf("deadlineSlack(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

// TestCoveredFarApart: deadlines far apart are never "covered" by
// overflow.
func TestCoveredFarApart(t *testing.T) {
	slack := time.Second.Nanoseconds()
	for _, c := range [][2]int64{{math.MinInt64 + 1, 1}, {-1, math.MaxInt64}, {1, math.MaxInt64}} {
		if covered(c[0], c[1], slack) {
			t.Errorf("covered(%d, %d) = true", c[0], c[1])
		}
	}
	if !covered(5, 5+slack, slack) || covered(5, 4, slack) {
		t.Error("covered is wrong near its bounds")
	}
	if fromTime(time.Time{}.Add(1)) == external {
		t.Error("fromTime returned the external marker")
	}
}

// TestLazyDeadlineWallClockTime: a deadline without a monotonic reading
// reaches the socket exactly and at once, and a later monotonic one takes
// over again at the next read.
func TestLazyDeadlineWallClockTime(t *testing.T) {
	c, cc, peer := lazyPair(t, time.Hour)
	go peer.Write([]byte{'x'})
	wall := time.Now().Add(time.Minute).Round(0)
	if err := c.SetReadDeadline(wall); err != nil {
		t.Fatal(err)
	}
	if n := cc.reads.Load(); n != 1 || !cc.lastRead.Load().Equal(wall) {
		t.Fatalf("socket deadline after a wall-clock one: %d sets, %v", n, cc.lastRead.Load())
	}
	buf := make([]byte, 1)
	if _, err := c.Read(buf); err != nil {
		t.Fatal(err)
	}
	if n := cc.reads.Load(); n != 1 {
		t.Errorf("the read re-armed a wall-clock deadline: %d sets", n)
	}
	go peer.Write([]byte{'x'})
	mono := time.Now().Add(time.Minute)
	c.SetReadDeadline(mono)
	if _, err := c.Read(buf); err != nil {
		t.Fatal(err)
	}
	if got := *cc.lastRead.Load(); cc.reads.Load() != 2 || got.Before(mono) {
		t.Errorf("monotonic deadline after a wall-clock one: %d sets, socket %v, want ≥ %v", cc.reads.Load(), got, mono)
	}
}

// TestMonoNow: monoNow carries a monotonic reading (deadlines and
// durations use it) and tracks time.Now.
func TestMonoNow(t *testing.T) {
	a := monoNow()
	b := time.Now()
	c := monoNow()
	if !hasMonotonic(a) {
		t.Fatal("monoNow has no monotonic reading")
	}
	if b.Before(a) || c.Before(b) {
		t.Errorf("monoNow out of order with time.Now: %v, %v, %v", a, b, c)
	}
}
