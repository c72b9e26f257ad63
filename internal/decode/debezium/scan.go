package debezium

import (
	"encoding/json"
	"strconv"
	"unicode/utf8"
)

// A small validating JSON scanner. It walks a record once, validating every
// byte it passes (RFC 8259 grammar, UTF-8 strings, nesting depth) and hands
// back raw sub-slices of the input, so nothing is allocated on the happy
// path and every slice it returns is valid JSON.

// maxDepth bounds nesting like encoding/json does.
const maxDepth = 10000

// syntaxError is invalid JSON at a byte offset of the scanned slice.
type syntaxError struct {
	off int
	msg string
}

func (e *syntaxError) Error() string { return e.msg + " at offset " + strconv.Itoa(e.off) }

func errAt(off int, msg string) error { return &syntaxError{off: off, msg: msg} }

// plain marks the bytes that need no attention inside a string.
var plain = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func skipWS(d []byte, i int) int {
	for i < len(d) && isSpace(d[i]) {
		i++
	}
	return i
}

// trimSpace returns d without JSON whitespace at either end.
func trimSpace(d []byte) []byte {
	i, j := 0, len(d)
	for i < j && isSpace(d[i]) {
		i++
	}
	for j > i && isSpace(d[j-1]) {
		j--
	}
	return d[i:j]
}

func isNull(v []byte) bool { return len(v) == 4 && string(v) == "null" }

func hexDigit(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// scanString scans the string starting at d[i] == '"' and returns the index
// just past its closing quote and whether it holds escapes.
func scanString(d []byte, i int) (end int, escaped bool, err error) {
	i++
	for {
		for i+8 <= len(d) && plain[d[i]] && plain[d[i+1]] && plain[d[i+2]] && plain[d[i+3]] &&
			plain[d[i+4]] && plain[d[i+5]] && plain[d[i+6]] && plain[d[i+7]] {
			i += 8
		}
		for i < len(d) && plain[d[i]] {
			i++
		}
		if i >= len(d) {
			return 0, false, errAt(i, "unterminated string")
		}
		switch c := d[i]; {
		case c == '"':
			return i + 1, escaped, nil
		case c == '\\':
			escaped = true
			if i+1 >= len(d) {
				return 0, false, errAt(i, "unterminated string")
			}
			switch d[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(d) || !hexDigit(d[i+2]) || !hexDigit(d[i+3]) || !hexDigit(d[i+4]) || !hexDigit(d[i+5]) {
					return 0, false, errAt(i, "invalid \\u escape")
				}
				i += 6
			default:
				return 0, false, errAt(i, "invalid escape")
			}
		case c < 0x20:
			return 0, false, errAt(i, "control character in string")
		default:
			r, size := utf8.DecodeRune(d[i:])
			if r == utf8.RuneError && size <= 1 {
				return 0, false, errAt(i, "invalid UTF-8 in string")
			}
			i += size
		}
	}
}

func digits(d []byte, i int) int {
	for i < len(d) && d[i] >= '0' && d[i] <= '9' {
		i++
	}
	return i
}

// scanNumber scans the number starting at d[i].
func scanNumber(d []byte, i int) (int, error) {
	start := i
	if d[i] == '-' {
		i++
	}
	switch {
	case i < len(d) && d[i] == '0':
		i++
	case i < len(d) && d[i] >= '1' && d[i] <= '9':
		i = digits(d, i+1)
	default:
		return 0, errAt(start, "invalid number")
	}
	if i < len(d) && d[i] == '.' {
		j := digits(d, i+1)
		if j == i+1 {
			return 0, errAt(i, "invalid number")
		}
		i = j
	}
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		i++
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		j := digits(d, i)
		if j == i {
			return 0, errAt(i, "invalid number")
		}
		i = j
	}
	return i, nil
}

func scanLiteral(d []byte, i int, lit string) (int, error) {
	if len(d)-i < len(lit) || string(d[i:i+len(lit)]) != lit {
		return 0, errAt(i, "invalid literal")
	}
	return i + len(lit), nil
}

// skipValue validates the value starting at d[i] (no leading whitespace) and
// returns the index just past it.
func skipValue(d []byte, i, depth int) (int, error) {
	if i >= len(d) {
		return 0, errAt(i, "unexpected end of input")
	}
	switch c := d[i]; c {
	case '"':
		end, _, err := scanString(d, i)
		return end, err
	case '{', '[':
		if depth >= maxDepth {
			return 0, errAt(i, "nesting too deep")
		}
		closer := byte('}')
		if c == '[' {
			closer = ']'
		}
		i = skipWS(d, i+1)
		if i < len(d) && d[i] == closer {
			return i + 1, nil
		}
		for {
			var err error
			if c == '{' {
				if i >= len(d) || d[i] != '"' {
					return 0, errAt(i, "expected object key")
				}
				if i, _, err = scanString(d, i); err != nil {
					return 0, err
				}
				i = skipWS(d, i)
				if i >= len(d) || d[i] != ':' {
					return 0, errAt(i, "expected ':'")
				}
				i = skipWS(d, i+1)
			}
			if i, err = skipValue(d, i, depth+1); err != nil {
				return 0, err
			}
			i = skipWS(d, i)
			if i >= len(d) {
				return 0, errAt(i, "unexpected end of input")
			}
			if d[i] == closer {
				return i + 1, nil
			}
			if d[i] != ',' {
				return 0, errAt(i, "expected ',' or closing bracket")
			}
			i = skipWS(d, i+1)
		}
	case 't':
		return scanLiteral(d, i, "true")
	case 'f':
		return scanLiteral(d, i, "false")
	case 'n':
		return scanLiteral(d, i, "null")
	default:
		if c == '-' || c >= '0' && c <= '9' {
			return scanNumber(d, i)
		}
		return 0, errAt(i, "invalid character")
	}
}

// valid reports whether d is exactly one JSON value, surrounded by optional
// whitespace, with UTF-8 strings.
func valid(d []byte) bool {
	i := skipWS(d, 0)
	end, err := skipValue(d, i, 0)
	return err == nil && skipWS(d, end) == len(d)
}

// members walks the members of one JSON object, validating as it goes.
//
//	it, err := enter(d, i) // d[i] == '{'
//	for it.next() { key := it.key; ...; v := it.value() or sub, _ := enter(d, it.i) ... it.i = sub.i }
//	if it.err != nil { ... }
type members struct {
	d       []byte
	i       int    // next byte to read; after a key, the start of its value
	key     []byte // the current key without quotes, still escaped
	quoted  []byte // the current key as written, with quotes
	escaped bool   // key holds escapes
	err     error
	depth   int
	first   bool
	done    bool
}

// enter starts walking the object at d[i]; it returns false if there is no
// object there.
func enter(d []byte, i, depth int) (members, bool) {
	if i >= len(d) || d[i] != '{' {
		return members{}, false
	}
	if depth >= maxDepth {
		return members{err: errAt(i, "nesting too deep"), done: true}, true
	}
	return members{d: d, i: i + 1, first: true, depth: depth + 1}, true
}

// next moves to the next key, leaving it.i at the start of its value. It
// returns false at the end of the object (it.i just past '}') or on error.
// The caller must consume each value (value, skip, or a nested walk that
// leaves it.i just past the value) before calling next again.
func (it *members) next() bool {
	if it.done {
		return false
	}
	d := it.d
	i := skipWS(d, it.i)
	if it.first {
		it.first = false
		if i < len(d) && d[i] == '}' {
			it.i, it.done = i+1, true
			return false
		}
	} else {
		if i >= len(d) {
			return it.fail(i, "unexpected end of input")
		}
		if d[i] == '}' {
			it.i, it.done = i+1, true
			return false
		}
		if d[i] != ',' {
			return it.fail(i, "expected ',' or '}'")
		}
		i = skipWS(d, i+1)
	}
	if i >= len(d) || d[i] != '"' {
		return it.fail(i, "expected object key")
	}
	end, esc, err := scanString(d, i)
	if err != nil {
		it.err, it.done = err, true
		return false
	}
	it.key, it.quoted, it.escaped = d[i+1:end-1], d[i:end], esc
	i = skipWS(d, end)
	if i >= len(d) || d[i] != ':' {
		return it.fail(i, "expected ':'")
	}
	it.i = skipWS(d, i+1)
	return true
}

func (it *members) fail(i int, msg string) bool {
	it.err, it.done = errAt(i, msg), true
	return false
}

// value consumes the current value and returns it (nil on error, with it.err set).
func (it *members) value() []byte {
	start := it.i
	end, err := skipValue(it.d, start, it.depth)
	if err != nil {
		it.err, it.done = err, true
		return nil
	}
	it.i = end
	return it.d[start:end]
}

// name returns the current key unescaped. It allocates only for keys with
// escapes.
func (it *members) name() string {
	if !it.escaped {
		return string(it.key)
	}
	return unescape(it.quoted)
}

// keyIs reports whether the current key equals s.
func (it *members) keyIs(s string) bool {
	if !it.escaped {
		return string(it.key) == s
	}
	return it.name() == s
}

// unescape returns the text of the valid JSON string literal q (with quotes).
func unescape(q []byte) string {
	var s string
	if err := json.Unmarshal(q, &s); err != nil {
		return string(q)
	}
	return s
}

// elements walks the elements of one JSON array.
type elements struct {
	d     []byte
	i     int
	err   error
	depth int
	first bool
	done  bool
}

func enterArray(d []byte, i, depth int) (elements, bool) {
	if i >= len(d) || d[i] != '[' {
		return elements{}, false
	}
	return elements{d: d, i: i + 1, first: true, depth: depth + 1}, true
}

// next returns the next element, or nil at the end or on error.
func (it *elements) next() []byte {
	if it.done {
		return nil
	}
	d := it.d
	i := skipWS(d, it.i)
	if it.first {
		it.first = false
		if i < len(d) && d[i] == ']' {
			it.i, it.done = i+1, true
			return nil
		}
	} else {
		if i < len(d) && d[i] == ']' {
			it.i, it.done = i+1, true
			return nil
		}
		if i >= len(d) || d[i] != ',' {
			it.err, it.done = errAt(i, "expected ',' or ']'"), true
			return nil
		}
		i = skipWS(d, i+1)
	}
	end, err := skipValue(d, i, it.depth)
	if err != nil {
		it.err, it.done = err, true
		return nil
	}
	it.i = end
	return d[i:end]
}

// stringText returns the text of the JSON string literal v, aliasing v when
// it has no escapes. ok is false when v is not a string.
func stringText(v []byte) (b []byte, ok bool) {
	if len(v) < 2 || v[0] != '"' {
		return nil, false
	}
	inner := v[1 : len(v)-1]
	for _, c := range inner {
		if c == '\\' {
			return []byte(unescape(v)), true
		}
	}
	return inner, true
}

// parseInt parses a JSON integer literal (no fraction or exponent) into an
// int64 without allocating.
func parseInt(v []byte) (int64, bool) {
	neg := len(v) > 0 && v[0] == '-'
	if neg {
		v = v[1:]
	}
	u, ok := parseUint(v)
	if !ok {
		return 0, false
	}
	if neg {
		if u > 1<<63 {
			return 0, false
		}
		return -int64(u), true
	}
	if u > 1<<63-1 {
		return 0, false
	}
	return int64(u), true
}

// parseUint parses a non-negative decimal integer without allocating.
func parseUint(v []byte) (uint64, bool) {
	if len(v) == 0 || len(v) > 20 {
		return 0, false
	}
	var n uint64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if n > (1<<64-1-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}
