package store

import (
	"strings"
	"testing"
	"time"
)

func TestEncodeID(t *testing.T) {
	tests := []struct {
		in   [16]byte
		want string
	}{
		{[16]byte{}, "00000000000000000000000000"},
		{[16]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, "7ZZZZZZZZZZZZZZZZZZZZZZZZZ"},
		{[16]byte{15: 1}, "00000000000000000000000001"},
		{[16]byte{15: 32}, "00000000000000000000000010"},
		// The ULID spec's example time 1469918176385 ms = 0x01563df36481.
		{[16]byte{0x01, 0x56, 0x3d, 0xf3, 0x64, 0x81}, "01ARYZ6S410000000000000000"},
	}
	for _, tt := range tests {
		if got := encodeID(tt.in); got != tt.want {
			t.Errorf("encodeID(%x) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestIDsIncrease(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	g := &idGen{now: clock}
	prev := ""
	for i := 0; i < 2000; i++ {
		if i == 1000 {
			now = now.Add(-time.Hour) // a clock stepping back must not reorder ids
		}
		id := g.next("key_")
		if len(id) != len("key_")+26 || !strings.HasPrefix(id, "key_") {
			t.Fatalf("id %q: want key_ and 26 characters", id)
		}
		if id <= prev {
			t.Fatalf("id %d %s not after %s", i, id, prev)
		}
		prev = id
	}
	later := &idGen{now: func() time.Time { return now.Add(2 * time.Hour) }}
	if id := later.next("key_"); id <= prev {
		t.Errorf("id of a later millisecond %s sorts before %s", id, prev)
	}
	// The time part is the millisecond, so ids of different generators
	// sort by creation time.
	ms := uint64(now.Add(time.Hour).UnixMilli()) // the generator kept the pre-step millisecond
	want := encodeID([16]byte{byte(ms >> 40), byte(ms >> 32), byte(ms >> 24), byte(ms >> 16), byte(ms >> 8), byte(ms)})[:10]
	if got := prev[4:14]; got != want {
		t.Errorf("time part = %s, want %s (2030-01-01)", got, want)
	}
}

func TestIDRandomOverflowBorrowsNextMillisecond(t *testing.T) {
	now := time.UnixMilli(1000)
	g := &idGen{now: func() time.Time { return now }}
	first := g.next("")
	for i := range g.rand {
		g.rand[i] = 0xff
	}
	second := g.next("")
	if second <= first || g.ms != 1001 {
		t.Errorf("after exhausting the random part: %s (ms %d), first %s; want a later id in ms 1001", second, g.ms, first)
	}
}
