package proxy

import (
	"bytes"

	"github.com/valyala/fasthttp"
)

// framingOK checks what fasthttp tolerates but a proxy must not pass on,
// because the upstream might read the request differently (CONTRACT §4
// "Requests are framed one way only"). fasthttp already refuses two
// Content-Lengths, two Transfer-Encodings, codings other than chunked and
// identity, and control characters in names. On the raw header block it
// keeps, this refuses:
//   - obsolete line folding (fasthttp joins the lines),
//   - a header name containing a space (fasthttp keeps it),
//   - Transfer-Encoding other than exactly "chunked" (fasthttp allows
//     "identity"), and Transfer-Encoding together with Content-Length
//     (fasthttp lets Transfer-Encoding win),
//   - a Trailer announcing, or a received trailer naming, a credential or
//     identity header.
func (s *Server) framingOK(req *fasthttp.Request) bool {
	raw := req.Header.RawHeaders()
	cl, te := 0, 0
	var clValue []byte
	for len(raw) > 0 {
		var line []byte
		line, raw, _ = bytes.Cut(raw, []byte{'\n'})
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if len(line) == 0 {
			continue // the blank line ending the block
		}
		if line[0] == ' ' || line[0] == '\t' {
			return false
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return false
		}
		name, value := line[:colon], bytes.TrimSpace(line[colon+1:])
		for _, c := range name {
			if !isTokenChar(c) {
				return false
			}
		}
		switch {
		case equalFold(name, "Content-Length"):
			if cl++; cl > 1 && !bytes.Equal(value, clValue) {
				return false
			}
			clValue = value
		case equalFold(name, "Transfer-Encoding"):
			if te++; te > 1 || !equalFold(value, "chunked") {
				return false
			}
		case equalFold(name, "Trailer"):
			for len(value) > 0 {
				var tok []byte
				tok, value, _ = bytes.Cut(value, []byte{','})
				if s.forbiddenTrailer(bytes.TrimSpace(tok)) {
					return false
				}
			}
		}
	}
	if cl > 0 && te > 0 {
		return false
	}
	for k := range req.Header.Trailers() {
		if s.forbiddenTrailer(k) {
			return false
		}
	}
	return true
}

// forbiddenTrailer reports names that must never arrive after the body: a
// credential header, an identity header, or one that decides routing or
// the client's address.
func (s *Server) forbiddenTrailer(name []byte) bool {
	for _, hs := range s.hdrSources {
		if equalFold(name, hs.name) {
			return true
		}
	}
	if s.isIdentityHeader(name) {
		return true
	}
	return equalFold(name, "X-Forwarded-For") || equalFold(name, "Cookie") ||
		equalFold(name, "Authorization") || equalFold(name, "Host")
}

// isIdentityHeader reports whether name starts with the identity prefix
// once lower-cased with "_" and "." read as "-".
func (s *Server) isIdentityHeader(name []byte) bool {
	p := s.idPrefix
	if len(name) < len(p) {
		return false
	}
	for i := 0; i < len(p); i++ {
		if foldHeaderByte(name[i]) != p[i] {
			return false
		}
	}
	return true
}

func foldHeaderByte(c byte) byte {
	if c == '_' || c == '.' {
		return '-'
	}
	return lower(c)
}

func foldHeaderName(s string) string {
	b := []byte(s)
	for i := range b {
		b[i] = foldHeaderByte(b[i])
	}
	return string(b)
}
