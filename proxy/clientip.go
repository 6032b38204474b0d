package proxy

import (
	"bytes"
	"net"
	"net/netip"
	"strings"
)

// maxForwardedEntries bounds how many X-Forwarded-For entries are examined
// (from the right); a chain of trusted hops longer than that is treated as
// unparsable.
const maxForwardedEntries = 64

// peerAddr is the connection's remote address: the TCP peer, or the PROXY
// protocol source when the listener accepted one.
func peerAddr(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.TCPAddr:
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	case nil:
		return netip.Addr{}
	}
	str := a.String()
	if !strings.Contains(str, ":") {
		return netip.Addr{} // not ip:port (a pipe, a unix socket); no error to build
	}
	ap, err := netip.ParseAddrPort(str)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

func (s *Server) trusted(a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	for _, p := range s.opts.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// clientIP is CONTRACT §4's client address. The peer, unless it is a
// trusted proxy: then the right-most X-Forwarded-For entry, across all
// X-Forwarded-For lines, that is not itself trusted. An unparsable entry
// met on the way yields the invalid Addr, which every allowlist refuses
// (fail closed). X-Real-IP, Forwarded and True-Client-IP are never read.
func (s *Server) clientIP(peer netip.Addr, peerTrusted bool, xff [][]byte) netip.Addr {
	if !peerTrusted {
		return peer
	}
	client, n := peer, 0
	for li := len(xff) - 1; li >= 0; li-- {
		line := xff[li]
		for len(line) > 0 {
			var e []byte
			if j := bytes.LastIndexByte(line, ','); j >= 0 {
				e, line = line[j+1:], line[:j]
			} else {
				e, line = line, nil
			}
			e = bytes.TrimSpace(e)
			if len(e) == 0 {
				continue // empty list elements are allowed (RFC 9110 §5.6.1)
			}
			if n++; n > maxForwardedEntries {
				return netip.Addr{}
			}
			a, ok := parseForwardedAddr(e)
			if !ok {
				return netip.Addr{}
			}
			if !s.trusted(a) {
				return a
			}
			client = a
		}
	}
	// Every hop is trusted: the left-most one is as close to the client as
	// we can tell.
	return client
}

// parseForwardedAddr parses one X-Forwarded-For entry: an IPv4 or IPv6
// address, optionally with a port ("1.2.3.4:5", "[::1]:5") or brackets.
func parseForwardedAddr(e []byte) (netip.Addr, bool) {
	if len(e) > 64 {
		return netip.Addr{}, false
	}
	if e[0] == '[' {
		j := bytes.IndexByte(e, ']')
		if j < 0 || !validPort(e[j+1:], true) {
			return netip.Addr{}, false
		}
		e = e[1:j]
	} else if i := bytes.IndexByte(e, ':'); i >= 0 && bytes.IndexByte(e[i+1:], ':') < 0 {
		if !validPort(e[i:], false) {
			return netip.Addr{}, false
		}
		e = e[:i]
	}
	a, err := netip.ParseAddr(string(e))
	if err != nil {
		return netip.Addr{}, false
	}
	return a.WithZone("").Unmap(), true
}

// validPort accepts ":digits" (or nothing, when optional).
func validPort(p []byte, optional bool) bool {
	if len(p) == 0 {
		return optional
	}
	if p[0] != ':' || len(p) < 2 || len(p) > 6 {
		return false
	}
	for _, c := range p[1:] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
