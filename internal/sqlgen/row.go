package sqlgen

import (
	"errors"
	"fmt"
	"unicode/utf8"
)

// Fields calls fn for each member of the JSON object obj, in document order,
// with the member's unescaped name and its raw value (no surrounding
// whitespace). It validates the whole object as it goes (syntax, UTF-8,
// surrogate pairs; see skipString) and stops at the first error, its own or
// fn's. Row images are flat objects, so this is the
// hot path of type inference: it allocates only for names with escapes.
func Fields(obj []byte, fn func(name string, value []byte) error) error {
	i := skipWS(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return errors.New("row image is not a JSON object")
	}
	i = skipWS(obj, i+1)
	if i < len(obj) && obj[i] == '}' {
		if j := skipWS(obj, i+1); j != len(obj) {
			return fmt.Errorf("row image: trailing data at byte %d", j)
		}
		return nil
	}
	for {
		if i >= len(obj) || obj[i] != '"' {
			return fmt.Errorf("row image: expected a member name at byte %d", i)
		}
		end, err := skipString(obj, i)
		if err != nil {
			return err
		}
		name, err := unquote(obj[i:end])
		if err != nil {
			return fmt.Errorf("row image: member name at byte %d: %w", i, err)
		}
		i = skipWS(obj, end)
		if i >= len(obj) || obj[i] != ':' {
			return fmt.Errorf("row image: expected ':' after %q", name)
		}
		i = skipWS(obj, i+1)
		vend, err := skipValue(obj, i, 0)
		if err != nil {
			return fmt.Errorf("row image: member %q: %w", name, err)
		}
		if err := fn(name, obj[i:vend]); err != nil {
			return err
		}
		i = skipWS(obj, vend)
		if i < len(obj) && obj[i] == ',' {
			i = skipWS(obj, i+1)
			continue
		}
		if i < len(obj) && obj[i] == '}' {
			if j := skipWS(obj, i+1); j != len(obj) {
				return fmt.Errorf("row image: trailing data at byte %d", j)
			}
			return nil
		}
		return fmt.Errorf("row image: expected ',' or '}' at byte %d", i)
	}
}

const maxDepth = 1000

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index just past the JSON string starting at i. It
// rejects what databases reject even where encoding/json does not: invalid
// UTF-8 and unpaired UTF-16 surrogate escapes.
func skipString(b []byte, i int) (int, error) {
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return j + 1, nil
		case c >= utf8.RuneSelf:
			r, size := utf8.DecodeRune(b[j:])
			if r == utf8.RuneError && size <= 1 {
				return 0, fmt.Errorf("invalid UTF-8 in string at byte %d", j)
			}
			j += size - 1
		case c == '\\':
			j++
			if j >= len(b) {
				break
			}
			switch b[j] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				r, ok := hex4(b, j+1)
				if !ok {
					return 0, fmt.Errorf("invalid \\u escape at byte %d", j)
				}
				j += 4
				switch {
				case r >= 0xDC00 && r <= 0xDFFF:
					return 0, fmt.Errorf("unpaired surrogate escape at byte %d", j-5)
				case r >= 0xD800 && r <= 0xDBFF:
					lo, ok := rune(0), j+2 < len(b) && b[j+1] == '\\' && b[j+2] == 'u'
					if ok {
						lo, ok = hex4(b, j+3)
					}
					if !ok || lo < 0xDC00 || lo > 0xDFFF {
						return 0, fmt.Errorf("unpaired surrogate escape at byte %d", j-5)
					}
					j += 6
				}
			default:
				return 0, fmt.Errorf("invalid escape at byte %d", j)
			}
		case c < 0x20:
			return 0, fmt.Errorf("control character in string at byte %d", j)
		}
	}
	return 0, fmt.Errorf("unterminated string at byte %d", i)
}

// hex4 reads four hex digits at b[i:].
func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

// skipValue returns the index just past the JSON value starting at i.
func skipValue(b []byte, i, depth int) (int, error) {
	if i >= len(b) {
		return 0, errors.New("missing value")
	}
	if depth > maxDepth {
		return 0, errors.New("nesting too deep")
	}
	switch c := b[i]; c {
	case '"':
		return skipString(b, i)
	case '{', '[':
		closer := byte('}')
		if c == '[' {
			closer = ']'
		}
		i = skipWS(b, i+1)
		if i < len(b) && b[i] == closer {
			return i + 1, nil
		}
		for {
			if c == '{' {
				if i >= len(b) || b[i] != '"' {
					return 0, fmt.Errorf("expected a member name at byte %d", i)
				}
				end, err := skipString(b, i)
				if err != nil {
					return 0, err
				}
				i = skipWS(b, end)
				if i >= len(b) || b[i] != ':' {
					return 0, fmt.Errorf("expected ':' at byte %d", i)
				}
				i = skipWS(b, i+1)
			}
			end, err := skipValue(b, i, depth+1)
			if err != nil {
				return 0, err
			}
			i = skipWS(b, end)
			if i < len(b) && b[i] == ',' {
				i = skipWS(b, i+1)
				continue
			}
			if i < len(b) && b[i] == closer {
				return i + 1, nil
			}
			return 0, fmt.Errorf("expected ',' or '%c' at byte %d", closer, i)
		}
	case 't':
		return literal(b, i, "true")
	case 'f':
		return literal(b, i, "false")
	case 'n':
		return literal(b, i, "null")
	}
	j := i
	for j < len(b) && (b[j] == '-' || b[j] == '+' || b[j] == '.' || b[j] == 'e' || b[j] == 'E' || (b[j] >= '0' && b[j] <= '9')) {
		j++
	}
	if _, ok := parseNumber(b[i:j]); !ok {
		return 0, fmt.Errorf("invalid value at byte %d", i)
	}
	return j, nil
}

func literal(b []byte, i int, lit string) (int, error) {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return 0, fmt.Errorf("invalid literal at byte %d", i)
	}
	return i + len(lit), nil
}
