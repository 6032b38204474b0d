package auth

import (
	"bytes"
	"hash/crc32"
	"math/big"
	"strings"
	"testing"
)

// refAlphabet is CONTRACT §3's alphabet spelled out independently of the
// package's constant.
func refAlphabet() string {
	var b strings.Builder
	for _, r := range [][2]byte{{'0', '9'}, {'A', 'Z'}, {'a', 'z'}} {
		for c := r[0]; c <= r[1]; c++ {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// refChecksum is CONTRACT §3's checksum written out with math/big: CRC-32
// IEEE of body as a big-endian base62 number, left-padded with '0' to 6.
func refChecksum(body string) string {
	alpha := refAlphabet()
	v := new(big.Int).SetUint64(uint64(crc32.ChecksumIEEE([]byte(body))))
	base, m := big.NewInt(62), new(big.Int)
	var digits []byte
	for v.Sign() > 0 {
		v.DivMod(v, base, m)
		digits = append([]byte{alpha[m.Int64()]}, digits...)
	}
	return strings.Repeat("0", 6-len(digits)) + string(digits)
}

// refValid is a naive reading of CONTRACT §3 to check ValidSecret against.
func refValid(prefix, s string) bool {
	if prefix == "" || len(prefix) > 16 || strings.Trim(prefix, refAlphabet()) != "" {
		return false
	}
	rest, ok := strings.CutPrefix(s, prefix+"_")
	if !ok || len(rest) != 46 || strings.Trim(rest, refAlphabet()) != "" {
		return false
	}
	return refChecksum(s[:len(s)-6]) == s[len(s)-6:]
}

// Vectors computed outside Go (Python's zlib.crc32 and the same base62
// rule) so the package, the reference and the vectors check each other.
var secretVectors = []string{
	"kg_0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcd1nhwQA",
	"kg_00000000000000000000000000000000000000003yGbkx",
	"acme_zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz2TWmM8",
}

func TestSecretVectors(t *testing.T) {
	for _, s := range secretVectors {
		prefix, _, _ := strings.Cut(s, "_")
		if got := refChecksum(s[:len(s)-6]); got != s[len(s)-6:] {
			t.Errorf("refChecksum(%q) = %q, want %q", s[:len(s)-6], got, s[len(s)-6:])
		}
		if !ValidSecret(prefix, []byte(s)) {
			t.Errorf("ValidSecret(%q, %q) = false, want true", prefix, s)
		}
	}
	// The 40-character body of the first vector, checksummed by hand in
	// the package's own code path.
	var sum [6]byte
	body := "kg_0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcd"
	putChecksum(sum[:], crc32.ChecksumIEEE([]byte(body)))
	if string(sum[:]) != "1nhwQA" {
		t.Errorf("putChecksum(crc32(%q)) = %q, want %q", body, sum[:], "1nhwQA")
	}
}

func TestAlphabet(t *testing.T) {
	if base62 != refAlphabet() {
		t.Fatalf("base62 = %q, want %q", base62, refAlphabet())
	}
	for i := 0; i < 256; i++ {
		want := strings.IndexByte(base62, byte(i))
		if got := base62Value(byte(i)); got != want {
			t.Errorf("base62Value(%q) = %d, want %d", byte(i), got, want)
		}
	}
}

// mutate returns s with the byte at i replaced by c.
func mutate(s string, i int, c byte) string {
	b := []byte(s)
	b[i] = c
	return string(b)
}

var validSecretTests = []struct {
	name   string
	prefix string
	in     string
	want   bool
}{
	{"vector", "kg", secretVectors[0], true},
	{"zeros", "kg", secretVectors[1], true},
	{"long prefix", "acme", secretVectors[2], true},
	{"empty", "kg", "", false},
	{"prefix only", "kg", "kg_", false},
	{"wrong prefix", "kh", "kh_0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcd1nhwQA", false},
	{"other prefix expected", "acme", secretVectors[0], false},
	{"prefix case", "KG", "KG_0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcd1nhwQA", false},
	{"no separator", "kg", "kg-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcd1nhwQA", false},
	{"one short", "kg", secretVectors[0][:len(secretVectors[0])-1], false},
	{"one long", "kg", secretVectors[0] + "0", false},
	{"leading space", "kg", " " + secretVectors[0], false},
	{"trailing newline", "kg", secretVectors[0] + "\n", false},
	{"random char flipped", "kg", mutate(secretVectors[0], 3, '1'), false},
	{"checksum char flipped", "kg", mutate(secretVectors[0], len(secretVectors[0])-1, 'B'), false},
	{"non-base62 in random", "kg", mutate(secretVectors[0], 10, '-'), false},
	{"non-base62 in checksum", "kg", mutate(secretVectors[0], len(secretVectors[0])-2, '+'), false},
	{"non-ASCII", "kg", mutate(secretVectors[0], 20, 0xc3), false},
	// zzzzzz is 62^6-1, above 2^32: must not wrap onto a valid checksum.
	{"checksum over 32 bits", "kg", secretVectors[0][:len(secretVectors[0])-6] + "zzzzzz", false},
	{"empty prefix", "", "_0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcd" + refChecksum("_0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcd"), false},
	{"prefix with underscore", "k_g", "k_g_0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcd" + refChecksum("k_g_0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcd"), false},
}

func TestValidSecret(t *testing.T) {
	for _, tt := range validSecretTests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ValidSecret(tt.prefix, []byte(tt.in)); got != tt.want {
				t.Errorf("ValidSecret(%q, %q) = %v, want %v", tt.prefix, tt.in, got, tt.want)
			}
			if got := refValid(tt.prefix, tt.in); got != tt.want {
				t.Errorf("refValid(%q, %q) = %v, want %v (test table or reference is wrong)", tt.prefix, tt.in, got, tt.want)
			}
		})
	}
}

// FuzzValidSecret checks ValidSecret against the naive reference on any
// input, and that fixing up the checksum of a well-shaped input makes it
// valid.
func FuzzValidSecret(f *testing.F) {
	for _, tt := range validSecretTests {
		f.Add(tt.prefix, []byte(tt.in))
	}
	f.Fuzz(func(t *testing.T, prefix string, s []byte) {
		got := ValidSecret(prefix, s)
		if want := refValid(prefix, string(s)); got != want {
			t.Fatalf("ValidSecret(%q, %q) = %v, reference says %v", prefix, s, got, want)
		}
		if len(s) == len(prefix)+47 {
			fixed := string(s[:len(s)-6]) + refChecksum(string(s[:len(s)-6]))
			if ValidSecret(prefix, []byte(fixed)) != refValid(prefix, fixed) {
				t.Fatalf("ValidSecret(%q, %q) disagrees with reference", prefix, fixed)
			}
		}
	})
}

func TestNewSecret(t *testing.T) {
	for _, prefix := range []string{"kg", "a", "ACME2026", strings.Repeat("p", 16)} {
		s, err := NewSecret(prefix)
		if err != nil {
			t.Fatalf("NewSecret(%q): %v", prefix, err)
		}
		if len(s) != len(prefix)+1+46 || !strings.HasPrefix(s, prefix+"_") {
			t.Errorf("NewSecret(%q) = %q: wrong shape", prefix, s)
		}
		if !ValidSecret(prefix, []byte(s)) || !refValid(prefix, s) {
			t.Errorf("NewSecret(%q) = %q, which does not validate", prefix, s)
		}
	}
	for _, prefix := range []string{"", "k_g", "kg-", "ké", strings.Repeat("p", 17)} {
		if s, err := NewSecret(prefix); err == nil {
			t.Errorf("NewSecret(%q) = %q, want an error", prefix, s)
		}
	}
	a, _ := NewSecret("kg")
	b, _ := NewSecret("kg")
	if a == b {
		t.Errorf("two NewSecret calls returned the same secret %q", a)
	}
}

// TestNewSecretRejectsBiasedBytes feeds bytes from the biased range
// [248, 256) between usable ones and checks they are skipped, not folded
// onto the low characters by a modulo.
func TestNewSecretRejectsBiasedBytes(t *testing.T) {
	var in []byte
	var want strings.Builder
	for i := 0; len(in) < 4*64; i++ {
		in = append(in, byte(248+i%8)) // all rejected
		v := byte(i * 53 % 248)
		in = append(in, v)
		if want.Len() < 40 {
			want.WriteByte(refAlphabet()[v%62])
		}
	}
	s, err := newSecret(bytes.NewReader(in), "kg")
	if err != nil {
		t.Fatal(err)
	}
	if got := s[3:43]; got != want.String() {
		t.Errorf("random part = %q, want %q", got, want.String())
	}
	if !refValid("kg", s) {
		t.Errorf("newSecret = %q, which does not validate", s)
	}
	// Too little randomness is an error, never a short or padded secret.
	if s, err := newSecret(bytes.NewReader(make([]byte, 10)), "kg"); err == nil {
		t.Errorf("newSecret with 10 random bytes = %q, want an error", s)
	}
}

// TestNewSecretUniform is a chi-square test over the random characters of
// many secrets. With 61 degrees of freedom the statistic has mean 61 and
// standard deviation about 11; the threshold of 200 is more than eight
// standard deviations out (p below 1e-15), so a correct generator never
// fails it, while a modulo-biased one (characters 0-7 a quarter more
// likely) scores in the thousands.
func TestNewSecretUniform(t *testing.T) {
	const secrets = 5000
	var counts [62]int
	for range secrets {
		s, err := NewSecret("kg")
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []byte(s[3:43]) {
			counts[base62Value(c)]++
		}
	}
	expected := float64(secrets*SecretRandomLen) / 62
	var chi2 float64
	for _, n := range counts {
		d := float64(n) - expected
		chi2 += d * d / expected
	}
	if chi2 > 200 {
		t.Errorf("chi-square over %d characters = %.1f, want <= 200; counts %v", secrets*SecretRandomLen, chi2, counts)
	}
}

func TestValidForeignSecret(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want bool
	}{
		{"empty", "", false},
		{"23 bytes", strings.Repeat("a", 23), false},
		{"24 bytes", strings.Repeat("a", 24), true},
		{"512 bytes", strings.Repeat("~", 512), true},
		{"513 bytes", strings.Repeat("!", 513), false},
		{"all visible ASCII", refVisible(), true},
		{"keygate format", secretVectors[0], true},
		{"space", "sk_live_abcdefghij klmnopqrstuvwxyz", false},
		{"tab", "sk_live_abcdefghij\tklmnopqrstuvwxyz", false},
		{"DEL", "sk_live_abcdefghij\x7fklmnopqrstuvwxyz", false},
		{"NUL", "sk_live_abcdefghij\x00klmnopqrstuvwxyz", false},
		{"non-ASCII", "sk_live_abcdefghijéklmnopqrstuvwxyz", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ValidForeignSecret([]byte(tt.in)); got != tt.want {
				t.Errorf("ValidForeignSecret(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

// refVisible is every byte from 0x21 to 0x7e.
func refVisible() string {
	var b []byte
	for c := byte(0x21); c <= 0x7e; c++ {
		b = append(b, c)
	}
	return string(b)
}

func TestDigest(t *testing.T) {
	// SHA-256("abc") from FIPS 180-2, appendix B.1.
	const want = "\xba\x78\x16\xbf\x8f\x01\xcf\xea\x41\x41\x40\xde\x5d\xae\x22\x23\xb0\x03\x61\xa3\x96\x17\x7a\x9c\xb4\x10\xff\x61\xf2\x00\x15\xad"
	if got := Digest([]byte("abc")); string(got[:]) != want {
		t.Errorf("Digest(abc) = %x, want %x", got, want)
	}
}

func TestHint(t *testing.T) {
	tests := []struct{ in, want string }{
		{secretVectors[0], "kg_01234567"},
		{secretVectors[2], "acme_zzzzzzzz"},
		// A foreign secret shows its first 8 characters.
		{"sk_live_abcdefghijklmnopqrstuvwxyz", "sk_live_"},
		{strings.Repeat("x", 30) + "_" + strings.Repeat("y", 46), "xxxxxxxx"},
		// Right shape, bad checksum: not keygate's, so first 8.
		{mutate(secretVectors[0], 5, 'z'), "kg_01z34"},
		// Right shape but a prefix config could not hold.
		{"k-g_0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcd" + refChecksum("k-g_0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcd"), "k-g_0123"},
		{"short", "short"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := Hint(tt.in); got != tt.want {
			t.Errorf("Hint(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	s, err := NewSecret("kg")
	if err != nil {
		t.Fatal(err)
	}
	if got := Hint(s); got != s[:11] {
		t.Errorf("Hint(%q) = %q, want %q", s, got, s[:11])
	}
}

func BenchmarkParseAndHash(b *testing.B) {
	s := []byte(secretVectors[0])
	b.ReportAllocs()
	b.SetBytes(int64(len(s)))
	var sink [32]byte
	for b.Loop() {
		if !ValidSecret("kg", s) {
			b.Fatal("invalid")
		}
		sink = Digest(s)
	}
	_ = sink
}

func BenchmarkNewSecret(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := NewSecret("kg"); err != nil {
			b.Fatal(err)
		}
	}
}

func TestAcceptableSecret(t *testing.T) {
	good, err := NewSecret("kg")
	if err != nil {
		t.Fatal(err)
	}
	last := byte('A') // a different last checksum character
	if good[len(good)-1] == last {
		last = 'B'
	}
	bad := good[:len(good)-1] + string(last)
	foreign := "ext-0123456789abcdefghijklmnop"
	for _, tt := range []struct {
		name    string
		s       string
		foreign bool
		want    bool
	}{
		{"keygate key", good, false, true},
		{"keygate key, foreign allowed", good, true, true},
		{"bad checksum", bad, false, false},
		{"bad checksum is not foreign", bad, true, false},
		{"prefixed junk is not foreign", "kg_dddddddddddddddddddddddddd", true, false},
		{"foreign refused", foreign, false, false},
		{"foreign allowed", foreign, true, true},
		{"short foreign", "ext-short", true, false},
	} {
		if got := AcceptableSecret("kg", tt.foreign, []byte(tt.s)); got != tt.want {
			t.Errorf("%s: AcceptableSecret(%q, %v) = %v, want %v", tt.name, tt.s, tt.foreign, got, tt.want)
		}
	}
}

// TestBase62Value checks the lookup table against the alphabet for every
// byte.
func TestBase62Value(t *testing.T) {
	for c := 0; c < 256; c++ {
		if got, want := base62Value(byte(c)), strings.IndexByte(base62, byte(c)); got != want {
			t.Errorf("base62Value(%q) = %d, want %d", byte(c), got, want)
		}
	}
}
