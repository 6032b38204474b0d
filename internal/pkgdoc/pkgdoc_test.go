package pkgdoc

import (
	"os/exec"
	"strings"
	"testing"
)

func TestEveryPackageHasDoc(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}}\t{{.Name}}\t{{.Doc}}", "github.com/keygate/keygate/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	n := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.SplitN(line, "\t", 3)
		if len(f) < 3 {
			t.Fatalf("unexpected go list line %q", line)
		}
		n++
		if strings.TrimSpace(f[2]) == "" {
			t.Errorf("package %s has no package doc comment", f[0])
		}
	}
	if n < 10 {
		t.Errorf("go list found only %d packages; the pattern is wrong", n)
	}
}
