package proxy

import (
	"strings"
	"testing"

	"github.com/keygate/keygate/auth"
)

// TestForwardedFraming checks the request line, header block and body
// framing keygate writes upstream itself (writeRequest): bodies go with a
// Content-Length (0 for an empty body on methods other than GET and HEAD,
// none on a bodiless GET), a chunked body arrives de-chunked, and a bare CR
// inside a received value cannot end a forwarded header line.
func TestForwardedFraming(t *testing.T) {
	f := newFixture(t, nil)
	key := f.keys.add(t, &auth.Key{ID: "key_fr", User: "u", Enabled: true})
	tests := []struct {
		name, req    string
		method, body string
		cl           []string
	}{
		{"get", "GET /x?q=1 HTTP/1.1\r\nHost: api.example\r\nX-API-Key: " + key + "\r\n\r\n", "GET", "", nil},
		{"delete without body", "DELETE /x HTTP/1.1\r\nHost: api.example\r\nX-API-Key: " + key + "\r\n\r\n", "DELETE", "", []string{"0"}},
		{"post", "POST /x HTTP/1.1\r\nHost: api.example\r\nX-API-Key: " + key + "\r\nContent-Length: 5\r\n\r\nhello", "POST", "hello", []string{"5"}},
		{"chunked", "PUT /x HTTP/1.1\r\nHost: api.example\r\nX-API-Key: " + key + "\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n", "PUT", "abcde", []string{"5"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := f.raw(tt.req).upstream(t)
			if e.Method != tt.method || e.Body != tt.body {
				t.Errorf("upstream got %s with body %q, want %s with %q", e.Method, e.Body, tt.method, tt.body)
			}
			if cl := e.Values("Content-Length"); len(cl) != len(tt.cl) || len(cl) == 1 && cl[0] != tt.cl[0] {
				t.Errorf("Content-Length = %q, want %q", cl, tt.cl)
			}
			if te := e.Values("Transfer-Encoding"); len(te) != 0 {
				t.Errorf("Transfer-Encoding forwarded: %q", te)
			}
			if h := e.Values("Host"); len(h) != 1 || h[0] != "api.example" {
				t.Errorf("Host = %q", h)
			}
		})
	}

	r := f.raw("GET /x HTTP/1.1\r\nHost: api.example\r\nX-API-Key: " + key + "\r\nX-Odd: a\rX-Keygate-User: mallory\r\n\r\n")
	if r.status == 200 {
		e := r.upstream(t)
		if u := e.Values("X-Keygate-User"); len(u) != 1 || u[0] != "u" {
			t.Errorf("a bare CR split a forwarded header: X-Keygate-User = %q", u)
		}
	} else if r.status != 400 {
		t.Errorf("bare CR in a value: status %d, want 200 (CR neutralized) or 400", r.status)
	}
}

// TestAppendHeaderValue pins the CR/LF neutralizing itself: the server
// refuses such requests before forward, so this is the last line of
// defence and is tested on its own.
func TestAppendHeaderValue(t *testing.T) {
	for in, want := range map[string]string{
		"plain":           "plain",
		"a\rb":            "a b",
		"a\nb\r\nc":       "a b  c",
		"":                "",
		"tab\there\x00ok": "tab\there\x00ok",
	} {
		if got := string(appendHeaderValue([]byte("p:"), []byte(in))); got != "p:"+want {
			t.Errorf("appendHeaderValue(%q) = %q, want %q", in, got, "p:"+want)
		}
	}
}

// TestRequestHeaderRules: every rule name fits the lookup buffer and is
// lower-case (requestHeaderRule lower-cases what it looks up), and the
// hop-by-hop ones agree with isHopByHop, which the response side uses.
func TestRequestHeaderRules(t *testing.T) {
	for name, rule := range requestHeaderRules {
		if len(name) > maxRuleName || strings.ToLower(name) != name {
			t.Errorf("rule name %q: longer than %d or not lower-case", name, maxRuleName)
		}
		if isHopByHop([]byte(name)) && rule != dropAlways {
			t.Errorf("hop-by-hop %q is not dropped always", name)
		}
		if got := requestHeaderRule([]byte(strings.ToUpper(name))); got != rule {
			t.Errorf("requestHeaderRule(%q) = %d, want %d", strings.ToUpper(name), got, rule)
		}
	}
	for _, name := range []string{"Connection", "Keep-Alive", "Proxy-Connection", "TE", "Trailer",
		"Transfer-Encoding", "Upgrade", "Proxy-Authorization", "Proxy-Authenticate"} {
		if requestHeaderRule([]byte(name)) != dropAlways {
			t.Errorf("%s is forwarded", name)
		}
	}
	if requestHeaderRule([]byte(strings.Repeat("x", 200))) != forwardHeader {
		t.Error("a long name has a rule")
	}
}

// TestHopByHopInitial: the prefilter lets every name isHopByHop knows, and
// X-Request-Id, through.
func TestHopByHopInitial(t *testing.T) {
	for _, name := range []string{"Connection", "keep-alive", "Proxy-Connection", "te", "Trailer",
		"Transfer-Encoding", "upgrade", "Proxy-Authorization", "Proxy-Authenticate", "x-request-id"} {
		if !hopByHopInitial(name[0]) {
			t.Errorf("%s is filtered out", name)
		}
		if !isHopByHop([]byte(name)) && !strings.EqualFold(name, "X-Request-Id") {
			t.Errorf("%s is not hop-by-hop", name)
		}
	}
}
