package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/kong"

	"github.com/keygate/keygate/admin/admintest"
	"github.com/keygate/keygate/auth"
	"github.com/keygate/keygate/store"
)

func TestMain(m *testing.M) { os.Exit(admintest.Main(m)) }

// root mirrors how cmd/keygate mounts the command.
type root struct {
	Keys Keys `cmd:""`
}

type result struct {
	code           int
	stdout, stderr string
}

type kongExit struct{}

// run parses and runs `keygate keys args…` in-process the way
// cmd/keygate's run does: parse errors exit 2, errors with ExitCode() give
// theirs, other errors 1.
func run(t *testing.T, env map[string]string, stdin string, args ...string) (res result) {
	t.Helper()
	var out, errb bytes.Buffer
	getenv := func(k string) string { return env[k] }
	var r root
	exited := false
	parser, err := kong.New(&r, kong.Name("keygate"), kong.Writers(&out, &errb),
		kong.Exit(func(code int) { exited = true; res.code = code; panic(kongExit{}) }),
		kong.Resolvers(kong.ResolverFunc(func(_ *kong.Context, _ *kong.Path, f *kong.Flag) (any, error) {
			for _, n := range f.Envs {
				if v := getenv(n); v != "" {
					return v, nil
				}
			}
			return nil, nil
		})))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if p := recover(); p != nil {
			if _, ok := p.(kongExit); !ok || !exited {
				panic(p)
			}
			res.stdout, res.stderr = out.String(), errb.String()
		}
	}()
	kctx, err := parser.Parse(append([]string{"keys"}, args...))
	if err != nil {
		fmt.Fprintln(&errb, "keygate:", err)
		return result{2, out.String(), errb.String()}
	}
	e := &Env{Ctx: context.Background(), Getenv: getenv, Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errb,
		Progress: func() bool { return false }}
	err = kctx.Run(e)
	code := 0
	if err != nil {
		fmt.Fprintln(&errb, "keygate:", err)
		code = 1
		var ec interface{ ExitCode() int }
		if errors.As(err, &ec) {
			code = ec.ExitCode()
		}
	}
	return result{code, out.String(), errb.String()}
}

type fixture struct {
	t   *testing.T
	srv *admintest.Server
	env map[string]string
}

func newFixture(t *testing.T, b admintest.Backend) *fixture {
	srv := admintest.Start(t, b, store.Options{})
	return &fixture{t: t, srv: srv, env: map[string]string{"KEYGATE_ADMIN_KEY": srv.AdminKey}}
}

// keys runs a command against the fixture's server.
func (f *fixture) keys(args ...string) result {
	f.t.Helper()
	return run(f.t, f.env, "", append([]string{"--admin-url", f.srv.URL}, args...)...)
}

func (f *fixture) ok(args ...string) result {
	f.t.Helper()
	r := f.keys(args...)
	if r.code != 0 {
		f.t.Fatalf("keygate keys %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r
}

func (f *fixture) fails(code int, args ...string) result {
	f.t.Helper()
	r := f.keys(args...)
	if r.code != code {
		f.t.Fatalf("keygate keys %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, code, r.stdout, r.stderr)
	}
	return r
}

func (f *fixture) get(id string) *store.Key {
	f.t.Helper()
	k, err := f.srv.Service.Get(context.Background(), id)
	if err != nil {
		f.t.Fatalf("Get(%s): %v", id, err)
	}
	return k
}

var (
	idRE     = regexp.MustCompile(`(?m)^id\s+(key_\w+)$`)
	secretRE = regexp.MustCompile(`(?m)^secret: (kg_\w+)$`)
)

func forEachBackend(t *testing.T, fn func(t *testing.T, f *fixture)) {
	for _, b := range admintest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			fn(t, newFixture(t, b))
		})
	}
}

func TestCLICreateShowUpdate(t *testing.T) {
	forEachBackend(t, func(t *testing.T, f *fixture) {
		r := f.ok("create", "--name", "billing", "--user", "alice", "--description", "for billing",
			"--application", "shop", "--tenant", "acme", "--tag", "prod", "--tag", "eu,x", "--scope", "default",
			"--allow-ip", "10.0.0.0/8", "--allow-ip", "2001:db8::/32", "--expires-in", "30d", "--rate-limit", "10:20",
			"--metadata", "team=a")
		m := idRE.FindStringSubmatch(r.stdout)
		s := secretRE.FindStringSubmatch(r.stdout)
		if m == nil || s == nil {
			t.Fatalf("create output lacks id or secret:\n%s", r.stdout)
		}
		id, secret := m[1], s[1]
		if !strings.Contains(r.stderr, "will not be shown again") {
			t.Errorf("create: no shown-once note on stderr: %q", r.stderr)
		}
		if !strings.Contains(r.stdout, "ip_allowlist                  10.0.0.0/8,2001:db8::/32") {
			t.Errorf("create table not aligned or incomplete:\n%s", r.stdout)
		}
		k := f.get(id)
		if k.Name != "billing" || k.User != "alice" || k.Description != "for billing" || k.Application != "shop" ||
			k.Tenant != "acme" || strings.Join(k.Tags, ",") != "prod,eu,x" || strings.Join(k.Scopes, ",") != "default" ||
			len(k.IPAllowlist) != 2 || k.RateLimit == nil || k.RateLimit.RPS != 10 || k.RateLimit.Burst != 20 ||
			k.Metadata["team"] != "a" || k.ExpiresAt == nil || !k.ExpiresAt.Equal(f.srv.Clock.Now().Add(30*24*time.Hour)) {
			t.Errorf("created key = %+v", k)
		}
		if k.Hint != secret[:11] {
			t.Errorf("printed secret %s… does not belong to the key (hint %s)", secret[:11], k.Hint)
		}

		r = f.ok("show", id)
		if !strings.Contains(r.stdout, "billing") || strings.Contains(r.stdout, secret) {
			t.Errorf("show:\n%s", r.stdout)
		}
		r = f.ok("--output", "json", "show", id)
		var shown struct{ Key store.Key }
		if err := json.Unmarshal([]byte(r.stdout), &shown); err != nil || shown.Key.ID != id {
			t.Errorf("show --output json = %q (%v)", r.stdout, err)
		}
		r = f.fails(1, "show", "key_nothere")
		if !strings.Contains(r.stderr, "not_found") {
			t.Errorf("show missing: stderr %q", r.stderr)
		}

		// Only the flags given are sent: tags survive a rename.
		f.ok("update", id, "--name", "billing-2", "--no-expiry")
		k = f.get(id)
		if k.Name != "billing-2" || k.ExpiresAt != nil || strings.Join(k.Tags, ",") != "prod,eu,x" || k.RateLimit == nil {
			t.Errorf("after update --name --no-expiry: %+v", k)
		}
		f.ok("update", id, "--tag", "", "--no-rate-limit", "--expires-at", "2099-01-02T03:04:05Z")
		k = f.get(id)
		if len(k.Tags) != 0 || k.RateLimit != nil || k.ExpiresAt == nil || k.ExpiresAt.Year() != 2099 || k.Name != "billing-2" {
			t.Errorf("after update --tag '' --no-rate-limit --expires-at: %+v", k)
		}
		f.ok("update", id, "--expires-in", "1d")
		if k = f.get(id); !k.ExpiresAt.Equal(f.srv.Clock.Now().Add(24 * time.Hour)) {
			t.Errorf("after update --expires-in 1d: expires %v", k.ExpiresAt)
		}
		r = f.fails(2, "update", id)
		if !strings.Contains(r.stderr, "nothing to change") {
			t.Errorf("update without flags: %q", r.stderr)
		}
		r = f.fails(1, "update", id, "--allow-ip", "300.1.1.1")
		if !strings.Contains(r.stderr, "invalid_field") || !strings.Contains(r.stderr, "ip_allowlist[0]") {
			t.Errorf("update with a bad IP: stderr %q", r.stderr)
		}

		f.ok("disable", id)
		if k = f.get(id); k.Enabled {
			t.Error("still enabled after disable")
		}
		r = f.ok("enable", id)
		if k = f.get(id); !k.Enabled || !strings.Contains(r.stdout, id+" enabled") {
			t.Errorf("enable: %q, enabled=%v", r.stdout, k.Enabled)
		}
		f.ok("revoke-sessions", id)
		if k = f.get(id); k.SessionEpoch == 0 {
			t.Error("revoke-sessions did not bump the session epoch")
		}

		r = f.ok("rotate", id, "--grace", "1h")
		s2 := secretRE.FindStringSubmatch(r.stdout)
		if s2 == nil || s2[1] == secret || !strings.Contains(r.stdout, "previous secret works until") {
			t.Fatalf("rotate output:\n%s", r.stdout)
		}
		if k = f.get(id); k.Hint != s2[1][:11] {
			t.Errorf("rotated secret does not belong to the key")
		}
		r = f.ok("rotate", id, "-o", "json")
		var rot struct{ Secret string }
		if json.Unmarshal([]byte(r.stdout), &rot) != nil || !strings.HasPrefix(rot.Secret, "kg_") {
			t.Errorf("rotate --output json = %q", r.stdout)
		}
		f.fails(2, "rotate", id, "--grace", "later")

		f.ok("delete", id)
		f.fails(1, "delete", id)
	})
}

func TestCLICreateErrors(t *testing.T) {
	forEachBackend(t, func(t *testing.T, f *fixture) {
		r := f.fails(2, "create", "--name", "x", "--user", "u", "--expires-in", "30d", "--no-expiry")
		if !strings.Contains(r.stderr, "--expires-in") || !strings.Contains(r.stderr, "--no-expiry") {
			t.Errorf("exclusive expiry flags: stderr %q does not name both", r.stderr)
		}
		f.fails(2, "create", "--name", "x", "--user", "u", "--expires-at", "2099-01-01T00:00:00Z", "--expires-in", "1d")
		r = f.fails(2, "create", "--user", "u")
		if !strings.Contains(r.stderr, "--name") {
			t.Errorf("missing --name: %q", r.stderr)
		}
		f.fails(2, "create", "--name", "x", "--user", "u", "--rate-limit", "fast")
		f.fails(2, "create", "--name", "x", "--user", "u", "--expires-at", "tomorrow")
		f.fails(2, "create", "--name", "x", "--user", "u", "--expires-in", "soon")
		f.fails(2, "--output", "yaml", "list")
		f.fails(2, "frobnicate")

		r = f.fails(1, "create", "--name", "x", "--user", "u", "--allow-ip", "10.0.0.0/33")
		if !strings.Contains(r.stderr, "invalid_field") || !strings.Contains(r.stderr, "field ip_allowlist[0]") {
			t.Errorf("bad CIDR: stderr %q lacks the code and field", r.stderr)
		}
		f.ok("create", "--name", "dup", "--user", "u")
		r = f.fails(1, "create", "--name", "dup", "--user", "u")
		if !strings.Contains(r.stderr, "name_taken") {
			t.Errorf("duplicate name: %q", r.stderr)
		}
		// --output after the subcommand, and the admin warning.
		r = f.ok("create", "--name", "ops", "--user", "root", "--scope", "keygate:admin", "--output", "json")
		var c struct {
			Key      store.Key
			Secret   string
			Warnings []string
		}
		if err := json.Unmarshal([]byte(r.stdout), &c); err != nil || c.Secret == "" || len(c.Warnings) == 0 {
			t.Errorf("create --output json: %q (%v)", r.stdout, err)
		}
	})
}

func TestCLIAdminAccess(t *testing.T) {
	forEachBackend(t, func(t *testing.T, f *fixture) {
		r := run(t, map[string]string{}, "", "--admin-url", f.srv.URL, "list")
		if r.code != 3 || !strings.Contains(r.stderr, "KEYGATE_ADMIN_KEY") {
			t.Errorf("no admin key: exit %d, %q", r.code, r.stderr)
		}
		bad, err := auth.NewSecret("kg")
		if err != nil {
			t.Fatal(err)
		}
		r = run(t, map[string]string{"KEYGATE_ADMIN_KEY": bad}, "", "--admin-url", f.srv.URL, "list")
		if r.code != 3 || !strings.Contains(r.stderr, "invalid_key") {
			t.Errorf("unknown admin key: exit %d, %q", r.code, r.stderr)
		}
		if strings.Contains(r.stderr+r.stdout, bad) {
			t.Error("the admin key was printed")
		}
		// A proxy key is refused too.
		out := f.ok("create", "--name", "proxy-only", "--user", "u", "-o", "json")
		var c struct{ Secret string }
		json.Unmarshal([]byte(out.stdout), &c)
		r = run(t, map[string]string{"KEYGATE_ADMIN_KEY": c.Secret}, "", "--admin-url", f.srv.URL, "list")
		if r.code != 3 || !strings.Contains(r.stderr, "forbidden") {
			t.Errorf("non-admin key: exit %d, %q", r.code, r.stderr)
		}
		// The URL from the environment.
		r = run(t, map[string]string{"KEYGATE_ADMIN_KEY": f.srv.AdminKey, "KEYGATE_ADMIN_URL": f.srv.URL}, "", "list")
		if r.code != 0 {
			t.Errorf("KEYGATE_ADMIN_URL: exit %d %q", r.code, r.stderr)
		}
		r = run(t, f.env, "", "--admin-url", "http://127.0.0.1:1", "list")
		if r.code != 3 || !strings.Contains(r.stderr, "cannot reach") {
			t.Errorf("unreachable: exit %d, %q", r.code, r.stderr)
		}
		r = run(t, f.env, "", "--admin-url", "127.0.0.1:9090", "list")
		if r.code != 2 {
			t.Errorf("admin URL without scheme: exit %d, %q", r.code, r.stderr)
		}
	})
}

func TestCLIList(t *testing.T) {
	forEachBackend(t, func(t *testing.T, f *fixture) {
		var secrets []string
		for i := 0; i < 7; i++ {
			r := f.ok("create", "--name", fmt.Sprintf("svc-%d", i), "--user", map[bool]string{true: "alice", false: "bob"}[i%2 == 0], "--tag", "t")
			secrets = append(secrets, secretRE.FindStringSubmatch(r.stdout)[1])
		}
		r := f.ok("list", "--limit", "3")
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		if len(lines) != 4 || !strings.HasPrefix(lines[0], "ID ") || !strings.Contains(r.stderr, "--cursor") {
			t.Errorf("list --limit 3: %d lines\n%s\nstderr %s", len(lines), r.stdout, r.stderr)
		}
		col := strings.Index(lines[0], "NAME")
		for _, l := range lines[1:] {
			if len(l) <= col || l[col-1] != ' ' || l[col] == ' ' {
				t.Errorf("column NAME not aligned at %d in %q", col, l)
			}
		}
		r = f.ok("list", "--all", "--limit", "2")
		if n := strings.Count(r.stdout, "\nkey_"); n != 8 {
			t.Errorf("list --all: %d keys, want 8\n%s", n, r.stdout)
		}
		r = f.ok("list", "--user", "alice", "--all", "-o", "json")
		var page struct {
			Keys       []store.Key `json:"keys"`
			NextCursor string      `json:"next_cursor"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &page); err != nil || len(page.Keys) != 4 {
			t.Errorf("list --user alice -o json: %d keys (%v)", len(page.Keys), err)
		}
		r = f.ok("list", "-q", "SVC-3", "--status", "active", "-o", "json")
		if err := json.Unmarshal([]byte(r.stdout), &page); err != nil || len(page.Keys) != 1 || page.Keys[0].Name != "svc-3" {
			t.Errorf("list -q SVC-3: %+v (%v)", page.Keys, err)
		}
		r = f.ok("list", "--expires-before", "1d")
		if strings.Count(r.stdout, "\n") != 1 {
			t.Errorf("list --expires-before 1d: want only the header\n%s", r.stdout)
		}
		f.fails(2, "list", "--status", "sleeping")
		f.fails(2, "list", "--expires-before", "someday")
		for _, s := range secrets {
			if strings.Contains(r.stdout, s) {
				t.Error("a secret appears in list output")
			}
		}
	})
}

func TestCLIPurgeExpired(t *testing.T) {
	forEachBackend(t, func(t *testing.T, f *fixture) {
		r := f.ok("create", "--name", "short", "--user", "u", "--expires-in", "1h")
		id := idRE.FindStringSubmatch(r.stdout)[1]
		f.srv.Clock.Advance(2 * time.Hour)
		r = f.ok("purge-expired", "--expired-for", "30m", "--dry-run")
		if !strings.Contains(r.stdout, "would delete 1 ") {
			t.Errorf("dry run: %q", r.stdout)
		}
		f.get(id)
		r = f.ok("purge-expired", "--expired-for", "30m", "-o", "json")
		if !strings.Contains(r.stdout, `"deleted":1`) {
			t.Errorf("purge -o json: %q", r.stdout)
		}
		f.fails(1, "show", id)
		f.fails(2, "purge-expired", "--expired-for", "a while")
	})
}

func TestCLIImport(t *testing.T) {
	forEachBackend(t, func(t *testing.T, f *fixture) {
		s1, _ := auth.NewSecret("kg")
		s2, _ := auth.NewSecret("kg")
		s3, _ := auth.NewSecret("kg")
		lines := []string{
			fmt.Sprintf(`{"name":"imp-1","user":"alice","secret":%q}`, s1),
			`{"name":"imp-2","user":"bob","secret":"` + s2 + `","ip_allowlist":["nope"]}`,
			``,
			`not json`,
			`{"name":"imp-3","user":"carol"}`,
			fmt.Sprintf(`{"name":"imp-1","user":"dave","secret":%q}`, s3),
			fmt.Sprintf(`{"name":"imp-4","user":"erin","secret":%q}`, s1),
			fmt.Sprintf(`{"name":"imp-5","user":"frank","secret":%q,"tags":["x"]}`, s3),
		}
		file := filepath.Join(t.TempDir(), "keys.jsonl")
		if err := os.WriteFile(file, []byte(strings.Join(lines, "\n")), 0o600); err != nil {
			t.Fatal(err)
		}
		r := f.fails(1, "import", file)
		want := []string{
			`line 1: imported key_\w+ \(imp-1\)`,
			`line 2: invalid_field: .* \(ip_allowlist\[0\]\)`,
			`line 4: bad_request: not a JSON object`,
			`line 5: invalid_field: .* \(secret\)`,
			`line 6: name_taken: .* \(name\)`,
			`line 7: secret_taken: .* \(secret\)`,
			`line 8: imported key_\w+ \(imp-5\)`,
		}
		got := strings.Split(strings.TrimSpace(r.stdout), "\n")
		if len(got) != len(want) {
			t.Fatalf("import report:\n%s\nwant %d lines", r.stdout, len(want))
		}
		for i, w := range want {
			if !regexp.MustCompile("^" + w + "$").MatchString(got[i]) {
				t.Errorf("report line %d = %q, want %s", i+1, got[i], w)
			}
		}
		if !strings.Contains(r.stderr, "imported 2 keys, 5 lines failed") {
			t.Errorf("import summary: %q", r.stderr)
		}
		for _, s := range []string{s1, s2, s3} {
			if strings.Contains(r.stdout+r.stderr, s) {
				t.Error("import printed a secret")
			}
		}
		k, err := f.srv.Service.Lookup(context.Background(), s3)
		if err != nil || k.Name != "imp-5" || strings.Join(k.Tags, ",") != "x" {
			t.Errorf("imported key by its secret: %+v %v", k, err)
		}

		// All good, from stdin, as JSON lines.
		s4, _ := auth.NewSecret("kg")
		r = run(t, f.env, fmt.Sprintf(`{"name":"imp-6","user":"u","secret":%q}`+"\n", s4), "--admin-url", f.srv.URL, "-o", "json", "import", "-")
		var line struct {
			Line int
			OK   bool
			Key  store.Key
		}
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &line) != nil || !line.OK || line.Line != 1 || line.Key.Name != "imp-6" {
			t.Errorf("import from stdin: exit %d %q %q", r.code, r.stdout, r.stderr)
		}
		f.fails(2, "import", filepath.Join(t.TempDir(), "missing.jsonl"))
	})
}

func TestCountLines(t *testing.T) {
	for in, want := range map[string]int64{"": 0, "a": 1, "a\n": 1, "a\nb": 2, "a\n\nb\n": 3} {
		if got, err := countLines(strings.NewReader(in)); err != nil || got != want {
			t.Errorf("countLines(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
}

func TestProgressOnlyOnTerminal(t *testing.T) {
	f := newFixture(t, admintest.Embedded())
	s, _ := auth.NewSecret("kg")
	file := filepath.Join(t.TempDir(), "one.jsonl")
	os.WriteFile(file, []byte(fmt.Sprintf(`{"name":"p","user":"u","secret":%q}`, s)), 0o600)
	var out, errb bytes.Buffer
	env := &Env{Ctx: context.Background(), Getenv: func(k string) string { return f.env[k] }, Stdout: &out, Stderr: &errb}
	// A buffer is no terminal: no bar.
	var r root
	p := kong.Must(&r)
	kctx, err := p.Parse([]string{"keys", "--admin-url", f.srv.URL, "import", file})
	if err != nil {
		t.Fatal(err)
	}
	if err := kctx.Run(env); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(errb.String(), "importing") {
		t.Errorf("progress drawn on a non-terminal: %q", errb.String())
	}
	// Forced on, the bar is drawn on stderr and stdout keeps the report.
	out.Reset()
	errb.Reset()
	env.Progress = func() bool { return true }
	s2, _ := auth.NewSecret("kg")
	os.WriteFile(file, []byte(fmt.Sprintf(`{"name":"p2","user":"u","secret":%q}`, s2)), 0o600)
	kctx, _ = p.Parse([]string{"keys", "--admin-url", f.srv.URL, "import", file})
	if err := kctx.Run(env); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(errb.String(), "importing") || !strings.Contains(out.String(), "line 1: imported") {
		t.Errorf("with progress: stdout %q stderr %q", out.String(), errb.String())
	}
	out.Reset()
	errb.Reset()
	kctx, _ = p.Parse([]string{"keys", "--admin-url", f.srv.URL, "purge-expired", "--dry-run"})
	if err := kctx.Run(env); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(errb.String(), "purging expired keys") || !strings.Contains(out.String(), "would delete 0") {
		t.Errorf("purge with progress: stdout %q stderr %q", out.String(), errb.String())
	}
}

func TestCheckKeyIDs(t *testing.T) {
	secret, err := auth.NewSecret("kg")
	if err != nil {
		t.Fatal(err)
	}
	if err := checkKeyIDs([]string{"key_01M847TVKSSV91ZSS92GWPF6DG"}); err != nil {
		t.Errorf("a key id refused: %v", err)
	}
	for _, bad := range []string{secret, "", "key_a b", "key_\x01", "01M847"} {
		err := checkKeyIDs([]string{"key_01M847TVKSSV91ZSS92GWPF6DG", bad})
		var ee *ExitError
		if !errors.As(err, &ee) || ee.Code != ExitUsage {
			t.Errorf("checkKeyIDs(%q) = %v, want a usage error", bad, err)
			continue
		}
		if bad != "" && strings.Contains(err.Error(), bad) {
			t.Errorf("checkKeyIDs(%q) echoes the argument: %v", bad, err)
		}
	}
}
