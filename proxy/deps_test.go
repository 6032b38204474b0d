package proxy

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies keeps the request path free of the store's drivers and
// of the admin API (STYLE §2.1): proxy, auth and cache must never pull in
// pgx, bbolt, admin or store.
func TestDependencies(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not found")
	}
	pkgs := []string{
		"github.com/keygate/keygate/proxy",
		"github.com/keygate/keygate/auth",
		"github.com/keygate/keygate/cache",
	}
	// -e: cache may not have been written yet; its error shows as a
	// package line, its dependencies (if any) are still listed.
	out, err := exec.Command(goBin, append([]string{"list", "-e", "-deps"}, pkgs...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	bad := map[string]string{
		"github.com/jackc/pgx":             "the PostgreSQL driver belongs to store",
		"go.etcd.io/bbolt":                 "the embedded store belongs to store",
		"github.com/keygate/keygate/admin": "the admin API is not on the request path",
		"github.com/keygate/keygate/store": "proxy consumes auth.KeyStore, not the store",
	}
	listed := strings.Fields(string(out))
	if len(listed) < 10 {
		t.Fatalf("go list printed too little to be a dependency list:\n%s", out)
	}
	for _, dep := range listed {
		for prefix, why := range bad {
			if dep == prefix || strings.HasPrefix(dep, prefix+"/") {
				t.Errorf("forbidden dependency %s: %s", dep, why)
			}
		}
	}
}
