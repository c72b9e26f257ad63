package change

import (
	"bytes"
	"encoding/json"
	"strings"
)

// Keys says which columns form each table's key.
// Lookups try "schema.table" first, then "table", then the default.
type Keys struct {
	Tables  map[string][]string // "orders" or "public.orders" -> key columns
	Default []string            // used when a table is not listed; ["id"] when nil
}

// DefaultKey is the key column used when nothing else is configured.
var DefaultKey = []string{"id"}

// For returns the key columns of schema.table.
func (k *Keys) For(schema, table string) []string {
	if k != nil && k.Tables != nil {
		if schema != "" {
			if cols, ok := k.Tables[schema+"."+table]; ok {
				return cols
			}
		}
		if cols, ok := k.Tables[table]; ok {
			return cols
		}
	}
	if k != nil && k.Default != nil {
		return k.Default
	}
	return DefaultKey
}

// RecordID builds the record_id from the raw JSON values of the key columns,
// in key-column order. A single string value is unquoted; a single other
// value is its compact JSON text; several values become a compact JSON array.
// It returns a *Poison naming the column when a value is missing or null.
func RecordID(cols []string, values []json.RawMessage) (string, error) {
	for i, v := range values {
		v = bytes.TrimSpace(v)
		if len(v) == 0 || string(v) == "null" {
			return "", &Poison{Reason: ReasonMissingKey, Field: cols[i], Detail: "key column " + cols[i] + " is missing or null"}
		}
		values[i] = v
	}
	if len(values) == 1 {
		id, err := scalarText(values[0])
		if err == nil && id == "" {
			// An empty record_id cannot be told from a missing one downstream
			// (and the event log's record_id is NOT NULL text), so every
			// format treats an empty single-column key as missing.
			return "", &Poison{Reason: ReasonMissingKey, Field: cols[0], Detail: "key column " + cols[0] + " is an empty string"}
		}
		return id, err
	}
	var b strings.Builder
	b.WriteByte('[')
	for i, v := range values {
		if i > 0 {
			b.WriteByte(',')
		}
		if err := writeCompact(&b, v); err != nil {
			return "", &Poison{Reason: ReasonInvalidValue, Field: cols[i], Detail: "key column " + cols[i] + ": " + err.Error()}
		}
	}
	b.WriteByte(']')
	return b.String(), nil
}

func scalarText(v json.RawMessage) (string, error) {
	if v[0] == '"' {
		if bytes.IndexByte(v, '\\') < 0 && len(v) >= 2 && v[len(v)-1] == '"' {
			return string(v[1 : len(v)-1]), nil
		}
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return "", &Poison{Reason: ReasonInvalidValue, Detail: "key value: " + err.Error()}
		}
		return s, nil
	}
	if isCompactScalar(v) {
		return string(v), nil
	}
	var b strings.Builder
	if err := writeCompact(&b, v); err != nil {
		return "", &Poison{Reason: ReasonInvalidValue, Detail: "key value: " + err.Error()}
	}
	return b.String(), nil
}

func isCompactScalar(v []byte) bool {
	if v[0] == '{' || v[0] == '[' {
		return false
	}
	for _, c := range v {
		if c == ' ' || c == '\t' || c == '\n' || c == '\r' {
			return false
		}
	}
	return true
}

func writeCompact(b *strings.Builder, v json.RawMessage) error {
	if isCompactScalar(v) || v[0] == '"' {
		b.Write(v)
		return nil
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, v); err != nil {
		return err
	}
	b.Write(buf.Bytes())
	return nil
}
