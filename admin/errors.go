package admin

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/keygate/keygate/store"
)

// httpError is an admin API failure: Status and Code go to the client with
// Msg (and Field for invalid_field); Err is the internal cause, for the log
// only.
type httpError struct {
	Status int
	Code   string
	Msg    string
	Field  string
	Err    error
}

func (e *httpError) Error() string {
	if e.Err != nil {
		return e.Code + ": " + e.Msg + ": " + e.Err.Error()
	}
	return e.Code + ": " + e.Msg
}

func (e *httpError) Unwrap() error { return e.Err }

func errorf(status int, code, msg string) *httpError {
	return &httpError{Status: status, Code: code, Msg: msg}
}

func fieldError(field, msg string) *httpError {
	return &httpError{Status: http.StatusUnprocessableEntity, Code: "invalid_field", Field: field, Msg: msg}
}

// statusFor maps every error a handler can return to the one status and
// error code the client sees. It is the only place that does so.
func statusFor(err error) *httpError {
	var he *httpError
	if errors.As(err, &he) {
		return he
	}
	var fe *store.FieldError
	if errors.As(err, &fe) {
		return &httpError{Status: http.StatusUnprocessableEntity, Code: "invalid_field", Field: fe.Field, Msg: fe.Msg}
	}
	var be *store.BadRequestError
	if errors.As(err, &be) {
		return &httpError{Status: http.StatusBadRequest, Code: "bad_request", Msg: be.Msg}
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return &httpError{Status: http.StatusRequestEntityTooLarge, Code: "body_too_large", Msg: "the request body is over 1 MiB"}
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
		return &httpError{Status: http.StatusNotFound, Code: "not_found", Msg: "no such key"}
	case errors.Is(err, store.ErrNotRetrievable):
		return &httpError{Status: http.StatusNotFound, Code: "not_retrievable", Msg: store.ErrNotRetrievable.Error()}
	case errors.Is(err, store.ErrNameTaken):
		return &httpError{Status: http.StatusConflict, Code: "name_taken", Field: "name", Msg: store.ErrNameTaken.Error()}
	case errors.Is(err, store.ErrApplicationLimit):
		return &httpError{Status: http.StatusConflict, Code: "application_key_limit", Field: "application", Msg: store.ErrApplicationLimit.Error()}
	case errors.Is(err, store.ErrSecretTaken):
		return &httpError{Status: http.StatusConflict, Code: "secret_taken", Field: "secret", Msg: store.ErrSecretTaken.Error()}
	case errors.Is(err, store.ErrAdminExists):
		return &httpError{Status: http.StatusConflict, Code: "admin_exists", Msg: store.ErrAdminExists.Error()}
	case errors.Is(err, store.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return &httpError{Status: http.StatusServiceUnavailable, Code: "store_unavailable", Msg: "the key store cannot answer; nothing was changed", Err: err}
	case errors.Is(err, context.Canceled):
		// The client went away; it will not read this.
		return &httpError{Status: 499, Code: "canceled", Msg: "the request was canceled", Err: err}
	}
	return &httpError{Status: http.StatusInternalServerError, Code: "internal_error", Msg: "internal error", Err: err}
}

// errorBody is the JSON shape of every admin error (the proxy's shape).
type errorBody struct {
	Error     string `json:"error"`
	Message   string `json:"message"`
	Field     string `json:"field,omitempty"`
	RequestID string `json:"request_id"`
}

func writeError(w http.ResponseWriter, he *httpError, requestID string) {
	h := w.Header()
	switch he.Status {
	case http.StatusUnauthorized:
		h.Set("WWW-Authenticate", `ApiKey realm="keygate"`)
	case http.StatusServiceUnavailable:
		h.Set("Retry-After", "1")
	}
	status := he.Status
	if status == 499 {
		status = http.StatusBadRequest
	}
	writeJSON(w, status, errorBody{Error: he.Code, Message: he.Msg, Field: he.Field, RequestID: requestID})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Only our own response types get here; they always marshal.
		status = http.StatusInternalServerError
		b = []byte(`{"error":"internal_error","message":"cannot encode the response"}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
