package config

import (
	"bufio"
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite config/testdata/*.txt with the current output")

const goldenSep = "----------\n"

// TestGolden runs `keygate check-config` on each testdata/*.txt: the YAML
// input, a line of ten dashes, then the expected output. Input lines of the
// form "#env NAME=VALUE" (YAML comments) set environment variables.
// Regenerate with `go test ./config -update`.
func TestGolden(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no testdata/*.txt golden files")
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txt"), func(t *testing.T) {
			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			input, want, ok := strings.Cut(string(raw), goldenSep)
			if !ok {
				t.Fatalf("%s: no %q separator line", file, strings.TrimSpace(goldenSep))
			}
			vars := map[string]string{}
			sc := bufio.NewScanner(strings.NewReader(input))
			for sc.Scan() {
				if kv, ok := strings.CutPrefix(sc.Text(), "#env "); ok {
					k, v, _ := strings.Cut(kv, "=")
					vars[k] = v
				}
			}
			path := filepath.Join(t.TempDir(), "keygate.yaml")
			if err := os.WriteFile(path, []byte(input), 0o600); err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			code := CheckConfig(path, env(vars), &out)
			if wantCode := map[bool]int{true: 0, false: 1}[out.String() == "ok\n"]; code != wantCode {
				t.Errorf("CheckConfig returned %d for output %q", code, out.String())
			}
			if *update {
				if err := os.WriteFile(file, []byte(input+goldenSep+out.String()), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if got := out.String(); got != want {
				t.Errorf("%s: check-config output\n%s\nwant\n%s", file, got, want)
			}
		})
	}
}

// FuzzLoad feeds arbitrary files (seeded with the golden inputs) to the
// loader: it must not panic, must return either a Config or problems, and a
// Config it returns must pass Validate.
func FuzzLoad(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.txt"))
	for _, file := range files {
		raw, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		input, _, _ := strings.Cut(string(raw), goldenSep)
		f.Add([]byte(input))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := load(data, env(nil))
		if (c == nil) == (err == nil) {
			t.Fatalf("load(%q) = %v, %v; want exactly one of them", data, c, err)
		}
		if err != nil {
			for _, p := range Problems(err) {
				if p.Msg == "" {
					t.Fatalf("load(%q): problem %q has no message", data, p.Path)
				}
			}
			return
		}
		if verr := c.Validate(); verr != nil {
			t.Fatalf("load(%q) returned a Config that fails Validate: %v", data, verr)
		}
	})
}
