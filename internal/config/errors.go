package config

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Error is one problem in a configuration: a YAML syntax error, an unknown
// field, a value of the wrong type or an invalid value. Parse, Load and
// Validate return every Error they find, sorted by line, joined with
// errors.Join; use errors.As to inspect them.
type Error struct {
	File string // file name as given to Parse or Load; "" for a Config built in Go
	Line int    // 1-based line; 0 when unknown (a field absent from the file)
	Path string // dotted field path ("sink.duckdb.path", "tables.orders.key[0]"); "" for syntax errors
	Msg  string // what is wrong; never contains a secret
}

// Error renders "file:line: path: message", leaving out the parts that are
// unknown.
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			b.WriteString(":")
			b.WriteString(strconv.Itoa(e.Line))
		}
		b.WriteString(": ")
	} else if e.Line > 0 {
		b.WriteString("line ")
		b.WriteString(strconv.Itoa(e.Line))
		b.WriteString(": ")
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// errorList collects Errors.
type errorList []*Error

func (l *errorList) add(file string, line int, path, format string, args ...any) {
	*l = append(*l, &Error{File: file, Line: line, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// err returns the collected errors sorted by line (keeping the order they
// were found in on one line), joined; nil when there are none.
func (l errorList) err() error {
	if len(l) == 0 {
		return nil
	}
	sort.SliceStable(l, func(i, j int) bool {
		return l[i].Line < l[j].Line
	})
	errs := make([]error, len(l))
	for i, e := range l {
		errs[i] = e
	}
	return errors.Join(errs...)
}

// Paths. Fields join with ".", sequence items add "[i]", and map keys that
// are not plain words are quoted: tables."public.orders".key.

func fieldPath(parent, name string) string {
	if parent == "" {
		return name
	}
	return parent + "." + name
}

func keyPath(parent, key string) string {
	if !plainKey(key) {
		key = strconv.Quote(key)
	}
	return fieldPath(parent, key)
}

func indexPath(parent string, i int) string {
	return parent + "[" + strconv.Itoa(i) + "]"
}

func plainKey(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// parentPath returns the path one level up: "a.b[2]" -> "a.b",
// `a."x.y"` -> "a", "a" -> "".
func parentPath(p string) string {
	if strings.HasSuffix(p, "]") {
		if i := strings.LastIndexByte(p, '['); i >= 0 {
			return p[:i]
		}
	}
	// Find the last separator outside a quoted key.
	last := -1
	for i := 0; i < len(p); {
		switch p[i] {
		case '"':
			q, err := strconv.QuotedPrefix(p[i:])
			if err != nil {
				return ""
			}
			i += len(q)
			continue
		case '.', '[':
			last = i
		}
		i++
	}
	if last < 0 {
		return ""
	}
	return p[:last]
}

// suggest returns the candidate closest to s, or "" when none is close.
func suggest(s string, candidates []string) string {
	norm := func(x string) string {
		return strings.NewReplacer("_", "", "-", "", " ", "").Replace(strings.ToLower(x))
	}
	for _, c := range candidates {
		if norm(c) == norm(s) {
			return c
		}
	}
	best, bestD := "", 3
	for _, c := range candidates {
		d := levenshtein(strings.ToLower(s), c)
		if d < bestD && d < len(c) && d < len(s) {
			best, bestD = c, d
		}
	}
	return best
}

func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
