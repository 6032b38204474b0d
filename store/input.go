package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/keygate/keygate/auth"
)

// Field limits. Names, users and the other identifiers travel in headers
// and lists, so they stay short and free of control characters; notes and
// descriptions are prose and may hold line breaks.
const (
	maxIdentLen       = 200
	maxDescriptionLen = 1000
	maxNotesLen       = 10000
	maxListLen        = 100 // tags, scopes, allowlist entries, metadata entries
	maxRPS            = 1e6
	maxBurst          = 1e6
)

// readOnly are the key's fields a client may read but not set.
var readOnly = map[string]bool{
	"id": true, "created_at": true, "updated_at": true, "last_used_at": true,
	"hint": true, "status": true, "secret_rotated_at": true,
	"previous_secret_expires_at": true, "previous_secret_last_used_at": true,
}

// inputFields are the fields Create and Update accept, in the order they
// are checked, so the reported field does not depend on map order.
var inputFields = []string{
	"name", "description", "user", "application", "tenant", "tags", "scopes",
	"ip_allowlist", "client_name", "notes", "metadata", "enabled",
	"sessions_allowed", "expires_at", "expires_in", "rate_limit", "secret",
}

// decodeObject parses a request body as one JSON object.
func decodeObject(body []byte) (map[string]json.RawMessage, error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 || body[0] != '{' {
		if len(body) > 0 && !json.Valid(body) {
			return nil, &BadRequestError{Msg: "malformed JSON"}
		}
		return nil, &BadRequestError{Msg: "the body must be a JSON object"}
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, &BadRequestError{Msg: "malformed JSON: " + err.Error()}
	}
	return raw, nil
}

// checkFieldNames refuses unknown and read-only fields, in sorted order.
// secret is accepted on create only: afterwards a key gets a new secret by
// rotation.
func checkFieldNames(raw map[string]json.RawMessage, create bool) error {
	names := make([]string, 0, len(raw))
	for n := range raw {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		switch {
		case readOnly[n]:
			return &FieldError{Field: n, Msg: "read-only field"}
		case n == "secret" && !create:
			return &FieldError{Field: n, Msg: "cannot be changed: rotate the key instead"}
		case !isInputField(n):
			return &FieldError{Field: n, Msg: "unknown field"}
		}
	}
	return nil
}

func isInputField(n string) bool {
	for _, f := range inputFields {
		if f == n {
			return true
		}
	}
	return false
}

// input is what applyInput found besides the fields it set on the key.
type input struct {
	secret    string
	hasSecret bool
}

// applyInput validates the fields present in raw and sets them on k. On
// create, absent fields keep k's values and name and user are required;
// on update raw is a JSON merge patch (RFC 7396): null resets a field to
// its default and objects (metadata, rate_limit) are merged.
func (s *Service) applyInput(k *Key, raw map[string]json.RawMessage, create bool, now time.Time) (input, error) {
	var in input
	if err := checkFieldNames(raw, create); err != nil {
		return in, err
	}
	for _, f := range inputFields {
		v, ok := raw[f]
		if !ok {
			continue
		}
		var err error
		switch f {
		case "name":
			k.Name, err = identField(f, v, true)
		case "user":
			k.User, err = identField(f, v, true)
		case "application":
			k.Application, err = identField(f, v, false)
		case "tenant":
			k.Tenant, err = identField(f, v, false)
		case "client_name":
			k.ClientName, err = identField(f, v, false)
		case "description":
			k.Description, err = textField(f, v, maxDescriptionLen)
		case "notes":
			k.Notes, err = textField(f, v, maxNotesLen)
		case "tags":
			k.Tags, err = listField(f, v, checkTag)
		case "scopes":
			k.Scopes, err = listField(f, v, checkScope)
		case "ip_allowlist":
			k.IPAllowlist, err = listField(f, v, checkIPEntry)
		case "metadata":
			k.Metadata, err = metadataField(f, v, k.Metadata, create)
		case "enabled":
			k.Enabled, err = boolField(f, v, true)
		case "sessions_allowed":
			k.SessionsAllowed, err = boolField(f, v, true)
		case "expires_at":
			if _, both := raw["expires_in"]; both {
				return in, &FieldError{Field: "expires_in", Msg: "give expires_at or expires_in, not both"}
			}
			k.ExpiresAt, err = s.expiresAtField(f, v, create, now)
		case "expires_in":
			k.ExpiresAt, err = s.expiresInField(f, v, now)
		case "rate_limit":
			k.RateLimit, err = rateLimitField(f, v, k.RateLimit, create)
		case "secret":
			if isNull(v) {
				break
			}
			if err = json.Unmarshal(v, &in.secret); err != nil {
				err = &FieldError{Field: f, Msg: "must be a string"}
			} else if !s.acceptableSecret(in.secret) {
				err = s.secretError()
			}
			in.hasSecret = err == nil
		}
		if err != nil {
			return in, err
		}
	}
	if create {
		if k.Name == "" {
			return in, &FieldError{Field: "name", Msg: "required"}
		}
		if k.User == "" {
			return in, &FieldError{Field: "user", Msg: "required"}
		}
		_, hasAt := raw["expires_at"]
		_, hasIn := raw["expires_in"]
		if !hasAt && !hasIn {
			k.ExpiresAt = s.defaultExpiry(now)
		}
	}
	return in, nil
}

// acceptableSecret reports whether secret may be imported: keygate's own
// format with this deployment's prefix, or, when foreign keys are
// accepted, any long enough printable string.
func (s *Service) acceptableSecret(secret string) bool {
	b := []byte(secret)
	return auth.AcceptableSecret(s.opts.KeyPrefix, s.opts.AcceptForeignKeys, b)
}

func (s *Service) secretError() error {
	if s.opts.AcceptForeignKeys {
		return &FieldError{Field: "secret", Msg: "not a " + s.opts.KeyPrefix + "_ key and not at least 24 visible ASCII characters"}
	}
	return &FieldError{Field: "secret", Msg: "not a valid " + s.opts.KeyPrefix + "_ key (foreign keys are not accepted)"}
}

// defaultExpiry is the expiry of a key created without one.
func (s *Service) defaultExpiry(now time.Time) *time.Time {
	d := s.opts.DefaultLifetime
	if s.opts.MaxLifetime > 0 && (d <= 0 || d > s.opts.MaxLifetime) {
		d = s.opts.MaxLifetime
	}
	if d <= 0 {
		return nil
	}
	t := normTime(now.Add(d))
	return &t
}

func (s *Service) expiresAtField(f string, v json.RawMessage, create bool, now time.Time) (*time.Time, error) {
	if isNull(v) {
		if s.opts.MaxLifetime > 0 {
			return nil, &FieldError{Field: f, Msg: "keys must expire: the longest lifetime allowed is " + FormatDuration(s.opts.MaxLifetime)}
		}
		return nil, nil
	}
	var str string
	if err := json.Unmarshal(v, &str); err != nil {
		return nil, &FieldError{Field: f, Msg: "must be an RFC 3339 time or null"}
	}
	t, err := time.Parse(time.RFC3339, str)
	if err != nil {
		return nil, &FieldError{Field: f, Msg: "must be an RFC 3339 time or null"}
	}
	t = normTime(t)
	// An update may set a past expiry: that is how a key is expired now.
	if create && !t.After(now) {
		return nil, &FieldError{Field: f, Msg: "is in the past"}
	}
	return s.checkLifetime(f, t, now)
}

func (s *Service) expiresInField(f string, v json.RawMessage, now time.Time) (*time.Time, error) {
	var str string
	if err := json.Unmarshal(v, &str); err != nil || isNull(v) {
		return nil, &FieldError{Field: f, Msg: `must be a duration such as "30d" or "12h"`}
	}
	d, err := ParseDuration(str)
	if err != nil || d <= 0 {
		return nil, &FieldError{Field: f, Msg: `must be a positive duration such as "30d" or "12h"`}
	}
	return s.checkLifetime(f, normTime(now.Add(d)), now)
}

func (s *Service) checkLifetime(f string, t, now time.Time) (*time.Time, error) {
	if s.opts.MaxLifetime > 0 && t.After(now.Add(s.opts.MaxLifetime)) {
		return nil, &FieldError{Field: f, Msg: "beyond the longest lifetime allowed (" + FormatDuration(s.opts.MaxLifetime) + ")"}
	}
	return &t, nil
}

func isNull(v json.RawMessage) bool { return string(bytes.TrimSpace(v)) == "null" }

// identField is a short single-line string: no control characters, at
// most maxIdentLen characters.
func identField(f string, v json.RawMessage, required bool) (string, error) {
	str, err := stringField(f, v)
	if err != nil {
		return "", err
	}
	if required && strings.TrimSpace(str) == "" {
		return "", &FieldError{Field: f, Msg: "required"}
	}
	return str, checkIdent(f, str)
}

func checkIdent(f, str string) error {
	if utf8.RuneCountInString(str) > maxIdentLen {
		return &FieldError{Field: f, Msg: fmt.Sprintf("longer than %d characters", maxIdentLen)}
	}
	for _, r := range str {
		if unicode.IsControl(r) || r == utf8.RuneError {
			return &FieldError{Field: f, Msg: "contains a control character"}
		}
	}
	return nil
}

func textField(f string, v json.RawMessage, max int) (string, error) {
	str, err := stringField(f, v)
	if err != nil {
		return "", err
	}
	if utf8.RuneCountInString(str) > max {
		return "", &FieldError{Field: f, Msg: fmt.Sprintf("longer than %d characters", max)}
	}
	for _, r := range str {
		if unicode.IsControl(r) && r != '\n' && r != '\t' && r != '\r' {
			return "", &FieldError{Field: f, Msg: "contains a control character"}
		}
	}
	return str, nil
}

func stringField(f string, v json.RawMessage) (string, error) {
	if isNull(v) {
		return "", nil
	}
	var str string
	if err := json.Unmarshal(v, &str); err != nil {
		return "", &FieldError{Field: f, Msg: "must be a string"}
	}
	return str, nil
}

func boolField(f string, v json.RawMessage, def bool) (bool, error) {
	if isNull(v) {
		return def, nil
	}
	var b bool
	if err := json.Unmarshal(v, &b); err != nil {
		return false, &FieldError{Field: f, Msg: "must be true or false"}
	}
	return b, nil
}

// listField decodes an array of strings, checks and normalizes each entry
// and drops duplicates, keeping the first occurrence's position.
func listField(f string, v json.RawMessage, check func(string) (string, string)) ([]string, error) {
	if isNull(v) {
		return []string{}, nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(v, &items); err != nil {
		return nil, &FieldError{Field: f, Msg: "must be an array of strings"}
	}
	if len(items) > maxListLen {
		return nil, &FieldError{Field: f, Msg: fmt.Sprintf("more than %d entries", maxListLen)}
	}
	out := make([]string, 0, len(items))
	seen := make(map[string]bool, len(items))
	for i, item := range items {
		name := f + "[" + strconv.Itoa(i) + "]"
		var str string
		if err := json.Unmarshal(item, &str); err != nil || isNull(item) {
			return nil, &FieldError{Field: name, Msg: "must be a string"}
		}
		norm, msg := check(str)
		if msg != "" {
			return nil, &FieldError{Field: name, Msg: msg}
		}
		if !seen[norm] {
			seen[norm] = true
			out = append(out, norm)
		}
	}
	return out, nil
}

func checkTag(t string) (string, string) {
	if t == "" {
		return "", "must not be empty"
	}
	if err := checkIdent("", t); err != nil {
		return "", err.(*FieldError).Msg
	}
	return t, ""
}

// checkScope accepts a route name: no spaces, commas or control
// characters, since scopes travel comma-joined in X-Keygate-Scopes.
func checkScope(sc string) (string, string) {
	if sc == "" {
		return "", "must not be empty"
	}
	if len(sc) > maxIdentLen {
		return "", fmt.Sprintf("longer than %d characters", maxIdentLen)
	}
	for _, r := range sc {
		if r == ',' || unicode.IsSpace(r) || unicode.IsControl(r) || r == utf8.RuneError {
			return "", "must be a single token (no spaces, commas or control characters)"
		}
	}
	return sc, ""
}

// checkIPEntry accepts an IP or a CIDR, v4 or v6, and returns its
// canonical form: IPv4-mapped addresses unmapped, host bits of a CIDR
// cleared.
func checkIPEntry(e string) (string, string) {
	const msg = "not an IP or CIDR"
	if p, ok := parseAllowEntry(e); ok {
		if p.IsSingleIP() && !strings.Contains(e, "/") {
			return p.Addr().String(), ""
		}
		return p.String(), ""
	}
	return "", msg
}

// parseAllowEntry parses an allowlist entry into a prefix; a single IP
// becomes a /32 or /128. IPv4-mapped IPv6 addresses and prefixes are
// unmapped so they match the unmapped client addresses the proxy sees.
func parseAllowEntry(e string) (netip.Prefix, bool) {
	if strings.Contains(e, "/") {
		p, err := netip.ParsePrefix(e)
		if err != nil {
			return netip.Prefix{}, false
		}
		a, bits := p.Addr(), p.Bits()
		if a.Is4In6() {
			if bits < 96 {
				return netip.Prefix{}, false
			}
			a, bits = a.Unmap(), bits-96
		}
		return netip.PrefixFrom(a, bits).Masked(), true
	}
	a, err := netip.ParseAddr(e)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, false
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), true
}

// metadataField decodes a string map. On update it is merged into the
// current map: a null value removes that entry (RFC 7396).
func metadataField(f string, v json.RawMessage, cur map[string]string, create bool) (map[string]string, error) {
	if isNull(v) {
		return map[string]string{}, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(v, &m); err != nil {
		return nil, &FieldError{Field: f, Msg: "must be an object of strings"}
	}
	out := make(map[string]string, len(cur)+len(m))
	if !create {
		for n, s := range cur {
			out[n] = s
		}
	}
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		name := f + "." + n
		if n == "" {
			return nil, &FieldError{Field: f, Msg: "keys must not be empty"}
		}
		if err := checkIdent(name, n); err != nil {
			return nil, &FieldError{Field: name, Msg: "key " + err.(*FieldError).Msg}
		}
		if isNull(m[n]) && !create {
			delete(out, n)
			continue
		}
		var s string
		if err := json.Unmarshal(m[n], &s); err != nil || isNull(m[n]) {
			return nil, &FieldError{Field: name, Msg: "must be a string"}
		}
		if utf8.RuneCountInString(s) > maxDescriptionLen {
			return nil, &FieldError{Field: name, Msg: fmt.Sprintf("longer than %d characters", maxDescriptionLen)}
		}
		out[n] = s
	}
	if len(out) > maxListLen {
		return nil, &FieldError{Field: f, Msg: fmt.Sprintf("more than %d entries", maxListLen)}
	}
	return out, nil
}

// rateLimitField decodes {rps, burst} or null (no limit of its own). On
// update an object is merged into the current limit. A zero burst with a
// positive rate becomes ceil(rps), so one second's worth may come at once.
func rateLimitField(f string, v json.RawMessage, cur *RateLimit, create bool) (*RateLimit, error) {
	if isNull(v) {
		return nil, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(v, &m); err != nil {
		return nil, &FieldError{Field: f, Msg: "must be an object {rps, burst} or null"}
	}
	rl := RateLimit{}
	if cur != nil && !create {
		rl = *cur
	}
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		name := f + "." + n
		val := m[n]
		switch n {
		case "rps":
			rl.RPS = 0
			if isNull(val) {
				continue
			}
			if err := json.Unmarshal(val, &rl.RPS); err != nil {
				return nil, &FieldError{Field: name, Msg: "must be a number"}
			}
			if rl.RPS < 0 || rl.RPS > maxRPS || math.IsNaN(rl.RPS) {
				return nil, &FieldError{Field: name, Msg: "must be between 0 and 1000000"}
			}
		case "burst":
			rl.Burst = 0
			if isNull(val) {
				continue
			}
			var b float64
			if err := json.Unmarshal(val, &b); err != nil || b != math.Trunc(b) {
				return nil, &FieldError{Field: name, Msg: "must be a whole number"}
			}
			if b < 0 || b > maxBurst {
				return nil, &FieldError{Field: name, Msg: "must be between 0 and 1000000"}
			}
			rl.Burst = int(b)
		default:
			return nil, &FieldError{Field: name, Msg: "unknown field"}
		}
	}
	if rl.RPS > 0 && rl.Burst == 0 {
		rl.Burst = int(math.Ceil(rl.RPS))
	}
	return &rl, nil
}

// ParseDuration parses Go duration syntax plus a leading number of days
// ("30d", "1d12h", "1.5d").
func ParseDuration(s string) (time.Duration, error) {
	days, rest, ok := strings.Cut(s, "d")
	if !ok {
		return time.ParseDuration(s)
	}
	n, err := strconv.ParseFloat(days, 64)
	if err != nil || days == "" || strings.ContainsAny(days, "eEinfINFaA") {
		return 0, fmt.Errorf("invalid duration %q", s)
	}
	var d time.Duration
	if rest != "" {
		if rest[0] == '-' || rest[0] == '+' {
			return 0, fmt.Errorf("invalid duration %q", s)
		}
		if d, err = time.ParseDuration(rest); err != nil {
			return 0, fmt.Errorf("invalid duration %q", s)
		}
	}
	total := n*float64(24*time.Hour) + float64(d)
	if n < 0 {
		total = n*float64(24*time.Hour) - float64(d)
	}
	if math.Abs(total) >= math.MaxInt64 {
		return 0, fmt.Errorf("duration %q out of range", s)
	}
	return time.Duration(total), nil
}

// FormatDuration writes d in days when it is a whole number of them
// ("30d"), in Go syntax otherwise.
func FormatDuration(d time.Duration) string {
	const day = 24 * time.Hour
	if d != 0 && d%day == 0 {
		return strconv.FormatInt(int64(d/day), 10) + "d"
	}
	return d.String()
}

// normTime is the precision and zone keygate keeps: UTC, microseconds
// (PostgreSQL's resolution), so a time reads back as it was written
// whatever the backend.
func normTime(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }
