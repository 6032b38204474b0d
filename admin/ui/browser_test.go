package ui_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// findChromium returns the browser the test drives: $KEYGATE_TEST_CHROMIUM,
// else the first of the usual names on $PATH. With CI=true a missing
// browser fails the test; locally it skips loudly.
func findChromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("KEYGATE_TEST_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "no chromium on $PATH (install it: apt-get install -y chromium, or set KEYGATE_TEST_CHROMIUM)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + "; CI=true needs the web console's browser test to run")
	}
	t.Skip("\n\n*** SKIPPING the web console browser test: " + msg + " ***\n\n")
	return ""
}

// TestConsoleInBrowser drives the console in a real headless Chromium over
// the DevTools protocol against a real admin API: sign in, create with the
// copy-once dialog, search by name and by pasted value, the enable switch,
// edit, rotate, delete with confirmation, and bulk select.
func TestConsoleInBrowser(t *testing.T) {
	chromium := findChromium(t)
	start := time.Now()
	s := startConsole(t)

	// The browser: registered after the temp dirs, so it is stopped (and
	// done writing its profile) before they are removed.
	profile := t.TempDir()
	var stderr syncBuffer
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromium),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1400, 900),
		chromedp.CombinedOutput(&stderr),
	)
	t.Cleanup(cancelAlloc)
	bctx, cancelBrowser := chromedp.NewContext(allocCtx)
	t.Cleanup(cancelBrowser)

	// Start the browser and collect uncaught page exceptions.
	var exMu sync.Mutex
	var exceptions []string
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("starting %s: %v\n%s", chromium, err, stderr.String())
	}
	if err := chromedp.Listen(bctx, func(ev any) {
		if e, ok := ev.(*runtime.EventExceptionThrown); ok {
			exMu.Lock()
			d := e.ExceptionDetails
			msg := fmt.Sprintf("%s at %s:%d:%d", d.Text, d.URL, d.LineNumber+1, d.ColumnNumber+1)
			if d.Exception != nil {
				msg += ": " + d.Exception.Description
			}
			exceptions = append(exceptions, msg)
			exMu.Unlock()
		}
	}); err != nil {
		t.Fatal(err)
	}
	t.Logf("browser up in %v", time.Since(start).Round(time.Millisecond))

	// do runs steps with a deadline, failing the test with what step failed.
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		ctx, cancel := context.WithTimeout(bctx, 20*time.Second)
		defer cancel()
		if err := chromedp.Do(ctx, steps...); err != nil {
			html, _ := chromedp.Run(bctx, chromedp.Evaluate[string](`document.querySelector('main').innerText`))
			t.Fatalf("%s: %v\npage text:\n%s", what, err, html)
		}
	}
	// waitFor polls a JavaScript predicate until it is truthy.
	waitFor := func(what, js string) {
		t.Helper()
		do(what, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := chromedp.Poll[chromedp.Void](js, chromedp.WithPollingTimeout(10*time.Second))(ctx, tg)
			return err
		}))
	}
	eval := func(js string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(bctx, 10*time.Second)
		defer cancel()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](js))
		if err != nil {
			t.Fatalf("evaluate %s: %v", js, err)
		}
		return v
	}
	row := func(id string) string { return `#keys tbody tr[data-id="` + id + `"]` }
	rowShown := func(id string) string { return `!!document.querySelector('` + row(id) + `')` }
	text := func(sel string) string {
		return eval(`(document.querySelector(` + jsString(sel) + `) || {}).textContent || ''`)
	}

	// 1. Sign in: a wrong key gets the API's error, the admin key gets in.
	do("open the console",
		chromedp.Navigate(s.url+"/ui/"),
		chromedp.WaitVisible(chromedp.ID("signin-key")),
	)
	if bg := eval(`getComputedStyle(document.querySelector('.topbar')).backgroundColor`); bg != "rgb(29, 35, 48)" {
		t.Errorf("the stylesheet did not apply under the CSP: .topbar background %q", bg)
	}
	do("sign in with a wrong key",
		chromedp.SendKeys(chromedp.ID("signin-key"), "kg_wrongwrongwrongwrongwrongwrong"),
		chromedp.Click(chromedp.CSS(`#signin-form button[type=submit]`)),
		chromedp.WaitVisible(chromedp.ID("signin-error")),
	)
	if got := text("#signin-error"); !strings.Contains(got, "invalid_key") {
		t.Errorf("sign-in error = %q, want the API's invalid_key", got)
	}
	do("sign in with the admin key",
		setValue("#signin-key", ""),
		chromedp.SendKeys(chromedp.ID("signin-key"), s.adminKey),
		chromedp.Click(chromedp.CSS(`#signin-form button[type=submit]`)),
		chromedp.WaitVisible(chromedp.ID("console")),
	)
	waitFor("the bootstrap admin key is listed", `document.querySelectorAll('#keys tbody tr').length === 1`)
	if got := eval(`sessionStorage.getItem('keygate.adminKey') === ` + jsString(s.adminKey) + ` && localStorage.length === 0 && document.cookie === '' ? 'ok' : 'bad'`); got != "ok" {
		t.Errorf("the admin key is not kept in sessionStorage only")
	}

	// 2. A validation error from the API shows next to its field.
	do("open the create dialog",
		chromedp.Click(chromedp.ID("new-key")),
		chromedp.WaitVisible(chromedp.ID("key-form")),
		chromedp.SendKeys(chromedp.ID("f-name"), "billing-prod"),
		chromedp.SendKeys(chromedp.ID("f-user"), "svc-billing"),
		chromedp.SendKeys(chromedp.ID("f-application"), "billing"),
		chromedp.SendKeys(chromedp.ID("f-description"), "Billing service, production"),
		chromedp.SendKeys(chromedp.ID("f-scopes"), "invoices payments"),
		chromedp.SendKeys(chromedp.ID("f-ips"), "10.0.0.0/8, not-an-ip"),
		chromedp.Click(chromedp.ID("key-submit")),
		chromedp.WaitVisible(chromedp.CSS(`[data-field="ip_allowlist"] .field-error`)),
	)
	if got := text(`[data-field="ip_allowlist"] .field-error`); !strings.Contains(got, "ip_allowlist[1]") || !strings.Contains(got, "not an IP or CIDR") {
		t.Errorf("ip_allowlist error = %q, want the API's message for ip_allowlist[1]", got)
	}

	// 3. Create through the dialog; read the secret from the copy-once dialog.
	do("fix the allowlist, set expiry and rate limit, create",
		setValue("#f-ips", ""),
		chromedp.SendKeys(chromedp.ID("f-ips"), "10.0.0.0/8"),
		chromedp.Click(chromedp.ID("exp-days")),
		setValue("#f-days", ""),
		chromedp.SendKeys(chromedp.ID("f-days"), "30"),
		chromedp.SendKeys(chromedp.ID("f-rps"), "5"),
		chromedp.SendKeys(chromedp.ID("f-burst"), "10"),
		chromedp.Click(chromedp.ID("key-submit")),
		chromedp.WaitVisible(chromedp.ID("secret-dialog")),
	)
	secret := text("#secret-value")
	if !strings.HasPrefix(secret, "kg_") || len(secret) != 49 {
		t.Fatalf("copy-once dialog shows %q, want a kg_ key", secret)
	}
	if w := text("#secret-dialog .warning"); !strings.Contains(w, "will not be shown again") {
		t.Errorf("copy-once warning = %q", w)
	}
	billing := s.lookup(t, secret)
	if billing == "" {
		t.Fatal("the secret shown in the dialog does not belong to any key")
	}
	k := s.key(t, billing)
	if k["name"] != "billing-prod" || k["user"] != "svc-billing" || k["application"] != "billing" ||
		fmt.Sprint(k["scopes"]) != "[invoices payments]" || fmt.Sprint(k["ip_allowlist"]) != "[10.0.0.0/8]" ||
		k["expires_at"] == nil || fmt.Sprint(k["rate_limit"]) != "map[burst:10 rps:5]" {
		t.Errorf("created key = %v", k)
	}
	if exp, _ := time.Parse(time.RFC3339, k["expires_at"].(string)); exp.Sub(time.Now()) < 29*24*time.Hour || exp.Sub(time.Now()) > 31*24*time.Hour {
		t.Errorf("expires_at = %v, want in 30 days", exp)
	}
	do("copy, then close the copy-once dialog",
		chromedp.Click(chromedp.ID("secret-copy")),
		chromedp.Click(chromedp.ID("secret-done")),
		chromedp.WaitNotVisible(chromedp.ID("secret-dialog")),
	)
	if got := eval(`document.documentElement.outerHTML.includes(` + jsString(secret) + `) ? 'still there' : 'gone'`); got != "gone" {
		t.Error("the secret is still in the DOM after the copy-once dialog closed")
	}
	waitFor("the new key is listed", rowShown(billing))

	// More keys, made from Go, for search and bulk.
	alpha, _ := s.create(t, map[string]any{"name": "alpha-reports", "user": "alice", "application": "reports"})
	beta, _ := s.create(t, map[string]any{"name": "beta-reports", "user": "bob", "application": "reports", "description": "nightly export"})
	gamma, gammaSecret := s.create(t, map[string]any{"name": "gamma-ingest", "user": "carol", "tenant": "acme"})

	// 4. Search as you type, by name.
	do("type a name", chromedp.SendKeys(chromedp.ID("search"), "reports"))
	waitFor("only the reports keys are listed", `document.querySelectorAll('#keys tbody tr').length === 2 && `+rowShown(alpha)+` && `+rowShown(beta))
	do("narrow it", setValue("#search", "alpha"), chromedp.SendKeys(chromedp.ID("search"), "-"))
	waitFor("only alpha is listed", `document.querySelectorAll('#keys tbody tr').length === 1 && `+rowShown(alpha))

	// ... and by pasted value: one input event with the whole key, as a paste.
	eval(`(() => { const s = document.querySelector('#search'); s.focus(); s.select(); document.execCommand('insertText', false, ` + jsString(gammaSecret) + `); return ''; })()`)
	waitFor("the pasted key's key is listed", `document.querySelectorAll('#keys tbody tr').length === 1 && `+rowShown(gamma))
	// A pasted value that is no key says so.
	eval(`(() => { const s = document.querySelector('#search'); s.select(); document.execCommand('insertText', false, 'kg_0000000000000000000000000000000000000000000000'); return ''; })()`)
	waitFor("no key for an unknown value", `document.querySelectorAll('#keys tbody tr').length === 0 && !document.querySelector('#empty').hidden`)
	if got := text("#empty"); got != "No key has this value." {
		t.Errorf("empty text = %q", got)
	}
	do("clear the search", setValue("#search", ""))
	waitFor("all five keys are listed", `document.querySelectorAll('#keys tbody tr').length === 5`)

	// 5. The enable switch.
	do("switch billing off", chromedp.Click(chromedp.CSS(row(billing)+" .enable-switch")))
	waitFor("the row shows disabled", `document.querySelector('`+row(billing)+` .badge').textContent === 'disabled'`)
	if k := s.key(t, billing); k["enabled"] != false || k["status"] != "disabled" {
		t.Errorf("after the switch: enabled=%v status=%v, want false, disabled", k["enabled"], k["status"])
	}
	do("switch billing back on", chromedp.Click(chromedp.CSS(row(billing)+" .enable-switch")))
	waitFor("the row shows active", `document.querySelector('`+row(billing)+` .badge').textContent === 'active'`)
	if k := s.key(t, billing); k["enabled"] != true {
		t.Errorf("after switching back: enabled=%v", k["enabled"])
	}

	// 6. Edit sends a merge patch of the changed fields only.
	do("edit billing's description",
		chromedp.Click(chromedp.CSS(row(billing)+" button.edit")),
		chromedp.WaitVisible(chromedp.ID("key-form")),
		setValue("#f-description", ""),
		chromedp.SendKeys(chromedp.ID("f-description"), "Billing, prod (edited)"),
		chromedp.Click(chromedp.ID("key-submit")),
		chromedp.WaitNotVisible(chromedp.ID("key-dialog")),
	)
	waitFor("the row shows the new description", `document.querySelector('`+row(billing)+` td.name').textContent.includes('(edited)')`)
	if k := s.key(t, billing); k["description"] != "Billing, prod (edited)" || k["name"] != "billing-prod" || fmt.Sprint(k["rate_limit"]) != "map[burst:10 rps:5]" {
		t.Errorf("after edit: %v", k)
	}
	var patches []string
	for _, r := range s.rec.all() {
		if r.method == "PATCH" {
			patches = append(patches, string(r.body))
		}
	}
	if len(patches) != 1 || patches[0] != `{"description":"Billing, prod (edited)"}` {
		t.Errorf("PATCH bodies = %q, want only the changed description", patches)
	}

	// 7. Rotate with a grace period: the new secret in the copy-once
	// dialog; the old one keeps working for the grace.
	do("rotate billing",
		chromedp.Click(chromedp.CSS(row(billing)+" button.rotate")),
		chromedp.WaitVisible(chromedp.ID("rotate-form")),
		chromedp.SendKeys(chromedp.ID("f-grace"), "1h"),
		chromedp.Click(chromedp.ID("rotate-submit")),
		chromedp.WaitVisible(chromedp.ID("secret-dialog")),
	)
	rotated := text("#secret-value")
	if rotated == secret || !strings.HasPrefix(rotated, "kg_") {
		t.Fatalf("rotate dialog shows %q", rotated)
	}
	if !strings.Contains(text("#secret-context"), "keeps working until") {
		t.Errorf("rotate context = %q, want the grace end", text("#secret-context"))
	}
	if s.lookup(t, rotated) != billing || s.lookup(t, secret) != billing {
		t.Error("after rotate with grace, the new and the previous secret should both find the key")
	}
	do("close the copy-once dialog with Escape",
		chromedp.KeyEvent("\x1b"),
		chromedp.WaitNotVisible(chromedp.ID("secret-dialog")),
	)
	if text("#secret-value") != "" {
		t.Error("closing with Escape left the secret in the DOM")
	}

	// 8. Delete with confirmation: Cancel keeps the key, Delete removes it.
	do("delete gamma, then cancel",
		chromedp.Click(chromedp.CSS(row(gamma)+" button.delete")),
		chromedp.WaitVisible(chromedp.ID("confirm-dialog")),
		chromedp.Click(chromedp.CSS(`#confirm-dialog [data-close]`)),
		chromedp.WaitNotVisible(chromedp.ID("confirm-dialog")),
	)
	if code, _ := s.call(t, "GET", "/v1/keys/"+gamma, nil); code != 200 {
		t.Fatalf("gamma is gone after Cancel: %d", code)
	}
	if !strings.Contains(text("#confirm-text"), "gamma-ingest") {
		t.Errorf("confirm text = %q, want the key's name", text("#confirm-text"))
	}
	do("delete gamma, confirmed",
		chromedp.Click(chromedp.CSS(row(gamma)+" button.delete")),
		chromedp.WaitVisible(chromedp.ID("confirm-dialog")),
		chromedp.Click(chromedp.ID("confirm-ok")),
		chromedp.WaitNotVisible(chromedp.ID("confirm-dialog")),
	)
	waitFor("gamma's row is gone", `!`+rowShown(gamma))
	if code, _ := s.call(t, "GET", "/v1/keys/"+gamma, nil); code != 404 {
		t.Errorf("GET gamma after delete: %d, want 404", code)
	}

	// 9. Bulk: select two keys, disable them.
	do("select alpha and beta, bulk disable",
		chromedp.Click(chromedp.CSS(row(alpha)+" .row-select")),
		chromedp.Click(chromedp.CSS(row(beta)+" .row-select")),
		chromedp.WaitVisible(chromedp.ID("bulk-bar")),
		chromedp.Click(chromedp.ID("bulk-disable")),
	)
	waitFor("both rows show disabled", `document.querySelector('`+row(alpha)+` .badge').textContent === 'disabled' && document.querySelector('`+row(beta)+` .badge').textContent === 'disabled'`)
	for _, id := range []string{alpha, beta} {
		if k := s.key(t, id); k["enabled"] != false {
			t.Errorf("after bulk disable: %s enabled=%v", k["name"], k["enabled"])
		}
	}
	if !strings.Contains(text("#notice"), "Disabled 2 keys.") {
		t.Errorf("bulk notice = %q", text("#notice"))
	}

	// The status filter.
	do("show disabled keys only", setValue("#status-filter", "disabled"))
	waitFor("only alpha and beta are listed", `document.querySelectorAll('#keys tbody tr').length === 2 && `+rowShown(alpha)+` && `+rowShown(beta))
	do("show all statuses", setValue("#status-filter", ""))
	waitFor("all four keys are listed", `document.querySelectorAll('#keys tbody tr').length === 4`)

	// The screenshot of the list, for a human to look at.
	if path := os.Getenv("KEYGATE_UI_SCREENSHOT"); path != "" {
		png, err := chromedp.Run(bctx, chromedp.CaptureScreenshot())
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// Select all, with one key deleted behind the console's back: the bulk
	// result names the id that failed.
	do("select all", chromedp.Click(chromedp.ID("select-all")))
	if got := text("#bulk-count"); got != "4 keys selected" {
		t.Errorf("bulk count = %q, want 4 keys selected", got)
	}
	if code, _ := s.call(t, "DELETE", "/v1/keys/"+beta, nil); code != 204 {
		t.Fatalf("DELETE beta: %d", code)
	}
	do("bulk enable", chromedp.Click(chromedp.ID("bulk-enable")))
	waitFor("the failure is shown", `document.querySelector('#notice').classList.contains('is-error') && document.querySelector('#notice').textContent.includes('not_found')`)
	if got := text("#notice"); !strings.Contains(got, "Enabled 3 of 4") || !strings.Contains(got, beta) {
		t.Errorf("bulk failure notice = %q, want 3 of 4 and %s", got, beta)
	}
	if k := s.key(t, alpha); k["enabled"] != true {
		t.Errorf("after bulk enable: alpha enabled=%v", k["enabled"])
	}

	// Bulk delete goes through the confirmation dialog.
	do("select alpha, bulk delete, confirm",
		chromedp.Click(chromedp.CSS(row(alpha)+" .row-select")),
		chromedp.Click(chromedp.ID("bulk-delete")),
		chromedp.WaitVisible(chromedp.ID("confirm-dialog")),
		chromedp.Click(chromedp.ID("confirm-ok")),
		chromedp.WaitNotVisible(chromedp.ID("confirm-dialog")),
	)
	waitFor("alpha's row is gone", `!`+rowShown(alpha))
	if code, _ := s.call(t, "GET", "/v1/keys/"+alpha, nil); code != 404 {
		t.Errorf("GET alpha after bulk delete: %d, want 404", code)
	}

	// Pagination: 50 keys a page, the rest behind "Load more".
	for i := range 60 {
		s.create(t, map[string]any{"name": fmt.Sprintf("page-%02d", i), "user": "pager"})
	}
	do("search the paged keys", setValue("#search", "page-"))
	waitFor("the first page", `document.querySelectorAll('#keys tbody tr').length === 50 && !document.querySelector('#load-more').hidden`)
	do("load more", chromedp.Click(chromedp.ID("load-more")))
	waitFor("all 60, and no more to load", `document.querySelectorAll('#keys tbody tr').length === 60 && document.querySelector('#load-more').hidden`)
	if got := eval(`String(new Set([...document.querySelectorAll('#keys tbody tr')].map((r) => r.dataset.id)).size)`); got != "60" {
		t.Errorf("distinct rows after Load more = %s, want 60", got)
	}

	// 10. The console knows which key it is signed in with, and asks
	// before the operator disables it: Cancel leaves it on.
	do("search our own key", setValue("#search", "bootstrap"))
	waitFor("our own key is listed", rowShown(s.adminID))
	waitFor("our own key is marked", `(document.querySelector('`+row(s.adminID)+` .badge.self') || {}).textContent === 'you'`)
	do("switch our own key off, then cancel",
		chromedp.Click(chromedp.CSS(row(s.adminID)+" .enable-switch")),
		chromedp.WaitVisible(chromedp.ID("confirm-dialog")),
	)
	if got := text("#confirm-text"); !strings.Contains(got, "signed in with") {
		t.Errorf("self-disable confirmation = %q", got)
	}
	do("cancel", chromedp.Click(chromedp.CSS(`#confirm-dialog [data-close]`)), chromedp.WaitNotVisible(chromedp.ID("confirm-dialog")))
	waitFor("the switch is back on", `document.querySelector('`+row(s.adminID)+` .enable-switch').checked`)
	if k := s.key(t, s.adminID); k["enabled"] != true {
		t.Fatalf("Cancel disabled our own key")
	}

	// 11. Sign out forgets the key.
	do("sign out", chromedp.Click(chromedp.ID("signout")), chromedp.WaitVisible(chromedp.ID("signin")))
	if got := eval(`String(sessionStorage.getItem('keygate.adminKey'))`); got != "null" {
		t.Errorf("after sign out sessionStorage holds %q", got)
	}

	// 12. Disabling our own key, confirmed, signs us out with the reason.
	do("sign in again",
		chromedp.SendKeys(chromedp.ID("signin-key"), s.adminKey),
		chromedp.Click(chromedp.CSS(`#signin-form button[type=submit]`)),
		chromedp.WaitVisible(chromedp.ID("console")),
	)
	waitFor("our own key is marked", `!!document.querySelector('`+row(s.adminID)+` .badge.self')`)
	do("switch our own key off, confirmed",
		chromedp.Click(chromedp.CSS(row(s.adminID)+" .enable-switch")),
		chromedp.WaitVisible(chromedp.ID("confirm-dialog")),
		chromedp.Click(chromedp.ID("confirm-ok")),
		chromedp.WaitVisible(chromedp.ID("signin")),
	)
	if got := text("#signin-error"); !strings.Contains(got, "You disabled bootstrap-admin") {
		t.Errorf("sign-in message after disabling our own key = %q", got)
	}
	// Asked from the store: the Go side's admin key is that very key.
	if k, err := s.svc.Get(context.Background(), s.adminID); err != nil || k.Enabled {
		t.Errorf("our own key after the confirmed switch: %+v, %v; want disabled", k, err)
	}
	if got := eval(`String(sessionStorage.getItem('keygate.adminKey'))`); got != "null" {
		t.Errorf("after self-disable sessionStorage holds %q", got)
	}

	// What went over the wire: every browser call carried the admin key in
	// X-API-Key, and no secret ever appeared in a URL.
	for _, r := range s.rec.all() {
		for _, sec := range []string{secret, rotated, gammaSecret, s.adminKey} {
			if strings.Contains(r.uri, sec[:12]) {
				t.Errorf("%s %s: a secret in the URL", r.method, r.uri)
			}
		}
	}
	exMu.Lock()
	defer exMu.Unlock()
	for _, e := range exceptions {
		t.Errorf("uncaught exception in the page: %s", e)
	}
	t.Logf("browser test took %v", time.Since(start).Round(time.Millisecond))
}

// setValue sets an input's value as a script would and fires input and
// change, as chromedp.SetValue does (which cannot set "").
func setValue(sel, v string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		ok, err := chromedp.Evaluate[bool](`(() => {
			const e = document.querySelector(`+jsString(sel)+`);
			if (!e) return false;
			e.value = `+jsString(v)+`;
			e.dispatchEvent(new Event('input', {bubbles: true}));
			e.dispatchEvent(new Event('change', {bubbles: true}));
			return e.value === `+jsString(v)+`;
		})()`)(ctx, t)
		if err == nil && !ok {
			err = fmt.Errorf("cannot set the value of %s", sel)
		}
		return err
	})
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

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
