package dynamodb

import (
	"errors"
	"math"
	"time"
)

// epochNS converts a non-negative JSON number literal counting units since
// the Unix epoch to nanoseconds, where one unit is 10^shift ns. It works on
// the decimal digits, never through float64, so 1.479499740E9 seconds is
// exactly 1479499740000000000 ns; digits finer than a nanosecond are
// truncated.
func epochNS(lit []byte, shift int) (int64, error) {
	i := 0
	neg := false
	if i < len(lit) && lit[i] == '-' {
		neg = true
		i++
	}
	intStart := i
	for i < len(lit) && isDigit(lit[i]) {
		i++
	}
	intDigits := lit[intStart:i]
	var fracDigits []byte
	if i < len(lit) && lit[i] == '.' {
		i++
		s := i
		for i < len(lit) && isDigit(lit[i]) {
			i++
		}
		fracDigits = lit[s:i]
	}
	exp := 0
	if i < len(lit) && (lit[i] == 'e' || lit[i] == 'E') {
		i++
		expNeg := false
		if i < len(lit) && (lit[i] == '+' || lit[i] == '-') {
			expNeg = lit[i] == '-'
			i++
		}
		for ; i < len(lit) && isDigit(lit[i]); i++ {
			if exp < 1_000_000 { // saturate: far beyond any int64 scale
				exp = exp*10 + int(lit[i]-'0')
			}
		}
		if expNeg {
			exp = -exp
		}
	}
	if len(intDigits) == 0 || i != len(lit) {
		return 0, errors.New("not a number")
	}

	// value = digits(int ++ frac) * 10^scale ns
	scale := exp - len(fracDigits) + shift
	total := len(intDigits) + len(fracDigits)
	keep := total // digits that survive truncation below 1 ns
	if scale < 0 {
		keep = total + scale
		scale = 0
	}
	var n uint64
	const limit = math.MaxInt64
	for k := 0; k < keep; k++ {
		var d byte
		if k < len(intDigits) {
			d = intDigits[k]
		} else {
			d = fracDigits[k-len(intDigits)]
		}
		if n > (limit-uint64(d-'0'))/10 {
			return 0, errors.New("out of range of nanoseconds since the Unix epoch")
		}
		n = n*10 + uint64(d-'0')
	}
	for ; scale > 0 && n != 0; scale-- {
		if n > limit/10 {
			return 0, errors.New("out of range of nanoseconds since the Unix epoch")
		}
		n *= 10
	}
	if neg && n != 0 {
		return 0, errors.New("before the Unix epoch")
	}
	return int64(n), nil
}

// The times a CommitNS can hold.
var (
	minTime = time.Unix(0, 0)
	maxTime = time.Unix(0, math.MaxInt64)
)

// parseTime reads an RFC 3339 ApproximateCreationDateTime, as the AWS CLI
// prints it with its ISO 8601 timestamp format.
func parseTime(s []byte) (int64, error) {
	t, err := time.Parse(time.RFC3339Nano, string(s))
	if err != nil {
		return 0, errors.New("ApproximateCreationDateTime " + string(s) + " is neither a number nor an RFC 3339 time")
	}
	if t.Before(minTime) || t.After(maxTime) {
		return 0, errors.New("ApproximateCreationDateTime " + string(s) + " is out of range of nanoseconds since the Unix epoch")
	}
	return t.UnixNano(), nil
}
