package config_test

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/keygate/keygate/config"
)

func ExampleCheckConfig() {
	dir, err := os.MkdirTemp("", "keygate")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "keygate.yaml")
	yaml := `
proxy:
  listne: ":8080"
routes:
  - name: api
    match: {path_prefix: /api}
    upstream: {targets: ["localhost:3000"]}
`
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		panic(err)
	}
	getenv := func(k string) string {
		return map[string]string{"KEYGATE_CACHE_POSITIVE_TTL": "-1m"}[k]
	}
	code := config.CheckConfig(path, getenv, os.Stdout)
	fmt.Println("exit", code)
	// Output:
	// proxy.listne: unknown field
	// cache.positive_ttl: must not be negative
	// routes[0].upstream.targets[0]: not a URL
	// exit 1
}

func ExampleLoad() {
	getenv := func(k string) string {
		return map[string]string{
			"DATABASE_URL":                  "postgres://keygate@db/keygate",
			"KEYGATE_PROXY_TRUSTED_PROXIES": "10.0.0.0/8,192.168.0.1",
		}[k]
	}
	c, err := config.Load("", getenv)
	if err != nil {
		panic(err)
	}
	fmt.Println(c.Store.Driver, c.Proxy.Listen, c.Cache.PositiveTTL, c.Proxy.MaxRequestBody)
	fmt.Println(c.TrustedProxyPrefixes())
	// Output:
	// postgres :8080 5m0s 10MiB
	// [10.0.0.0/8 192.168.0.1/32]
}
