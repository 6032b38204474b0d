package admin

import (
	_ "embed"
	"net/http"
)

// openAPIDoc is the hand-written OpenAPI 3.0 description of the admin API.
// TestOpenAPIMatchesRoutes fails when it and routeTable disagree.
//
//go:embed openapi.json
var openAPIDoc []byte

func (h *Handler) serveOpenAPI(w http.ResponseWriter, _ *http.Request, _ *request) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(openAPIDoc)
	return nil
}
