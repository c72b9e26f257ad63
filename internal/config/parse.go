package config

import (
	"bytes"
	"encoding"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// origin remembers where a parsed Config came from, so Validate can name the
// file and line of a field.
type origin struct {
	file  string
	lines map[string]int // field path -> line of its key
}

// line returns the line of path, or of its nearest ancestor in the file.
func (o *origin) line(path string) int {
	if o == nil {
		return 0
	}
	for p := path; p != ""; p = parentPath(p) {
		if l, ok := o.lines[p]; ok {
			return l
		}
	}
	return 0
}

// Load reads the YAML file at path and parses it as Parse does, naming the
// file as path in errors.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(data, path)
}

// Parse decodes a YAML configuration named name (used in error messages),
// expanding ${VAR} and ${VAR:-default} in scalar values from the environment,
// applies the defaults to absent fields and validates the result.
//
// It is strict: unknown fields, values of the wrong type, duplicate keys,
// more than one YAML document and unset environment variables are errors.
// Every error names the file, the line and the field path; all of them are
// returned together, sorted by line. A returned Config always passes
// Validate.
func Parse(data []byte, name string) (*Config, error) {
	return parse(data, name, os.LookupEnv)
}

func parse(data []byte, name string, lookup func(string) (string, bool)) (*Config, error) {
	root, err := parseYAML(data, name)
	if err != nil {
		return nil, err
	}
	cfg := Default()
	d := &decoder{file: name, lookup: lookup, lines: map[string]int{}, budget: maxNodes}
	if root != nil {
		if root.Kind != yaml.MappingNode && !isNull(root) {
			d.errs.add(name, root.Line, "", "expected a mapping at the top level, got %s", describe(root))
		} else {
			d.decode(root, reflect.ValueOf(&cfg).Elem(), "", root.Line, 0)
		}
	}
	if err := d.errs.err(); err != nil {
		return nil, err
	}
	cfg.origin = &origin{file: name, lines: d.lines}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &cfg, nil
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parseYAML returns the single document's root node (nil for an empty
// document) or a syntax error with its line.
func parseYAML(data []byte, name string) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, syntaxError(data, name, err)
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, syntaxError(data, name, err)
	default:
		return nil, &Error{File: name, Line: extra.Line, Msg: "a configuration file holds one YAML document; found a second one"}
	}
	if len(doc.Content) == 0 {
		return nil, nil
	}
	return doc.Content[0], nil
}

func syntaxError(data []byte, name string, err error) error {
	msg := err.Error()
	line := 0
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	if strings.Contains(msg, "cannot start any token") && hasTabIndent(data, line) {
		msg += " (tabs are not allowed for indentation; use spaces)"
	}
	return &Error{File: name, Line: line, Msg: "invalid YAML: " + msg}
}

// hasTabIndent reports whether the line (1-based) starts with a tab after
// any spaces.
func hasTabIndent(data []byte, line int) bool {
	lines := bytes.Split(data, []byte("\n"))
	if line < 1 || line > len(lines) {
		return false
	}
	l := bytes.TrimLeft(lines[line-1], " ")
	return len(l) > 0 && l[0] == '\t'
}

const (
	maxNodes = 100000 // decoded nodes, counting each alias expansion
	maxDepth = 32
)

// decoder walks a YAML node tree against a Go value, reflecting over the
// `yaml` struct tags, and records every problem with its path and line.
type decoder struct {
	file   string
	lookup func(string) (string, bool)
	errs   errorList
	lines  map[string]int
	budget int
}

var (
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
	// defaults for structs allocated because their section is present.
	structDefaults = map[reflect.Type]func() reflect.Value{
		reflect.TypeFor[KafkaSource]():   func() reflect.Value { v := DefaultKafka; return reflect.ValueOf(&v) },
		reflect.TypeFor[KinesisSource](): func() reflect.Value { v := DefaultKinesis; return reflect.ValueOf(&v) },
		reflect.TypeFor[DuckDBSink]():    func() reflect.Value { v := DefaultDuckDB; return reflect.ValueOf(&v) },
		reflect.TypeFor[PostgresSink]():  func() reflect.Value { v := DefaultPostgres; return reflect.ValueOf(&v) },
	}
)

func (d *decoder) fail(line int, path, format string, args ...any) {
	d.errs.add(d.file, line, path, format, args...)
}

// decode stores n into v. line is where errors about the whole value point:
// the line of its key, or of the item in a sequence.
func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string, line, depth int) {
	for n.Kind == yaml.AliasNode && n.Alias != nil && depth <= maxDepth {
		n = n.Alias
		depth++
	}
	d.budget--
	if d.budget < 0 || depth > maxDepth {
		if d.budget == -1 || depth > maxDepth {
			d.fail(line, path, "too deeply nested, or too many alias expansions")
		}
		return
	}
	if n.Kind == yaml.ScalarNode && n.Tag != "" && n.Tag[0] == '!' && !strings.HasPrefix(n.Tag, "!!") {
		d.fail(line, path, "unsupported YAML tag %s", n.Tag)
		return
	}
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			if isNull(n) && v.Type().Elem().Kind() != reflect.Struct {
				return
			}
			if mk, ok := structDefaults[v.Type().Elem()]; ok {
				v.Set(mk())
			} else {
				v.Set(reflect.New(v.Type().Elem()))
			}
		}
		if isNull(n) {
			return // a present but empty section: its defaults
		}
		d.decode(n, v.Elem(), path, line, depth)
		return
	}
	if isNull(n) {
		return // keep the default
	}
	if v.CanAddr() && v.Addr().Type().Implements(textUnmarshalerType) {
		s, ok := d.scalar(n, path, line, expectedOf(v.Type()))
		if !ok {
			return
		}
		if err := v.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(s)); err != nil {
			d.fail(n.Line, path, "%s", err.Error())
		}
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		d.decodeStruct(n, v, path, line, depth)
	case reflect.Map:
		d.decodeMap(n, v, path, line, depth)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.fail(line, path, "expected %s, got %s", expectedOf(v.Type()), describe(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			p := indexPath(path, i)
			d.lines[p] = item.Line
			d.decode(item, s.Index(i), p, item.Line, depth+1)
		}
		v.Set(s)
	case reflect.String:
		if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!bool" {
			d.fail(line, path, "expected a string, got a boolean (quote it if you mean the text)")
			return
		}
		if s, ok := d.scalar(n, path, line, "a string"); ok {
			v.SetString(s)
		}
	case reflect.Bool:
		s, ok := d.scalar(n, path, line, "a boolean")
		if !ok {
			return
		}
		switch strings.ToLower(s) {
		case "true":
			v.SetBool(true)
		case "false":
			v.SetBool(false)
		default:
			d.fail(line, path, "expected a boolean (true or false), got %q", s)
		}
	case reflect.Int, reflect.Int64, reflect.Int32:
		s, ok := d.scalar(n, path, line, "an integer")
		if !ok {
			return
		}
		i, err := strconv.ParseInt(s, 10, v.Type().Bits())
		if err != nil {
			d.fail(line, path, "expected an integer, got %q", s)
			return
		}
		v.SetInt(i)
	default:
		panic("config: unsupported field type " + v.Type().String())
	}
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string, line, depth int) {
	if n.Kind != yaml.MappingNode {
		d.fail(line, path, "expected a mapping, got %s", describe(n))
		return
	}
	t := v.Type()
	var names []string
	index := map[string]int{}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		names = append(names, name)
		index[name] = i
	}
	d.pairs(n, path, depth, func(key string, k, val *yaml.Node) {
		p := fieldPath(path, key)
		i, ok := index[key]
		if !ok {
			if s := suggest(key, names); s != "" {
				d.fail(k.Line, keyPath(path, key), "unknown field (did you mean %q?)", s)
			} else {
				d.fail(k.Line, keyPath(path, key), "unknown field (expected one of %s)", strings.Join(names, ", "))
			}
			return
		}
		d.lines[p] = k.Line
		d.decode(val, v.Field(i), p, k.Line, depth+1)
	})
}

func (d *decoder) decodeMap(n *yaml.Node, v reflect.Value, path string, line, depth int) {
	if n.Kind != yaml.MappingNode {
		d.fail(line, path, "expected a mapping, got %s", describe(n))
		return
	}
	if v.IsNil() {
		v.Set(reflect.MakeMapWithSize(v.Type(), len(n.Content)/2))
	}
	d.pairs(n, path, depth, func(key string, k, val *yaml.Node) {
		p := keyPath(path, key)
		d.lines[p] = k.Line
		elem := reflect.New(v.Type().Elem()).Elem()
		d.decode(val, elem, p, k.Line, depth+1)
		v.SetMapIndex(reflect.ValueOf(key).Convert(v.Type().Key()), elem)
	})
}

// pairs calls fn for each key and value of a mapping, rejecting non-string
// keys, merge keys and duplicates.
func (d *decoder) pairs(n *yaml.Node, path string, depth int, fn func(key string, k, v *yaml.Node)) {
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		for k.Kind == yaml.AliasNode && k.Alias != nil && depth <= maxDepth {
			k = k.Alias
		}
		if k.Kind != yaml.ScalarNode {
			d.fail(k.Line, path, "mapping keys must be strings, got %s", describe(k))
			continue
		}
		if k.ShortTag() == "!!merge" {
			d.fail(k.Line, keyPath(path, k.Value), "merge keys (<<) are not supported; write the fields out")
			continue
		}
		if first, dup := seen[k.Value]; dup {
			d.fail(k.Line, keyPath(path, k.Value), "duplicate key (first defined at line %d)", first)
			continue
		}
		seen[k.Value] = k.Line
		fn(k.Value, k, val)
	}
}

// scalar returns the expanded text of a scalar node; ok is false after
// reporting an error. It never puts the value in an error message, so
// secrets stay out of them.
func (d *decoder) scalar(n *yaml.Node, path string, line int, expected string) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		d.fail(line, path, "expected %s, got %s", expected, describe(n))
		return "", false
	}
	s, err := expandEnv(n.Value, d.lookup)
	if err != nil {
		d.fail(n.Line, path, "%s", err.Error())
		return "", false
	}
	return s, true
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// describe names what a node is, for "expected X, got Y" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a sequence"
	case yaml.AliasNode:
		return "an alias"
	case yaml.DocumentNode:
		return "a document"
	}
	switch n.ShortTag() {
	case "!!null":
		return "null"
	case "!!bool":
		return "a boolean"
	case "!!int", "!!float":
		return "a number"
	}
	return "a string"
}

func expectedOf(t reflect.Type) string {
	switch t {
	case reflect.TypeFor[ByteSize]():
		return "a byte size (like 64MiB)"
	case reflect.TypeFor[Duration]():
		return "a duration (like 5s)"
	}
	switch t.Kind() {
	case reflect.Struct, reflect.Map:
		return "a mapping"
	case reflect.Slice:
		return "a sequence"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int64, reflect.Int32:
		return "an integer"
	}
	return "a string"
}

// expandEnv replaces ${NAME} with the variable's value and ${NAME:-default}
// with the value, or default when the variable is unset or empty. $$ is a
// literal $; a $ followed by anything else is kept as is. Errors name the
// variable, never a value.
func expandEnv(s string, lookup func(string) (string, bool)) (string, error) {
	if !strings.Contains(s, "$") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '$' || i+1 == len(s) {
			b.WriteByte(c)
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '{':
			end := strings.IndexByte(s[i+2:], '}')
			if end < 0 {
				return "", errors.New(`unterminated "${" (write $$ for a literal $)`)
			}
			expr := s[i+2 : i+2+end]
			name, def, hasDef := strings.Cut(expr, ":-")
			if !envName(name) {
				return "", fmt.Errorf("invalid environment variable name %q in ${...} (write $$ for a literal $)", name)
			}
			val, set := lookup(name)
			switch {
			case hasDef && val == "":
				val = def
			case !set:
				return "", fmt.Errorf("environment variable %s is not set (use ${%s:-default} for a default)", name, name)
			}
			b.WriteString(val)
			i += 2 + end
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

func envName(s string) bool {
	if s == "" || s[0] >= '0' && s[0] <= '9' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}
