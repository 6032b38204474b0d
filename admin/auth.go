package admin

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"strings"

	"github.com/keygate/keygate/auth"
)

// authenticate finds the request's admin key and checks it the way the
// proxy checks keys, then requires the admin scope. Every failure is an
// *httpError with the CONTRACT §6 code.
func (h *Handler) authenticate(r *http.Request) (*auth.Key, error) {
	secret, err := h.credential(r)
	if err != nil {
		return nil, err
	}
	if secret == "" {
		return nil, errorf(http.StatusUnauthorized, "missing_key", "an admin API key is required")
	}
	b := []byte(secret)
	if !auth.AcceptableSecret(h.prefix, h.foreign, b) {
		return nil, errorf(http.StatusUnauthorized, "invalid_key", "the API key is not valid")
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.timeout)
	defer cancel()
	k, err := h.keys.LookupKey(ctx, auth.Digest(b))
	switch {
	case errors.Is(err, auth.ErrKeyNotFound):
		return nil, errorf(http.StatusUnauthorized, "invalid_key", "the API key is not valid")
	case err != nil:
		return nil, &httpError{Status: http.StatusServiceUnavailable, Code: "store_unavailable", Msg: "the key store cannot answer", Err: err}
	}
	switch k.CheckState(h.now()) {
	case nil:
	case auth.ErrKeyDisabled:
		return nil, errorf(http.StatusUnauthorized, "key_disabled", "the API key is disabled")
	default:
		return nil, errorf(http.StatusUnauthorized, "key_expired", "the API key has expired")
	}
	ip, _ := netip.ParseAddr(peerIP(r))
	if !k.AllowsIP(ip) {
		return k, errorf(http.StatusForbidden, "ip_not_allowed", "the client IP is not in the key's allowlist")
	}
	if !k.IsAdmin() {
		return k, errorf(http.StatusForbidden, "forbidden", "the API key does not have the keygate:admin scope")
	}
	return k, nil
}

// credential returns the key from the header sources, "" when there is
// none. Two different keys (in two sources, or a source header repeated) are
// 400 ambiguous_credentials, as on the proxy.
func (h *Handler) credential(r *http.Request) (string, error) {
	var found string
	for _, s := range h.sources {
		for _, v := range r.Header.Values(s.Header) {
			tok := strings.TrimSpace(v)
			if s.Scheme != "" {
				scheme, rest, ok := strings.Cut(tok, " ")
				if !ok || !strings.EqualFold(scheme, s.Scheme) {
					continue // another scheme (Bearer, Basic) is not a key source
				}
				tok = strings.TrimSpace(rest)
			}
			if tok == "" {
				continue
			}
			if found != "" && found != tok {
				return "", errorf(http.StatusBadRequest, "ambiguous_credentials", "the request carries two different API keys")
			}
			found = tok
		}
	}
	return found, nil
}
