package sqlgen

import (
	"fmt"
	"strconv"
	"strings"
)

// Kind is a merged-table column type, independent of dialect.
type Kind uint8

// The column kinds. Inference produces BigInt, Decimal, Double, Varchar,
// Boolean, Timestamp and JSON; Integer, TimestampTZ and Date are only used
// when configured (pinned).
const (
	Unknown Kind = iota
	BigInt
	Integer
	Decimal
	Double
	Varchar
	Boolean
	Timestamp
	TimestampTZ
	Date
	JSON
)

// MaxDecimalPrecision is the widest DECIMAL inferred; wider numbers become DOUBLE.
const MaxDecimalPrecision = 38

// Type is a column type: a Kind and, for Decimal, its precision and scale.
type Type struct {
	Kind      Kind
	Precision int // Decimal only: total digits, 1..38
	Scale     int // Decimal only: fraction digits, 0..Precision
}

// Common types.
var (
	TBigInt    = Type{Kind: BigInt}
	TDouble    = Type{Kind: Double}
	TVarchar   = Type{Kind: Varchar}
	TBoolean   = Type{Kind: Boolean}
	TTimestamp = Type{Kind: Timestamp}
	TJSON      = Type{Kind: JSON}
)

// DecimalType returns DECIMAL(p,s).
func DecimalType(p, s int) Type { return Type{Kind: Decimal, Precision: p, Scale: s} }

// String renders t in the canonical (DuckDB) spelling, which is also what
// ParseType reads back and what the column registry stores.
func (t Type) String() string {
	switch t.Kind {
	case BigInt:
		return "BIGINT"
	case Integer:
		return "INTEGER"
	case Decimal:
		return "DECIMAL(" + strconv.Itoa(t.Precision) + "," + strconv.Itoa(t.Scale) + ")"
	case Double:
		return "DOUBLE"
	case Varchar:
		return "VARCHAR"
	case Boolean:
		return "BOOLEAN"
	case Timestamp:
		return "TIMESTAMP"
	case TimestampTZ:
		return "TIMESTAMPTZ"
	case Date:
		return "DATE"
	case JSON:
		return "JSON"
	}
	return "UNKNOWN"
}

var typeNames = map[string]Type{
	"BIGINT": TBigInt, "INT8": TBigInt, "LONG": TBigInt,
	"INTEGER": {Kind: Integer}, "INT": {Kind: Integer}, "INT4": {Kind: Integer},
	"DOUBLE": TDouble, "DOUBLE PRECISION": TDouble, "FLOAT8": TDouble,
	"VARCHAR": TVarchar, "TEXT": TVarchar, "STRING": TVarchar,
	"BOOLEAN": TBoolean, "BOOL": TBoolean,
	"TIMESTAMP": TTimestamp, "TIMESTAMP WITHOUT TIME ZONE": TTimestamp,
	"TIMESTAMPTZ": {Kind: TimestampTZ}, "TIMESTAMP WITH TIME ZONE": {Kind: TimestampTZ},
	"DATE": {Kind: Date},
	"JSON": TJSON, "JSONB": TJSON,
}

// ParseType reads a type name as written in configuration (case-insensitive,
// common aliases such as TEXT, INT, NUMERIC(p,s), JSONB accepted).
func ParseType(s string) (Type, error) {
	u := strings.Join(strings.Fields(strings.ToUpper(s)), " ")
	if t, ok := typeNames[u]; ok {
		return t, nil
	}
	for _, prefix := range []string{"DECIMAL", "NUMERIC"} {
		rest, ok := strings.CutPrefix(u, prefix)
		if !ok {
			continue
		}
		rest = strings.TrimSpace(rest)
		if rest == "" {
			return DecimalType(18, 3), nil
		}
		if !strings.HasPrefix(rest, "(") || !strings.HasSuffix(rest, ")") {
			break
		}
		parts := strings.Split(rest[1:len(rest)-1], ",")
		if len(parts) > 2 {
			break
		}
		p, err := strconv.Atoi(strings.TrimSpace(parts[0]))
		if err != nil {
			break
		}
		sc := 0
		if len(parts) == 2 {
			if sc, err = strconv.Atoi(strings.TrimSpace(parts[1])); err != nil {
				break
			}
		}
		if p < 1 || p > MaxDecimalPrecision || sc < 0 || sc > p {
			return Type{}, fmt.Errorf("type %q: precision must be 1..%d and scale 0..precision", s, MaxDecimalPrecision)
		}
		return DecimalType(p, sc), nil
	}
	return Type{}, fmt.Errorf("unknown column type %q (want BIGINT, INTEGER, DOUBLE, DECIMAL(p,s), VARCHAR, BOOLEAN, TIMESTAMP, TIMESTAMPTZ, DATE or JSON)", s)
}

func (t Type) numeric() bool {
	return t.Kind == BigInt || t.Kind == Integer || t.Kind == Decimal || t.Kind == Double
}

// asDecimal describes an integer kind as the decimal that holds all its values.
func (t Type) asDecimal() (intDigits, scale int) {
	switch t.Kind {
	case BigInt:
		return 19, 0
	case Integer:
		return 10, 0
	}
	return t.Precision - t.Scale, t.Scale
}

// decimalFor returns the decimal type for intDigits integer and scale fraction
// digits, rounded up to precision 18 (fits 64 bits) or 38, or DOUBLE when no
// decimal holds it.
func decimalFor(intDigits, scale int) Type {
	p := max(intDigits, 1) + scale
	switch {
	case p <= 18:
		return DecimalType(18, scale)
	case p <= MaxDecimalPrecision:
		return DecimalType(MaxDecimalPrecision, scale)
	}
	return TDouble
}

// Widen returns the narrowest type that holds every value of a and of b: the
// join of the type lattice
//
//	BIGINT < DECIMAL(p,s) < DOUBLE < VARCHAR
//	BOOLEAN < VARCHAR, TIMESTAMP < VARCHAR
//	JSON and VARCHAR absorb everything: a value of another type is stored as
//	its JSON (JSON) or its text (VARCHAR).
//
// Unknown is the bottom: Widen(Unknown, t) == t.
func Widen(a, b Type) Type {
	switch {
	case a == b:
		return a
	case a.Kind == Unknown:
		return b
	case b.Kind == Unknown:
		return a
	case a.Kind == Varchar || b.Kind == Varchar:
		return TVarchar
	case a.Kind == JSON || b.Kind == JSON:
		return TJSON
	case a.numeric() && b.numeric():
		if a.Kind == Double || b.Kind == Double {
			return TDouble
		}
		ai, as := a.asDecimal()
		bi, bs := b.asDecimal()
		if a.Kind != Decimal && b.Kind != Decimal { // two integer kinds
			return TBigInt
		}
		return decimalFor(max(ai, bi), max(as, bs))
	}
	return TVarchar
}
