package main

import (
	"bytes"
	"context"
	"net/http"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/pgtest"
)

// keygateCmd runs one keygate command line in-process with env as the
// whole environment and returns its exit status, stdout and stderr.
func keygateCmd(env map[string]string, args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(context.Background(), args, mapEnv(env), &out, &errb)
	return code, out.String(), errb.String()
}

func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	good := writeConfig(t, t.TempDir(), embeddedConfig(dir, "127.0.0.1:18080", "127.0.0.1:19090", "http://127.0.0.1:3000"))
	bad := writeConfig(t, t.TempDir(), `proxy:
  listne: ":8080"
routes:
  - name: api
    upstream:
      targets: ["not a url"]
`)
	code, out, errOut := keygateCmd(nil, "check-config", "--config", good)
	if code != 0 || strings.TrimSpace(out) != "ok" {
		t.Errorf("check-config on a good file: exit %d, stdout %q, stderr %q; want 0 and ok", code, out, errOut)
	}
	code, out, errOut = keygateCmd(nil, "check-config", "--config", bad)
	if code != 1 {
		t.Errorf("check-config on a bad file: exit %d, want 1", code)
	}
	for _, want := range []string{"proxy.listne: unknown field", "routes[0].upstream.targets[0]: not a URL"} {
		if !strings.Contains(out, want) {
			t.Errorf("check-config on a bad file printed %q (stderr %q), want a line %q", out, errOut, want)
		}
	}
	if strings.Contains(out, "ok") {
		t.Errorf("check-config on a bad file said ok: %q", out)
	}
	// The file is given through KEYGATE_CONFIG as well as --config.
	if code, _, _ := keygateCmd(map[string]string{"KEYGATE_CONFIG": bad}, "check-config"); code != 1 {
		t.Errorf("check-config with KEYGATE_CONFIG naming a bad file: exit %d, want 1", code)
	}
	// So does serve, without starting anything.
	if code, _, errOut := keygateCmd(nil, "serve", "--config", bad); code == 0 || !strings.Contains(errOut, "routes[0].upstream.targets[0]") {
		t.Errorf("serve with a bad file: exit %d, stderr %q; want a failure naming the problem", code, errOut)
	}
	if code, _, _ := keygateCmd(nil, "check-config", "--config", filepath.Join(dir, "missing.yaml")); code != 1 {
		t.Errorf("check-config on a missing file: exit %d, want 1", code)
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := keygateCmd(nil, "version")
	if code != 0 || !strings.HasPrefix(out, "keygate "+version) || !strings.Contains(out, commit) || !strings.Contains(out, runtime.Version()) {
		t.Errorf("keygate version: exit %d, %q; want version %s, commit %s and %s", code, out, version, commit, runtime.Version())
	}
	if code, _, _ := keygateCmd(nil, "no-such-command"); code != 2 {
		t.Errorf("unknown command: exit %d, want 2", code)
	}
}

// TestBootstrap: the first bootstrap prints a secret alone on stdout, a
// second is refused without --force, and the secret works against the
// admin API of a serve on the same data (which then prints no secret).
func TestBootstrap(t *testing.T) {
	dir := t.TempDir()
	_, upstream := startEcho(t, 0)
	proxyAddr, adminAddr := freeAddr(t), freeAddr(t)
	cfg := writeConfig(t, dir, embeddedConfig(dir, proxyAddr, adminAddr, upstream))

	code, out, errOut := keygateCmd(nil, "bootstrap", "--config", cfg)
	secret := strings.TrimSpace(out)
	if code != 0 || !secretRE.MatchString(secret) || secretRE.FindString(secret) != secret {
		t.Fatalf("first bootstrap: exit %d, stdout %q, stderr %q; want 0 and the secret alone on stdout", code, out, errOut)
	}
	code, out, errOut = keygateCmd(nil, "bootstrap", "--config", cfg)
	if code != 1 || out != "" || !strings.Contains(errOut, "--force") {
		t.Errorf("second bootstrap: exit %d, stdout %q, stderr %q; want 1, nothing on stdout, advice to use --force", code, out, errOut)
	}
	code, out, errOut = keygateCmd(nil, "bootstrap", "--config", cfg, "--force")
	forced := strings.TrimSpace(out)
	if code != 0 || !secretRE.MatchString(forced) || forced == secret {
		t.Errorf("bootstrap --force: exit %d, stdout %q, stderr %q; want 0 and a new secret", code, out, errOut)
	}

	in := startServe(t, nil, proxyAddr, adminAddr, "serve", "--config", cfg)
	if s := secretRE.FindString(in.stderr.String()); s != "" {
		t.Errorf("serve printed a secret although bootstrap had made an admin key:\n%s", in.stderr.String())
	}
	for _, s := range []string{secret, forced} {
		if r := in.adminDo(s, "GET", "/v1/keys", nil); r.status != http.StatusOK {
			t.Errorf("a bootstrapped admin key against the admin API = %s", r)
		}
	}
}

// TestMigrate: `keygate migrate` brings a store to the current schema, for
// both drivers; before it, commands with auto_migrate off refuse the store,
// after it they work; running it again changes nothing.
func TestMigrate(t *testing.T) {
	for _, tc := range []struct {
		driver string
		env    func(t *testing.T) map[string]string
	}{
		{"embedded", func(t *testing.T) map[string]string {
			return map[string]string{"KEYGATE_STORE_PATH": filepath.Join(t.TempDir(), "data")}
		}},
		{"postgres", func(t *testing.T) map[string]string {
			return map[string]string{"KEYGATE_STORE_URL": pgtest.NewEmptyDatabase(t)}
		}},
	} {
		t.Run(tc.driver, func(t *testing.T) {
			env := tc.env(t)
			env["KEYGATE_STORE_AUTO_MIGRATE"] = "false"
			if code, out, errOut := keygateCmd(env, "bootstrap"); code != 1 {
				t.Errorf("bootstrap on an unmigrated %s store with auto_migrate false: exit %d, stdout %q, stderr %q; want 1", tc.driver, code, out, errOut)
			}
			for i := range 2 {
				code, out, errOut := keygateCmd(env, "migrate")
				if code != 0 || strings.TrimSpace(out) != tc.driver+" store: migrations applied, schema is current" {
					t.Errorf("migrate #%d: exit %d, stdout %q, stderr %q", i+1, code, out, errOut)
				}
			}
			if code, out, errOut := keygateCmd(env, "bootstrap"); code != 0 || !secretRE.MatchString(out) {
				t.Errorf("bootstrap on the migrated %s store with auto_migrate false: exit %d, stdout %q, stderr %q; want 0 and a secret", tc.driver, code, out, errOut)
			}
		})
	}
}

func TestKeysFlagsAfterKeys(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"keys list", "keys list"},
		{"--admin-url http://a -o json keys list", "keys --admin-url http://a -o json list"},
		{"--output=json --admin-url=http://a keys create --name n", "keys --output=json --admin-url=http://a create --name n"},
		{"-ojson keys list", "keys -ojson list"},
		{"serve --config f", "serve --config f"},
		{"--admin-url keys list", "--admin-url keys list"}, // no value: left for kong to refuse
		{"version", "version"},
	} {
		got := strings.Join(keysFlagsAfterKeys(strings.Fields(tt.in)), " ")
		if got != tt.want {
			t.Errorf("keysFlagsAfterKeys(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
