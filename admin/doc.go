// Package admin serves keygate's admin listener: the JSON admin API of
// CONTRACT §6 over the key Service, /metrics, /healthz, /readyz and the
// OpenAPI description of the API, with room for the web console under /ui/.
//
// It is built on net/http: the admin listener is internal and not the hot
// path. Every API route comes from one table (routes.go) that both the mux
// and the OpenAPI parity test read, so the document cannot drift from what
// is served.
//
// Admin credentials are checked like proxy keys (format, digest, lookup
// through the cache, enabled and expiry, IP allowlist), from header sources
// only, and must carry the keygate:admin scope.
package admin
