package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/keygate/keygate/admin/client"
	"github.com/keygate/keygate/store"
)

// maxBulkIDs caps one bulk request, so one call cannot hold the store for
// long.
const maxBulkIDs = store.MaxBulkIDs

// The response envelopes are admin/client's types, so the server and the
// client (CLI, console tests) share one definition of the wire format.
type (
	keyResponse    = client.KeyResult
	createResponse = client.Created
	listResponse   = client.KeyList
	rotateResponse = client.Rotated
	bulkResponse   = client.BulkResults
	purgeResponse  = client.Purged
	auditResponse  = client.AuditPage
)

type secretResponse struct {
	Secret string `json:"secret"`
}

// readBody reads the whole (size-limited) body.
func readBody(r *http.Request) ([]byte, error) {
	return io.ReadAll(r.Body)
}

// decodeObject decodes a JSON object body into the targets named by field.
// An empty body leaves every target alone; a body that is not a JSON object
// is 400 bad_request; an unknown field or a value of the wrong type is 422
// invalid_field naming the field.
func decodeObject(body []byte, fields map[string]any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(body, &obj); err != nil || obj == nil {
		return errorf(http.StatusBadRequest, "bad_request", "the body is not a JSON object")
	}
	for name, raw := range obj {
		dst, ok := fields[name]
		if !ok {
			return fieldError(name, "unknown field")
		}
		if err := json.Unmarshal(raw, dst); err != nil {
			return fieldError(name, "has the wrong type")
		}
	}
	return nil
}

// parseDurationField parses an optional duration field of a body.
func parseDurationField(field string, v *string) (time.Duration, error) {
	if v == nil || *v == "" {
		return 0, nil
	}
	d, err := ParseDuration(*v)
	if err != nil {
		return 0, fieldError(field, err.Error())
	}
	return d, nil
}

func (h *Handler) ctx(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), h.timeout)
}

func (h *Handler) createKey(w http.ResponseWriter, r *http.Request, rq *request) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	ctx, cancel := h.ctx(r)
	defer cancel()
	c, err := h.svc.Create(ctx, rq.actor, body)
	if err != nil {
		return err
	}
	warnings := c.Warnings
	if warnings == nil {
		warnings = []string{}
	}
	w.Header().Set("Location", "/v1/keys/"+c.Key.ID)
	writeJSON(w, http.StatusCreated, createResponse{Key: c.Key, Secret: c.Secret, Warnings: warnings})
	return nil
}

func (h *Handler) listKeys(w http.ResponseWriter, r *http.Request, _ *request) error {
	ctx, cancel := h.ctx(r)
	defer cancel()
	keys, next, err := h.svc.List(ctx, r.URL.Query())
	if err != nil {
		return err
	}
	if keys == nil {
		keys = []*store.Key{}
	}
	writeJSON(w, http.StatusOK, listResponse{Keys: keys, NextCursor: next})
	return nil
}

func (h *Handler) lookupKey(w http.ResponseWriter, r *http.Request, _ *request) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	var secret string
	if err := decodeObject(body, map[string]any{"secret": &secret}); err != nil {
		return err
	}
	if secret == "" {
		return fieldError("secret", "is required")
	}
	ctx, cancel := h.ctx(r)
	defer cancel()
	k, err := h.svc.Lookup(ctx, secret)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, keyResponse{Key: k})
	return nil
}

func (h *Handler) getKey(w http.ResponseWriter, r *http.Request, _ *request) error {
	ctx, cancel := h.ctx(r)
	defer cancel()
	k, err := h.svc.Get(ctx, r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, keyResponse{Key: k})
	return nil
}

func (h *Handler) updateKey(w http.ResponseWriter, r *http.Request, rq *request) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	ctx, cancel := h.ctx(r)
	defer cancel()
	k, err := h.svc.Update(ctx, rq.actor, r.PathValue("id"), body)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, keyResponse{Key: k})
	return nil
}

func (h *Handler) deleteKey(w http.ResponseWriter, r *http.Request, rq *request) error {
	ctx, cancel := h.ctx(r)
	defer cancel()
	if err := h.svc.Delete(ctx, rq.actor, r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *Handler) enableKey(w http.ResponseWriter, r *http.Request, rq *request) error {
	return h.setEnabled(w, r, rq, true)
}

func (h *Handler) disableKey(w http.ResponseWriter, r *http.Request, rq *request) error {
	return h.setEnabled(w, r, rq, false)
}

func (h *Handler) setEnabled(w http.ResponseWriter, r *http.Request, rq *request, enabled bool) error {
	ctx, cancel := h.ctx(r)
	defer cancel()
	k, err := h.svc.SetEnabled(ctx, rq.actor, r.PathValue("id"), enabled)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, keyResponse{Key: k})
	return nil
}

func (h *Handler) rotateKey(w http.ResponseWriter, r *http.Request, rq *request) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	var grace *string
	if err := decodeObject(body, map[string]any{"grace": &grace}); err != nil {
		return err
	}
	d, err := parseDurationField("grace", grace)
	if err != nil {
		return err
	}
	ctx, cancel := h.ctx(r)
	defer cancel()
	rot, err := h.svc.Rotate(ctx, rq.actor, r.PathValue("id"), d)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, rotateResponse{Key: rot.Key, Secret: rot.Secret, PreviousExpiresAt: rot.PreviousExpiresAt})
	return nil
}

func (h *Handler) keySecret(w http.ResponseWriter, r *http.Request, rq *request) error {
	ctx, cancel := h.ctx(r)
	defer cancel()
	s, err := h.svc.Secret(ctx, rq.actor, r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, secretResponse{Secret: s})
	return nil
}

func (h *Handler) revokeSessions(w http.ResponseWriter, r *http.Request, rq *request) error {
	ctx, cancel := h.ctx(r)
	defer cancel()
	k, err := h.svc.RevokeSessions(ctx, rq.actor, r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, keyResponse{Key: k})
	return nil
}

func (h *Handler) bulk(w http.ResponseWriter, r *http.Request, rq *request) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	var action string
	var ids []string
	if err := decodeObject(body, map[string]any{"action": &action, "ids": &ids}); err != nil {
		return err
	}
	switch action {
	case "delete", "enable", "disable":
	default:
		return fieldError("action", `must be "delete", "enable" or "disable"`)
	}
	if len(ids) == 0 {
		return fieldError("ids", "must list at least one key id")
	}
	if len(ids) > maxBulkIDs {
		return fieldError("ids", fmt.Sprintf("may list at most %d key ids", maxBulkIDs))
	}
	ctx, cancel := h.ctx(r)
	defer cancel()
	res, err := h.svc.Bulk(ctx, rq.actor, action, ids)
	if err != nil {
		return err
	}
	if res == nil {
		res = []store.BulkResult{}
	}
	writeJSON(w, http.StatusOK, bulkResponse{Results: res})
	return nil
}

func (h *Handler) purgeExpired(w http.ResponseWriter, r *http.Request, rq *request) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	var expiredFor *string
	var dryRun bool
	if err := decodeObject(body, map[string]any{"expired_for": &expiredFor, "dry_run": &dryRun}); err != nil {
		return err
	}
	d, err := parseDurationField("expired_for", expiredFor)
	if err != nil {
		return err
	}
	ctx, cancel := h.ctx(r)
	defer cancel()
	n, err := h.svc.PurgeExpired(ctx, rq.actor, d, dryRun)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, purgeResponse{Deleted: n, DryRun: dryRun})
	return nil
}

func (h *Handler) listAudit(w http.ResponseWriter, r *http.Request, _ *request) error {
	ctx, cancel := h.ctx(r)
	defer cancel()
	events, next, err := h.svc.Audit(ctx, r.URL.Query())
	if err != nil {
		return err
	}
	if events == nil {
		events = []*store.AuditEvent{}
	}
	writeJSON(w, http.StatusOK, auditResponse{Events: events, NextCursor: next})
	return nil
}
