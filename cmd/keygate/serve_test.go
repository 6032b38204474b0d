package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/auth"
	"github.com/keygate/keygate/internal/echo"
)

// These tests run `keygate serve` in-process through run, as a user runs
// it, and talk to it through real sockets: an echo upstream behind the
// proxy listener, the admin API on the admin listener.

// syncBuffer is a bytes.Buffer that serve's logger and the test may use
// at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// freeAddr returns a 127.0.0.1 address with a port nothing listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// startEcho starts an echo upstream and returns it with its base URL.
func startEcho(t *testing.T, delay time.Duration) (*echo.Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &echo.Server{Delay: delay}
	go e.Serve(ln)
	t.Cleanup(func() { e.Close() })
	return e, "http://" + ln.Addr().String()
}

// mapEnv is a getenv over m only, so the process environment (a stray
// DATABASE_URL, say) cannot leak into serve.
func mapEnv(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// writeConfig writes a YAML configuration into dir and returns its path.
func writeConfig(t *testing.T, dir, yaml string) string {
	t.Helper()
	p := filepath.Join(dir, "keygate.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// embeddedConfig is a configuration on an embedded store in dir.
func embeddedConfig(dir, proxyAddr, adminAddr, upstream string) string {
	return fmt.Sprintf(`proxy:
  listen: %q
admin:
  listen: %q
store:
  driver: embedded
  path: %q
keys:
  keystore: %q
routes:
  - name: api
    match: {path_prefix: /}
    upstream:
      targets: [%q]
log:
  level: warn
shutdown_timeout: 10s
`, proxyAddr, adminAddr, filepath.Join(dir, "data"), filepath.Join(dir, "keystore"), upstream)
}

// instance is one `keygate serve` running in-process.
type instance struct {
	t        *testing.T
	proxy    string // http://host:port of the proxy listener
	admin    string // http://host:port of the admin listener
	stderr   *syncBuffer
	stdout   *syncBuffer
	cancel   context.CancelFunc
	done     chan int // receives run's exit status
	exitCode int
	stopped  bool
	client   *http.Client
}

// startServe runs `keygate <args>` (a serve command line) with env as the
// whole environment and waits until /readyz answers 200. proxyAddr and
// adminAddr are where the configuration makes it listen. It is stopped at
// the end of the test if the test does not stop it.
func startServe(t *testing.T, env map[string]string, proxyAddr, adminAddr string, args ...string) *instance {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	in := &instance{
		t:      t,
		proxy:  "http://" + proxyAddr,
		admin:  "http://" + adminAddr,
		stderr: &syncBuffer{},
		stdout: &syncBuffer{},
		cancel: cancel,
		done:   make(chan int, 1),
		client: &http.Client{Timeout: 20 * time.Second},
	}
	go func() { in.done <- run(ctx, args, mapEnv(env), in.stdout, in.stderr) }()
	t.Cleanup(func() {
		in.stop()
		if t.Failed() {
			t.Logf("stderr of keygate %s:\n%s", strings.Join(args, " "), in.stderr.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case code := <-in.done:
			in.stopped, in.exitCode = true, code
			t.Fatalf("keygate %s exited with %d before it was ready; stderr:\n%s", strings.Join(args, " "), code, in.stderr.String())
		default:
		}
		if resp, err := in.client.Get(in.admin + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return in
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("keygate %s not ready after 30s; stderr:\n%s", strings.Join(args, " "), in.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stop cancels serve's context (SIGTERM) and returns run's exit status.
func (in *instance) stop() int {
	in.t.Helper()
	if in.stopped {
		return in.exitCode
	}
	in.stopped = true
	in.cancel()
	select {
	case in.exitCode = <-in.done:
	case <-time.After(30 * time.Second):
		in.t.Fatalf("serve did not return within 30s of its context ending; stderr:\n%s", in.stderr.String())
	}
	in.client.CloseIdleConnections()
	return in.exitCode
}

// reply is an HTTP response read whole.
type reply struct {
	status int
	header http.Header
	body   []byte
}

// json decodes the body into a map (nil when it is not a JSON object).
func (r reply) json() map[string]any {
	var m map[string]any
	json.Unmarshal(r.body, &m)
	return m
}

// errCode is the "error" field of a JSON error body.
func (r reply) errCode() string {
	s, _ := r.json()["error"].(string)
	return s
}

func (r reply) String() string { return fmt.Sprintf("%d %s", r.status, bytes.TrimSpace(r.body)) }

func (in *instance) do(method, url, apiKey string, body any) reply {
	in.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			in.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		in.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if apiKey != "" {
		req.Header.Set("X-API-Key", apiKey)
	}
	resp, err := in.client.Do(req)
	if err != nil {
		in.t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		in.t.Fatalf("%s %s: reading the body: %v", method, url, err)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: b}
}

// adminDo calls the admin API with the admin key adminKey.
func (in *instance) adminDo(adminKey, method, path string, body any) reply {
	in.t.Helper()
	return in.do(method, in.admin+path, adminKey, body)
}

// get sends GET path through the proxy with key (none when "").
func (in *instance) get(key, path string) reply {
	in.t.Helper()
	return in.do("GET", in.proxy+path, key, nil)
}

// createdKey is what POST /v1/keys and rotate return.
type createdKey struct {
	ID     string
	Secret string
}

// createKey creates a key through the admin API and returns its id and
// secret.
func (in *instance) createKey(adminKey string, fields map[string]any) createdKey {
	in.t.Helper()
	r := in.adminDo(adminKey, "POST", "/v1/keys", fields)
	var c struct {
		Key    struct{ ID string }
		Secret string
	}
	if r.status != http.StatusCreated || json.Unmarshal(r.body, &c) != nil || c.Key.ID == "" || c.Secret == "" {
		in.t.Fatalf("POST /v1/keys %v = %s", fields, r)
	}
	return createdKey{ID: c.Key.ID, Secret: c.Secret}
}

// mustAdmin calls the admin API and fails the test unless it answers want.
func (in *instance) mustAdmin(adminKey string, want int, method, path string, body any) reply {
	in.t.Helper()
	r := in.adminDo(adminKey, method, path, body)
	if r.status != want {
		in.t.Fatalf("%s %s = %s, want %d", method, path, r, want)
	}
	return r
}

// rotate rotates id's secret without grace and returns the new secret.
func (in *instance) rotate(adminKey, id string) string {
	in.t.Helper()
	r := in.mustAdmin(adminKey, http.StatusOK, "POST", "/v1/keys/"+id+"/rotate", map[string]any{})
	s, _ := r.json()["secret"].(string)
	if s == "" {
		in.t.Fatalf("rotate %s: no secret in %s", id, r)
	}
	return s
}

// forwarded decodes what the echo upstream received.
func forwarded(t *testing.T, r reply) *echo.Request {
	t.Helper()
	var e echo.Request
	if err := json.Unmarshal(r.body, &e); err != nil {
		t.Fatalf("not an echo of the forwarded request: %s", r)
	}
	return &e
}

// wantDenied fails the test unless r is status with error code.
func wantDenied(t *testing.T, what string, r reply, status int, code string) {
	t.Helper()
	if r.status != status || r.errCode() != code {
		t.Errorf("%s = %s, want %d %s", what, r, status, code)
	}
}

// wantForwarded fails the test unless r is the upstream's 200 for key id
// acting as user, with the credential stripped.
func wantForwarded(t *testing.T, what string, r reply, id, user string) {
	t.Helper()
	if r.status != http.StatusOK {
		t.Errorf("%s = %s, want 200 from the upstream", what, r)
		return
	}
	e := forwarded(t, r)
	for name, want := range map[string]string{
		"X-Keygate-Key-Id": id,
		"X-Keygate-User":   user,
		"X-Keygate-Auth":   "key",
	} {
		if got := e.Values(name); len(got) != 1 || got[0] != want {
			t.Errorf("%s: upstream saw %s %q, want %q", what, name, got, want)
		}
	}
	if v := e.Values("X-API-Key"); len(v) != 0 {
		t.Errorf("%s: the credential reached the upstream: %q", what, v)
	}
}

var secretRE = regexp.MustCompile(`kg_[0-9A-Za-z]{46}`)

func newSecret(t *testing.T) string {
	t.Helper()
	s, err := auth.NewSecret("kg")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestServeEmbedded is the single-node product end to end: a config file,
// an embedded store, the bootstrap admin key seeded from the environment,
// keys managed through the admin API and enforced by the proxy at once.
func TestServeEmbedded(t *testing.T) {
	dir := t.TempDir()
	_, upstream := startEcho(t, 0)
	proxyAddr, adminAddr := freeAddr(t), freeAddr(t)
	cfg := writeConfig(t, dir, embeddedConfig(dir, proxyAddr, adminAddr, upstream))
	adminKey := newSecret(t)
	// Info level: the access log is written too, and must hold no secret.
	env := map[string]string{"KEYGATE_BOOTSTRAP_ADMIN_KEY": adminKey, "KEYGATE_LOG_LEVEL": "info"}
	in := startServe(t, env, proxyAddr, adminAddr, "serve", "--config", cfg)

	if r := in.adminDo("", "GET", "/healthz", nil); r.status != http.StatusOK {
		t.Errorf("/healthz = %s", r)
	}
	if secretRE.MatchString(in.stderr.String()) {
		t.Errorf("serve printed a secret although KEYGATE_BOOTSTRAP_ADMIN_KEY was set:\n%s", in.stderr.String())
	}
	in.mustAdmin(adminKey, http.StatusOK, "GET", "/v1/keys", nil)
	wantDenied(t, "admin API without a key", in.adminDo("", "GET", "/v1/keys", nil), 401, "missing_key")

	k := in.createKey(adminKey, map[string]any{"name": "client", "user": "alice", "application": "shop"})
	wantForwarded(t, "new key", in.get(k.Secret, "/orders"), k.ID, "alice")
	// CONTRACT §6: a valid key without keygate:admin is forbidden on the
	// admin API, a malformed one invalid; §3: a key whose only scope is
	// keygate:admin (the bootstrap key) may use no proxy route.
	wantDenied(t, "admin API with a proxy key", in.adminDo(k.Secret, "GET", "/v1/keys", nil), 403, "forbidden")
	wantDenied(t, "admin API with a malformed key", in.adminDo("kg_nope", "GET", "/v1/keys", nil), 401, "invalid_key")
	wantDenied(t, "proxy with the admin key", in.get(adminKey, "/orders"), 403, "route_not_allowed")
	wantDenied(t, "no key", in.get("", "/orders"), 401, "missing_key")
	wantDenied(t, "unknown key", in.get(newSecret(t), "/orders"), 401, "invalid_key")
	if r := in.get(k.Secret, "/orders"); r.status == http.StatusOK {
		if got := forwarded(t, r).Values("X-Keygate-Application"); len(got) != 1 || got[0] != "shop" {
			t.Errorf("upstream saw X-Keygate-Application %q, want shop", got)
		}
	}

	// A change made through this node takes effect on its very next
	// request: the change invalidates its cache locally, no TTL involved.
	in.mustAdmin(adminKey, http.StatusOK, "POST", "/v1/keys/"+k.ID+"/disable", nil)
	wantDenied(t, "request right after disable", in.get(k.Secret, "/orders"), 401, "key_disabled")
	in.mustAdmin(adminKey, http.StatusOK, "POST", "/v1/keys/"+k.ID+"/enable", nil)
	wantForwarded(t, "request right after enable", in.get(k.Secret, "/orders"), k.ID, "alice")

	newSec := in.rotate(adminKey, k.ID)
	// CONTRACT §4: a rotated-out secret past its grace (here: none) is
	// key_expired, not invalid_key.
	wantDenied(t, "old secret right after rotate without grace", in.get(k.Secret, "/orders"), 401, "key_expired")
	wantForwarded(t, "new secret after rotate", in.get(newSec, "/orders"), k.ID, "alice")

	in.mustAdmin(adminKey, http.StatusNoContent, "DELETE", "/v1/keys/"+k.ID, nil)
	wantDenied(t, "request right after delete", in.get(newSec, "/orders"), 401, "invalid_key")

	if code := in.stop(); code != 0 {
		t.Errorf("serve exited %d after its context ended; stderr:\n%s", code, in.stderr.String())
	}
	logs := in.stderr.String() + in.stdout.String()
	if !strings.Contains(logs, "/orders") {
		t.Errorf("no access log at level info, so the check below proves little:\n%s", logs)
	}
	for _, s := range []string{adminKey, k.Secret, newSec} {
		if strings.Contains(logs, s) {
			t.Errorf("serve's output contains a secret (%.11s…)", s)
		}
	}
}

// TestServeUpstreamFlagAndBootstrap: `serve --upstream URL` without a
// config file works, its first start prints a working admin secret once on
// stderr, and a second start on the same data prints none.
func TestServeUpstreamFlagAndBootstrap(t *testing.T) {
	dir := t.TempDir()
	_, upstream := startEcho(t, 0)
	proxyAddr, adminAddr := freeAddr(t), freeAddr(t)
	env := map[string]string{
		"KEYGATE_STORE_PATH":    filepath.Join(dir, "data"),
		"KEYGATE_KEYS_KEYSTORE": filepath.Join(dir, "keystore"),
		"KEYGATE_PROXY_LISTEN":  proxyAddr,
		"KEYGATE_ADMIN_LISTEN":  adminAddr,
		"KEYGATE_LOG_LEVEL":     "warn",
	}
	first := startServe(t, env, proxyAddr, adminAddr, "serve", "--upstream", upstream)
	printed := secretRE.FindAllString(first.stderr.String(), -1)
	if len(printed) != 1 {
		t.Fatalf("first start printed %d secrets on stderr, want 1:\n%s", len(printed), first.stderr.String())
	}
	adminKey := printed[0]
	first.mustAdmin(adminKey, http.StatusOK, "GET", "/v1/keys", nil)
	k := first.createKey(adminKey, map[string]any{"name": "c", "user": "bob"})
	wantForwarded(t, "through --upstream", first.get(k.Secret, "/anything/at/all"), k.ID, "bob")
	if code := first.stop(); code != 0 {
		t.Fatalf("first serve exited %d; stderr:\n%s", code, first.stderr.String())
	}

	second := startServe(t, env, proxyAddr, adminAddr, "serve", "--upstream", upstream)
	if s := secretRE.FindAllString(second.stderr.String(), -1); len(s) != 0 {
		t.Errorf("second start on the same data printed a secret again:\n%s", second.stderr.String())
	}
	second.mustAdmin(adminKey, http.StatusOK, "GET", "/v1/keys", nil)
	wantForwarded(t, "after restart", second.get(k.Secret, "/x"), k.ID, "bob")
	if code := second.stop(); code != 0 {
		t.Errorf("second serve exited %d; stderr:\n%s", code, second.stderr.String())
	}
}

// TestServeGracefulShutdown: a request in flight when the context ends
// (SIGTERM) completes with the upstream's answer; then serve returns 0 and
// the listeners are closed.
func TestServeGracefulShutdown(t *testing.T) {
	dir := t.TempDir()
	up, upstream := startEcho(t, 500*time.Millisecond)
	proxyAddr, adminAddr := freeAddr(t), freeAddr(t)
	cfg := writeConfig(t, dir, embeddedConfig(dir, proxyAddr, adminAddr, upstream))
	adminKey := newSecret(t)
	in := startServe(t, map[string]string{"KEYGATE_BOOTSTRAP_ADMIN_KEY": adminKey}, proxyAddr, adminAddr, "serve", "--config", cfg)
	k := in.createKey(adminKey, map[string]any{"name": "slow", "user": "carol"})

	type result struct {
		status int
		err    error
	}
	res := make(chan result, 1)
	go func() {
		req, _ := http.NewRequest("GET", in.proxy+"/slow", nil)
		req.Header.Set("X-API-Key", k.Secret)
		resp, err := (&http.Client{Timeout: 20 * time.Second}).Do(req)
		if err != nil {
			res <- result{err: err}
			return
		}
		defer resp.Body.Close()
		_, err = io.ReadAll(resp.Body)
		res <- result{status: resp.StatusCode, err: err}
	}()
	// Wait until the request is at the upstream, so it is in flight.
	for deadline := time.Now().Add(10 * time.Second); up.Hits() == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the request never reached the upstream")
		}
	}
	code := in.stop()
	r := <-res
	if r.err != nil || r.status != http.StatusOK {
		t.Errorf("in-flight request across shutdown = %d, %v; want 200", r.status, r.err)
	}
	if code != 0 {
		t.Errorf("serve exited %d after a graceful shutdown; stderr:\n%s", code, in.stderr.String())
	}
	for _, addr := range []string{proxyAddr, adminAddr} {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Errorf("%s still accepts connections after serve returned", addr)
		}
	}
}

// TestServeListenError: serve whose proxy address is taken fails at once
// with status 1, naming the setting, instead of running half a server.
func TestServeListenError(t *testing.T) {
	dir := t.TempDir()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	cfg := writeConfig(t, dir, embeddedConfig(dir, taken.Addr().String(), freeAddr(t), "http://127.0.0.1:3000"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errb syncBuffer
	code := run(ctx, []string{"serve", "--config", cfg}, mapEnv(nil), &out, &errb)
	if code != 1 || !strings.Contains(errb.String(), "proxy.listen") {
		t.Errorf("serve on a taken port: exit %d, stderr %q; want 1 naming proxy.listen", code, errb.String())
	}
	if ctx.Err() != nil {
		t.Errorf("serve on a taken port ran until the test's deadline instead of failing")
	}
}
