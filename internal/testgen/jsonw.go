package testgen

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"unicode/utf8"
)

// appendValue appends the compact JSON text of v. Object keys are written in
// sorted order so output is deterministic.
func appendValue(b []byte, v any) []byte {
	switch v := v.(type) {
	case nil:
		return append(b, "null"...)
	case bool:
		return strconv.AppendBool(b, v)
	case json.Number:
		return append(b, v...)
	case string:
		return appendString(b, v)
	case int:
		return strconv.AppendInt(b, int64(v), 10)
	case int64:
		return strconv.AppendInt(b, v, 10)
	case map[string]any:
		var buf [16]string
		keys := buf[:0]
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b = append(b, '{')
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			b = appendValue(b, v[k])
		}
		return append(b, '}')
	case []any:
		b = append(b, '[')
		for i, e := range v {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendValue(b, e)
		}
		return append(b, ']')
	}
	panic(fmt.Sprintf("testgen: cannot encode %T as JSON", v))
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string. Control characters, quotes and
// backslashes are escaped; everything else (including U+2028) is written as
// UTF-8, which every JSON parser accepts.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// appendRow appends a row as a JSON object in column order. cols selects the
// columns to write (nil: all).
func appendRow(b []byte, t *Table, row []any, cols []int) []byte {
	b = append(b, '{')
	if cols == nil {
		for i, c := range t.Columns {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, c.Name)
			b = append(b, ':')
			b = appendValue(b, row[i])
		}
	} else {
		for n, i := range cols {
			if n > 0 {
				b = append(b, ',')
			}
			b = appendString(b, t.Columns[i].Name)
			b = append(b, ':')
			b = appendValue(b, row[i])
		}
	}
	return append(b, '}')
}

// appendRowOrNull appends appendRow or null for a nil row.
func appendRowOrNull(b []byte, t *Table, row []any, cols []int) []byte {
	if row == nil {
		return append(b, "null"...)
	}
	return appendRow(b, t, row, cols)
}

// splitRunes cuts s into pieces of at most n bytes without splitting a UTF-8
// sequence (n is raised to 4 if smaller).
func splitRunes(s string, n int) []string {
	n = max(n, utf8.UTFMax)
	var out []string
	for len(s) > n {
		cut := n
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		out = append(out, s[:cut])
		s = s[cut:]
	}
	return append(out, s)
}
