package proxy

import (
	"errors"
	"strconv"

	"github.com/keygate/keygate/auth"
	"github.com/valyala/fasthttp"
)

// Errors of the proxy's own making; the auth package's errors cover the
// credential.
var (
	errBadRequest          = errors.New("proxy: malformed request")
	errHeaderTooLarge      = errors.New("proxy: request headers too large")
	errBodyTooLarge        = errors.New("proxy: request body too large")
	errRequestTimeout      = errors.New("proxy: request not received in time")
	errNoRoute             = errors.New("proxy: no route")
	errUpstreamUnavailable = errors.New("proxy: upstream unavailable")
	errUpstreamTimeout     = errors.New("proxy: upstream timeout")
	errInternal            = errors.New("proxy: internal error")
)

// denial is what a client is told about an error: never the credential.
type denial struct {
	status int
	code   string
	msg    string
}

// statusFor is the one mapping from errors to statuses and JSON error
// codes (CONTRACT §4's table).
func statusFor(err error) denial {
	switch {
	case errors.Is(err, auth.ErrAmbiguous):
		return denial{fasthttp.StatusBadRequest, "ambiguous_credentials", "the request carries more than one different credential"}
	case errors.Is(err, errHeaderTooLarge):
		return denial{fasthttp.StatusRequestHeaderFieldsTooLarge, "bad_request", "the request headers are too large"}
	case errors.Is(err, errBodyTooLarge):
		return denial{fasthttp.StatusRequestEntityTooLarge, "body_too_large", "the request body is too large"}
	case errors.Is(err, errRequestTimeout):
		return denial{fasthttp.StatusRequestTimeout, "bad_request", "the request was not received in time"}
	case errors.Is(err, auth.ErrMissingKey):
		return denial{fasthttp.StatusUnauthorized, "missing_key", "an API key is required"}
	case errors.Is(err, auth.ErrInvalidKey), errors.Is(err, auth.ErrKeyNotFound):
		return denial{fasthttp.StatusUnauthorized, "invalid_key", "the API key is not valid"}
	case errors.Is(err, auth.ErrKeyDisabled):
		return denial{fasthttp.StatusUnauthorized, "key_disabled", "the API key is disabled"}
	case errors.Is(err, auth.ErrKeyExpired):
		return denial{fasthttp.StatusUnauthorized, "key_expired", "the API key has expired"}
	case errors.Is(err, auth.ErrSessionInvalid):
		return denial{fasthttp.StatusUnauthorized, "session_invalid", "the session is not valid"}
	case errors.Is(err, auth.ErrIPNotAllowed):
		return denial{fasthttp.StatusForbidden, "ip_not_allowed", "the API key may not be used from this address"}
	case errors.Is(err, auth.ErrRouteNotAllowed):
		return denial{fasthttp.StatusForbidden, "route_not_allowed", "the API key may not be used on this route"}
	case errors.Is(err, errNoRoute):
		return denial{fasthttp.StatusNotFound, "no_route", "no route matches the request"}
	case errors.Is(err, auth.ErrRateLimited):
		return denial{fasthttp.StatusTooManyRequests, "rate_limited", "too many requests for this API key"}
	case errors.Is(err, errUpstreamUnavailable):
		return denial{fasthttp.StatusBadGateway, "upstream_unavailable", "the upstream is unavailable"}
	case errors.Is(err, auth.ErrStoreUnavailable):
		return denial{fasthttp.StatusServiceUnavailable, "auth_unavailable", "API keys cannot be checked right now"}
	case errors.Is(err, errUpstreamTimeout):
		return denial{fasthttp.StatusGatewayTimeout, "upstream_timeout", "the upstream did not answer in time"}
	case errors.Is(err, errInternal):
		// Not in CONTRACT §4's table: only a bug gets here.
		return denial{fasthttp.StatusInternalServerError, "internal_error", "the request could not be handled"}
	}
	return denial{fasthttp.StatusBadRequest, "bad_request", "the request is malformed"}
}

// authResult is the metrics' result label for an authentication outcome.
type authResult uint8

const (
	resOK authResult = iota
	resMissing
	resInvalid
	resDisabled
	resExpired
	resIPDenied
	resScopeDenied
	resRateLimited
	resUnavailable
	resAmbiguous
	resSessionInvalid
	resBadRequest
	numResults
)

func (r authResult) String() string {
	switch r {
	case resOK:
		return "ok"
	case resMissing:
		return "missing"
	case resInvalid:
		return "invalid"
	case resDisabled:
		return "disabled"
	case resExpired:
		return "expired"
	case resIPDenied:
		return "ip_denied"
	case resScopeDenied:
		return "scope_denied"
	case resRateLimited:
		return "rate_limited"
	case resUnavailable:
		return "unavailable"
	case resAmbiguous:
		return "ambiguous"
	case resSessionInvalid:
		return "session_invalid"
	}
	return "bad_request"
}

func resultFor(err error) authResult {
	switch {
	case err == nil:
		return resOK
	case errors.Is(err, auth.ErrMissingKey):
		return resMissing
	case errors.Is(err, auth.ErrInvalidKey), errors.Is(err, auth.ErrKeyNotFound):
		return resInvalid
	case errors.Is(err, auth.ErrKeyDisabled):
		return resDisabled
	case errors.Is(err, auth.ErrKeyExpired):
		return resExpired
	case errors.Is(err, auth.ErrIPNotAllowed):
		return resIPDenied
	case errors.Is(err, auth.ErrRouteNotAllowed):
		return resScopeDenied
	case errors.Is(err, auth.ErrRateLimited):
		return resRateLimited
	case errors.Is(err, auth.ErrStoreUnavailable):
		return resUnavailable
	case errors.Is(err, auth.ErrAmbiguous):
		return resAmbiguous
	case errors.Is(err, auth.ErrSessionInvalid):
		return resSessionInvalid
	}
	return resBadRequest
}

// writeDenial replaces whatever response was being built with the JSON
// denial for err. The body is built from constants and the request id,
// which is generated or validated to [A-Za-z0-9._:-], so it needs no
// escaping and can carry nothing the client sent in a credential.
func (s *Server) writeDenial(ctx *fasthttp.RequestCtx, err error, rid []byte, clearCookie bool) {
	d := statusFor(err)
	resp := &ctx.Response
	resp.Reset()
	resp.SetStatusCode(d.status)
	resp.Header.SetContentType("application/json")
	resp.Header.SetBytesV("X-Request-Id", rid)
	if d.status == fasthttp.StatusUnauthorized {
		resp.Header.Set("WWW-Authenticate", `ApiKey realm="keygate"`)
	}
	switch d.status {
	case fasthttp.StatusTooManyRequests:
		retry := 1
		var rl *rateLimitedError
		if errors.As(err, &rl) && rl.retryAfter > 0 {
			retry = int((rl.retryAfter + 999_999_999) / 1_000_000_000)
		}
		resp.Header.Set("Retry-After", strconv.Itoa(retry))
	case fasthttp.StatusServiceUnavailable:
		resp.Header.Set("Retry-After", "1")
	}
	if clearCookie && s.opts.Sessions != nil {
		resp.Header.Set("Set-Cookie", s.opts.Sessions.Clear())
	}
	resp.AppendBodyString(`{"error":"`)
	resp.AppendBodyString(d.code)
	resp.AppendBodyString(`","message":"`)
	resp.AppendBodyString(d.msg)
	resp.AppendBodyString(`","request_id":"`)
	resp.AppendBody(rid)
	resp.AppendBodyString(`"}`)
}
