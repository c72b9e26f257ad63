package sqlgen

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"
)

// DecimalValue is an exact decimal: Unscaled * 10^-Scale.
type DecimalValue struct {
	Unscaled *big.Int
	Scale    int
}

// String renders d in plain notation ("12.50").
func (d DecimalValue) String() string {
	s := new(big.Int).Abs(d.Unscaled).String()
	neg := d.Unscaled.Sign() < 0
	if d.Scale > 0 {
		if len(s) <= d.Scale {
			s = strings.Repeat("0", d.Scale-len(s)+1) + s
		}
		s = s[:len(s)-d.Scale] + "." + s[len(s)-d.Scale:]
	}
	if neg {
		s = "-" + s
	}
	return s
}

// ErrNotRepresentable is wrapped by Convert when a value does not fit a type.
var ErrNotRepresentable = errors.New("value does not fit the column type")

// Infer returns the narrowest type of a raw JSON value, and false for null
// (which has no type and fits every column).
//
//	integer fitting 64 bits       -> BIGINT
//	other plain number            -> DECIMAL(18|38, fraction digits), DOUBLE beyond 38 digits
//	number with an exponent       -> DOUBLE
//	true / false                  -> BOOLEAN
//	RFC 3339 date-time string     -> TIMESTAMP
//	other string                  -> VARCHAR
//	object or array               -> JSON
func Infer(raw []byte) (Type, bool) {
	if len(raw) == 0 {
		return Type{}, false
	}
	switch raw[0] {
	case 'n':
		return Type{}, false
	case 't', 'f':
		return TBoolean, true
	case '{', '[':
		return TJSON, true
	case '"':
		if s, ok := simpleString(raw); ok && looksRFC3339(s) {
			if _, err := parseRFC3339(s); err == nil {
				return TTimestamp, true
			}
		}
		return TVarchar, true
	}
	n, ok := parseNumber(raw)
	if !ok {
		return TVarchar, true
	}
	if n.exp {
		return TDouble, true
	}
	if len(n.frac) == 0 && fitsInt64(n) {
		return TBigInt, true
	}
	return decimalFor(len(n.intPart), len(n.frac)), true
}

// Convert turns a raw JSON value into the Go value stored in a column of
// type t: int64 (BIGINT, INTEGER), float64 (DOUBLE), DecimalValue, bool,
// time.Time in UTC (TIMESTAMP, TIMESTAMPTZ, DATE), string (VARCHAR) or
// json.RawMessage (JSON). JSON null converts to nil for every type.
//
// Strict conversion (lenient false) accepts exactly the values whose inferred
// type t already holds, so a strict failure means the column must widen.
// Lenient conversion, used for types pinned by configuration, also parses
// strings ("42" into BIGINT, "12.50" into DECIMAL, "2024-01-02 03:04:05" into
// TIMESTAMP). Failures wrap ErrNotRepresentable and name the type.
func Convert(t Type, raw []byte, lenient bool) (any, error) {
	if len(raw) == 0 || raw[0] == 'n' {
		return nil, nil
	}
	switch t.Kind {
	case Varchar:
		if raw[0] == '"' {
			return unquote(raw)
		}
		if raw[0] == '{' || raw[0] == '[' {
			var b bytes.Buffer
			if err := json.Compact(&b, raw); err == nil {
				return b.String(), nil
			}
		}
		return string(raw), nil
	case JSON:
		return json.RawMessage(raw), nil
	}
	text := raw
	if raw[0] == '"' {
		if !lenient && t.Kind != Timestamp {
			return nil, notFit(t, raw)
		}
		s, err := unquote(raw)
		if err != nil {
			return nil, err
		}
		text = []byte(strings.TrimSpace(s))
	}
	switch t.Kind {
	case BigInt, Integer:
		v, err := strconv.ParseInt(string(text), 10, 64)
		if err != nil {
			if d, ok := exactDecimal(text, 0); ok && d.Unscaled.IsInt64() && lenient {
				v, err = d.Unscaled.Int64(), nil
			}
		}
		if err != nil || (t.Kind == Integer && (v < math.MinInt32 || v > math.MaxInt32)) {
			return nil, notFit(t, raw)
		}
		return v, nil
	case Double:
		if _, ok := parseNumber(text); !ok {
			return nil, notFit(t, raw)
		}
		v, err := strconv.ParseFloat(string(text), 64)
		if err != nil {
			return nil, notFit(t, raw)
		}
		return v, nil
	case Decimal:
		d, ok := exactDecimal(text, t.Scale)
		if !ok || len(new(big.Int).Abs(d.Unscaled).String()) > t.Precision {
			return nil, notFit(t, raw)
		}
		return d, nil
	case Boolean:
		switch string(text) {
		case "true":
			return true, nil
		case "false":
			return false, nil
		}
		return nil, notFit(t, raw)
	case Timestamp, TimestampTZ:
		if raw[0] != '"' {
			return nil, notFit(t, raw)
		}
		ts, err := parseRFC3339(string(text))
		if err != nil && lenient {
			ts, err = parseLooseTime(string(text))
		}
		if err != nil {
			return nil, notFit(t, raw)
		}
		return ts, nil
	case Date:
		if raw[0] != '"' {
			return nil, notFit(t, raw)
		}
		if d, err := time.Parse(time.DateOnly, string(text)); err == nil {
			return d, nil
		}
		ts, err := parseRFC3339(string(text))
		if err != nil {
			return nil, notFit(t, raw)
		}
		y, m, d := ts.Date()
		return time.Date(y, m, d, 0, 0, 0, 0, time.UTC), nil
	}
	return nil, fmt.Errorf("convert to %s: unsupported type", t)
}

func notFit(t Type, raw []byte) error {
	s := string(raw)
	if len(s) > 64 {
		s = s[:61] + "..."
	}
	return fmt.Errorf("%w: %s cannot hold %s", ErrNotRepresentable, t, s)
}

// number is a JSON number split into its parts.
type number struct {
	neg     bool
	intPart []byte // digits before the point, without leading zeros (empty for 0)
	frac    []byte // digits after the point, trailing zeros kept
	exp     bool   // has an exponent
}

// parseNumber checks the JSON number grammar.
func parseNumber(b []byte) (number, bool) {
	var n number
	i := 0
	if i < len(b) && b[i] == '-' {
		n.neg = true
		i++
	}
	start := i
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	if i == start || (b[start] == '0' && i-start > 1) {
		return n, false
	}
	n.intPart = bytes.TrimLeft(b[start:i], "0")
	if i < len(b) && b[i] == '.' {
		i++
		fs := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == fs {
			return n, false
		}
		n.frac = b[fs:i]
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		n.exp = true
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		es := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == es {
			return n, false
		}
	}
	return n, i == len(b)
}

// fitsInt64 reports whether an integer number fits in 64 bits.
func fitsInt64(n number) bool {
	const maxAbs = "9223372036854775807"
	switch {
	case len(n.frac) > 0 || n.exp:
		return false
	case len(n.intPart) < len(maxAbs):
		return true
	case len(n.intPart) > len(maxAbs):
		return false
	}
	c := bytes.Compare(n.intPart, []byte(maxAbs))
	return c <= 0 || (n.neg && string(n.intPart) == "9223372036854775808")
}

// Fits reports whether strict Convert(t, raw) succeeds, that is whether a
// column of type t holds the value without widening. It does not allocate
// for the common kinds.
func Fits(t Type, raw []byte) bool {
	if len(raw) == 0 || raw[0] == 'n' {
		return true
	}
	switch t.Kind {
	case Varchar, JSON:
		return true
	case BigInt:
		n, ok := parseNumber(raw)
		return ok && fitsInt64(n)
	case Double:
		_, ok := parseNumber(raw)
		return ok
	case Decimal:
		n, ok := parseNumber(raw)
		if !ok {
			return false
		}
		if n.exp {
			break // rare: let Convert decide exactly
		}
		frac := bytes.TrimRight(n.frac, "0")
		return len(frac) <= t.Scale && len(n.intPart) <= t.Precision-t.Scale
	case Boolean:
		return string(raw) == "true" || string(raw) == "false"
	case Timestamp:
		if raw[0] != '"' {
			return false
		}
		s, ok := simpleString(raw)
		if !ok || !looksRFC3339(s) {
			return false
		}
		_, err := time.Parse(time.RFC3339Nano, s)
		return err == nil
	}
	_, err := Convert(t, raw, false)
	return err == nil
}

// exactDecimal parses a JSON number as a decimal with exactly scale fraction
// digits, failing when that would drop non-zero digits.
func exactDecimal(b []byte, scale int) (DecimalValue, bool) {
	n, ok := parseNumber(b)
	if !ok {
		return DecimalValue{}, false
	}
	var digits string
	if n.exp {
		r, ok := new(big.Rat).SetString(string(b))
		if !ok {
			return DecimalValue{}, false
		}
		r.Mul(r, new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(scale)), nil)))
		if !r.IsInt() {
			return DecimalValue{}, false
		}
		return DecimalValue{Unscaled: new(big.Int).Set(r.Num()), Scale: scale}, true
	}
	frac := string(n.frac)
	if len(frac) > scale {
		if strings.Trim(frac[scale:], "0") != "" {
			return DecimalValue{}, false
		}
		frac = frac[:scale]
	}
	digits = string(n.intPart) + frac + strings.Repeat("0", scale-len(frac))
	v := new(big.Int)
	if digits != "" {
		if _, ok := v.SetString(digits, 10); !ok {
			return DecimalValue{}, false
		}
	}
	if n.neg {
		v.Neg(v)
	}
	return DecimalValue{Unscaled: v, Scale: scale}, true
}

// simpleString returns the content of a JSON string without escapes.
func simpleString(raw []byte) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' || bytes.IndexByte(raw, '\\') >= 0 {
		return "", false
	}
	return string(raw[1 : len(raw)-1]), true
}

func unquote(raw []byte) (string, error) {
	if s, ok := simpleString(raw); ok {
		return s, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fmt.Errorf("invalid JSON string %.40q: %w", raw, err)
	}
	return s, nil
}

// looksRFC3339 is a cheap filter before parsing: "dddd-dd-ddTdd:dd:dd".
func looksRFC3339(s string) bool {
	if len(s) < 20 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') || s[13] != ':' {
		return false
	}
	last := s[len(s)-1]
	return last == 'Z' || last == 'z' || (last >= '0' && last <= '9')
}

func parseRFC3339(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, err
	}
	return t.UTC(), nil
}

// parseLooseTime reads "YYYY-MM-DD HH:MM:SS[.fraction][offset]" and date-only
// strings; values without an offset are UTC.
func parseLooseTime(s string) (time.Time, error) {
	for _, layout := range []string{"2006-01-02 15:04:05.999999999Z07:00", "2006-01-02 15:04:05.999999999Z07", "2006-01-02 15:04:05.999999999", "2006-01-02T15:04:05.999999999", time.DateOnly} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("not a timestamp: %q", s)
}
