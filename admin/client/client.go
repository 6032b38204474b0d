// Package client calls keygate's admin API over HTTP. It is what the
// keygate keys commands use; it keeps each response's raw JSON next to the
// decoded value so a caller can print exactly what the API said.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/keygate/keygate/store"
)

// maxResponseBytes bounds what the client reads of one response.
const maxResponseBytes = 64 << 20

// Client is an admin API client. The zero value is not usable; use New.
type Client struct {
	base *url.URL
	key  string
	http *http.Client
}

// New returns a client for the admin API at baseURL ("http://127.0.0.1:9090")
// authenticating with adminKey (sent as X-API-Key). A nil hc means an
// http.Client with a 60s timeout.
func New(baseURL, adminKey string, hc *http.Client) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(baseURL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("admin URL: want http(s)://host:port")
	}
	if hc == nil {
		hc = &http.Client{Timeout: 60 * time.Second}
	}
	// Never follow redirects: net/http would resend X-API-Key (and a POST
	// body holding secrets, on 307/308) to wherever Location points. A 3xx
	// is reported as an error naming the new address instead.
	c := *hc
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &Client{base: u, key: adminKey, http: &c}, nil
}

// APIError is a non-2xx answer of the admin API.
type APIError struct {
	Status    int    `json:"-"`
	Code      string `json:"error"`
	Message   string `json:"message"`
	Field     string `json:"field,omitempty"`
	RequestID string `json:"request_id"`
}

func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s (HTTP %d)", e.Code, e.Status)
	if e.Field != "" {
		fmt.Fprintf(&b, ": field %s", e.Field)
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	return b.String()
}

// UnreachableError is a request that got no HTTP answer at all (connection
// refused, DNS, timeout).
type UnreachableError struct {
	URL string
	Err error
}

func (e *UnreachableError) Error() string {
	return "cannot reach the admin API at " + e.URL + ": " + e.Err.Error()
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// Do sends one request (body marshalled as JSON unless it is nil or
// already []byte / json.RawMessage) and returns the raw response body of a
// 2xx answer, an *APIError for any other status, or an *UnreachableError.
func (c *Client) Do(ctx context.Context, method, path string, query url.Values, body any) ([]byte, error) {
	u := *c.base
	u.Path = c.base.Path + path
	u.RawQuery = query.Encode()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case json.RawMessage:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, err
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.key != "" {
		req.Header.Set("X-API-Key", c.key)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, &UnreachableError{URL: c.base.Redacted(), Err: unwrapURLError(err)}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return nil, &UnreachableError{URL: c.base.Redacted(), Err: err}
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return data, nil
	}
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		return nil, &APIError{Status: resp.StatusCode, Code: "redirected",
			Message: "the admin API redirected to " + resp.Header.Get("Location") + "; use that address as --admin-url"}
	}
	ae := &APIError{Status: resp.StatusCode}
	if json.Unmarshal(data, ae) != nil || ae.Code == "" {
		ae.Code = "http_" + fmt.Sprint(resp.StatusCode)
		ae.Message = strings.TrimSpace(string(bytes.ToValidUTF8(data[:min(len(data), 200)], nil)))
	}
	return nil, ae
}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// call sends a request and decodes a 2xx body into T.
func call[T any](c *Client, ctx context.Context, method, path string, q url.Values, body any) (T, []byte, error) {
	var v T
	raw, err := c.Do(ctx, method, path, q, body)
	if err != nil {
		return v, nil, err
	}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &v); err != nil {
			return v, raw, fmt.Errorf("admin API answered %s %s with unexpected JSON: %w", method, path, err)
		}
	}
	return v, raw, nil
}

// The types below are the admin API's response envelopes (CONTRACT §6);
// package admin encodes its responses with them too.

// KeyResult is {"key": …}.
type KeyResult struct {
	Key *store.Key `json:"key"`
}

// Created is the answer to a create or import.
type Created struct {
	Key      *store.Key `json:"key"`
	Secret   string     `json:"secret"`
	Warnings []string   `json:"warnings"`
}

// KeyList is one page of keys.
type KeyList struct {
	Keys       []*store.Key `json:"keys"`
	NextCursor string       `json:"next_cursor"`
}

// Rotated is the answer to a rotation.
type Rotated struct {
	Key               *store.Key `json:"key"`
	Secret            string     `json:"secret"`
	PreviousExpiresAt *time.Time `json:"previous_expires_at"`
}

// Purged is the answer to purge-expired.
type Purged struct {
	Deleted int  `json:"deleted"`
	DryRun  bool `json:"dry_run"`
}

// BulkResults is the answer to a bulk action.
type BulkResults struct {
	Results []store.BulkResult `json:"results"`
}

// AuditPage is one page of audit events.
type AuditPage struct {
	Events     []*store.AuditEvent `json:"events"`
	NextCursor string              `json:"next_cursor"`
}

func keyPath(id string, rest ...string) string {
	p := "/v1/keys/" + url.PathEscape(id)
	for _, r := range rest {
		p += "/" + r
	}
	return p
}

// CreateKey creates (or, with "secret" in body, imports) a key. body is a
// JSON object, raw or marshalable.
func (c *Client) CreateKey(ctx context.Context, body any) (Created, []byte, error) {
	return call[Created](c, ctx, http.MethodPost, "/v1/keys", nil, body)
}

// ListKeys lists one page; q holds the API's filters, limit and cursor.
func (c *Client) ListKeys(ctx context.Context, q url.Values) (KeyList, []byte, error) {
	return call[KeyList](c, ctx, http.MethodGet, "/v1/keys", q, nil)
}

// GetKey returns one key.
func (c *Client) GetKey(ctx context.Context, id string) (KeyResult, []byte, error) {
	return call[KeyResult](c, ctx, http.MethodGet, keyPath(id), nil, nil)
}

// LookupKey finds the key a secret belongs to.
func (c *Client) LookupKey(ctx context.Context, secret string) (KeyResult, []byte, error) {
	return call[KeyResult](c, ctx, http.MethodPost, "/v1/keys/lookup", nil, map[string]string{"secret": secret})
}

// UpdateKey applies a JSON merge patch.
func (c *Client) UpdateKey(ctx context.Context, id string, patch any) (KeyResult, []byte, error) {
	return call[KeyResult](c, ctx, http.MethodPatch, keyPath(id), nil, patch)
}

// SetEnabled enables or disables a key.
func (c *Client) SetEnabled(ctx context.Context, id string, enabled bool) (KeyResult, []byte, error) {
	action := "disable"
	if enabled {
		action = "enable"
	}
	return call[KeyResult](c, ctx, http.MethodPost, keyPath(id, action), nil, nil)
}

// RotateKey issues a new secret; grace ("24h", "1d", "" for none) is how
// long the previous one keeps working.
func (c *Client) RotateKey(ctx context.Context, id, grace string) (Rotated, []byte, error) {
	var body any
	if grace != "" {
		body = map[string]string{"grace": grace}
	}
	return call[Rotated](c, ctx, http.MethodPost, keyPath(id, "rotate"), nil, body)
}

// RevokeSessions ends every session minted from the key.
func (c *Client) RevokeSessions(ctx context.Context, id string) (KeyResult, []byte, error) {
	return call[KeyResult](c, ctx, http.MethodPost, keyPath(id, "revoke-sessions"), nil, nil)
}

// Secret retrieves a retrievable key's secret.
func (c *Client) Secret(ctx context.Context, id string) (string, error) {
	v, _, err := call[struct {
		Secret string `json:"secret"`
	}](c, ctx, http.MethodGet, keyPath(id, "secret"), nil, nil)
	return v.Secret, err
}

// DeleteKey deletes a key.
func (c *Client) DeleteKey(ctx context.Context, id string) error {
	_, err := c.Do(ctx, http.MethodDelete, keyPath(id), nil, nil)
	return err
}

// Bulk applies action ("delete", "enable", "disable") to ids.
func (c *Client) Bulk(ctx context.Context, action string, ids []string) (BulkResults, []byte, error) {
	return call[BulkResults](c, ctx, http.MethodPost, "/v1/keys/bulk", nil, map[string]any{"action": action, "ids": ids})
}

// PurgeExpired deletes keys expired for at least expiredFor ("" for any).
func (c *Client) PurgeExpired(ctx context.Context, expiredFor string, dryRun bool) (Purged, []byte, error) {
	body := map[string]any{"dry_run": dryRun}
	if expiredFor != "" {
		body["expired_for"] = expiredFor
	}
	return call[Purged](c, ctx, http.MethodPost, "/v1/keys/purge-expired", nil, body)
}

// Audit lists one page of audit events.
func (c *Client) Audit(ctx context.Context, q url.Values) (AuditPage, []byte, error) {
	return call[AuditPage](c, ctx, http.MethodGet, "/v1/audit", q, nil)
}
