package store

import (
	"crypto/rand"
	"sync"
	"time"
)

// crockford is Crockford's base32 alphabet; its order matches byte order,
// so ids compare as strings the way their timestamps compare.
const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// idGen makes ULID-like ids: 48 bits of Unix milliseconds then 80 random
// bits, 26 Crockford base32 characters. Ids from one generator strictly
// increase: within a millisecond (or when the clock steps back) the random
// part of the previous id is incremented instead of drawn anew, so keys
// created back to back list in creation order.
type idGen struct {
	now func() time.Time

	mu   sync.Mutex
	ms   uint64
	rand [10]byte
}

func (g *idGen) next(prefix string) string {
	ms := uint64(g.now().UnixMilli())
	g.mu.Lock()
	if ms <= g.ms && g.ms != 0 {
		ms = g.ms
		if !increment(g.rand[:]) {
			ms++ // 80 bits exhausted within one millisecond: borrow the next one
			rand.Read(g.rand[:])
		}
	} else {
		rand.Read(g.rand[:])
	}
	g.ms = ms
	var b [16]byte
	b[0], b[1], b[2], b[3], b[4], b[5] = byte(ms>>40), byte(ms>>32), byte(ms>>24), byte(ms>>16), byte(ms>>8), byte(ms)
	copy(b[6:], g.rand[:])
	g.mu.Unlock()
	return prefix + encodeID(b)
}

// increment adds one to the big-endian number in b; false on overflow.
func increment(b []byte) bool {
	for i := len(b) - 1; i >= 0; i-- {
		b[i]++
		if b[i] != 0 {
			return true
		}
	}
	return false
}

// encodeID writes 128 bits as 26 base32 characters, most significant first
// (the first character carries the top 3 bits).
func encodeID(b [16]byte) string {
	var out [26]byte
	var acc uint32
	bits := 2 // 130 bits of output for 128 of input: two leading zero bits
	i := 0
	for _, c := range b {
		acc = acc<<8 | uint32(c)
		bits += 8
		for bits >= 5 {
			bits -= 5
			out[i] = crockford[(acc>>uint(bits))&31]
			i++
		}
	}
	return string(out[:])
}
