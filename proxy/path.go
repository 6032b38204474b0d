package proxy

import "bytes"

// normalizePath appends the normalized form of raw, a request path without
// query, to dst (CONTRACT §4 step 1): percent-encoded unreserved
// characters are decoded (other escapes are kept, with upper-case hex),
// dot segments are removed (also when written as %2e), and repeated
// slashes are collapsed. ok is false for what no upstream may be shown: a
// path not starting with "/", an encoded "/" or NUL, a bad escape, a raw
// byte outside visible ASCII, a backslash or "#", and a dot segment
// carrying a ";" parameter ("..;"), which servlet containers read as "..".
func normalizePath(dst, raw []byte) (_ []byte, ok bool) {
	if len(raw) == 0 || raw[0] != '/' {
		return dst, false
	}
	start := len(dst)
	dst = append(dst, '/')
	i := 0
	for i < len(raw) {
		for i < len(raw) && raw[i] == '/' {
			i++
		}
		if i == len(raw) {
			break
		}
		seg := len(dst)
		for i < len(raw) && raw[i] != '/' {
			c := raw[i]
			switch {
			case c == '%':
				if i+2 >= len(raw) {
					return dst, false
				}
				hi, lo := unhex(raw[i+1]), unhex(raw[i+2])
				if hi < 0 || lo < 0 {
					return dst, false
				}
				v := byte(hi<<4 | lo)
				if v == '/' || v == 0 {
					return dst, false
				}
				if isUnreserved(v) {
					dst = append(dst, v)
				} else {
					dst = append(dst, '%', upperHex[v>>4], upperHex[v&15])
				}
				i += 3
			case c <= ' ' || c >= 0x7f || c == '\\' || c == '#':
				return dst, false
			default:
				dst = append(dst, c)
				i++
			}
		}
		s := dst[seg:]
		if j := bytes.IndexByte(s, ';'); j >= 0 && isDots(s[:j]) {
			return dst, false
		}
		if isDots(s) {
			dst = dst[:seg]
			if len(s) == 2 && seg-start > 1 {
				// Drop the previous segment: dst ends "/prev/".
				k := bytes.LastIndexByte(dst[start:seg-1], '/')
				dst = dst[:start+k+1]
			}
			continue
		}
		if i < len(raw) {
			dst = append(dst, '/')
		}
	}
	return dst, true
}

// stripPathParams appends path, a normalized path, as a servlet container
// (Tomcat, Jetty, Spring) maps it: every segment's ";" parameters removed
// ("/admin;x/users" is "/admin/users" there) and the segments that leaves
// empty dropped, a trailing "/" kept.
func stripPathParams(dst, path []byte) []byte {
	start := len(dst)
	dst = append(dst, '/')
	trailing := len(path) > 1 && path[len(path)-1] == '/'
	for len(path) > 0 {
		var seg []byte
		seg, path, _ = bytes.Cut(path, []byte{'/'})
		if j := bytes.IndexByte(seg, ';'); j >= 0 {
			seg = seg[:j]
		}
		if len(seg) == 0 {
			continue
		}
		if len(dst) > start+1 {
			dst = append(dst, '/')
		}
		dst = append(dst, seg...)
	}
	if trailing && len(dst) > start+1 {
		dst = append(dst, '/')
	}
	return dst
}

func isDots(s []byte) bool {
	return len(s) == 1 && s[0] == '.' || len(s) == 2 && s[0] == '.' && s[1] == '.'
}

const upperHex = "0123456789ABCDEF"

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// isUnreserved reports RFC 3986 unreserved characters.
func isUnreserved(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

// splitTarget splits a request-target into its path and raw query. An
// absolute-form target ("http://host/p") yields its authority as host.
// ok is false for any other form (authority-form, "*") and for a fragment.
func splitTarget(uri []byte) (host, path, query []byte, ok bool) {
	if len(uri) == 0 || bytes.IndexByte(uri, '#') >= 0 {
		return nil, nil, nil, false
	}
	if uri[0] != '/' {
		var rest []byte
		switch {
		case hasPrefixFold(uri, "http://"):
			rest = uri[len("http://"):]
		case hasPrefixFold(uri, "https://"):
			rest = uri[len("https://"):]
		default:
			return nil, nil, nil, false
		}
		j := bytes.IndexAny(rest, "/?")
		if j < 0 {
			host, uri = rest, []byte("/")
		} else {
			host, uri = rest[:j], rest[j:]
			if uri[0] == '?' {
				// "http://h?q": the path is "/".
				return host, []byte("/"), uri[1:], len(host) > 0 && bytes.IndexByte(host, '@') < 0
			}
		}
		if len(host) == 0 || bytes.IndexByte(host, '@') >= 0 {
			return nil, nil, nil, false
		}
	}
	path = uri
	if j := bytes.IndexByte(uri, '?'); j >= 0 {
		path, query = uri[:j], uri[j+1:]
	}
	return host, path, query, true
}

func hasPrefixFold(b []byte, prefix string) bool {
	if len(b) < len(prefix) {
		return false
	}
	for i := 0; i < len(prefix); i++ {
		if lower(b[i]) != lower(prefix[i]) {
			return false
		}
	}
	return true
}

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// equalFold compares ASCII case-insensitively without allocating.
func equalFold(b []byte, s string) bool {
	return len(b) == len(s) && hasPrefixFold(b, s)
}
