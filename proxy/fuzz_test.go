package proxy

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/auth"
	"github.com/keygate/keygate/internal/echo"
)

// FuzzProxyRequest sends arbitrary bytes to a running proxy and checks
// the property everything else serves: whatever reaches the upstream
// carries only identity keygate set. The key "alice" holds is valid, so
// mutations of the seeds explore both accepted and refused requests.
func FuzzProxyRequest(f *testing.F) {
	fx := newFixture(f, func(_ *fixture, o *Options) {
		o.AccessLog = false
		o.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	})
	key := fx.keys.add(f, &auth.Key{ID: "key_alice", Name: "a", User: "alice", Enabled: true,
		IPAllowlist: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}})
	// Seeds use a placeholder so mutations can move the key around.
	seeds := []string{
		"GET /x HTTP/1.1\r\nHost: a\r\nX-API-Key: KEY\r\nX-Forwarded-For: 203.0.113.1\r\n\r\n",
		"GET /pub/%2e%2e/x?api_key=KEY HTTP/1.1\r\nHost: a\r\nX-Keygate-User: mallory\r\nX-Forwarded-For: 203.0.113.1\r\n\r\n",
		"POST /x HTTP/1.1\r\nHost: a\r\nAuthorization: ApiKey KEY\r\nTransfer-Encoding: chunked\r\nX-Forwarded-For: 203.0.113.1\r\n\r\n1\r\na\r\n0\r\nX-Keygate-User: m\r\n\r\n",
		"GET /pub HTTP/1.1\r\nHost: a\r\nConnection: X-Keygate-User\r\nX_Keygate_User: m\r\nX-Keygate-User: m\r\n\r\n",
		"GET /x HTTP/1.1\r\nHost: a\r\nX-API-Key: KEY\r\nX-Forwarded-For: 203.0.113.1, unknown\r\nX-Keygate-User: m\r\n folded\r\n\r\n",
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, req string) {
		req = strings.ReplaceAll(req, "KEY", key)
		c, err := net.Dial("tcp", fx.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		c.Write([]byte(req))
		if tc, ok := c.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
		br := bufio.NewReader(c)
		for {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				return // closed, or a response to a method we cannot tell
			}
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				return
			}
			if resp.StatusCode != 200 {
				if strings.Contains(string(body), key) {
					t.Fatalf("denial echoes the key: %s", body)
				}
				continue
			}
			var e echo.Request
			if json.Unmarshal(body, &e) != nil {
				continue
			}
			for _, h := range e.Headers {
				n := strings.ToLower(strings.NewReplacer("_", "-", ".", "-").Replace(h[0]))
				if !strings.HasPrefix(n, "x-keygate-") {
					continue
				}
				switch {
				case h[0] == "X-Keygate-User" && h[1] == "alice",
					h[0] == "X-Keygate-Key-Id" && h[1] == "key_alice",
					h[0] == "X-Keygate-Key-Name" && h[1] == "a",
					h[0] == "X-Keygate-Auth" && h[1] == "key":
				default:
					t.Fatalf("upstream got identity header %q for request %q", h, req)
				}
			}
			if len(e.Values("X-Keygate-User")) > 1 {
				t.Fatalf("two X-Keygate-User headers for %q", req)
			}
			if !keyOptional(e.URI) && len(e.Values("X-Keygate-Key-Id")) != 1 {
				t.Fatalf("request to %q reached the upstream without authentication: %q", e.URI, req)
			}
		}
	})
}

// keyOptional reports whether the fixture's routes let uri through without
// a key (auth: none under /pub, optional under /opt).
func keyOptional(uri string) bool {
	path, _, _ := strings.Cut(uri, "?")
	for _, p := range []string{"/pub", "/opt"} {
		if path == p || strings.HasPrefix(path, p+"/") {
			return true
		}
	}
	return false
}

// FuzzParseForwardedAddr: any X-Forwarded-For entry parses to a valid,
// unmapped, zone-less address or is refused; never a panic.
func FuzzParseForwardedAddr(f *testing.F) {
	for _, s := range []string{"1.2.3.4", "1.2.3.4:5", "[::1]:5", "[::1]", "::ffff:1.2.3.4", "fe80::1%eth0",
		"unknown", "", ":", "[", "[]:", "1.2.3.4:", "1.2.3.4:99999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if len(s) == 0 {
			return // callers skip empty list elements
		}
		a, ok := parseForwardedAddr([]byte(s))
		if !ok {
			return
		}
		if !a.IsValid() || a.Is4In6() || a.Zone() != "" {
			t.Fatalf("parseForwardedAddr(%q) = %v", s, a)
		}
	})
}

// FuzzSplitTarget: a request-target splits into an absolute path and a
// query, or is refused; a fragment never survives.
func FuzzSplitTarget(f *testing.F) {
	for _, s := range []string{"/a?b", "http://h/a?b", "https://h?x", "*", "h:443", "/a#b", "http://", "http://u@h/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		host, path, query, ok := splitTarget([]byte(s))
		if !ok {
			return
		}
		if len(path) == 0 || path[0] != '/' {
			t.Fatalf("splitTarget(%q) path %q", s, path)
		}
		if strings.ContainsAny(string(path)+string(query)+string(host), "#") {
			t.Fatalf("splitTarget(%q) kept a fragment", s)
		}
	})
}
