package store

import (
	"reflect"
	"time"
)

// Audit actions.
const (
	ActionCreate         = "create"
	ActionImport         = "import"
	ActionUpdate         = "update"
	ActionEnable         = "enable"
	ActionDisable        = "disable"
	ActionRotate         = "rotate"
	ActionRevealSecret   = "reveal_secret"
	ActionRevokeSessions = "revoke_sessions"
	ActionDelete         = "delete"
	ActionPurge          = "purge"
	ActionBootstrap      = "bootstrap"
)

// SystemActor is the actor recorded for changes no admin key made.
const SystemActor = "system"

// auditedFields are the fields whose before and after an audit event
// records. Secrets, digests and the sealed secret are never among them;
// the hint is, as lists show it anyway. updated_at and last_used_at change
// with everything or nothing and are left out.
var auditedFields = []string{
	"name", "description", "user", "application", "tenant", "tags", "scopes",
	"ip_allowlist", "client_name", "notes", "metadata", "enabled",
	"sessions_allowed", "expires_at", "rate_limit", "hint",
	"secret_rotated_at", "previous_secret_expires_at", "session_epoch",
}

// auditValue is k's field f as the audit log shows it: JSON-friendly,
// empty lists and maps rather than nil, times as RFC 3339 strings.
func auditValue(k *Key, f string) any {
	switch f {
	case "name":
		return k.Name
	case "description":
		return k.Description
	case "user":
		return k.User
	case "application":
		return k.Application
	case "tenant":
		return k.Tenant
	case "tags":
		return nonNil(k.Tags)
	case "scopes":
		return nonNil(k.Scopes)
	case "ip_allowlist":
		return nonNil(k.IPAllowlist)
	case "client_name":
		return k.ClientName
	case "notes":
		return k.Notes
	case "metadata":
		if k.Metadata == nil {
			return map[string]string{}
		}
		return k.Metadata
	case "enabled":
		return k.Enabled
	case "sessions_allowed":
		return k.SessionsAllowed
	case "expires_at":
		return timeValue(k.ExpiresAt)
	case "rate_limit":
		if k.RateLimit == nil {
			return nil
		}
		return *k.RateLimit
	case "hint":
		return k.Hint
	case "secret_rotated_at":
		return timeValue(k.SecretRotatedAt)
	case "previous_secret_expires_at":
		return timeValue(k.PreviousSecretExpiresAt)
	case "session_epoch":
		return k.SessionEpoch
	}
	panic("store: unknown audited field " + f)
}

func timeValue(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// isZeroValue reports whether v is a field's empty value, which a created
// or deleted key's audit event leaves out.
func isZeroValue(v any) bool {
	switch v := v.(type) {
	case nil:
		return true
	case string:
		return v == ""
	case []string:
		return len(v) == 0
	case map[string]string:
		return len(v) == 0
	case int64:
		return v == 0
	}
	return false
}

// diffKeys returns the audited fields that differ between before and
// after. A nil before (a created key) or after (a deleted key) records
// the other side's non-empty fields against null.
func diffKeys(before, after *Key) map[string]FieldChange {
	changes := map[string]FieldChange{}
	for _, f := range auditedFields {
		switch {
		case before == nil:
			if v := auditValue(after, f); !isZeroValue(v) {
				changes[f] = FieldChange{Before: nil, After: v}
			}
		case after == nil:
			if v := auditValue(before, f); !isZeroValue(v) {
				changes[f] = FieldChange{Before: v, After: nil}
			}
		default:
			b, a := auditValue(before, f), auditValue(after, f)
			if !reflect.DeepEqual(b, a) {
				changes[f] = FieldChange{Before: b, After: a}
			}
		}
	}
	return changes
}
