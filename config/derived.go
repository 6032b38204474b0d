package config

import (
	"log/slog"
	"net/netip"
)

// provision parses the derived values of a validated Config once.
func (c *Config) provision() {
	c.derived = derived{ok: true, trusted: parsePrefixes(c.Proxy.TrustedProxies)}
}

func parsePrefixes(ss []string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		if p, ok := parsePrefix(s); ok {
			out = append(out, p)
		}
	}
	return out
}

// TrustedProxyPrefixes returns proxy.trusted_proxies parsed: single IPs as
// /32 or /128, IPv4-mapped IPv6 entries as IPv4, host bits masked. Nil
// means no proxy is trusted. For a Config from Load it is parsed once at
// load time and callers must not modify the result; for any other Config
// (Default, or built by hand) it is parsed on each call, skipping entries
// Validate would reject.
func (c *Config) TrustedProxyPrefixes() []netip.Prefix {
	if c.derived.ok {
		return c.derived.trusted
	}
	return parsePrefixes(c.Proxy.TrustedProxies)
}

// SlogLevel returns log.level as a slog.Level; anything Validate rejects
// gives slog.LevelInfo.
func (l LogConfig) SlogLevel() slog.Level {
	switch l.Level {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}
