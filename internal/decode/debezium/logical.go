package debezium

import (
	"encoding/base64"
	"math/big"
	"strconv"
	"time"

	"github.com/cdcflow/cdcflow/internal/change"
)

// Logical types are only known from the Kafka Connect schema envelope: a
// schemaless record's 1704164645123 may be a timestamp or a plain bigint,
// and its "BNQ=" a decimal or bytes. So conversion happens only when the
// schema says so, and rewrites the image (allocating); everything else
// passes through as written.

type kind uint8

const (
	kindNone kind = iota
	kindTimestampMS
	kindTimestampUS
	kindTimestampNS
	kindDate
	kindTimeMS
	kindTimeUS
	kindTimeNS
	kindDecimal
	kindVariableDecimal
)

// maxScale bounds decimal scales (PostgreSQL numeric allows 16383 digits
// after the point); it keeps a hostile scale from producing huge literals.
const maxScale = 20000

var logicalKinds = map[string]kind{
	"io.debezium.time.Timestamp":              kindTimestampMS,
	"io.debezium.time.MicroTimestamp":         kindTimestampUS,
	"io.debezium.time.NanoTimestamp":          kindTimestampNS,
	"org.apache.kafka.connect.data.Timestamp": kindTimestampMS,
	"io.debezium.time.Date":                   kindDate,
	"org.apache.kafka.connect.data.Date":      kindDate,
	"io.debezium.time.Time":                   kindTimeMS,
	"io.debezium.time.MicroTime":              kindTimeUS,
	"io.debezium.time.NanoTime":               kindTimeNS,
	"org.apache.kafka.connect.data.Time":      kindTimeMS,
	"org.apache.kafka.connect.data.Decimal":   kindDecimal,
	"io.debezium.data.VariableScaleDecimal":   kindVariableDecimal,
}

// column is one column with a convertible logical type.
type column struct {
	name  string
	kind  kind
	scale int // kindDecimal only
}

func findColumn(cols []column, it *members) *column {
	for i := range cols {
		if it.keyIs(cols[i].name) {
			return &cols[i]
		}
	}
	return nil
}

// imageSchemas returns the convertible columns of the before and after
// structs of a value schema ({"type":"struct","fields":[{"field":"before",
// "fields":[...]}, ...]}). path names the schema for errors.
func imageSchemas(schema []byte, path string) (before, after []column, err error) {
	it, ok := enter(schema, 0, 0)
	if !ok {
		return nil, nil, nil // null or not a struct: nothing to convert
	}
	for it.next() {
		if !it.keyIs("fields") {
			it.value()
			continue
		}
		arr, ok := enterArray(it.d, it.i, it.depth)
		if !ok {
			it.value()
			continue
		}
		for f := arr.next(); f != nil; f = arr.next() {
			name, fields := "", []byte(nil)
			m, ok := enter(f, 0, 0)
			if !ok {
				continue
			}
			for m.next() {
				v := m.value()
				switch {
				case m.keyIs("field"):
					if s, ok := stringText(v); ok {
						name = string(s)
					}
				case m.keyIs("fields"):
					fields = v
				}
			}
			if name != "before" && name != "after" {
				continue
			}
			cols, err := structColumns(fields, path+".fields["+name+"]")
			if err != nil {
				return nil, nil, err
			}
			if name == "before" {
				before = cols
			} else {
				after = cols
			}
		}
		if arr.err != nil {
			return nil, nil, arr.err
		}
		it.i = arr.i
	}
	return before, after, it.err
}

// structColumns reads the field schemas of one struct (a JSON array of
// {"field":..,"name":..,"parameters":{..}}) and returns the convertible ones.
func structColumns(fields []byte, path string) ([]column, error) {
	arr, ok := enterArray(fields, 0, 0)
	if !ok {
		return nil, nil
	}
	var cols []column
	for f := arr.next(); f != nil; f = arr.next() {
		m, ok := enter(f, 0, 0)
		if !ok {
			continue
		}
		var c column
		var params []byte
		for m.next() {
			v := m.value()
			switch {
			case m.keyIs("field"):
				if s, ok := stringText(v); ok {
					c.name = string(s)
				}
			case m.keyIs("name"):
				if s, ok := stringText(v); ok {
					c.kind = logicalKinds[string(s)]
				}
			case m.keyIs("parameters"):
				params = v
			}
		}
		if c.kind == kindNone || c.name == "" {
			continue
		}
		if c.kind == kindDecimal {
			scale, ok := paramScale(params)
			if !ok {
				return nil, change.Poisonf(change.ReasonInvalidValue, path+".fields["+c.name+"].parameters.scale",
					"org.apache.kafka.connect.data.Decimal needs an integer scale parameter")
			}
			c.scale = scale
		}
		cols = append(cols, c)
	}
	return cols, arr.err
}

// paramScale reads parameters.scale, which Kafka Connect writes as a string.
func paramScale(params []byte) (int, bool) {
	m, ok := enter(params, 0, 0)
	if !ok {
		return 0, false
	}
	for m.next() {
		v := m.value()
		if !m.keyIs("scale") {
			continue
		}
		if s, ok := stringText(v); ok {
			v = s
		}
		n, ok := parseInt(v)
		if !ok || n < -maxScale || n > maxScale {
			return 0, false
		}
		return int(n), true
	}
	return 0, false
}

// convertImage rewrites the columns of img that have a logical type. It
// returns img itself when nothing changed.
func convertImage(img []byte, cols []column, path string) ([]byte, error) {
	if len(cols) == 0 || img == nil {
		return img, nil
	}
	it, ok := enter(img, 0, 0)
	if !ok {
		return img, nil
	}
	out := make([]byte, 0, len(img)+64)
	out = append(out, '{')
	changed := false
	for n := 0; it.next(); n++ {
		if n > 0 {
			out = append(out, ',')
		}
		out = append(out, it.quoted...)
		out = append(out, ':')
		c := findColumn(cols, &it)
		v := it.value()
		if c == nil || isNull(v) {
			out = append(out, v...)
			continue
		}
		var err error
		if out, err = convertValue(out, v, c); err != nil {
			return nil, change.Poisonf(change.ReasonInvalidValue, path+"."+it.name(), "%s", err.Error())
		}
		changed = true
	}
	if it.err != nil {
		return nil, it.err
	}
	if !changed {
		return img, nil
	}
	return append(out, '}'), nil
}

type convError string

func (e convError) Error() string { return string(e) }

// convertValue appends the converted form of the non-null value v to out.
func convertValue(out, v []byte, c *column) ([]byte, error) {
	switch c.kind {
	case kindTimestampMS, kindTimestampUS, kindTimestampNS:
		n, ok := parseInt(v)
		if !ok {
			return nil, convError("timestamp must be an integer, got " + clip(v))
		}
		var t time.Time
		layout := `"2006-01-02T15:04:05.000Z"`
		switch c.kind {
		case kindTimestampMS:
			t = time.UnixMilli(n)
		case kindTimestampUS:
			t, layout = time.UnixMicro(n), `"2006-01-02T15:04:05.000000Z"`
		default:
			t, layout = time.Unix(0, n), `"2006-01-02T15:04:05.000000000Z"`
		}
		return t.UTC().AppendFormat(out, layout), nil
	case kindDate:
		n, ok := parseInt(v)
		if !ok || n < -1<<31 || n >= 1<<31 {
			return nil, convError("date must be an int32 day count, got " + clip(v))
		}
		return time.Unix(n*86400, 0).UTC().AppendFormat(out, `"2006-01-02"`), nil
	case kindTimeMS, kindTimeUS, kindTimeNS:
		n, ok := parseInt(v)
		if !ok || n < 0 {
			return nil, convError("time must be a non-negative integer, got " + clip(v))
		}
		return appendTime(out, n, c.kind), nil
	case kindDecimal:
		b, err := decodeBytes(v)
		if err != nil {
			return nil, err
		}
		return appendDecimal(out, b, c.scale), nil
	case kindVariableDecimal:
		return appendVariableDecimal(out, v)
	}
	return append(out, v...), nil
}

// appendTime writes a time of day as "HH:MM:SS" plus the source precision;
// PostgreSQL's 24:00:00 stays 24:00:00.
func appendTime(out []byte, n int64, k kind) []byte {
	unit, digits := int64(1000), 3
	switch k {
	case kindTimeUS:
		unit, digits = 1000000, 6
	case kindTimeNS:
		unit, digits = 1000000000, 9
	}
	secs, frac := n/unit, n%unit
	out = append(out, '"')
	out = appendPad(out, secs/3600, 2)
	out = append(out, ':')
	out = appendPad(out, secs/60%60, 2)
	out = append(out, ':')
	out = appendPad(out, secs%60, 2)
	out = append(out, '.')
	out = appendPad(out, frac, digits)
	return append(out, '"')
}

func appendPad(out []byte, n int64, width int) []byte {
	var buf [20]byte
	d := strconv.AppendInt(buf[:0], n, 10)
	for i := len(d); i < width; i++ {
		out = append(out, '0')
	}
	return append(out, d...)
}

// decodeBytes decodes a Kafka Connect bytes value (a base64 JSON string).
func decodeBytes(v []byte) ([]byte, error) {
	s, ok := stringText(v)
	if !ok {
		return nil, convError("decimal must be a base64 string, got " + clip(v))
	}
	b := make([]byte, base64.StdEncoding.DecodedLen(len(s)))
	n, err := base64.StdEncoding.Decode(b, s)
	if err != nil {
		return nil, convError("decimal is not valid base64: " + err.Error())
	}
	return b[:n], nil
}

// appendVariableDecimal converts {"scale":s,"value":base64}.
func appendVariableDecimal(out, v []byte) ([]byte, error) {
	m, ok := enter(v, 0, 0)
	if !ok {
		return nil, convError(`VariableScaleDecimal must be {"scale":..,"value":..}, got ` + clip(v))
	}
	var scale, value []byte
	for m.next() {
		x := m.value()
		switch {
		case m.keyIs("scale"):
			scale = x
		case m.keyIs("value"):
			value = x
		}
	}
	s, ok := parseInt(scale)
	if !ok || s < -maxScale || s > maxScale {
		return nil, convError("VariableScaleDecimal scale must be an integer, got " + clip(scale))
	}
	b, err := decodeBytes(value)
	if err != nil {
		return nil, err
	}
	return appendDecimal(out, b, int(s)), nil
}

// appendDecimal writes the big-endian two's complement unscaled value b with
// the given scale as a JSON number with exactly that many fraction digits.
func appendDecimal(out, b []byte, scale int) []byte {
	n := new(big.Int).SetBytes(b)
	if len(b) > 0 && b[0]&0x80 != 0 {
		n.Sub(n, new(big.Int).Lsh(big.NewInt(1), uint(8*len(b))))
	}
	if n.Sign() < 0 {
		out = append(out, '-')
		n.Neg(n)
	}
	digits := n.Append(nil, 10)
	switch {
	case scale <= 0:
		out = append(out, digits...)
		if n.Sign() != 0 {
			for i := 0; i < -scale; i++ {
				out = append(out, '0')
			}
		}
	case len(digits) <= scale:
		out = append(out, '0', '.')
		for i := len(digits); i < scale; i++ {
			out = append(out, '0')
		}
		out = append(out, digits...)
	default:
		out = append(out, digits[:len(digits)-scale]...)
		out = append(out, '.')
		out = append(out, digits[len(digits)-scale:]...)
	}
	return out
}

// clip shortens a value for an error message.
func clip(v []byte) string {
	if len(v) > 40 {
		return string(v[:40]) + "..."
	}
	return string(v)
}
