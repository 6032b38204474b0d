package admin

import "net/http"

// route is one admin endpoint. Op names it in metrics, logs and as the
// OpenAPI operationId; Path is a net/http ServeMux pattern without method.
type route struct {
	Method string
	Path   string
	Op     string
	// Public routes need no admin key (CONTRACT §6: /healthz, /readyz,
	// /metrics).
	Public bool
	handle func(h *Handler, w http.ResponseWriter, r *http.Request, rq *request) error
}

// routeTable is every admin route except the web console (/ui/, mounted
// from Options.UI). The mux is built from it and the OpenAPI parity test
// reads it, so openapi.json cannot drift from what is served.
func routeTable() []route {
	return []route{
		{http.MethodPost, "/v1/keys", "keys.create", false, (*Handler).createKey},
		{http.MethodGet, "/v1/keys", "keys.list", false, (*Handler).listKeys},
		{http.MethodPost, "/v1/keys/lookup", "keys.lookup", false, (*Handler).lookupKey},
		{http.MethodPost, "/v1/keys/bulk", "keys.bulk", false, (*Handler).bulk},
		{http.MethodPost, "/v1/keys/purge-expired", "keys.purge_expired", false, (*Handler).purgeExpired},
		{http.MethodGet, "/v1/keys/{id}", "keys.get", false, (*Handler).getKey},
		{http.MethodPatch, "/v1/keys/{id}", "keys.update", false, (*Handler).updateKey},
		{http.MethodDelete, "/v1/keys/{id}", "keys.delete", false, (*Handler).deleteKey},
		{http.MethodPost, "/v1/keys/{id}/enable", "keys.enable", false, (*Handler).enableKey},
		{http.MethodPost, "/v1/keys/{id}/disable", "keys.disable", false, (*Handler).disableKey},
		{http.MethodPost, "/v1/keys/{id}/rotate", "keys.rotate", false, (*Handler).rotateKey},
		{http.MethodGet, "/v1/keys/{id}/secret", "keys.secret", false, (*Handler).keySecret},
		{http.MethodPost, "/v1/keys/{id}/revoke-sessions", "keys.revoke_sessions", false, (*Handler).revokeSessions},
		{http.MethodGet, "/v1/audit", "audit.list", false, (*Handler).listAudit},
		{http.MethodGet, "/v1/openapi.json", "openapi", false, (*Handler).serveOpenAPI},
		{http.MethodGet, "/metrics", "metrics", true, (*Handler).serveMetrics},
		{http.MethodGet, "/healthz", "healthz", true, (*Handler).serveHealthz},
		{http.MethodGet, "/readyz", "readyz", true, (*Handler).serveReadyz},
	}
}
