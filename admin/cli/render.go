package cli

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/keygate/keygate/store"
)

// clean makes a value safe for a terminal table: control characters
// (tabs, newlines, escape sequences a key name could smuggle in) become
// U+FFFD, and empty is "-".
func clean(s string) string {
	if s == "" {
		return "-"
	}
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return unicode.ReplacementChar
		}
		return r
	}, s)
}

func formatTime(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func joinList(l []string) string {
	if len(l) == 0 {
		return "-"
	}
	return clean(strings.Join(l, ","))
}

func formatRateLimit(rl *store.RateLimit) string {
	if rl == nil {
		return "default"
	}
	return strconv.FormatFloat(rl.RPS, 'f', -1, 64) + " rps, burst " + strconv.Itoa(rl.Burst)
}

// renderKey prints one key as an aligned FIELD VALUE table.
func renderKey(w io.Writer, k *store.Key) error {
	if k == nil {
		return fmt.Errorf("the admin API answered without a key")
	}
	expires := formatTime(k.ExpiresAt)
	if k.ExpiresAt == nil {
		expires = "never"
	}
	meta := make([]string, 0, len(k.Metadata))
	for n, v := range k.Metadata {
		meta = append(meta, n+"="+v)
	}
	sort.Strings(meta)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	rows := [][2]string{
		{"id", clean(k.ID)},
		{"name", clean(k.Name)},
		{"status", clean(k.Status)},
		{"user", clean(k.User)},
		{"application", clean(k.Application)},
		{"tenant", clean(k.Tenant)},
		{"description", clean(k.Description)},
		{"hint", clean(k.Hint)},
		{"tags", joinList(k.Tags)},
		{"scopes", joinList(k.Scopes)},
		{"ip_allowlist", joinList(k.IPAllowlist)},
		{"rate_limit", formatRateLimit(k.RateLimit)},
		{"enabled", strconv.FormatBool(k.Enabled)},
		{"sessions_allowed", strconv.FormatBool(k.SessionsAllowed)},
		{"expires_at", expires},
		{"created_at", formatTime(&k.CreatedAt)},
		{"updated_at", formatTime(&k.UpdatedAt)},
		{"last_used_at", formatTime(k.LastUsedAt)},
		{"secret_rotated_at", formatTime(k.SecretRotatedAt)},
		{"previous_secret_expires_at", formatTime(k.PreviousSecretExpiresAt)},
		{"previous_secret_last_used_at", formatTime(k.PreviousSecretLastUsedAt)},
		{"client_name", clean(k.ClientName)},
		{"notes", clean(k.Notes)},
		{"metadata", joinList(meta)},
	}
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\n", r[0], r[1])
	}
	return tw.Flush()
}

// renderList prints keys as an aligned table, one row each.
func renderList(w io.Writer, keys []*store.Key) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tUSER\tAPPLICATION\tTENANT\tSTATUS\tEXPIRES\tLAST USED\tHINT")
	for _, k := range keys {
		expires := formatTime(k.ExpiresAt)
		if k.ExpiresAt == nil {
			expires = "never"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", clean(k.ID), clean(k.Name), clean(k.User),
			clean(k.Application), clean(k.Tenant), clean(k.Status), expires, formatTime(k.LastUsedAt), clean(k.Hint))
	}
	return tw.Flush()
}
