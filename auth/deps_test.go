package auth

import (
	"go/build"
	"strings"
	"testing"
)

// TestImports enforces STYLE §2.1: auth sits at the bottom of keygate's
// dependency graph, so it imports the standard library (and at most
// golang.org/x/time), never another keygate package or fasthttp.
func TestImports(t *testing.T) {
	pkg, err := build.ImportDir(".", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, imp := range pkg.Imports {
		first, _, _ := strings.Cut(imp, "/")
		if strings.Contains(first, ".") && !strings.HasPrefix(imp, "golang.org/x/time/") {
			t.Errorf("auth imports %q; only the standard library and golang.org/x/time are allowed", imp)
		}
	}
}
