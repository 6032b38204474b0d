package proxy

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/keygate/keygate/auth"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestAccessLogAndMetrics: one access line per request with the fields
// operators need, credential query values redacted, no key anywhere in
// logs or metrics, and metrics that pass the linter.
func TestAccessLogAndMetrics(t *testing.T) {
	f := newFixture(t, nil)
	key := f.keys.add(t, &auth.Key{ID: "key_log", User: "u", Enabled: true})
	wrong, _ := auth.NewSecret("kg")

	if r := f.get("/x/y?a=1&api_key="+key+"&APPKEY="+key, "X-Request-Id: rid-1"); r.status != 200 {
		t.Fatalf("status %d", r.status)
	}
	f.get("/x?appKey="+wrong, "X-Request-Id: rid-2")
	f.get("/x", "X-API-Key: "+wrong, "X-Request-Id: rid-3")
	f.get("/a%2Fb?api_key="+key, "X-Request-Id: rid-4")
	f.get("/x?a=1;api_key="+wrong+"&b=2", "X-Request-Id: rid-5")
	f.get("/x?api.key="+wrong+"&api_key[]="+wrong+"&q&"+strings.Repeat("+", 200)+"api_key="+wrong, "X-API-Key: "+wrong, "X-Request-Id: rid-6")

	lines := map[string]map[string]any{}
	for _, l := range strings.Split(strings.TrimSpace(f.logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if m["msg"] == "request" {
			lines[m["request_id"].(string)] = m
		}
	}
	ok := lines["rid-1"]
	if ok == nil {
		t.Fatalf("no access line for rid-1 in\n%s", f.logs.String())
	}
	want := map[string]any{
		"method": "GET", "path": "/x/y?a=1&api_key=REDACTED&APPKEY=REDACTED", "status": float64(200),
		"route": "default", "key_id": "key_log", "client_ip": "127.0.0.1",
	}
	for k, v := range want {
		if ok[k] != v {
			t.Errorf("access log %s = %v, want %v", k, ok[k], v)
		}
	}
	if _, has := ok["duration_seconds"]; !has {
		t.Errorf("access log lacks duration_seconds")
	}
	if l := lines["rid-2"]; l == nil || l["status"] != float64(401) || l["path"] != "/x?appKey=REDACTED" {
		t.Errorf("denied request's access line = %v", l)
	}
	if l := lines["rid-4"]; l == nil || l["status"] != float64(400) {
		t.Errorf("bad path access line = %v", l)
	}
	if l := lines["rid-5"]; l == nil || l["path"] != "/x?a=1;api_key=REDACTED&b=2" {
		t.Errorf("semicolon-separated query's access line = %v", l)
	}
	if l := lines["rid-6"]; l == nil || l["path"] != "/x?api.key=REDACTED&api_key[]=REDACTED&q&"+strings.Repeat("+", 200)+"api_key=REDACTED" {
		t.Errorf("credential parameter spellings' access line = %v", l)
	}
	for _, k := range []string{key, wrong} {
		if strings.Contains(f.logs.String(), k) {
			t.Errorf("logs contain a key")
		}
		if strings.Contains(f.metrics(), k) {
			t.Errorf("metrics contain a key")
		}
	}

	if got := f.authCount("ok", "query", "default"); got != 1 {
		t.Errorf("auth ok/query/default = %v, want 1", got)
	}
	if got := f.authCount("invalid", "query", "default") + f.authCount("invalid", "header", "default"); got != 4 {
		t.Errorf("auth invalid = %v, want 4", got)
	}
	if got := f.authCount("bad_request", "none", ""); got != 1 {
		t.Errorf("auth bad_request = %v, want 1", got)
	}
	if got := testutil.ToFloat64(f.srv.m.upRequests.WithLabelValues("default", "2xx")); got != 1 {
		t.Errorf("upstream default/2xx = %v, want 1", got)
	}
	if n := testutil.CollectAndCount(f.srv.m.upDuration); n == 0 {
		t.Errorf("no upstream duration series")
	}
	problems, err := testutil.GatherAndLint(f.reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("metric lint: %s: %s", p.Metric, p.Text)
	}
	for _, name := range []string{"keygate_auth_requests_total", "keygate_auth_duration_seconds",
		"keygate_upstream_requests_total", "keygate_upstream_duration_seconds", "keygate_sessions_issued_total"} {
		if !strings.Contains(f.metrics(), name) {
			t.Errorf("metric %s not registered", name)
		}
	}
}

// TestTwoServersOneRegistry: a second Server (a reload) on the same
// registry reuses the collectors instead of failing.
func TestTwoServersOneRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	o := Options{Keys: newMapKeys(), Registerer: reg, Routes: []Route{{Name: "r", Targets: []string{"http://127.0.0.1:1"}}}}
	if _, err := New(o); err != nil {
		t.Fatal(err)
	}
	if _, err := New(o); err != nil {
		t.Fatalf("second New on one registry: %v", err)
	}
}
