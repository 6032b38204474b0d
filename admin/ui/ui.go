// Package ui is keygate's web console: three static files (index.html,
// app.js, app.css) embedded in the binary and served under /ui/ on the
// admin listener. The console has no server-side logic and no session of
// its own: it calls the admin API (/v1/...) from the browser with the admin
// key the operator pastes in, kept in sessionStorage only, so serving these
// files needs no admin key.
package ui

import (
	"embed"
	"net/http"
	"strconv"
	"strings"
)

//go:embed static/index.html static/app.js static/app.css
var static embed.FS

// lookup maps the path below /ui/ to the embedded file and its content
// type, set explicitly rather than sniffed. Anything else is not found:
// there is no directory listing and no file system walk.
func lookup(name string) (file, contentType string, ok bool) {
	switch name {
	case "", "index.html":
		return "static/index.html", "text/html; charset=utf-8", true
	case "app.js":
		return "static/app.js", "text/javascript; charset=utf-8", true
	case "app.css":
		return "static/app.css", "text/css; charset=utf-8", true
	}
	return "", "", false
}

// Handler serves the console at /ui and /ui/ (index.html), /ui/app.js and
// /ui/app.css. Every response, 404s included, carries a strict CSP (only
// same-origin scripts, styles and fetches; no framing), nosniff,
// no-referrer and no-store, so neither the page nor an admin key typed
// into it lingers in caches or leaks through a Referer.
func Handler() http.Handler {
	return http.HandlerFunc(serve)
}

func serve(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Frame-Options", "DENY")

	name, ok := strings.CutPrefix(r.URL.Path, "/ui")
	if ok && name != "" {
		name, ok = strings.CutPrefix(name, "/")
	}
	file, ctype, found := lookup(name)
	if !ok || !found {
		http.Error(w, "404 page not found", http.StatusNotFound)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.Set("Allow", "GET, HEAD")
		http.Error(w, "405 method not allowed", http.StatusMethodNotAllowed)
		return
	}
	b, err := static.ReadFile(file)
	if err != nil {
		// Only names from lookup get here, and each is embedded.
		http.Error(w, "500 internal error", http.StatusInternalServerError)
		return
	}
	h.Set("Content-Type", ctype)
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(b)
	}
}
