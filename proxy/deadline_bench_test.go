package proxy

import (
	"net"
	"testing"
	"time"
)

type nopConn struct{ net.Conn }

func (nopConn) Read(b []byte) (int, error)      { return len(b), nil }
func (nopConn) SetReadDeadline(time.Time) error { return nil }

// BenchmarkLazyDeadlineRead is the wrapper's own cost on a read whose
// deadline needs no socket update (the steady state on a busy connection).
func BenchmarkLazyDeadlineRead(b *testing.B) {
	c := &lazyDeadlineConn{Conn: nopConn{}, slack: time.Second.Nanoseconds()}
	c.SetReadDeadline(time.Now().Add(time.Minute))
	buf := make([]byte, 1)
	c.Read(buf)
	b.ReportAllocs()
	for b.Loop() {
		c.Read(buf)
	}
}
