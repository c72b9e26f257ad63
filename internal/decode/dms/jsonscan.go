package dms

import (
	"bytes"
	"encoding/json"
)

// The helpers below walk JSON that json.Valid has already accepted. They
// never check syntax again, so they stay small and allocation-free; fed
// anything else they still stay in bounds but their answers mean nothing.

// skipWS returns the index of the first non-space byte at or after i.
func skipWS(b []byte, i int) int {
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

// skipString returns the index just past the string that starts at b[i].
func skipString(b []byte, i int) int {
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

// skipValue returns the index just past the value that starts at b[i].
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return len(b)
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				i = skipString(b, i)
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

// members iterates the members of a valid JSON object.
type members struct {
	b    []byte
	i    int
	qkey []byte // the member's name as written, with its quotes
	val  []byte // the member's value as written
}

// newMembers starts iterating obj, which must begin with '{'.
func newMembers(obj []byte) members { return members{b: obj, i: 1} }

// next advances to the next member and reports whether there is one.
func (m *members) next() bool {
	i := skipWS(m.b, m.i)
	if i < len(m.b) && m.b[i] == ',' {
		i = skipWS(m.b, i+1)
	}
	if i >= len(m.b) || m.b[i] != '"' {
		return false
	}
	end := skipString(m.b, i)
	m.qkey = m.b[i:end:end]
	i = skipWS(m.b, end)
	if i >= len(m.b) || m.b[i] != ':' {
		return false // not valid JSON: stop rather than slice out of bounds
	}
	i = skipWS(m.b, i+1)
	end = skipValue(m.b, i)
	m.val = m.b[i:end:end]
	m.i = end
	return true
}

// name returns the member's name as bytes, unescaped; it allocates only
// when the name holds escapes.
func (m *members) name() []byte { return stringContent(m.qkey) }

// stringContent returns the text of a quoted JSON string, unescaped. It
// allocates only when q holds escapes.
func stringContent(q []byte) []byte {
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

// lookup returns the value of the member called name in obj, a valid JSON
// object. When a name repeats, the last one wins, as in encoding/json.
func lookup(obj []byte, name string) ([]byte, bool) {
	var val []byte
	found := false
	m := newMembers(obj)
	for m.next() {
		if string(m.name()) == name {
			val, found = m.val, true
		}
	}
	return val, found
}

// kind names the JSON type of a valid value, for error messages.
func kind(v []byte) string {
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

// isNull reports whether v is absent or the JSON null.
func isNull(v []byte) bool { return len(v) == 0 || v[0] == 'n' }
