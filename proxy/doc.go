// Package proxy is keygate's data plane: a fasthttp reverse proxy that
// normalizes each request's path, matches it to a route, authenticates the
// API key it carries (CONTRACT §4), and forwards it upstream with the
// caller's identity attached and every client-controlled identity, hop-by-hop
// and credential header removed.
//
// proxy imports auth and nothing else of keygate: cmd converts the
// configuration into Options. Keys come from an auth.KeyStore (the cache in
// production, a map in tests); usage recording, rate limiting and sessions
// are optional hooks that are off when nil.
package proxy
