package dsql

import (
	"encoding/binary"
	"math/bits"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// This file is a small validating JSON scanner. It accepts exactly what
// encoding/json's Valid accepts (RFC 8259 grammar; strings are not checked
// for UTF-8, like Valid) and returns the offsets of values instead of
// building them, so decoding a record allocates nothing and every slice
// handed on aliases the input.

// maxDepth bounds nesting; deeper documents are rejected as invalid rather
// than risking the stack. encoding/json's Unmarshal uses the same bound.
const maxDepth = 10000

// syntaxError is a JSON syntax error at a byte offset.
type syntaxError struct {
	off int
	msg string
}

func (e *syntaxError) Error() string { return "offset " + strconv.Itoa(e.off) + ": " + e.msg }

func errAt(off int, msg string) error { return &syntaxError{off: off, msg: msg} }

// Token kinds.
const (
	kindNone   byte = 0 // absent
	kindString byte = 's'
	kindNumber byte = 'n'
	kindObject byte = 'o'
	kindArray  byte = 'a'
	kindTrue   byte = 't'
	kindFalse  byte = 'f'
	kindNull   byte = 'z'
)

// tok is one JSON value inside a buffer: data[s:e]. For strings s and e
// include the quotes; esc reports backslash escapes inside.
type tok struct {
	s, e int
	kind byte
	esc  bool
}

func (t tok) present() bool { return t.kind != kindNone && t.kind != kindNull }

// raw returns the value's JSON text.
func (t tok) raw(data []byte) []byte { return data[t.s:t.e] }

// inner returns a string token's content between the quotes, still escaped.
func (t tok) inner(data []byte) []byte { return data[t.s+1 : t.e-1] }

// member is one name/value pair of an object: the name's content (between
// the quotes, escaped when esc) and the value's bounds.
type member struct {
	ks, ke int
	vs, ve int
	esc    bool
}

// strPlain[c] is true for bytes that need no attention inside a string.
var strPlain = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

const (
	swarLo = 0x0101010101010101
	swarHi = 0x8080808080808080
)

// hexVal[c] is the value of hex digit c, or 0xff.
var hexVal = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = byte(c - '0')
	}
	for c := 'a'; c <= 'f'; c++ {
		t[c] = byte(c - 'a' + 10)
		t[c-'a'+'A'] = byte(c - 'a' + 10)
	}
	return t
}()

func skipWS(d []byte, i int) int {
	for i < len(d) {
		switch d[i] {
		case ' ', '\n', '\t', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// scanString validates the string starting at d[i] == '"' and returns the
// offset just after the closing quote and whether it holds escapes.
func scanString(d []byte, i int) (int, bool, error) {
	start := i
	i++
	esc := false
	for {
		// Eight bytes at a time: find the first '"', '\\' or control byte.
		// The lowest flagged byte is exact (borrows only flag higher bytes).
		found := false
		for i+8 <= len(d) {
			x := binary.LittleEndian.Uint64(d[i:])
			q, b := x^(swarLo*'"'), x^(swarLo*'\\')
			m := ((q - swarLo) &^ q) | ((b - swarLo) &^ b) | ((x - swarLo*0x20) &^ x)
			if m &= swarHi; m != 0 {
				i += bits.TrailingZeros64(m) / 8
				found = true
				break
			}
			i += 8
		}
		if !found {
			for i < len(d) && strPlain[d[i]] {
				i++
			}
		}
		if i >= len(d) {
			return i, esc, errAt(start, "unterminated string")
		}
		switch c := d[i]; {
		case c == '"':
			return i + 1, esc, nil
		case c == '\\':
			esc = true
			if i+1 >= len(d) {
				return i, esc, errAt(start, "unterminated string")
			}
			switch d[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(d) || hexVal[d[i+2]]|hexVal[d[i+3]]|hexVal[d[i+4]]|hexVal[d[i+5]] == 0xff {
					return i, esc, errAt(i, `invalid \u escape in string`)
				}
				i += 6
			default:
				return i, esc, errAt(i, "invalid escape in string")
			}
		default:
			return i, esc, errAt(i, "control character in string")
		}
	}
}

// scanNumber validates the number starting at d[i] and returns its end.
func scanNumber(d []byte, i int) (int, error) {
	start := i
	if i < len(d) && d[i] == '-' {
		i++
	}
	switch {
	case i < len(d) && d[i] == '0':
		i++
	case i < len(d) && d[i] >= '1' && d[i] <= '9':
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
		}
	default:
		return i, errAt(start, "invalid number")
	}
	if i < len(d) && d[i] == '.' {
		i++
		if i >= len(d) || d[i] < '0' || d[i] > '9' {
			return i, errAt(start, "invalid number")
		}
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
		}
	}
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		i++
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		if i >= len(d) || d[i] < '0' || d[i] > '9' {
			return i, errAt(start, "invalid number")
		}
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
		}
	}
	return i, nil
}

func scanLiteral(d []byte, i int, lit string) (int, error) {
	if len(d)-i < len(lit) || string(d[i:i+len(lit)]) != lit {
		return i, errAt(i, "invalid literal")
	}
	return i + len(lit), nil
}

// scanValue validates the value starting at d[i] (no leading whitespace)
// and returns it as a tok.
func scanValue(d []byte, i, depth int) (tok, error) {
	if i >= len(d) {
		return tok{}, errAt(i, "unexpected end of input")
	}
	t := tok{s: i}
	var err error
	switch c := d[i]; {
	case c == '"':
		t.kind = kindString
		t.e, t.esc, err = scanString(d, i)
	case c == '{':
		t.kind = kindObject
		t.e, err = skipObject(d, i, depth+1)
	case c == '[':
		t.kind = kindArray
		t.e, err = skipArray(d, i, depth+1)
	case c == '-' || (c >= '0' && c <= '9'):
		t.kind = kindNumber
		t.e, err = scanNumber(d, i)
	case c == 't':
		t.kind = kindTrue
		t.e, err = scanLiteral(d, i, "true")
	case c == 'f':
		t.kind = kindFalse
		t.e, err = scanLiteral(d, i, "false")
	case c == 'n':
		t.kind = kindNull
		t.e, err = scanLiteral(d, i, "null")
	default:
		return t, errAt(i, "invalid character "+strconv.QuoteRune(rune(c))+" looking for a value")
	}
	return t, err
}

// skipObject validates the object starting at d[i] == '{'.
func skipObject(d []byte, i, depth int) (int, error) {
	if depth > maxDepth {
		return i, errAt(i, "nesting too deep")
	}
	i = skipWS(d, i+1)
	if i < len(d) && d[i] == '}' {
		return i + 1, nil
	}
	for {
		if i >= len(d) || d[i] != '"' {
			return i, errAt(i, "expected a member name")
		}
		var err error
		if i, _, err = scanString(d, i); err != nil {
			return i, err
		}
		i = skipWS(d, i)
		if i >= len(d) || d[i] != ':' {
			return i, errAt(i, "expected ':' after member name")
		}
		v, err := scanValue(d, skipWS(d, i+1), depth)
		if err != nil {
			return v.e, err
		}
		i = skipWS(d, v.e)
		if i >= len(d) {
			return i, errAt(i, "unterminated object")
		}
		switch d[i] {
		case ',':
			i = skipWS(d, i+1)
		case '}':
			return i + 1, nil
		default:
			return i, errAt(i, "expected ',' or '}' in object")
		}
	}
}

// skipArray validates the array starting at d[i] == '['.
func skipArray(d []byte, i, depth int) (int, error) {
	if depth > maxDepth {
		return i, errAt(i, "nesting too deep")
	}
	i = skipWS(d, i+1)
	if i < len(d) && d[i] == ']' {
		return i + 1, nil
	}
	for {
		v, err := scanValue(d, i, depth)
		if err != nil {
			return v.e, err
		}
		i = skipWS(d, v.e)
		if i >= len(d) {
			return i, errAt(i, "unterminated array")
		}
		switch d[i] {
		case ',':
			i = skipWS(d, i+1)
		case ']':
			return i + 1, nil
		default:
			return i, errAt(i, "expected ',' or ']' in array")
		}
	}
}

// objectIter walks the members of an object, validating as it goes:
//
//	it := objectIter{d: d, i: start}
//	for it.next() { ... it.key, it.val ... }
//	if it.err != nil { ... }
//
// After the loop it.i is the offset just after the closing brace.
type objectIter struct {
	d     []byte
	i     int
	depth int
	key   member // name bounds; vs/ve unused
	val   tok
	err   error
	state byte // 0 before '{', 1 inside, 2 done
}

func (it *objectIter) next() bool {
	d := it.d
	switch it.state {
	case 0:
		if it.i >= len(d) || d[it.i] != '{' {
			it.err = errAt(it.i, "expected an object")
			return false
		}
		if it.depth > maxDepth {
			it.err = errAt(it.i, "nesting too deep")
			return false
		}
		it.state = 1
		it.i = skipWS(d, it.i+1)
		if it.i < len(d) && d[it.i] == '}' {
			it.i++
			it.state = 2
			return false
		}
	case 1:
		i := skipWS(d, it.val.e)
		if i >= len(d) {
			it.err = errAt(i, "unterminated object")
			return false
		}
		switch d[i] {
		case ',':
			it.i = skipWS(d, i+1)
		case '}':
			it.i = i + 1
			it.state = 2
			return false
		default:
			it.err = errAt(i, "expected ',' or '}' in object")
			return false
		}
	default:
		return false
	}
	i := it.i
	if i >= len(d) || d[i] != '"' {
		it.err = errAt(i, "expected a member name")
		return false
	}
	end, esc, err := scanString(d, i)
	if err != nil {
		it.err = err
		return false
	}
	it.key = member{ks: i + 1, ke: end - 1, esc: esc}
	i = skipWS(d, end)
	if i >= len(d) || d[i] != ':' {
		it.err = errAt(i, "expected ':' after member name")
		return false
	}
	i = skipWS(d, i+1)
	if i < len(d) && d[i] == '{' {
		// Objects are not scanned here: the caller either walks them with a
		// nested objectIter or validates them with skipValue.
		it.val = tok{s: i, e: i, kind: kindObject}
		return true
	}
	it.val, it.err = scanValue(d, i, it.depth)
	return it.err == nil
}

// skip validates the current value when it is an object the caller does not
// walk. It must be called before next for object values.
func (it *objectIter) skip() bool {
	if it.val.kind != kindObject || it.val.e != it.val.s {
		return true
	}
	it.val.e, it.err = skipObject(it.d, it.val.s, it.depth+1)
	return it.err == nil
}

// memberNameIs reports whether m's name equals name, unescaping it when it
// holds escapes.
func memberNameIs(d []byte, m member, name string) bool {
	k := d[m.ks:m.ke]
	if !m.esc {
		return string(k) == name
	}
	var buf [64]byte
	return string(appendUnescaped(buf[:0], k)) == name
}

// scanMembers validates the object at d[i] == '{', appends its members to
// out and returns the offset after it.
func scanMembers(d []byte, i, depth int, out []member) ([]member, int, error) {
	it := objectIter{d: d, i: i, depth: depth}
	for it.next() {
		if !it.skip() {
			break
		}
		m := it.key
		m.vs, m.ve = it.val.s, it.val.e
		out = append(out, m)
	}
	return out, it.i, it.err
}

// appendUnescaped appends the content of a validated JSON string (between
// the quotes) to dst with escapes decoded. Invalid surrogates become U+FFFD
// as in encoding/json; other bytes are copied as they are.
func appendUnescaped(dst, s []byte) []byte {
	for i := 0; i < len(s); {
		j := i
		for j < len(s) && s[j] != '\\' {
			j++
		}
		dst = append(dst, s[i:j]...)
		if j >= len(s) {
			break
		}
		if j+1 >= len(s) { // cannot happen for validated input
			dst = append(dst, '\\')
			break
		}
		switch c := s[j+1]; c {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r, ok := hex4(s, j+2)
			if !ok {
				dst = append(dst, s[j:]...)
				return dst
			}
			j += 6
			if utf16.IsSurrogate(r) {
				r2, ok2 := rune(-1), false
				if j+6 <= len(s) && s[j] == '\\' && s[j+1] == 'u' {
					r2, ok2 = hex4(s, j+2)
				}
				if dec := utf16.DecodeRune(r, r2); ok2 && dec != utf8.RuneError {
					r = dec
					j += 6
				} else {
					r = utf8.RuneError
				}
			}
			dst = utf8.AppendRune(dst, r)
			i = j
			continue
		default: // '"', '\\', '/'
			dst = append(dst, c)
		}
		i = j + 2
	}
	return dst
}

func hex4(s []byte, i int) (rune, bool) {
	if i+4 > len(s) {
		return 0, false
	}
	a, b, c, d := hexVal[s[i]], hexVal[s[i+1]], hexVal[s[i+2]], hexVal[s[i+3]]
	if a|b|c|d == 0xff {
		return 0, false
	}
	return rune(a)<<12 | rune(b)<<8 | rune(c)<<4 | rune(d), true
}
