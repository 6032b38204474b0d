package main

import (
	"bufio"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"
)

// sample is one line of the Prometheus text exposition.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

// exposition is a parsed /metrics page.
type exposition struct {
	types   map[string]string // family name → type, from # TYPE
	samples []sample
}

// parseExposition parses the Prometheus text format (what /metrics
// serves), label value escapes included.
func parseExposition(t *testing.T, text string) exposition {
	t.Helper()
	e := exposition{types: map[string]string{}}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		if strings.HasPrefix(line, "#") {
			if f := strings.Fields(line); len(f) == 4 && f[1] == "TYPE" {
				e.types[f[2]] = f[3]
			}
			continue
		}
		s := sample{labels: map[string]string{}}
		i := strings.IndexAny(line, "{ ")
		if i < 0 {
			t.Fatalf("metrics line without a value: %q", line)
		}
		s.name = line[:i]
		rest := line[i:]
		if rest[0] == '{' {
			rest = rest[1:]
			for {
				rest = strings.TrimLeft(rest, ", ")
				if strings.HasPrefix(rest, "}") {
					rest = rest[1:]
					break
				}
				eq := strings.Index(rest, `="`)
				if eq < 0 {
					t.Fatalf("bad labels in metrics line %q", line)
				}
				name := rest[:eq]
				rest = rest[eq+2:]
				var v strings.Builder
				for {
					if rest == "" {
						t.Fatalf("unterminated label value in %q", line)
					}
					c := rest[0]
					rest = rest[1:]
					if c == '"' {
						break
					}
					if c == '\\' && rest != "" {
						switch rest[0] {
						case 'n':
							c = '\n'
						default:
							c = rest[0]
						}
						rest = rest[1:]
					}
					v.WriteByte(c)
				}
				s.labels[name] = v.String()
			}
		}
		f := strings.Fields(rest)
		if len(f) < 1 {
			t.Fatalf("metrics line without a value: %q", line)
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		s.value = v
		e.samples = append(e.samples, s)
	}
	return e
}

func scrape(t *testing.T, in *instance) exposition {
	t.Helper()
	r := in.adminDo("", "GET", "/metrics", nil)
	if r.status != http.StatusOK {
		t.Fatalf("GET /metrics = %s", r)
	}
	return parseExposition(t, string(r.body))
}

// metricSum is the sum of the samples of name whose labels include want.
func metricSum(t *testing.T, in *instance, name string, want map[string]string) float64 {
	t.Helper()
	sum := 0.0
next:
	for _, s := range scrape(t, in).samples {
		if s.name != name {
			continue
		}
		for k, v := range want {
			if s.labels[k] != v {
				continue next
			}
		}
		sum += s.value
	}
	return sum
}

// contractMetrics is CONTRACT §7: every family, its type and labels.
var contractMetrics = []struct {
	name, typ string
	labels    []string
}{
	{"keygate_auth_requests_total", "counter", []string{"result", "source", "route"}},
	{"keygate_auth_duration_seconds", "histogram", []string{"result"}},
	{"keygate_cache_lookups_total", "counter", []string{"result"}},
	{"keygate_cache_entries", "gauge", nil},
	{"keygate_store_queries_total", "counter", []string{"op", "result"}},
	{"keygate_store_query_duration_seconds", "histogram", []string{"op"}},
	{"keygate_store_up", "gauge", nil},
	{"keygate_invalidations_total", "counter", []string{"source"}},
	{"keygate_upstream_requests_total", "counter", []string{"route", "code"}},
	{"keygate_upstream_duration_seconds", "histogram", []string{"route"}},
	{"keygate_sessions_issued_total", "counter", nil},
	{"keygate_keys", "gauge", []string{"status"}},
	{"keygate_admin_requests_total", "counter", []string{"op", "code"}},
	{"keygate_build_info", "gauge", []string{"version", "goversion"}},
}

// TestServeMetrics: after some traffic, /metrics of a running serve
// exposes every family of CONTRACT §7 with its type and labels, and no
// label value is a key's secret, a key id or a client IP.
func TestServeMetrics(t *testing.T) {
	dir := t.TempDir()
	_, upstream := startEcho(t, 0)
	proxyAddr, adminAddr := freeAddr(t), freeAddr(t)
	cfg := writeConfig(t, dir, embeddedConfig(dir, proxyAddr, adminAddr, upstream))
	adminKey := newSecret(t)
	in := startServe(t, map[string]string{"KEYGATE_BOOTSTRAP_ADMIN_KEY": adminKey}, proxyAddr, adminAddr, "serve", "--config", cfg)

	k := in.createKey(adminKey, map[string]any{"name": "m", "user": "gina"})
	off := in.createKey(adminKey, map[string]any{"name": "off", "user": "hank"})
	in.mustAdmin(adminKey, 200, "POST", "/v1/keys/"+off.ID+"/disable", nil)
	unknown := newSecret(t)
	for range 3 {
		in.get(k.Secret, "/a")
	}
	in.get(off.Secret, "/a")
	in.get(unknown, "/a")
	in.get("", "/a")
	in.get("kg_not-a-key", "/a?api_key="+k.Secret)
	in.do("GET", in.proxy+"/a?api_key="+k.Secret, "", nil)
	in.adminDo(adminKey, "GET", "/v1/keys/"+k.ID, nil)
	in.adminDo(k.Secret, "GET", "/v1/keys", nil) // not an admin key: 403

	e := scrape(t, in)
	present := map[string]bool{}
	labelsOf := map[string]map[string]bool{}
	for _, s := range e.samples {
		fam := s.name
		if typ, ok := e.types[fam]; !ok || typ != "counter" && typ != "gauge" {
			for _, suf := range []string{"_bucket", "_sum", "_count"} {
				if b, ok := strings.CutSuffix(s.name, suf); ok && e.types[b] == "histogram" {
					fam = b
				}
			}
		}
		present[fam] = true
		if labelsOf[fam] == nil {
			labelsOf[fam] = map[string]bool{}
		}
		for l := range s.labels {
			if l != "le" {
				labelsOf[fam][l] = true
			}
		}
	}
	for _, m := range contractMetrics {
		if !present[m.name] {
			t.Errorf("/metrics has no %s after traffic (CONTRACT §7)", m.name)
			continue
		}
		if e.types[m.name] != m.typ {
			t.Errorf("%s is a %s, want %s", m.name, e.types[m.name], m.typ)
		}
		for _, l := range m.labels {
			if !labelsOf[m.name][l] {
				t.Errorf("%s has no label %s", m.name, l)
			}
		}
		if len(labelsOf[m.name]) != len(m.labels) {
			t.Errorf("%s has labels %v, want %v", m.name, labelsOf[m.name], m.labels)
		}
	}
	// The traffic above shows up under the contract's label values.
	for _, c := range []struct {
		name   string
		labels map[string]string
	}{
		{"keygate_auth_requests_total", map[string]string{"result": "ok", "source": "header", "route": "api"}},
		{"keygate_auth_requests_total", map[string]string{"result": "disabled"}},
		{"keygate_auth_requests_total", map[string]string{"result": "invalid"}},
		{"keygate_auth_requests_total", map[string]string{"result": "missing", "source": "none"}},
		{"keygate_auth_requests_total", map[string]string{"result": "ok", "source": "query"}},
		{"keygate_upstream_requests_total", map[string]string{"route": "api", "code": "2xx"}},
		{"keygate_invalidations_total", map[string]string{"source": "local"}},
		{"keygate_keys", map[string]string{"status": "active"}},
	} {
		if v := metricSum(t, in, c.name, c.labels); v < 1 {
			t.Errorf("%s%v = %v after traffic, want > 0", c.name, c.labels, v)
		}
	}

	secrets := []string{adminKey, k.Secret, off.Secret, unknown, k.ID, off.ID}
	for _, s := range e.samples {
		for l, v := range s.labels {
			for _, sec := range secrets {
				if strings.Contains(v, sec) {
					t.Errorf("%s label %s holds a key or key id: %q", s.name, l, v)
				}
			}
			if strings.HasPrefix(v, "key_") {
				t.Errorf("%s label %s looks like a key id: %q", s.name, l, v)
			}
			if secretRE.MatchString(v) {
				t.Errorf("%s label %s holds something shaped like a key", s.name, l)
			}
			if a, err := netip.ParseAddr(v); err == nil {
				t.Errorf("%s label %s holds an IP address %s", s.name, l, a)
			}
		}
	}
}
