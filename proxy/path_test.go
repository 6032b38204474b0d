package proxy

import (
	"bytes"
	"strings"
	"testing"
)

var normalizeTests = []struct {
	in, want string // want "" means refused
}{
	{"/", "/"},
	{"/a/b", "/a/b"},
	{"/a/b/", "/a/b/"},
	{"//a///b//", "/a/b/"},
	{"/a/./b", "/a/b"},
	{"/a/../b", "/b"},
	{"/a/b/..", "/a/"},
	{"/a/b/.", "/a/b/"},
	{"/../../a", "/a"},
	{"/..", "/"},
	{"/%2e%2e/a", "/a"},
	{"/a/%2E/b", "/a/b"},
	{"/a/.%2e/b", "/b"},
	{"/%41%7e%2D%5f", "/A~-_"},
	{"/%3b%3B", "/%3B%3B"},
	{"/%c3%a9", "/%C3%A9"},
	{"/a;b/c", "/a;b/c"},
	{"/a..b/", "/a..b/"},
	{"/...", "/..."},
	{"/a%2Fb", ""},
	{"/a%2fb", ""},
	{"/a%00", ""},
	{"/a%", ""},
	{"/a%4", ""},
	{"/a%zz", ""},
	{"/a b", ""},
	{"/a\x7f", ""},
	{"/a\xc3\xa9", ""},
	{"/a\\b", ""},
	{"/a#b", ""},
	{"/../;x", "/;x"},
	{"/..;/a", ""},
	{"/.;/a", ""},
	{"/%2e%2e;x/a", ""},
	{"a/b", ""},
	{"", ""},
}

func TestNormalizePath(t *testing.T) {
	for _, tt := range normalizeTests {
		got, ok := normalizePath(nil, []byte(tt.in))
		if tt.want == "" {
			if ok {
				t.Errorf("normalizePath(%q) = %q, want refused", tt.in, got)
			}
			continue
		}
		if !ok || string(got) != tt.want {
			t.Errorf("normalizePath(%q) = %q, %v, want %q", tt.in, got, ok, tt.want)
		}
	}
}

// FuzzNormalizePath checks the properties the route decision relies on:
// the result is absolute, has no empty, "." or ".." segments and no
// encoded slash, and normalizing it again changes nothing (so the upstream
// cannot read it differently from the decision).
func FuzzNormalizePath(f *testing.F) {
	for _, tt := range normalizeTests {
		f.Add(tt.in)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, ok := normalizePath(nil, []byte(in))
		if !ok {
			return
		}
		if len(got) == 0 || got[0] != '/' {
			t.Fatalf("normalizePath(%q) = %q: not absolute", in, got)
		}
		if bytes.Contains(got, []byte("//")) {
			t.Fatalf("normalizePath(%q) = %q: empty segment", in, got)
		}
		for _, seg := range strings.Split(string(got[1:]), "/") {
			if seg == "." || seg == ".." {
				t.Fatalf("normalizePath(%q) = %q: dot segment", in, got)
			}
		}
		if bytes.Contains(bytes.ToLower(got), []byte("%2f")) || bytes.Contains(bytes.ToLower(got), []byte("%2e")) {
			t.Fatalf("normalizePath(%q) = %q: encoded slash or dot left", in, got)
		}
		again, ok := normalizePath(nil, got)
		if !ok || !bytes.Equal(again, got) {
			t.Fatalf("normalizePath not idempotent: %q -> %q -> %q (%v)", in, got, again, ok)
		}
	})
}

func TestRouteMatch(t *testing.T) {
	mk := func(name, host, prefix string, methods ...string) *route {
		p, err := normalizePrefix(prefix)
		if err != nil {
			t.Fatal(err)
		}
		return &route{name: name, host: host, prefix: p, methods: methods}
	}
	tbl := newRouteTable([]*route{
		mk("root", "", "/"),
		mk("api", "", "/api/"),
		mk("api-post", "", "/api/v2", "POST"),
		mk("api-v2", "", "/api/v2"),
		mk("host", "h.example", "/x"),
		mk("host-root", "h.example", "/"),
	})
	tests := []struct{ host, path, method, want string }{
		{"", "/", "GET", "root"},
		{"", "/apix", "GET", "root"},
		{"", "/api", "GET", "api"},
		{"", "/api/a", "GET", "api"},
		{"", "/api/v2", "POST", "api-post"},
		{"", "/api/v2/z", "GET", "api-v2"},
		{"", "/api/v23", "GET", "api"},
		{"H.Example", "/x/1", "GET", "host"},
		{"h.example", "/y", "GET", "host-root"},
		{"h.example", "/api/v2", "GET", "api-v2"},
		{"h.example", "/", "GET", "host-root"},
		{"h.example.", "/x", "GET", "host"},
		{"other", "/x", "GET", "root"},
	}
	for _, tt := range tests {
		r := tbl.match([]byte(tt.host), []byte(tt.path), []byte(tt.method))
		got := ""
		if r != nil {
			got = r.name
		}
		if got != tt.want {
			t.Errorf("match(%q, %q, %q) = %q, want %q", tt.host, tt.path, tt.method, got, tt.want)
		}
	}
}

func TestOptionsValidate(t *testing.T) {
	o := Options{
		Sources: []Source{{Header: "X A"}, {Header: "a", Query: "b"}, {Query: "q", Scheme: "s"}},
		Routes: []Route{
			{Name: "a", Targets: []string{"ftp://x"}, Auth: "maybe"},
			{Name: "a", PathPrefix: "x", Targets: nil},
		},
		CertFile: "c",
	}
	o.setDefaults()
	err := o.validate()
	if err == nil {
		t.Fatal("validate accepted a bad configuration")
	}
	for _, want := range []string{"Keys is required", "sources[0]", "sources[1]", "sources[2]", "duplicate name",
		"auth \"maybe\"", "targets[0]", "no targets", "path_prefix", "cert_file and key_file"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("validate error lacks %q:\n%v", want, err)
		}
	}
}

func TestStripPathParams(t *testing.T) {
	for in, want := range map[string]string{
		"/":               "/",
		"/a":              "/a",
		"/a;x/b":          "/a/b",
		"/a;x;y/b;z/":     "/a/b/",
		"/;x/admin":       "/admin",
		"/;x":             "/",
		"/a/;x/b":         "/a/b",
		"/admin;x/users/": "/admin/users/",
		"/a%3Bx/b":        "/a%3Bx/b",
	} {
		if got := string(stripPathParams([]byte("keep"), []byte(in))); got != "keep"+want {
			t.Errorf("stripPathParams(%q) = %q, want %q", in, got[4:], want)
		}
	}
}
