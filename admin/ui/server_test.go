package ui_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/admin/ui"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/embedded"
)

// recorder keeps every admin API request the browser made, so the test can
// check what went over the wire (no secret in a URL, merge patches with
// only the changed fields).
type recorder struct {
	mu   sync.Mutex
	reqs []recorded
}

type recorded struct {
	method, uri, apiKey string
	body                []byte
}

func (rc *recorder) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/v1/") {
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			rc.mu.Lock()
			rc.reqs = append(rc.reqs, recorded{r.Method, r.RequestURI, r.Header.Get("X-API-Key"), body})
			rc.mu.Unlock()
		}
		h.ServeHTTP(w, r)
	})
}

func (rc *recorder) all() []recorded {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]recorded(nil), rc.reqs...)
}

// consoleServer is the admin API with the console mounted, over a real key
// service on the embedded store in a temp dir.
type consoleServer struct {
	url      string
	adminKey string
	adminID  string
	svc      *store.Service
	rec      *recorder
}

func startConsole(t *testing.T) *consoleServer {
	t.Helper()
	be, err := embedded.Open(filepath.Join(t.TempDir(), "keygate-data"), embedded.Options{})
	if err != nil {
		t.Fatalf("embedded.Open: %v", err)
	}
	t.Cleanup(func() { be.Close() })
	svc := store.NewService(be, store.Options{})
	boot, err := svc.Bootstrap(context.Background(), "", false)
	if err != nil {
		t.Fatalf("Bootstrap: %v", err)
	}
	rec := &recorder{}
	h := admin.New(admin.Options{Service: svc, Keys: store.NewKeySource(be), UI: ui.Handler()})
	srv := httptest.NewServer(rec.wrap(h))
	t.Cleanup(srv.Close)
	return &consoleServer{url: srv.URL, adminKey: boot.Secret, adminID: boot.Key.ID, svc: svc, rec: rec}
}

// call is one admin API request from Go, with the admin key.
func (s *consoleServer) call(t *testing.T, method, path string, body any) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, s.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-API-Key", s.adminKey)
	req.Header.Set("X-Test-Client", "go") // tells these apart from the browser's calls
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(res.Body).Decode(&out)
	return res.StatusCode, out
}

func (s *consoleServer) key(t *testing.T, id string) map[string]any {
	t.Helper()
	code, out := s.call(t, "GET", "/v1/keys/"+id, nil)
	if code != 200 {
		t.Fatalf("GET /v1/keys/%s: %d %v", id, code, out)
	}
	return out["key"].(map[string]any)
}

func (s *consoleServer) create(t *testing.T, body map[string]any) (id, secret string) {
	t.Helper()
	code, out := s.call(t, "POST", "/v1/keys", body)
	if code != 201 {
		t.Fatalf("POST /v1/keys %v: %d %v", body, code, out)
	}
	return out["key"].(map[string]any)["id"].(string), out["secret"].(string)
}

// lookup reports the id of the key secret belongs to, or "" when none.
func (s *consoleServer) lookup(t *testing.T, secret string) string {
	t.Helper()
	code, out := s.call(t, "POST", "/v1/keys/lookup", map[string]string{"secret": secret})
	if code == 404 {
		return ""
	}
	if code != 200 {
		t.Fatalf("lookup: %d %v", code, out)
	}
	return out["key"].(map[string]any)["id"].(string)
}
