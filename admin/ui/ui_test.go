package ui

import (
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHandlerServes(t *testing.T) {
	tests := []struct {
		name, method, path string
		wantStatus         int
		wantType           string
		wantBody           string
	}{
		{"index with slash", "GET", "/ui/", 200, "text/html; charset=utf-8", "<title>keygate console</title>"},
		{"index without slash", "GET", "/ui", 200, "text/html; charset=utf-8", "<title>keygate console</title>"},
		{"index by name", "GET", "/ui/index.html", 200, "text/html; charset=utf-8", "<title>keygate console</title>"},
		{"script", "GET", "/ui/app.js", 200, "text/javascript; charset=utf-8", "'use strict';"},
		{"stylesheet", "GET", "/ui/app.css", 200, "text/css; charset=utf-8", ":root {"},
		{"head", "HEAD", "/ui/app.js", 200, "text/javascript; charset=utf-8", ""},
		{"unknown file", "GET", "/ui/nope.js", 404, "", "404"},
		{"embedded dir", "GET", "/ui/static/", 404, "", "404"},
		{"embedded file by its fs path", "GET", "/ui/static/app.js", 404, "", "404"},
		{"traversal", "GET", "/ui/../ui/app.js", 404, "", "404"},
		{"subdirectory", "GET", "/ui/x/", 404, "", "404"},
		{"prefix lookalike", "GET", "/uix", 404, "", "404"},
		{"outside /ui", "GET", "/app.js", 404, "", "404"},
		{"post", "POST", "/ui/", 405, "", "405"},
	}
	h := Handler()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(tt.method, "http://admin.test/", nil)
			r.URL.Path = tt.path // bypass NewRequest's cleaning, so raw paths reach the handler
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tt.wantStatus {
				t.Fatalf("%s %s: status %d, want %d", tt.method, tt.path, w.Code, tt.wantStatus)
			}
			if tt.wantType != "" {
				if got := w.Header().Get("Content-Type"); got != tt.wantType {
					t.Errorf("%s %s: Content-Type %q, want %q", tt.method, tt.path, got, tt.wantType)
				}
			}
			if tt.wantBody != "" && !strings.Contains(w.Body.String(), tt.wantBody) {
				t.Errorf("%s %s: body does not contain %q:\n%.300s", tt.method, tt.path, tt.wantBody, w.Body.String())
			}
			if tt.method == "HEAD" && w.Body.Len() != 0 {
				t.Errorf("HEAD %s: %d body bytes, want none", tt.path, w.Body.Len())
			}
			if tt.wantStatus == 405 && w.Header().Get("Allow") != "GET, HEAD" {
				t.Errorf("%s %s: Allow %q, want %q", tt.method, tt.path, w.Header().Get("Allow"), "GET, HEAD")
			}
		})
	}
}

// Every response, errors included, carries the security headers.
func TestHandlerSecurityHeaders(t *testing.T) {
	h := Handler()
	for _, path := range []string{"/ui/", "/ui", "/ui/app.js", "/ui/app.css", "/ui/missing", "/ui/static/"} {
		r := httptest.NewRequest("GET", "http://admin.test"+path, nil)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		hdr := w.Header()
		csp := hdr.Get("Content-Security-Policy")
		for _, want := range []string{"default-src 'self'", "frame-ancestors 'none'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("GET %s: Content-Security-Policy %q lacks %q", path, csp, want)
			}
		}
		for name, want := range map[string]string{
			"X-Content-Type-Options": "nosniff",
			"Referrer-Policy":        "no-referrer",
			"Cache-Control":          "no-store",
		} {
			if got := hdr.Get(name); got != want {
				t.Errorf("GET %s: %s %q, want %q", path, name, got, want)
			}
		}
	}
}

// The page must work under default-src 'self': no inline script or style,
// nothing loaded from another origin, and no innerHTML fed with data.
func TestAssetsFitTheCSP(t *testing.T) {
	for _, name := range []string{"static/index.html", "static/app.js", "static/app.css"} {
		b, err := static.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		s := string(b)
		for _, bad := range []string{"http://", "https://", "//cdn", "innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "localStorage", "document.cookie", " style=\"", " onclick=\"", "<script>"} {
			if strings.Contains(s, bad) {
				t.Errorf("%s contains %q", name, bad)
			}
		}
	}
}
