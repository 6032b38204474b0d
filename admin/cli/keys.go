package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/admin/client"
	"github.com/keygate/keygate/store"
)

// keyFields are the flags create and update share.
type keyFields struct {
	Name        string            `help:"Key name, unique within its application."`
	User        string            `help:"The identity the key acts as."`
	Description string            `help:"Free text."`
	Application string            `help:"Application the key belongs to."`
	Tenant      string            `help:"Tenant."`
	Tag         []string          `help:"Tag (repeatable, or comma-separated)."`
	Scope       []string          `help:"Route name the key may use (repeatable, or comma-separated; keygate:admin makes an admin key)."`
	AllowIP     []string          `name:"allow-ip" help:"IP or CIDR the key may be used from (repeatable, or comma-separated)."`
	ClientName  string            `name:"client-name" help:"Free-text client name."`
	Notes       string            `help:"Free-text notes."`
	Metadata    map[string]string `help:"Metadata KEY=VALUE (repeatable)."`
	ExpiresIn   string            `name:"expires-in" xor:"expiry" placeholder:"30d" help:"Expire after this long (Go duration or days: 30d)."`
	ExpiresAt   string            `name:"expires-at" xor:"expiry" placeholder:"RFC3339" help:"Expire at this time."`
	NoExpiry    bool              `name:"no-expiry" xor:"expiry" help:"Never expire (if keys.max_lifetime allows)."`
	RateLimit   string            `name:"rate-limit" placeholder:"RPS:BURST" help:"The key's own rate limit, e.g. 10:20."`
}

// body returns the JSON fields of the flags that were given (set is the
// set of flag names given on the command line).
func (f *keyFields) body(set map[string]bool) (map[string]any, error) {
	b := map[string]any{}
	str := func(flag, field, v string) {
		if set[flag] {
			b[field] = v
		}
	}
	list := func(flag, field string, v []string) {
		if set[flag] {
			out := []string{}
			for _, s := range v {
				if s != "" { // --tag '' clears the list
					out = append(out, s)
				}
			}
			b[field] = out
		}
	}
	str("name", "name", f.Name)
	str("user", "user", f.User)
	str("description", "description", f.Description)
	str("application", "application", f.Application)
	str("tenant", "tenant", f.Tenant)
	str("client-name", "client_name", f.ClientName)
	str("notes", "notes", f.Notes)
	list("tag", "tags", f.Tag)
	list("scope", "scopes", f.Scope)
	list("allow-ip", "ip_allowlist", f.AllowIP)
	if set["metadata"] {
		b["metadata"] = f.Metadata
	}
	switch {
	case set["expires-in"]:
		if _, err := admin.ParseDuration(f.ExpiresIn); err != nil {
			return nil, usageError("--expires-in: %v", err)
		}
		b["expires_in"] = f.ExpiresIn
	case set["expires-at"]:
		t, err := time.Parse(time.RFC3339, f.ExpiresAt)
		if err != nil {
			return nil, usageError("--expires-at %q: want RFC 3339, e.g. 2027-01-31T00:00:00Z", f.ExpiresAt)
		}
		b["expires_at"] = t.UTC().Format(time.RFC3339)
	case set["no-expiry"] && f.NoExpiry:
		b["expires_at"] = nil
	}
	if set["rate-limit"] {
		rl, err := parseRateLimit(f.RateLimit)
		if err != nil {
			return nil, err
		}
		b["rate_limit"] = rl
	}
	return b, nil
}

// parseRateLimit parses RPS:BURST ("10:20", "0.5:1"); "none" is no limit
// of the key's own (null).
func parseRateLimit(s string) (*store.RateLimit, error) {
	if s == "none" {
		return nil, nil
	}
	r, b, ok := strings.Cut(s, ":")
	rps, err1 := strconv.ParseFloat(r, 64)
	burst, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil || rps < 0 || burst < 0 || math.IsNaN(rps) || math.IsInf(rps, 0) {
		return nil, usageError("--rate-limit %q: want RPS:BURST, e.g. 10:20 (or none)", s)
	}
	return &store.RateLimit{RPS: rps, Burst: burst}, nil
}

// CreateCmd is `keygate keys create`.
type CreateCmd struct {
	keyFields
}

// Run creates the key and prints it and its secret once.
func (c *CreateCmd) Run(s *Session, set FlagsSet) error {
	body, err := c.body(set)
	if err != nil {
		return err
	}
	var missing []string
	for _, f := range []string{"name", "user"} {
		if !set[f] {
			missing = append(missing, "--"+f)
		}
	}
	if len(missing) > 0 {
		return usageError("missing flags: %s", strings.Join(missing, ", "))
	}
	res, raw, err := s.Client.CreateKey(s.Ctx, body)
	if err != nil {
		return classify("create", err)
	}
	if s.JSON {
		return printRaw(s, raw)
	}
	if err := renderKey(s.Stdout, res.Key); err != nil {
		return err
	}
	printSecret(s, res.Secret)
	for _, w := range res.Warnings {
		fmt.Fprintln(s.Stderr, "warning:", w)
	}
	return nil
}

// printSecret prints a secret on stdout (for scripts to capture) and the
// reminder on stderr.
func printSecret(s *Session, secret string) {
	fmt.Fprintf(s.Stdout, "\nsecret: %s\n", secret)
	fmt.Fprintln(s.Stderr, "Store this secret now: it will not be shown again.")
}

func printRaw(s *Session, raw []byte) error {
	_, err := fmt.Fprintln(s.Stdout, strings.TrimRight(string(raw), "\n"))
	return err
}

// ListCmd is `keygate keys list`.
type ListCmd struct {
	Query         string `name:"query" short:"q" help:"Substring of name, description or hint (the API's q)."`
	Status        string `enum:",active,disabled,expired" default:"" help:"active, disabled or expired."`
	User          string `help:"Only this user's keys."`
	Application   string `help:"Only this application's keys."`
	Tenant        string `help:"Only this tenant's keys."`
	Tag           string `help:"Only keys with this tag."`
	ExpiresBefore string `name:"expires-before" placeholder:"RFC3339|DURATION" help:"Keys expiring before this time, or within this long from now (7d)."`
	Limit         int    `help:"Keys per page (API default 100, max 1000)."`
	Cursor        string `help:"Continue after this cursor (next_cursor of the previous page)."`
	All           bool   `help:"Follow next_cursor until every matching key is listed."`
}

// Run lists keys.
func (c *ListCmd) Run(s *Session) error {
	q := url.Values{}
	add := func(k, v string) {
		if v != "" {
			q.Set(k, v)
		}
	}
	add("q", c.Query)
	add("status", c.Status)
	add("user", c.User)
	add("application", c.Application)
	add("tenant", c.Tenant)
	add("tag", c.Tag)
	add("cursor", c.Cursor)
	if c.ExpiresBefore != "" {
		if d, err := admin.ParseDuration(c.ExpiresBefore); err == nil {
			add("expires_before", time.Now().Add(d).UTC().Format(time.RFC3339))
		} else if t, err := time.Parse(time.RFC3339, c.ExpiresBefore); err == nil {
			add("expires_before", t.UTC().Format(time.RFC3339))
		} else {
			return usageError("--expires-before %q: want RFC 3339 or a duration such as 7d", c.ExpiresBefore)
		}
	}
	if c.Limit < 0 {
		return usageError("--limit must not be negative")
	}
	if c.Limit > 0 {
		q.Set("limit", strconv.Itoa(c.Limit))
	}
	var all []json.RawMessage
	var keys []*store.Key
	next := ""
	for {
		page, raw, err := s.Client.ListKeys(s.Ctx, q)
		if err != nil {
			return classify("list", err)
		}
		if s.JSON && !c.All {
			return printRaw(s, raw)
		}
		var rawPage struct {
			Keys []json.RawMessage `json:"keys"`
		}
		if err := json.Unmarshal(raw, &rawPage); err != nil {
			return classify("list", err)
		}
		all = append(all, rawPage.Keys...)
		keys = append(keys, page.Keys...)
		next = page.NextCursor
		if !c.All || next == "" {
			break
		}
		q.Set("cursor", next)
	}
	if s.JSON {
		if all == nil {
			all = []json.RawMessage{}
		}
		b, err := json.Marshal(map[string]any{"keys": all, "next_cursor": ""})
		if err != nil {
			return err
		}
		return printRaw(s, b)
	}
	if err := renderList(s.Stdout, keys); err != nil {
		return err
	}
	if next != "" {
		fmt.Fprintf(s.Stderr, "more keys: --cursor %s (or --all)\n", next)
	}
	return nil
}

// ShowCmd is `keygate keys show`.
type ShowCmd struct {
	IDs []string `arg:"" name:"id" help:"Key ids."`
}

// Run shows each key.
func (c *ShowCmd) Run(s *Session) error {
	return eachKey(s, "show", c.IDs, func(ctx context.Context, id string) (client.KeyResult, []byte, error) {
		return s.Client.GetKey(ctx, id)
	})
}

// eachKey runs one call per id and prints each key; the first failure
// stops it.
func eachKey(s *Session, what string, ids []string, fn func(context.Context, string) (client.KeyResult, []byte, error)) error {
	if err := checkKeyIDs(ids); err != nil {
		return err
	}
	for i, id := range ids {
		res, raw, err := fn(s.Ctx, id)
		if err != nil {
			return classify(what+" "+id, err)
		}
		if s.JSON {
			if err := printRaw(s, raw); err != nil {
				return err
			}
			continue
		}
		if i > 0 {
			fmt.Fprintln(s.Stdout)
		}
		if err := renderKey(s.Stdout, res.Key); err != nil {
			return err
		}
	}
	return nil
}

// UpdateCmd is `keygate keys update`.
type UpdateCmd struct {
	ID string `arg:"" help:"Key id."`
	keyFields
	NoRateLimit bool `name:"no-rate-limit" help:"Remove the key's own rate limit (the default applies)."`
}

// Run sends the given flags as a JSON merge patch.
func (c *UpdateCmd) Run(s *Session, set FlagsSet) error {
	body, err := c.body(set)
	if err != nil {
		return err
	}
	if c.NoRateLimit {
		if set["rate-limit"] {
			return usageError("--rate-limit and --no-rate-limit can't be used together")
		}
		body["rate_limit"] = nil
	}
	if len(body) == 0 {
		return usageError("nothing to change: give at least one field flag (see --help)")
	}
	return eachKey(s, "update", []string{c.ID}, func(ctx context.Context, id string) (client.KeyResult, []byte, error) {
		return s.Client.UpdateKey(ctx, id, body)
	})
}

// EnableCmd is `keygate keys enable`.
type EnableCmd struct {
	IDs []string `arg:"" name:"id" help:"Key ids."`
}

// Run enables each key.
func (c *EnableCmd) Run(s *Session) error { return setEnabled(s, c.IDs, true) }

// DisableCmd is `keygate keys disable`.
type DisableCmd struct {
	IDs []string `arg:"" name:"id" help:"Key ids."`
}

// Run disables each key.
func (c *DisableCmd) Run(s *Session) error { return setEnabled(s, c.IDs, false) }

func setEnabled(s *Session, ids []string, enabled bool) error {
	if err := checkKeyIDs(ids); err != nil {
		return err
	}
	what := map[bool]string{true: "enable", false: "disable"}[enabled]
	for _, id := range ids {
		res, raw, err := s.Client.SetEnabled(s.Ctx, id, enabled)
		if err != nil {
			return classify(what+" "+id, err)
		}
		if s.JSON {
			if err := printRaw(s, raw); err != nil {
				return err
			}
			continue
		}
		fmt.Fprintf(s.Stdout, "%s %sd (status %s)\n", clean(res.Key.ID), what, clean(res.Key.Status))
	}
	return nil
}

// RotateCmd is `keygate keys rotate`.
type RotateCmd struct {
	ID    string `arg:"" help:"Key id."`
	Grace string `placeholder:"24h" help:"How long the previous secret keeps working (default: it stops now)."`
}

// Run rotates the key and prints the new secret once.
func (c *RotateCmd) Run(s *Session) error {
	if c.Grace != "" {
		if _, err := admin.ParseDuration(c.Grace); err != nil {
			return usageError("--grace: %v", err)
		}
	}
	if err := checkKeyIDs([]string{c.ID}); err != nil {
		return err
	}
	res, raw, err := s.Client.RotateKey(s.Ctx, c.ID, c.Grace)
	if err != nil {
		return classify("rotate "+c.ID, err)
	}
	if s.JSON {
		return printRaw(s, raw)
	}
	if err := renderKey(s.Stdout, res.Key); err != nil {
		return err
	}
	// Without grace the old secret is kept as already expired (it answers
	// key_expired), so "works until" only when its expiry is after now.
	if res.PreviousExpiresAt != nil && res.Key != nil && res.Key.SecretRotatedAt != nil &&
		res.PreviousExpiresAt.After(*res.Key.SecretRotatedAt) {
		fmt.Fprintf(s.Stdout, "\nprevious secret works until %s\n", formatTime(res.PreviousExpiresAt))
	} else {
		fmt.Fprintln(s.Stdout, "\nprevious secret stopped working")
	}
	printSecret(s, res.Secret)
	return nil
}

// DeleteCmd is `keygate keys delete`.
type DeleteCmd struct {
	IDs []string `arg:"" name:"id" help:"Key ids."`
}

// Run deletes each key. There is no prompt: it is meant for scripts, and
// the audit log records who deleted what.
func (c *DeleteCmd) Run(s *Session) error {
	if err := checkKeyIDs(c.IDs); err != nil {
		return err
	}
	for _, id := range c.IDs {
		if err := s.Client.DeleteKey(s.Ctx, id); err != nil {
			return classify("delete "+id, err)
		}
		if s.JSON {
			// ids passed checkKeyIDs: plain ASCII, so %q is valid JSON.
			fmt.Fprintf(s.Stdout, "{\"id\":%q,\"deleted\":true}\n", id)
		} else {
			fmt.Fprintf(s.Stdout, "%s deleted\n", clean(id))
		}
	}
	return nil
}

// PurgeExpiredCmd is `keygate keys purge-expired`.
type PurgeExpiredCmd struct {
	ExpiredFor string `name:"expired-for" placeholder:"720h" help:"Only keys expired at least this long (default: every expired key)."`
	DryRun     bool   `name:"dry-run" help:"Count what would be deleted, delete nothing."`
}

// Run purges, with a spinner on a terminal while the store works.
func (c *PurgeExpiredCmd) Run(s *Session) error {
	if c.ExpiredFor != "" {
		if _, err := admin.ParseDuration(c.ExpiredFor); err != nil {
			return usageError("--expired-for: %v", err)
		}
	}
	stop := spin(s, "purging expired keys")
	res, raw, err := s.Client.PurgeExpired(s.Ctx, c.ExpiredFor, c.DryRun)
	stop()
	if err != nil {
		return classify("purge-expired", err)
	}
	if s.JSON {
		return printRaw(s, raw)
	}
	if c.DryRun {
		fmt.Fprintf(s.Stdout, "would delete %d expired keys (dry run)\n", res.Deleted)
	} else {
		fmt.Fprintf(s.Stdout, "deleted %d expired keys\n", res.Deleted)
	}
	return nil
}

// spin draws a spinner on stderr while a single long request runs, when
// stderr is a terminal; the returned func stops and clears it.
func spin(s *Session, what string) (stop func()) {
	if !s.progress() {
		return func() {}
	}
	bar := progressbar.NewOptions(-1, progressbar.OptionSetWriter(s.Stderr),
		progressbar.OptionSetDescription(what), progressbar.OptionClearOnFinish(),
		progressbar.OptionSpinnerType(14))
	_ = bar.RenderBlank()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				_ = bar.Add(1)
			}
		}
	}()
	return func() {
		close(done)
		wg.Wait()
		_ = bar.Finish()
	}
}

// RevokeSessionsCmd is `keygate keys revoke-sessions`.
type RevokeSessionsCmd struct {
	IDs []string `arg:"" name:"id" help:"Key ids."`
}

// Run ends each key's sessions.
func (c *RevokeSessionsCmd) Run(s *Session) error {
	if err := checkKeyIDs(c.IDs); err != nil {
		return err
	}
	for _, id := range c.IDs {
		_, raw, err := s.Client.RevokeSessions(s.Ctx, id)
		if err != nil {
			return classify("revoke-sessions "+id, err)
		}
		if s.JSON {
			if err := printRaw(s, raw); err != nil {
				return err
			}
			continue
		}
		fmt.Fprintf(s.Stdout, "%s: sessions revoked\n", clean(id))
	}
	return nil
}

// checkKeyIDs refuses arguments that are not key ids before anything is
// sent or printed: a secret pasted where an id belongs must not end up in
// a URL, the admin API's log or this command's error output.
func checkKeyIDs(ids []string) error {
	for i, id := range ids {
		ok := strings.HasPrefix(id, "key_") && len(id) <= 64
		for j := 0; ok && j < len(id); j++ {
			c := id[j]
			ok = c == '_' || c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z'
		}
		if !ok {
			return usageError("argument %d is not a key id (key_…); to find a key by its secret use POST /v1/keys/lookup or the web console", i+1)
		}
	}
	return nil
}
