package client

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestNewRejectsBadURLs(t *testing.T) {
	for _, u := range []string{"127.0.0.1:9090", "ftp://host", "http://", "::"} {
		if _, err := New(u, "k", nil); err == nil {
			t.Errorf("New(%q) accepted", u)
		}
	}
	c, err := New("http://127.0.0.1:9090/base/", "k", nil)
	if err != nil || c.base.String() != "http://127.0.0.1:9090/base" {
		t.Errorf("New with a path: %v %v", c, err)
	}
}

func TestDoErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-API-Key") != "secret-key" {
			t.Errorf("X-API-Key = %q", r.Header.Get("X-API-Key"))
		}
		switch r.URL.Path {
		case "/api/v1/keys/a%2Fb":
			w.Write([]byte(`{"key":{"id":"a/b"}}`))
		case "/api/v1/keys/field":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(422)
			w.Write([]byte(`{"error":"invalid_field","message":"not an IP","field":"ip_allowlist[0]","request_id":"r1"}`))
		default:
			w.WriteHeader(502)
			w.Write([]byte("<html>bad gateway</html>"))
		}
	}))
	defer srv.Close()
	c, err := New(srv.URL+"/api", "secret-key", nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if k, _, err := c.GetKey(ctx, "a/b"); err != nil || k.Key.ID != "a/b" {
		t.Errorf("GetKey with a slash in the id: %+v %v", k, err)
	}
	_, _, err = c.GetKey(ctx, "field")
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != 422 || ae.Code != "invalid_field" || ae.Field != "ip_allowlist[0]" || ae.RequestID != "r1" {
		t.Errorf("422: %#v", err)
	}
	if !strings.Contains(err.Error(), "invalid_field") || !strings.Contains(err.Error(), "ip_allowlist[0]") {
		t.Errorf("error text %q lacks the code or field", err)
	}
	_, _, err = c.GetKey(ctx, "other")
	if !errors.As(err, &ae) || ae.Status != 502 || ae.Code != "http_502" || !strings.Contains(ae.Message, "bad gateway") {
		t.Errorf("non-JSON 502: %#v", err)
	}
	srv.Close()
	_, _, err = c.GetKey(ctx, "x")
	var ue *UnreachableError
	if !errors.As(err, &ue) || strings.Contains(err.Error(), "secret-key") {
		t.Errorf("closed server: %v", err)
	}
}

// The admin key must never follow a redirect to another address, and a
// password in --admin-url must not be printed.
func TestNoRedirectsAndRedactedURL(t *testing.T) {
	var leaked string
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		leaked = r.Header.Get("X-API-Key")
	}))
	defer other.Close()
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+r.URL.Path, http.StatusTemporaryRedirect)
	}))
	defer redirector.Close()
	c, err := New(redirector.URL, "kg_adminkey", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Do(context.Background(), "GET", "/v1/keys", nil, nil)
	var ae *APIError
	if !errors.As(err, &ae) || ae.Code != "redirected" || !strings.Contains(ae.Message, other.URL) {
		t.Errorf("redirect: err = %v, want APIError redirected naming %s", err, other.URL)
	}
	if leaked != "" {
		t.Errorf("the admin key followed the redirect to another server")
	}

	c, err = New("http://user:hunter2@127.0.0.1:1", "k", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Do(context.Background(), "GET", "/v1/keys", nil, nil); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("unreachable error %v: want an error without the URL's password", err)
	}
}
