// Package jsonscan walks JSON that json.Valid has already accepted, without
// allocating: the DMS and DynamoDB decoders read records with it.
package jsonscan

import (
	"bytes"
	"encoding/json"
)

// The helpers below walk JSON that json.Valid has already accepted. They
// never check syntax again, so they stay small and allocation-free; fed
// anything else they still stay in bounds but their answers mean nothing.

// SkipWS returns the index of the first non-space byte at or after i.
func SkipWS(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// SkipString returns the index just past the string that starts at b[i].
func SkipString(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(b)
}

// SkipValue returns the index just past the value that starts at b[i].
func SkipValue(b []byte, i int) int {
	if i >= len(b) {
		return len(b)
	}
	switch b[i] {
	case '"':
		return SkipString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				i = SkipString(b, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return len(b)
	default:
		for i < len(b) {
			switch b[i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return i
			}
			i++
		}
		return len(b)
	}
}

// Members iterates the Members of a valid JSON object.
type Members struct {
	b    []byte
	i    int
	QKey []byte // the member's name as written, with its quotes
	Val  []byte // the member's value as written
}

// NewMembers starts iterating obj, which must begin with '{'.
func NewMembers(obj []byte) Members { return Members{b: obj, i: 1} }

// Next advances to the next member and reports whether there is one.
func (m *Members) Next() bool {
	i := SkipWS(m.b, m.i)
	if i < len(m.b) && m.b[i] == ',' {
		i = SkipWS(m.b, i+1)
	}
	if i >= len(m.b) || m.b[i] != '"' {
		return false
	}
	end := SkipString(m.b, i)
	m.QKey = m.b[i:end:end]
	i = SkipWS(m.b, end)
	if i >= len(m.b) || m.b[i] != ':' {
		return false // not valid JSON: stop rather than slice out of bounds
	}
	i = SkipWS(m.b, i+1)
	end = SkipValue(m.b, i)
	m.Val = m.b[i:end:end]
	m.i = end
	return true
}

// Name returns the member's name as bytes, unescaped; it allocates only
// when the name holds escapes.
func (m *Members) Name() []byte { return StringContent(m.QKey) }

// StringContent returns the text of a quoted JSON string, unescaped. It
// allocates only when q holds escapes.
func StringContent(q []byte) []byte {
	if len(q) < 2 {
		return nil
	}
	inner := q[1 : len(q)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		return inner
	}
	var s string
	if json.Unmarshal(q, &s) != nil {
		return inner
	}
	return []byte(s)
}

// Lookup returns the value of the member called name in obj, a valid JSON
// object. When a name repeats, the last one wins, as in encoding/json.
func Lookup(obj []byte, name string) ([]byte, bool) {
	var val []byte
	found := false
	m := NewMembers(obj)
	for m.Next() {
		if string(m.Name()) == name {
			val, found = m.Val, true
		}
	}
	return val, found
}

// Kind names the JSON type of a valid value, for error messages.
func Kind(v []byte) string {
	if len(v) == 0 {
		return "nothing"
	}
	switch v[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

// IsNull reports whether v is absent or the JSON null.
func IsNull(v []byte) bool { return len(v) == 0 || v[0] == 'n' }
