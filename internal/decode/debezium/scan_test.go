package debezium

import (
	"encoding/json"
	"testing"
	"unicode/utf8"
)

var validCases = []string{
	`{}`, `[]`, `""`, `0`, `-0`, `1.5e10`, `-1E-2`, `true`, `false`, `null`,
	` {"a" : [1, 2.0, {"b":null}] , "c":"\u00e9\n\"\\\/"} `, `"é😀"`, `[[[[]]]]`, `{"":""}`,
}

var invalidCases = []string{
	``, ` `, `{`, `}`, `{"a"}`, `{"a":}`, `{"a":1,}`, `[1,]`, `[,1]`, `01`, `1.`, `.5`, `1e`, `-`, `+1`,
	`tru`, `nul`, `"abc`, `"\x"`, `"\u12"`, "\"a\x01b\"", "\"\xff\"", `{"a":1}}`, `{"a":1} 2`, `[1 2]`, `{1:2}`,
	`NaN`, `"\ud800` + "\xed\xa0\x80" + `"`,
}

func TestValid(t *testing.T) {
	for _, s := range validCases {
		if !valid([]byte(s)) {
			t.Errorf("valid(%q) = false", s)
		}
	}
	for _, s := range invalidCases {
		if valid([]byte(s)) {
			t.Errorf("valid(%q) = true", s)
		}
	}
	deep := make([]byte, 0, 2*maxDepth+2)
	for i := 0; i <= maxDepth; i++ {
		deep = append(deep, '[')
	}
	for i := 0; i <= maxDepth; i++ {
		deep = append(deep, ']')
	}
	if valid(deep) {
		t.Error("nesting deeper than maxDepth accepted")
	}
}

// FuzzValid checks the scanner against encoding/json: it accepts exactly
// what json.Valid accepts, except strings that are not UTF-8, which it
// rejects (RFC 8259 requires UTF-8; databases refuse it).
func FuzzValid(f *testing.F) {
	for _, s := range append(validCases, invalidCases...) {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, want := valid(data), json.Valid(data)
		if got && !want {
			t.Fatalf("valid(%q) = true, json.Valid = false", data)
		}
		if !got && want && utf8.Valid(data) {
			t.Fatalf("valid(%q) = false, json.Valid = true", data)
		}
	})
}

func TestMembers(t *testing.T) {
	d := []byte(` { "a" : 1 , "b\u0063" : {"x":[1,{"y":2}]}, "c":"s" } `)
	it, ok := enter(d, skipWS(d, 0), 0)
	if !ok {
		t.Fatal("enter failed")
	}
	var got []string
	for it.next() {
		got = append(got, it.name()+"="+string(it.value()))
	}
	if it.err != nil {
		t.Fatal(it.err)
	}
	want := []string{"a=1", `bc={"x":[1,{"y":2}]}`, `c="s"`}
	if len(got) != len(want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("member %d = %q, want %q", i, got[i], want[i])
		}
	}
	if skipWS(d, it.i) != len(d) {
		t.Errorf("walk ended at %d of %d", it.i, len(d))
	}
}

func TestParseInt(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true}, {"-1", -1, true}, {"9223372036854775807", 1<<63 - 1, true},
		{"-9223372036854775808", -1 << 63, true}, {"9223372036854775808", 0, false},
		{"1.0", 0, false}, {"1e3", 0, false}, {"", 0, false}, {"-", 0, false}, {`"1"`, 0, false},
		{"99999999999999999999999", 0, false},
	}
	for _, tt := range tests {
		got, ok := parseInt([]byte(tt.in))
		if got != tt.want || ok != tt.ok {
			t.Errorf("parseInt(%q) = %d, %v; want %d, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}
