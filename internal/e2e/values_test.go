package e2e

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"fmt"
	"math/big"
	"sort"
	"strconv"
	"strings"
	"time"
)

// canonical renders a JSON value (as encoding/json decodes it with
// UseNumber) so that semantically equal values render equal: object members
// sorted, numbers as exact reduced fractions ("12.50" and 12.5 agree, 1 and
// 1.0 agree, a number never equals a string).
func canonical(v any) string {
	var b strings.Builder
	writeCanonical(&b, v)
	return b.String()
}

func writeCanonical(b *strings.Builder, v any) {
	switch x := v.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		b.WriteString(strconv.FormatBool(x))
	case json.Number:
		if r, ok := new(big.Rat).SetString(string(x)); ok {
			b.WriteString("#" + r.RatString())
		} else {
			b.WriteString("#?" + string(x))
		}
	case string:
		b.WriteString(strconv.Quote(x))
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.Quote(k))
			b.WriteByte(':')
			writeCanonical(b, x[k])
		}
		b.WriteByte('}')
	case []any:
		b.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				b.WriteByte(',')
			}
			writeCanonical(b, e)
		}
		b.WriteByte(']')
	default:
		fmt.Fprintf(b, "<%T %v>", v, v)
	}
}

// parseJSON decodes one JSON document with UseNumber.
func parseJSON(text []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(text))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	if d.More() {
		return nil, fmt.Errorf("trailing data after JSON value")
	}
	return v, nil
}

// duckTimestamp parses the text of a DuckDB TIMESTAMP or TIMESTAMPTZ cast to
// VARCHAR ("2024-01-02 03:04:05.123456", "+00" offset for TIMESTAMPTZ).
func duckTimestamp(s string) (time.Time, error) {
	for _, layout := range []string{"2006-01-02 15:04:05.999999999-07", "2006-01-02 15:04:05.999999999-07:00", "2006-01-02 15:04:05.999999999"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("not a DuckDB timestamp: %q", s)
}

// columnValue compares want, a value of the expected state, with got, a
// DuckDB column of type typ cast to VARCHAR. It returns "" when they agree,
// else a description of the difference. Numbers compare as exact decimals,
// timestamps as instants, JSON semantically, text exactly; a value of a
// JSON type the column cannot represent exactly is a difference, never
// skipped.
func columnValue(typ string, want any, got sql.NullString) string {
	if want == nil || !got.Valid {
		if want == nil && !got.Valid {
			return ""
		}
		return fmt.Sprintf("want %s, got %s", canonical(want), showNull(got))
	}
	typ = strings.ToUpper(typ)
	mismatch := func() string { return fmt.Sprintf("want %s, got %s %q", canonical(want), typ, got.String) }
	switch {
	case typ == "BIGINT" || typ == "INTEGER" || typ == "HUGEINT" || typ == "SMALLINT" || strings.HasPrefix(typ, "DECIMAL"):
		n, ok := want.(json.Number)
		if !ok {
			return mismatch()
		}
		w, ok1 := new(big.Rat).SetString(string(n))
		g, ok2 := new(big.Rat).SetString(got.String)
		if !ok1 || !ok2 || w.Cmp(g) != 0 {
			return mismatch()
		}
	case typ == "BOOLEAN":
		b, ok := want.(bool)
		if !ok || strconv.FormatBool(b) != got.String {
			return mismatch()
		}
	case strings.HasPrefix(typ, "TIMESTAMP"):
		s, ok := want.(string)
		if !ok {
			return mismatch()
		}
		w, err1 := time.Parse(time.RFC3339Nano, s)
		g, err2 := duckTimestamp(got.String)
		if err1 != nil || err2 != nil || !w.Equal(g) {
			return mismatch()
		}
	case typ == "JSON":
		g, err := parseJSON([]byte(got.String))
		if err != nil || canonical(g) != canonical(want) {
			return mismatch()
		}
	case typ == "VARCHAR":
		s, ok := want.(string)
		if !ok || s != got.String {
			return mismatch()
		}
	default:
		// DOUBLE and anything else cannot be compared exactly: the test's
		// histories must never produce them.
		return fmt.Sprintf("column type %s is not expected in these histories (value %q, want %s)", typ, got.String, canonical(want))
	}
	return ""
}

func showNull(s sql.NullString) string {
	if !s.Valid {
		return "NULL"
	}
	return strconv.Quote(s.String)
}
