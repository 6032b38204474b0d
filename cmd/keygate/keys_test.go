package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/keygate/keygate/admin/admintest"
	"github.com/keygate/keygate/store"
)

// TestKeysThroughRun drives `keygate keys` through the real command line
// (run, kong, the env resolver) against an admin API, so the embedding of
// admin/cli in KeysCmd and the exit codes are what a user gets.
func TestKeysThroughRun(t *testing.T) {
	srv := admintest.Start(t, admintest.Embedded(), store.Options{})
	env := map[string]string{"KEYGATE_ADMIN_KEY": srv.AdminKey, "KEYGATE_ADMIN_URL": srv.URL}
	keygate := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := run(context.Background(), args, func(k string) string { return env[k] }, &out, &errb)
		return code, out.String(), errb.String()
	}

	code, out, errOut := keygate("keys", "create", "--name", "ci", "--user", "bot", "--output", "json")
	var c struct {
		Key    store.Key
		Secret string
	}
	if code != 0 || json.Unmarshal([]byte(out), &c) != nil || c.Secret == "" {
		t.Fatalf("keys create: exit %d %q %q", code, out, errOut)
	}
	code, out, _ = keygate("keys", "--output", "json", "show", c.Key.ID)
	if code != 0 || !strings.Contains(out, `"name":"ci"`) {
		t.Errorf("keys --output json show: exit %d %q", code, out)
	}
	code, out, _ = keygate("keys", "list", "--admin-url", srv.URL)
	if code != 0 || !strings.Contains(out, c.Key.ID) {
		t.Errorf("keys list: exit %d %q", code, out)
	}
	if code, _, errOut = keygate("keys", "create", "--name", "ci", "--user", "bot"); code != 1 || !strings.Contains(errOut, "name_taken") {
		t.Errorf("duplicate: exit %d %q", code, errOut)
	}
	if code, _, errOut = keygate("keys", "create", "--name", "x", "--user", "u", "--no-expiry", "--expires-in", "1d"); code != 2 {
		t.Errorf("exclusive flags: exit %d %q", code, errOut)
	}
	if code, _, errOut = keygate("keys", "list", "--admin-url", "http://127.0.0.1:1"); code != 3 {
		t.Errorf("unreachable: exit %d %q", code, errOut)
	}
	code, out, _ = keygate("keys", "--help")
	if code != 0 || !strings.Contains(out, "Exit status") || !strings.Contains(out, "purge-expired") {
		t.Errorf("keys --help: exit %d\n%s", code, out)
	}
}
