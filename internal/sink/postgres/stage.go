package postgres

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/big"
	"time"

	"github.com/cdcflow/cdcflow/internal/sqlgen"
)

// Staged rows (merged-table values) are encoded in binary COPY format
// straight from the images' raw JSON: integers, booleans, simple strings,
// JSON documents and plain decimal numbers without going through
// sqlgen.Convert's boxed Go values; everything else (pinned lenient
// conversions, timestamps, doubles) through Convert.

// rowReader streams n rows of a binary COPY, encoding row i with encode.
type rowReader struct {
	n      int
	encode func(i int, b []byte) ([]byte, error)
	next   int
	buf    []byte
	off    int
	done   bool
	err    error // the encoding error that ended the stream
}

func newRowReader(n int, encode func(i int, b []byte) ([]byte, error)) *rowReader {
	return &rowReader{n: n, encode: encode, buf: append(make([]byte, 0, 96<<10), copyHeader...)}
}

func (r *rowReader) Read(dst []byte) (int, error) {
	if r.off > 0 {
		n := copy(r.buf, r.buf[r.off:])
		r.buf, r.off = r.buf[:n], 0
	}
	for !r.done && len(r.buf) < len(dst) {
		if r.next >= r.n {
			r.buf = append(r.buf, copyTrailer...)
			r.done = true
			break
		}
		b, err := r.encode(r.next, r.buf)
		if err != nil {
			r.err = err
			return 0, err
		}
		r.buf = b
		r.next++
	}
	if r.off == len(r.buf) {
		return 0, io.EOF
	}
	n := copy(dst, r.buf[r.off:])
	r.off += n
	return n, nil
}

// appendValue appends the binary COPY field holding the raw JSON value raw
// in a column of type t (pinned: converted leniently). JSON null is NULL.
func appendValue(b []byte, t sqlgen.Type, raw []byte, pinned bool) ([]byte, error) {
	if len(raw) == 0 || raw[0] == 'n' {
		return appendNull(b), nil
	}
	switch t.Kind {
	case sqlgen.BigInt, sqlgen.Integer:
		if v, ok := plainInt(raw); ok && (t.Kind == sqlgen.BigInt || (v >= math.MinInt32 && v <= math.MaxInt32)) {
			return appendIntKind(b, t, v), nil
		}
	case sqlgen.Boolean:
		switch string(raw) {
		case "true":
			return append(appendInt32(b, 1), 1), nil
		case "false":
			return append(appendInt32(b, 1), 0), nil
		}
	case sqlgen.Varchar:
		if s, ok := simpleJSONString(raw); ok {
			return appendTextBytes(b, s), nil
		}
	case sqlgen.JSON:
		return appendJSONB(b, raw), nil
	case sqlgen.Decimal:
		if neg, ip, fp, ok := plainDecimal(raw); ok {
			return appendNumeric(b, neg, ip, fp, t.Scale), nil
		}
	}
	v, err := sqlgen.Convert(t, raw, pinned)
	if err != nil {
		return b, err
	}
	switch x := v.(type) {
	case nil:
		return appendNull(b), nil
	case int64:
		return appendIntKind(b, t, x), nil
	case float64:
		b = appendInt32(b, 8)
		return binary.BigEndian.AppendUint64(b, math.Float64bits(x)), nil
	case bool:
		if x {
			return append(appendInt32(b, 1), 1), nil
		}
		return append(appendInt32(b, 1), 0), nil
	case string:
		return appendText(b, x), nil
	case json.RawMessage:
		return appendJSONB(b, x), nil
	case sqlgen.DecimalValue:
		return appendDecimalValue(b, x, t.Scale), nil
	case time.Time:
		if t.Kind == sqlgen.Date {
			days := x.Unix() / 86400
			if x.Unix() < 0 && x.Unix()%86400 != 0 {
				days--
			}
			b = appendInt32(b, 4)
			return appendInt32(b, int32(days-10957)), nil // 10957: days from 1970-01-01 to 2000-01-01
		}
		return appendTimestamp(b, x), nil
	}
	return b, fmt.Errorf("encode %T for %s", v, t)
}

func appendIntKind(b []byte, t sqlgen.Type, v int64) []byte {
	if t.Kind == sqlgen.Integer {
		b = appendInt32(b, 4)
		return appendInt32(b, int32(v))
	}
	return appendInt8(b, v)
}

// appendTextBytes appends a text field from bytes (made storable like appendText).
func appendTextBytes(b []byte, s []byte) []byte {
	at := len(b)
	b = appendInt32(b, int32(len(s)))
	b = append(b, s...)
	if field := b[at+4:]; !storableBytes(field) {
		clean := cleanText(string(field))
		b = appendInt32(b[:at], int32(len(clean)))
		b = append(b, clean...)
	}
	return b
}

// plainInt parses an unquoted JSON integer that fits 64 bits.
func plainInt(raw []byte) (int64, bool) {
	i, neg := 0, false
	if raw[0] == '-' {
		neg, i = true, 1
	}
	if i >= len(raw) || len(raw)-i > 19 {
		return 0, false
	}
	var u uint64
	for ; i < len(raw); i++ {
		c := raw[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		u = u*10 + uint64(c-'0')
	}
	if neg {
		if u > 1<<63 {
			return 0, false
		}
		return -int64(u), true
	}
	if u > math.MaxInt64 {
		return 0, false
	}
	return int64(u), true
}

// simpleJSONString returns the content of a JSON string without escapes.
func simpleJSONString(raw []byte) ([]byte, bool) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return nil, false
	}
	s := raw[1 : len(raw)-1]
	for _, c := range s {
		if c == '\\' || c == '"' {
			return nil, false
		}
	}
	return s, true
}

// plainDecimal splits an unquoted JSON number without exponent into sign,
// integer digits (leading zeros removed) and fraction digits.
func plainDecimal(raw []byte) (neg bool, ip, fp []byte, ok bool) {
	i := 0
	if raw[0] == '-' {
		neg, i = true, 1
	}
	start := i
	for i < len(raw) && raw[i] >= '0' && raw[i] <= '9' {
		i++
	}
	if i == start {
		return false, nil, nil, false
	}
	ip = raw[start:i]
	for len(ip) > 0 && ip[0] == '0' {
		ip = ip[1:]
	}
	if i < len(raw) {
		if raw[i] != '.' {
			return false, nil, nil, false
		}
		i++
		fs := i
		for i < len(raw) && raw[i] >= '0' && raw[i] <= '9' {
			i++
		}
		if i == fs || i != len(raw) {
			return false, nil, nil, false
		}
		fp = raw[fs:i]
	}
	return neg, ip, fp, true
}

// appendDecimalValue appends d (whose scale is at most scale) as numeric.
func appendDecimalValue(b []byte, d sqlgen.DecimalValue, scale int) []byte {
	var buf [48]byte
	digits := new(big.Int).Abs(d.Unscaled).Append(buf[:0], 10)
	neg := d.Unscaled.Sign() < 0
	var ip, fp []byte
	if len(digits) > d.Scale {
		ip, fp = digits[:len(digits)-d.Scale], digits[len(digits)-d.Scale:]
	} else {
		fp = make([]byte, d.Scale)
		for i := range fp {
			fp[i] = '0'
		}
		copy(fp[d.Scale-len(digits):], digits)
	}
	for len(ip) > 0 && ip[0] == '0' {
		ip = ip[1:]
	}
	return appendNumeric(b, neg, ip, fp, scale)
}

// appendNumeric appends a numeric field in PostgreSQL's binary format (base
// 10000 digits, weight, sign, display scale) for the decimal
// [-]ip.fp shown with dscale fraction digits. Fraction digits beyond
// dscale must be zeros (the caller checked the value fits).
func appendNumeric(b []byte, neg bool, ip, fp []byte, dscale int) []byte {
	if len(fp) > dscale {
		fp = fp[:dscale]
	}
	var groups [64]int16
	g := groups[:0]
	// Integer part, grouped from the decimal point leftwards.
	lead := (4 - len(ip)%4) % 4
	acc, n := 0, lead
	for _, c := range ip {
		acc = acc*10 + int(c-'0')
		n++
		if n == 4 {
			g = append(g, int16(acc))
			acc, n = 0, 0
		}
	}
	weight := len(g) - 1
	// Fraction part, grouped from the decimal point rightwards.
	acc, n = 0, 0
	for _, c := range fp {
		acc = acc*10 + int(c-'0')
		n++
		if n == 4 {
			g = append(g, int16(acc))
			acc, n = 0, 0
		}
	}
	if n > 0 {
		for ; n < 4; n++ {
			acc *= 10
		}
		g = append(g, int16(acc))
	}
	for len(g) > 0 && g[0] == 0 {
		g = g[1:]
		weight--
	}
	for len(g) > 0 && g[len(g)-1] == 0 {
		g = g[:len(g)-1]
	}
	sign := uint16(0)
	if len(g) == 0 {
		weight = 0
	} else if neg {
		sign = 0x4000
	}
	b = appendInt32(b, int32(8+2*len(g)))
	b = appendInt16(b, int16(len(g)))
	b = appendInt16(b, int16(weight))
	b = binary.BigEndian.AppendUint16(b, sign)
	b = appendInt16(b, int16(dscale))
	for _, d := range g {
		b = appendInt16(b, d)
	}
	return b
}
