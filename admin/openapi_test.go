package admin

import (
	"encoding/json"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

type openAPIOp struct {
	OperationID string            `json:"operationId"`
	Security    *[]map[string]any `json:"security"`
	Parameters  []struct {
		Ref  string `json:"$ref"`
		Name string `json:"name"`
		In   string `json:"in"`
	} `json:"parameters"`
	Responses map[string]any `json:"responses"`
}

// TestOpenAPIMatchesRoutes walks the route table and the document and fails
// on any route missing from either, and on any operationId, public/secured
// or path parameter disagreement.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(openAPIDoc, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.0.") {
		t.Errorf("openapi = %q, want 3.0.x", doc.OpenAPI)
	}
	documented := map[string]openAPIOp{}
	pathParams := map[string][]string{}
	for path, item := range doc.Paths {
		for method, raw := range item {
			if method == "parameters" {
				var ps []struct {
					Ref string `json:"$ref"`
				}
				if err := json.Unmarshal(raw, &ps); err != nil {
					t.Fatalf("%s parameters: %v", path, err)
				}
				for _, p := range ps {
					pathParams[path] = append(pathParams[path], p.Ref)
				}
				continue
			}
			var op openAPIOp
			if err := json.Unmarshal(raw, &op); err != nil {
				t.Fatalf("%s %s: %v", method, path, err)
			}
			documented[strings.ToUpper(method)+" "+path] = op
		}
	}
	served := map[string]route{}
	for _, rt := range routeTable() {
		served[rt.Method+" "+rt.Path] = rt
	}
	var missingDoc, missingRoute []string
	for k := range served {
		if _, ok := documented[k]; !ok {
			missingDoc = append(missingDoc, k)
		}
	}
	for k := range documented {
		if _, ok := served[k]; !ok {
			missingRoute = append(missingRoute, k)
		}
	}
	sort.Strings(missingDoc)
	sort.Strings(missingRoute)
	if len(missingDoc) > 0 {
		t.Errorf("served but not in openapi.json: %v", missingDoc)
	}
	if len(missingRoute) > 0 {
		t.Errorf("in openapi.json but not served: %v", missingRoute)
	}
	wildcard := regexp.MustCompile(`\{[a-z_]+\}`)
	for k, rt := range served {
		op, ok := documented[k]
		if !ok {
			continue
		}
		if op.OperationID != rt.Op {
			t.Errorf("%s: operationId %q, route op %q", k, op.OperationID, rt.Op)
		}
		public := op.Security != nil && len(*op.Security) == 0
		if public != rt.Public {
			t.Errorf("%s: documented public=%v, served public=%v", k, public, rt.Public)
		}
		if !rt.Public {
			if _, ok := op.Responses["401"]; !ok {
				t.Errorf("%s: needs a key but documents no 401", k)
			}
		}
		if n := len(wildcard.FindAllString(rt.Path, -1)); n != len(pathParams[rt.Path]) {
			t.Errorf("%s: %d path wildcards, %d documented path parameters", k, n, len(pathParams[rt.Path]))
		}
	}
}

func TestOpenAPIServed(t *testing.T) {
	f := newAuthFixture(t)
	rec := do(t, f.h, "GET", "/v1/openapi.json", "", "X-API-Key", f.admin)
	if rec.Code != 200 || rec.Header().Get("Content-Type") != "application/json" || !json.Valid(rec.Body.Bytes()) {
		t.Fatalf("GET /v1/openapi.json = %d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	if rec.Body.String() != string(openAPIDoc) {
		t.Error("served document differs from the embedded one")
	}
}

// TestOpenAPIRefsResolve fails on a $ref to a component that does not
// exist, and on an operation without a success response.
func TestOpenAPIRefsResolve(t *testing.T) {
	var doc map[string]any
	if err := json.Unmarshal(openAPIDoc, &doc); err != nil {
		t.Fatal(err)
	}
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, c := range x {
				if k == "$ref" {
					ref, _ := c.(string)
					if !resolves(doc, ref) {
						t.Errorf("%s: $ref %q does not resolve", path, ref)
					}
					continue
				}
				walk(path+"/"+k, c)
			}
		case []any:
			for i, c := range x {
				walk(path+"/"+strconv.Itoa(i), c)
			}
		}
	}
	walk("#", doc)
	for p, item := range doc["paths"].(map[string]any) {
		for method, op := range item.(map[string]any) {
			if method == "parameters" {
				continue
			}
			ok := false
			for code := range op.(map[string]any)["responses"].(map[string]any) {
				ok = ok || strings.HasPrefix(code, "2")
			}
			if !ok {
				t.Errorf("%s %s documents no 2xx response", method, p)
			}
		}
	}
}

func resolves(doc map[string]any, ref string) bool {
	if !strings.HasPrefix(ref, "#/") {
		return false
	}
	var cur any = doc
	for _, part := range strings.Split(ref[2:], "/") {
		m, ok := cur.(map[string]any)
		if !ok {
			return false
		}
		if cur, ok = m[part]; !ok {
			return false
		}
	}
	return true
}
