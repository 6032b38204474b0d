package ui_test

import (
	"net/http"
	"strings"
	"testing"
)

// Mounted on the admin handler, the console needs no admin key (it asks
// for one itself), while the API next to it still does.
func TestMountedOnAdmin(t *testing.T) {
	s := startConsole(t)
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, tt := range []struct {
		path       string
		wantStatus int
		wantType   string
	}{
		{"/ui/", 200, "text/html; charset=utf-8"},
		{"/ui/app.js", 200, "text/javascript; charset=utf-8"},
		{"/ui/app.css", 200, "text/css; charset=utf-8"},
		{"/ui/nope", 404, ""},
		{"/v1/keys", 401, "application/json"},
	} {
		res, err := noRedirect.Get(s.url + tt.path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != tt.wantStatus {
			t.Errorf("GET %s without a key: %d, want %d", tt.path, res.StatusCode, tt.wantStatus)
		}
		if tt.wantType != "" && res.Header.Get("Content-Type") != tt.wantType {
			t.Errorf("GET %s: Content-Type %q, want %q", tt.path, res.Header.Get("Content-Type"), tt.wantType)
		}
		if strings.HasPrefix(tt.path, "/ui/") && res.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("GET %s: Cache-Control %q", tt.path, res.Header.Get("Cache-Control"))
		}
	}
	// /ui reaches the console: the admin mux redirects it to /ui/.
	res, err := http.Get(s.url + "/ui")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 || res.Request.URL.Path != "/ui/" || res.Header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Errorf("GET /ui: %d at %s (%s), want the console at /ui/", res.StatusCode, res.Request.URL.Path, res.Header.Get("Content-Type"))
	}
}
