package config

import (
	"fmt"
	"io"
)

// CheckConfig implements `keygate check-config`: it loads and validates the
// file at path (path "" checks the defaults plus environment) and writes
// "ok", or one problem a line as "path: msg". It returns the process exit
// code: 0 when the configuration is valid, 1 otherwise. Unreadable files
// and YAML syntax errors are reported the same way.
func CheckConfig(path string, getenv func(string) string, w io.Writer) int {
	_, err := Load(path, getenv)
	if err == nil {
		fmt.Fprintln(w, "ok")
		return 0
	}
	for _, p := range Problems(err) {
		fmt.Fprintln(w, p.Error())
	}
	return 1
}
