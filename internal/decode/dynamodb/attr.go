package dynamodb

import (
	"errors"
	"strconv"

	"github.com/cdcflow/cdcflow/internal/decode/jsonscan"

	"github.com/cdcflow/cdcflow/internal/change"
)

// maxDepth bounds the nesting of M and L values; DynamoDB itself allows 32
// levels. It keeps the recursive conversion's stack small on hostile input.
const maxDepth = 64

// Conversion errors carry a Field relative to the value being converted
// (".tags[2].color"); each level prepends its own segment on the way out, so
// the success path never builds paths.

func attrPoison(format string, args ...any) error {
	return change.Poisonf(change.ReasonInvalidValue, "", format, args...)
}

// within prefixes the field of a conversion error with seg.
func within(err error, seg string) error {
	var p *change.Poison
	if errors.As(err, &p) {
		p.Field = seg + p.Field
	}
	return err
}

// appendItem appends the plain JSON object of a DynamoDB item (a map of
// attribute names to typed attribute values) to dst.
func appendItem(dst, obj []byte, depth int) ([]byte, error) {
	if len(obj) == 0 || obj[0] != '{' {
		return dst, attrPoison("an item must be an object of attributes, found %s", jsonscan.Kind(obj))
	}
	dst = append(dst, '{')
	m := jsonscan.NewMembers(obj)
	first := true
	for m.Next() {
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = append(dst, m.QKey...)
		dst = append(dst, ':')
		var err error
		if dst, err = appendAttr(dst, m.Val, depth); err != nil {
			return dst, within(err, "."+string(m.Name()))
		}
	}
	return append(dst, '}'), nil
}

// appendAttr appends the plain JSON of one typed attribute value such as
// {"N":"42"} to dst.
func appendAttr(dst, v []byte, depth int) ([]byte, error) {
	if len(v) == 0 || v[0] != '{' {
		return dst, attrPoison(`an attribute value must be an object such as {"S":"text"}, found %s`, jsonscan.Kind(v))
	}
	m := jsonscan.NewMembers(v)
	if !m.Next() {
		return dst, attrPoison("attribute value has no type descriptor")
	}
	typ, val := m.Name(), m.Val
	if m.Next() {
		return dst, attrPoison("attribute value has more than one type descriptor (%s and %s)", typ, m.Name())
	}
	switch string(typ) {
	case "S", "B":
		if val[0] != '"' {
			return dst, attrPoison("%s value must be a string, found %s", typ, jsonscan.Kind(val))
		}
		return append(dst, val...), nil
	case "N":
		return appendNumber(dst, val)
	case "BOOL":
		if val[0] != 't' && val[0] != 'f' {
			return dst, attrPoison("BOOL value must be true or false, found %s", jsonscan.Kind(val))
		}
		return append(dst, val...), nil
	case "NULL":
		if string(val) != "true" {
			return dst, attrPoison("NULL value must be true, found %s", val)
		}
		return append(dst, "null"...), nil
	case "M":
		if depth >= maxDepth {
			return dst, attrPoison("values nested deeper than %d levels", maxDepth)
		}
		return appendItem(dst, val, depth+1)
	case "L":
		if depth >= maxDepth {
			return dst, attrPoison("values nested deeper than %d levels", maxDepth)
		}
		return appendList(dst, val, depth+1, appendAttr)
	case "SS", "BS":
		return appendList(dst, val, depth, appendString)
	case "NS":
		return appendList(dst, val, depth, func(dst, v []byte, _ int) ([]byte, error) { return appendNumber(dst, v) })
	}
	return dst, attrPoison("unknown type descriptor %q (want S, N, B, BOOL, NULL, M, L, SS, NS or BS)", typ)
}

// appendList appends a JSON array whose elements elem converts.
func appendList(dst, arr []byte, depth int, elem func(dst, v []byte, depth int) ([]byte, error)) ([]byte, error) {
	if arr[0] != '[' {
		return dst, attrPoison("list or set value must be an array, found %s", jsonscan.Kind(arr))
	}
	dst = append(dst, '[')
	e := newElements(arr)
	for n := 0; e.next(); n++ {
		if n > 0 {
			dst = append(dst, ',')
		}
		var err error
		if dst, err = elem(dst, e.val, depth); err != nil {
			return dst, within(err, "["+strconv.Itoa(n)+"]")
		}
	}
	return append(dst, ']'), nil
}

func appendString(dst, v []byte, _ int) ([]byte, error) {
	if v[0] != '"' {
		return dst, attrPoison("set element must be a string, found %s", jsonscan.Kind(v))
	}
	return append(dst, v...), nil
}

// appendNumber appends the digits of a DynamoDB number string (N and NS
// elements: "-12.50", "1E+3") as a JSON number literal, exactly as written.
func appendNumber(dst, v []byte) ([]byte, error) {
	if v[0] != '"' {
		return dst, attrPoison("number value must be a string of digits, found %s", jsonscan.Kind(v))
	}
	n := jsonscan.StringContent(v)
	if !validNumber(n) {
		return dst, attrPoison("number value %s is not a decimal number", v)
	}
	return append(dst, n...), nil
}

// validNumber reports whether s is a JSON number literal:
// -? (0 | [1-9][0-9]*) (\.[0-9]+)? ([eE][+-]?[0-9]+)?
func validNumber(s []byte) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && s[i] >= '1' && s[i] <= '9':
		for i < len(s) && isDigit(s[i]) {
			i++
		}
	default:
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if i >= len(s) || !isDigit(s[i]) {
			return false
		}
		for i < len(s) && isDigit(s[i]) {
			i++
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if i >= len(s) || !isDigit(s[i]) {
			return false
		}
		for i < len(s) && isDigit(s[i]) {
			i++
		}
	}
	return i == len(s)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// elements iterates the elements of a valid JSON array.
type elements struct {
	b   []byte
	i   int
	val []byte
}

func newElements(arr []byte) elements { return elements{b: arr, i: 1} }

func (e *elements) next() bool {
	i := jsonscan.SkipWS(e.b, e.i)
	if i < len(e.b) && e.b[i] == ',' {
		i = jsonscan.SkipWS(e.b, i+1)
	}
	if i >= len(e.b) || e.b[i] == ']' {
		return false
	}
	end := jsonscan.SkipValue(e.b, i)
	e.val = e.b[i:end:end]
	e.i = end
	return true
}
