package debezium

import (
	"math/big"
	"testing"
)

// twos returns the minimal big-endian two's complement bytes of n.
func twos(n *big.Int) []byte {
	if n.Sign() >= 0 {
		b := n.Bytes()
		if len(b) == 0 || b[0]&0x80 != 0 {
			b = append([]byte{0}, b...)
		}
		return b
	}
	// -n-1 in ones' complement.
	m := new(big.Int).Neg(n)
	m.Sub(m, big.NewInt(1))
	b := m.Bytes()
	if len(b) == 0 || b[0]&0x80 != 0 {
		b = append([]byte{0}, b...)
	}
	for i := range b {
		b[i] = ^b[i]
	}
	return b
}

func TestAppendDecimal(t *testing.T) {
	tests := []struct {
		unscaled string
		scale    int
		want     string
	}{
		{"1250", 2, "12.50"},
		{"-1250", 2, "-12.50"},
		{"0", 2, "0.00"},
		{"0", 0, "0"},
		{"0", -3, "0"},
		{"-5", 2, "-0.05"},
		{"5", 5, "0.00005"},
		{"-128", 0, "-128"},
		{"127", 0, "127"},
		{"128", 0, "128"},
		{"-129", 1, "-12.9"},
		{"12", -3, "12000"},
		{"-12", -1, "-120"},
		{"123456789012345678901234567890123456789", 38, "1.23456789012345678901234567890123456789"},
		{"-99999999999999999999999999999999999999999999", 40, "-9999.9999999999999999999999999999999999999999"},
		{"1", 40, "0.0000000000000000000000000000000000000001"},
	}
	for _, tt := range tests {
		n, _ := new(big.Int).SetString(tt.unscaled, 10)
		got := string(appendDecimal(nil, twos(n), tt.scale))
		if got != tt.want {
			t.Errorf("appendDecimal(%s, scale %d) = %s, want %s", tt.unscaled, tt.scale, got, tt.want)
		}
	}
	if got := string(appendDecimal(nil, nil, 2)); got != "0.00" {
		t.Errorf("empty bytes = %s, want 0.00", got)
	}
}

func TestConvertValue(t *testing.T) {
	tests := []struct {
		kind  kind
		scale int
		in    string
		want  string // "" means an error
	}{
		{kindTimestampMS, 0, "0", `"1970-01-01T00:00:00.000Z"`},
		{kindTimestampMS, 0, "-1", `"1969-12-31T23:59:59.999Z"`},
		{kindTimestampUS, 0, "1704164645000001", `"2024-01-02T03:04:05.000001Z"`},
		{kindTimestampNS, 0, "1704164645000000001", `"2024-01-02T03:04:05.000000001Z"`},
		{kindTimestampMS, 0, "1.5", ""},
		{kindTimestampMS, 0, `"2024"`, ""},
		{kindDate, 0, "19724", `"2024-01-02"`},
		{kindDate, 0, "-719162", `"0001-01-01"`},
		{kindDate, 0, "4294967296", ""},
		{kindTimeMS, 0, "0", `"00:00:00.000"`},
		{kindTimeUS, 0, "86399999999", `"23:59:59.999999"`},
		{kindTimeNS, 0, "-1", ""},
		{kindDecimal, 2, `"BOI="`, "12.50"},
		{kindDecimal, 2, `"BOI"`, ""},
		{kindDecimal, 2, `12`, ""},
		{kindVariableDecimal, 0, `{"scale":2,"value":"+x4="}`, "-12.50"},
		{kindVariableDecimal, 0, `{"value":"+x4="}`, ""},
		{kindVariableDecimal, 0, `{"scale":99999999,"value":"+x4="}`, ""},
		{kindVariableDecimal, 0, `"x"`, ""},
	}
	for _, tt := range tests {
		c := column{name: "c", kind: tt.kind, scale: tt.scale}
		got, err := convertValue(nil, []byte(tt.in), &c)
		switch {
		case tt.want == "" && err == nil:
			t.Errorf("kind %d %s: got %s, want an error", tt.kind, tt.in, got)
		case tt.want != "" && (err != nil || string(got) != tt.want):
			t.Errorf("kind %d %s: got %s, %v; want %s", tt.kind, tt.in, got, err, tt.want)
		}
	}
}
