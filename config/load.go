package config

import (
	"bytes"
	"encoding"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"reflect"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Load reads the YAML file at path over Default, applies the KEYGATE_*
// environment overrides read through getenv, validates the result and
// parses its derived values. path "" means no file. getenv is usually
// os.Getenv; nil means no environment, and an empty value counts as unset.
//
// A null value (`tls:` with nothing after it) keeps the default; a list in
// the file replaces the default list. Unknown fields are errors. Every problem found — unreadable file, YAML
// syntax, unknown or duplicate fields, values of the wrong type, bad
// environment values, and everything Validate reports — comes back at once,
// joined, each a *Problem (see Problems); the Config is then nil.
//
// Environment: each scalar field at YAML path p is overridden by
// KEYGATE_<P>, P being p upper-cased with "." replaced by "_" and list
// indexes spelled _N_ (KEYGATE_PROXY_LISTEN, KEYGATE_CACHE_POSITIVE_TTL,
// KEYGATE_ROUTES_0_UPSTREAM_TIMEOUT). Lists of strings take comma-separated
// values (KEYGATE_PROXY_TRUSTED_PROXIES=10.0.0.0/8,127.0.0.1/32,
// KEYGATE_ROUTES_0_UPSTREAM_TARGETS). Elements of lists of mappings
// (routes, auth.sources) can be overridden but not added. DATABASE_URL sets
// store.url unless KEYGATE_STORE_URL is set.
func Load(path string, getenv func(string) string) (*Config, error) {
	var data []byte
	if path != "" {
		var err error
		if data, err = os.ReadFile(path); err != nil {
			return nil, errors.Join(&Problem{Msg: err.Error()})
		}
	}
	return load(data, getenv)
}

func load(data []byte, getenv func(string) string) (*Config, error) {
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	c := Default()
	d := decoder{given: map[string]bool{}}
	if root, err := parseYAML(data); err != nil {
		d.addf("", "%s", err)
	} else if root != nil {
		d.value("", root, reflect.ValueOf(c).Elem())
	}
	d.env(c, getenv)
	if err := c.Validate(); err != nil {
		d.problems = append(d.problems, Problems(err)...)
	}
	if len(d.problems) > 0 {
		errs := make([]error, len(d.problems))
		for i, p := range d.problems {
			errs[i] = p
		}
		return nil, errors.Join(errs...)
	}
	c.provision()
	return c, nil
}

// parseYAML returns the single document's root node, nil for an empty
// file. A second document is an error rather than silently ignored.
func parseYAML(data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, err
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case err == nil:
		return nil, fmt.Errorf("yaml: line %d: a second document; the file must hold exactly one", next.Line)
	case !errors.Is(err, io.EOF):
		return nil, err
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil, nil
	}
	return doc.Content[0], nil
}

// decoder walks a yaml.Node tree onto a Config, collecting every problem
// instead of stopping at the first as yaml.v3's KnownFields decoder does.
type decoder struct {
	problems []*Problem
	// given records the YAML paths set by the file or the environment.
	given map[string]bool
}

func (d *decoder) addf(path, format string, args ...any) {
	d.problems = append(d.problems, &Problem{Path: path, Msg: fmt.Sprintf(format, args...)})
}

var textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()

// isScalar reports whether values of t are written as one YAML scalar.
func isScalar(t reflect.Type) bool {
	if reflect.PointerTo(t).Implements(textUnmarshaler) {
		return true
	}
	switch t.Kind() {
	case reflect.String, reflect.Bool, reflect.Int, reflect.Int64, reflect.Float64:
		return true
	}
	return false
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return fmt.Sprintf("%q", n.Value)
}

// value decodes n into v. A null node keeps v as it is (the default).
func (d *decoder) value(path string, n *yaml.Node, v reflect.Value) {
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return
	}
	t := v.Type()
	switch {
	case isScalar(t):
		if n.Kind != yaml.ScalarNode {
			d.addf(path, "want a single value, got %s", kindName(n))
			return
		}
		if err := setScalar(v, n.Value); err != nil {
			d.addf(path, "%s", err)
			return
		}
	case t.Kind() == reflect.Struct:
		if n.Kind != yaml.MappingNode {
			d.addf(path, "want a mapping, got %s", kindName(n))
			return
		}
		d.mapping(path, n, v)
	case t.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			if n.Kind == yaml.ScalarNode && isScalar(t.Elem()) {
				d.addf(path, "want a list, got %s (write [%s])", kindName(n), n.Value)
			} else {
				d.addf(path, "want a list, got %s", kindName(n))
			}
			return
		}
		// A list in the file replaces the default list.
		s := reflect.MakeSlice(t, 0, len(n.Content))
		for i, e := range n.Content {
			ev := reflect.New(t.Elem()).Elem()
			if t.Elem() == reflect.TypeFor[Route]() {
				ev.Set(reflect.ValueOf(defaultRoute()))
			}
			d.value(fmt.Sprintf("%s[%d]", path, i), e, ev)
			s = reflect.Append(s, ev)
		}
		if s.Len() == 0 {
			s = reflect.Zero(t)
		}
		v.Set(s)
	default:
		panic("config: no YAML decoding for " + t.String())
	}
	d.given[path] = true
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// mapping decodes the mapping n into the struct v by yaml tags.
func (d *decoder) mapping(path string, n *yaml.Node, v reflect.Value) {
	// Merge keys (<<: *base) first, so explicit keys win whatever their order.
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Tag != "!!merge" {
			continue
		}
		for val.Kind == yaml.AliasNode {
			val = val.Alias
		}
		if val.Kind == yaml.SequenceNode {
			for _, m := range val.Content {
				d.value(path, m, v)
			}
		} else {
			d.value(path, val, v)
		}
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Tag == "!!merge" {
			continue
		}
		p := join(path, k.Value)
		if k.Kind != yaml.ScalarNode {
			d.addf(path, "field names must be plain strings")
			continue
		}
		if seen[k.Value] {
			d.addf(p, "duplicate field")
			continue
		}
		seen[k.Value] = true
		f, ok := fieldByTag(v, k.Value)
		if !ok {
			d.addf(p, "unknown field")
			continue
		}
		d.value(p, val, f)
	}
}

func fieldByTag(v reflect.Value, name string) (reflect.Value, bool) {
	t := v.Type()
	for i := range t.NumField() {
		sf := t.Field(i)
		if sf.IsExported() && yamlName(sf) == name {
			return v.Field(i), true
		}
	}
	return reflect.Value{}, false
}

func yamlName(sf reflect.StructField) string {
	name, _, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
	return name
}

// setScalar parses s into the scalar v, the same way for YAML and the
// environment.
func setScalar(v reflect.Value, s string) error {
	if u, ok := v.Addr().Interface().(encoding.TextUnmarshaler); ok {
		return u.UnmarshalText([]byte(s))
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("want true or false, got %q", s)
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int64:
		// Base 10 only: "010" is ten, not eight. Underscores group digits.
		i, err := strconv.ParseInt(strings.ReplaceAll(s, "_", ""), 10, v.Type().Bits())
		if err != nil {
			return fmt.Errorf("want an integer, got %q", s)
		}
		v.SetInt(i)
	case reflect.Float64:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return fmt.Errorf("want a number, got %q", s)
		}
		v.SetFloat(f)
	default:
		panic("config: no scalar parsing for " + v.Type().String())
	}
	return nil
}

// EnvName returns the environment variable that overrides the field at the
// dotted YAML path: "cache.positive_ttl" → "KEYGATE_CACHE_POSITIVE_TTL",
// "routes[0].upstream.targets" → "KEYGATE_ROUTES_0_UPSTREAM_TARGETS".
func EnvName(path string) string {
	r := strings.NewReplacer(".", "_", "[", "_", "]", "")
	return "KEYGATE_" + strings.ToUpper(r.Replace(path))
}

// env applies the environment overrides to c.
func (d *decoder) env(c *Config, getenv func(string) string) {
	d.envValue("", reflect.ValueOf(c).Elem(), getenv)
	if s := getenv("DATABASE_URL"); s != "" && getenv(EnvName("store.url")) == "" {
		c.Store.URL = s
		d.given["store.url"] = true
	}
	// A URL with no driver chosen means PostgreSQL: DATABASE_URL alone must
	// not be silently ignored in favour of the embedded store.
	if c.Store.URL != "" && !d.given["store.driver"] {
		c.Store.Driver = DriverPostgres
	}
}

func (d *decoder) envValue(path string, v reflect.Value, getenv func(string) string) {
	t := v.Type()
	switch {
	case isScalar(t):
		name := EnvName(path)
		if s := getenv(name); s != "" {
			if err := setScalar(v, s); err != nil {
				d.addf(name, "%s", err)
				return
			}
			d.given[path] = true
		}
	case t.Kind() == reflect.Struct:
		for i := range t.NumField() {
			if sf := t.Field(i); sf.IsExported() {
				d.envValue(join(path, yamlName(sf)), v.Field(i), getenv)
			}
		}
	case t.Kind() == reflect.Slice && isScalar(t.Elem()):
		name := EnvName(path)
		s := getenv(name)
		if s == "" {
			return
		}
		var out reflect.Value = reflect.Zero(t)
		for part := range strings.SplitSeq(s, ",") {
			if part = strings.TrimSpace(part); part == "" {
				continue
			}
			e := reflect.New(t.Elem()).Elem()
			if err := setScalar(e, part); err != nil {
				d.addf(name, "%s", err)
				return
			}
			out = reflect.Append(out, e)
		}
		v.Set(out)
		d.given[path] = true
	case t.Kind() == reflect.Slice:
		for i := range v.Len() {
			d.envValue(fmt.Sprintf("%s[%d]", path, i), v.Index(i), getenv)
		}
	default:
		panic("config: no environment decoding for " + t.String())
	}
}
