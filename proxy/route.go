package proxy

import (
	"bytes"
	"fmt"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

const (
	authRequired = iota
	authOptional
	authNone
)

// route is a provisioned Route.
type route struct {
	name    string
	host    string // lower case, no port; "" for any
	prefix  string // normalized, no trailing slash except "/"
	methods []string
	auth    int
	strip   bool
	timeout time.Duration
	targets []*upstream
	next    atomic.Uint32
	metrics routeMetrics
}

// upstream is one target of a route.
type upstream struct {
	client *fasthttp.HostClient
	base   string
	// downUntil is when a target that failed to connect is tried again
	// (monotonic, as fromTime keeps it; 0: healthy).
	downUntil atomic.Int64
}

// routeTable matches requests to routes.
type routeTable struct {
	// byHost holds, for each host some route names, that host's routes
	// and the host-less ones, longest prefix first (the named host first
	// on equal prefixes).
	byHost map[string][]*route
	any    []*route // host-less routes, longest prefix first
}

func newRouteTable(routes []*route) *routeTable {
	t := &routeTable{byHost: map[string][]*route{}}
	for _, r := range routes {
		if r.host == "" {
			t.any = append(t.any, r)
		}
	}
	order := func(rs []*route) {
		sort.SliceStable(rs, func(i, j int) bool {
			if len(rs[i].prefix) != len(rs[j].prefix) {
				return len(rs[i].prefix) > len(rs[j].prefix)
			}
			if (rs[i].host != "") != (rs[j].host != "") {
				return rs[i].host != ""
			}
			return len(rs[i].methods) > 0 && len(rs[j].methods) == 0
		})
	}
	order(t.any)
	for _, r := range routes {
		if r.host != "" {
			t.byHost[r.host] = append(t.byHost[r.host], r)
		}
	}
	for h, rs := range t.byHost {
		rs = append(rs, t.any...)
		order(rs)
		t.byHost[h] = rs
	}
	return t
}

// match finds the route for host (port already stripped), a normalized
// path and a method (CONTRACT §4 step 1): among routes whose host matches
// (an empty host matches any), the longest prefix on a segment boundary
// whose methods allow the request's; on equal prefixes a route naming the
// host beats a host-less one.
func (t *routeTable) match(host, path, method []byte) *route {
	if n := len(host); n > 1 && host[n-1] == '.' {
		host = host[:n-1] // "h.example." is h.example
	}
	rs := t.any
	if len(t.byHost) > 0 && len(host) > 0 {
		var buf [256]byte
		if len(host) <= len(buf) {
			lh := buf[:len(host)]
			for i, c := range host {
				lh[i] = lower(c)
			}
			if hr, ok := t.byHost[string(lh)]; ok {
				rs = hr
			}
		}
	}
	for _, r := range rs {
		if !prefixMatch(path, r.prefix) {
			continue
		}
		if len(r.methods) == 0 {
			return r
		}
		for _, m := range r.methods {
			if string(method) == m {
				return r
			}
		}
	}
	return nil
}

func prefixMatch(path []byte, prefix string) bool {
	if prefix == "/" {
		return true
	}
	if !bytes.HasPrefix(path, []byte(prefix)) {
		return false
	}
	return len(path) == len(prefix) || path[len(prefix)] == '/'
}

// forwardPath is the path sent upstream: the normalized path, without the
// route's prefix when it strips it.
func (r *route) forwardPath(path []byte) []byte {
	if !r.strip || r.prefix == "/" {
		return path
	}
	// May be empty ("/pub" under prefix "/pub"); the caller sends "/".
	return path[len(r.prefix):]
}

// normalizePrefix brings a configured path prefix into the form paths are
// matched in.
func normalizePrefix(p string) (string, error) {
	if p == "" {
		return "/", nil
	}
	n, ok := normalizePath(nil, []byte(p))
	if !ok {
		return "", fmt.Errorf("path_prefix %q is not a valid path", p)
	}
	s := strings.TrimRight(string(n), "/")
	if s == "" {
		s = "/"
	}
	return s, nil
}

// hostOnly strips the port from a Host value ("h:1", "[::1]:1").
// validHost reports whether h, a Host header or an absolute-form target's
// authority, is a host name or address with an optional port: letters,
// digits, '-', '.', '_', '~', or a bracketed IPv6 address, then ':' and
// digits. RFC 9112 (3.2) wants 400 for an invalid Host; anything wider
// (userinfo "u@h", ',' and ';' lists, escapes, quotes) is read differently
// by different upstreams, and the route was chosen by one reading.
func validHost(h []byte) bool {
	i := 0
	if len(h) > 0 && h[0] == '[' {
		j := bytes.IndexByte(h, ']')
		if j < 3 {
			return false
		}
		for _, c := range h[1:j] {
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' || c == ':' || c == '.') {
				return false
			}
		}
		i = j + 1
	} else {
		for i < len(h) && h[i] != ':' {
			c := h[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~') {
				return false
			}
			i++
		}
		if i == 0 {
			return false
		}
	}
	if i == len(h) {
		return true
	}
	if h[i] != ':' {
		return false
	}
	for _, c := range h[i+1:] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func hostOnly(h []byte) []byte {
	if len(h) > 0 && h[0] == '[' {
		if j := bytes.IndexByte(h, ']'); j > 0 {
			return h[1:j]
		}
		return h
	}
	if j := bytes.LastIndexByte(h, ':'); j >= 0 && bytes.IndexByte(h[:j], ':') < 0 {
		return h[:j]
	}
	return h
}
