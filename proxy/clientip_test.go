package proxy

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/auth"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestClientIP(t *testing.T) {
	s := &Server{opts: Options{TrustedProxies: []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8"),
	}}}
	lb := netip.MustParseAddr("10.0.0.1")
	outsider := netip.MustParseAddr("192.0.2.9")
	many := strings.TrimSuffix(strings.Repeat("10.1.1.1, ", 400), ", ")
	tests := []struct {
		name string
		peer netip.Addr
		xff  []string
		want string // "" for the invalid Addr
	}{
		{"untrusted peer ignores XFF", outsider, []string{"1.2.3.4"}, "192.0.2.9"},
		{"trusted peer, no XFF", lb, nil, "10.0.0.1"},
		{"right-most untrusted", lb, []string{"1.1.1.1, 2.2.2.2, 10.0.0.7"}, "2.2.2.2"},
		{"forged left entries ignored", lb, []string{"6.6.6.6, 2.2.2.2"}, "2.2.2.2"},
		{"across lines", lb, []string{"1.1.1.1", "3.3.3.3, 10.9.9.9"}, "3.3.3.3"},
		{"last line wins", lb, []string{"1.1.1.1, 10.0.0.3", "10.0.0.4"}, "1.1.1.1"},
		{"unknown", lb, []string{"unknown"}, ""},
		{"garbage behind a trusted hop", lb, []string{"1.1.1.1, garbage, 10.0.0.2"}, ""},
		{"garbage left of the client is not reached", lb, []string{"garbage, 1.1.1.1"}, "1.1.1.1"},
		{"v4 with port", lb, []string{"1.2.3.4:5678"}, "1.2.3.4"},
		{"v6 with port", lb, []string{"[2001:db8::1]:443"}, "2001:db8::1"},
		{"v6 bracketed", lb, []string{"[2001:db8::2]"}, "2001:db8::2"},
		{"v6 bare", lb, []string{"2001:db8::3"}, "2001:db8::3"},
		{"mapped", lb, []string{"::ffff:1.2.3.4"}, "1.2.3.4"},
		{"mapped trusted", lb, []string{"1.1.1.1, ::ffff:10.0.0.5"}, "1.1.1.1"},
		{"zone dropped", lb, []string{"fe80::1%eth0"}, "fe80::1"},
		{"bad port", lb, []string{"1.2.3.4:x"}, ""},
		{"empty elements", lb, []string{" , 1.2.3.4 ,,"}, "1.2.3.4"},
		{"all trusted", lb, []string{"10.0.0.9, 10.0.0.8"}, "10.0.0.9"},
		{"400 trusted entries", lb, []string{many}, ""},
		{"400 entries, untrusted at the right", lb, []string{many + ", 5.5.5.5"}, "5.5.5.5"},
		{"huge entry", lb, []string{strings.Repeat("1", 1000)}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var xff [][]byte
			for _, l := range tt.xff {
				xff = append(xff, []byte(l))
			}
			got := s.clientIP(tt.peer, s.trusted(tt.peer), xff)
			if tt.want == "" {
				if got.IsValid() {
					t.Errorf("clientIP(%q) = %v, want invalid", tt.xff, got)
				}
				return
			}
			if got != netip.MustParseAddr(tt.want) {
				t.Errorf("clientIP(%q) = %v, want %s", tt.xff, got, tt.want)
			}
		})
	}
}

// TestForwardedForEndToEnd: through the proxy, with an allowlisted key.
func TestForwardedForEndToEnd(t *testing.T) {
	allow := []netip.Prefix{mustPrefix(t, "203.0.113.0/24"), mustPrefix(t, "2001:db8::/32")}
	untrusting := newFixture(t, nil)
	k1 := untrusting.keys.add(t, &auth.Key{ID: "key_x", User: "u", Enabled: true, IPAllowlist: allow})
	r := untrusting.get("/x", "X-API-Key: "+k1, "X-Forwarded-For: 203.0.113.5", "X-Real-IP: 203.0.113.5",
		"True-Client-IP: 203.0.113.5", "Forwarded: for=203.0.113.5")
	if code, _ := r.denial(t); code != "ip_not_allowed" {
		t.Errorf("untrusted peer choosing its IP: %d %s, want 403 ip_not_allowed", r.status, code)
	}

	trusting := newFixture(t, func(_ *fixture, o *Options) {
		o.TrustedProxies = []netip.Prefix{mustPrefix(t, "127.0.0.0/8")}
	})
	k2 := trusting.keys.add(t, &auth.Key{ID: "key_y", User: "u", Enabled: true, IPAllowlist: allow})
	open := trusting.keys.add(t, &auth.Key{ID: "key_z", User: "u", Enabled: true})
	e := trusting.get("/x", "X-API-Key: "+k2, "X-Forwarded-For: 6.6.6.6, 203.0.113.5").upstream(t)
	if got := e.Values("X-Forwarded-For"); len(got) != 1 || got[0] != "6.6.6.6, 203.0.113.5, 127.0.0.1" {
		t.Errorf("X-Forwarded-For = %q", got)
	}
	e = trusting.get("/x", "X-API-Key: "+k2, "X-Forwarded-For: 1.1.1.1", "X-Forwarded-For: [2001:db8::7]:99").upstream(t)
	if got := e.Values("X-Forwarded-For"); len(got) != 1 || got[0] != "1.1.1.1, [2001:db8::7]:99, 127.0.0.1" {
		t.Errorf("multi-line X-Forwarded-For = %q", got)
	}
	for _, xff := range []string{
		"203.0.113.5, unknown",
		"203.0.113.5, 1.2.3",
		"::ffff:192.0.2.1",
		"203.0.113.5, 6.6.6.6",
		strings.Repeat("127.0.0.1,", 400) + "127.0.0.1",
	} {
		r := trusting.get("/x", "X-API-Key: "+k2, "X-Forwarded-For: "+xff)
		if code, _ := r.denial(t); code != "ip_not_allowed" {
			t.Errorf("XFF %.40q: %d %s, want ip_not_allowed", xff, r.status, code)
		}
		// A key without an allowlist does not care.
		if r := trusting.get("/x", "X-API-Key: "+open, "X-Forwarded-For: "+xff); r.status != 200 {
			t.Errorf("XFF %.40q with an open key: %d", xff, r.status)
		}
	}
	if r := trusting.get("/x", "X-API-Key: "+k2, "X-Forwarded-For: ::ffff:203.0.113.9"); r.status != 200 {
		t.Errorf("mapped address in allowlist: %d", r.status)
	}
}

// TestProxyProtocol: the PROXY header sets the client address when it
// comes from a trusted peer, and is refused from anyone else.
func TestProxyProtocol(t *testing.T) {
	trusted := newFixture(t, func(_ *fixture, o *Options) {
		o.ProxyProtocol = true
		o.TrustedProxies = []netip.Prefix{mustPrefix(t, "127.0.0.0/8")}
	})
	k := trusted.keys.add(t, &auth.Key{ID: "key_pp", User: "u", Enabled: true,
		IPAllowlist: []netip.Prefix{mustPrefix(t, "198.51.100.0/24")}})
	r := trusted.raw("PROXY TCP4 198.51.100.7 192.0.2.1 40000 80\r\nGET /x HTTP/1.1\r\nHost: a\r\nX-API-Key: " + k + "\r\n\r\n")
	e := r.upstream(t)
	if got := e.Values("X-Forwarded-For"); len(got) != 1 || got[0] != "198.51.100.7" {
		t.Errorf("X-Forwarded-For = %q, want the PROXY source", got)
	}
	// Without a header a trusted peer is served as itself.
	if r := trusted.get("/x", "X-API-Key: "+k); r.status != 403 {
		t.Errorf("no PROXY header: %d, want 403 (peer 127.0.0.1 not allowlisted)", r.status)
	}

	untrusted := newFixture(t, func(_ *fixture, o *Options) { o.ProxyProtocol = true })
	k2 := untrusted.keys.add(t, &auth.Key{ID: "key_pq", User: "u", Enabled: true,
		IPAllowlist: []netip.Prefix{mustPrefix(t, "198.51.100.0/24")}})
	c, err := net.Dial("tcp", untrusted.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	c.Write([]byte("PROXY TCP4 198.51.100.7 192.0.2.1 40000 80\r\nGET /x HTTP/1.1\r\nHost: a\r\nX-API-Key: " + k2 + "\r\n\r\n"))
	buf := make([]byte, 512)
	n, _ := c.Read(buf)
	if strings.Contains(string(buf[:n]), "200 OK") || untrusted.echo.Hits() != 0 {
		t.Errorf("PROXY header from an untrusted peer was honoured: %q", buf[:n])
	}
	if r := untrusted.get("/x", "X-API-Key: "+k2); r.status != 403 {
		t.Errorf("plain request from untrusted peer: %d, want 403", r.status)
	}
}

// TestUpstreamHealth: a target that refuses connections is skipped and the
// request goes to a live one; all dead gives 502.
func TestUpstreamHealth(t *testing.T) {
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadURL := "http://" + dead.Addr().String()
	dead.Close()
	f := newFixture(t, func(f *fixture, o *Options) {
		o.Routes = []Route{{Name: "rr", Targets: []string{deadURL, f.up, deadURL}, Auth: AuthNone}}
	})
	for i := range 10 {
		if r := f.get("/x"); r.status != 200 {
			t.Fatalf("request %d: %d %s", i, r.status, r.body)
		}
	}
	if f.echo.Hits() != 10 {
		t.Errorf("live target served %d of 10", f.echo.Hits())
	}
	// Each dead target is tried once, then skipped while marked.
	if n := testutil.ToFloat64(f.srv.m.upRequests.WithLabelValues("rr", "error")); n > 2 {
		t.Errorf("%v failed attempts for 2 dead targets, want at most 2", n)
	}

	// Every target dead: one attempt, 502.
	g := newFixture(t, func(_ *fixture, o *Options) {
		o.Routes = []Route{{Name: "dead", Targets: []string{deadURL, deadURL}, Auth: AuthNone}}
	})
	for range 3 {
		r := g.get("/x")
		if code, _ := r.denial(t); r.status != 502 || code != "upstream_unavailable" {
			t.Errorf("all targets dead: %d %s", r.status, code)
		}
	}
}
