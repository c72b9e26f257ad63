package sqlgen

import (
	"bytes"
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

type member struct{ name, raw string }

func collect(obj string) ([]member, error) {
	var out []member
	err := Fields([]byte(obj), func(name string, raw []byte) error {
		out = append(out, member{name, string(raw)})
		return nil
	})
	return out, err
}

func TestFields(t *testing.T) {
	got, err := collect(` { "id" : 1 , "s":"a\"b\\","n":null,"o":{"x":[1,{"y":"}"}]},"b":false,"e\u00e9":-1.5e+3 ,"":[]} `)
	if err != nil {
		t.Fatal(err)
	}
	want := []member{{"id", "1"}, {"s", `"a\"b\\"`}, {"n", "null"}, {"o", `{"x":[1,{"y":"}"}]}`}, {"b", "false"}, {"eé", "-1.5e+3"}, {"", "[]"}}
	if len(got) != len(want) {
		t.Fatalf("members = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("member %d = %v, want %v", i, got[i], want[i])
		}
	}
	if got, err := collect(`{"e":"\ud83d\ude00 \u00e9 \u0000"}`); err != nil || len(got) != 1 {
		t.Errorf("valid surrogate pair: %v, %v", got, err)
	}
	if got, err := collect(`{}`); err != nil || len(got) != 0 {
		t.Errorf("empty object: %v, %v", got, err)
	}
}

func TestFieldsErrors(t *testing.T) {
	for _, bad := range []string{
		``, `[]`, `null`, `{`, `{"a"}`, `{"a":}`, `{"a":1,}`, `{"a":1 "b":2}`, `{"a":tru}`, `{"a":01}`, `{"a":1.}`,
		`{"a":"\x"}`, "{\"a\":\"\x01\"}", `{"a":"\u12"}`, `{"a":[1,]}`, `{"a":{"b" 1}}`, `{"a":1}x`, `{} {}`, `{"a":-}`,
		`{"a":` + strings.Repeat("[", 2000) + strings.Repeat("]", 2000) + `}`,
		"{\"a\":\"bad\xff\"}", "{\"b\xc3\":1}", `{"a":"\ud800"}`, `{"a":"\udc00"}`, `{"a":"\ud800\u0041"}`, `{"a":"\ud800x"}`,
	} {
		if _, err := collect(bad); err == nil {
			t.Errorf("Fields(%.40q) accepted invalid JSON", bad)
		}
	}
	stop := errors.New("stop")
	calls := 0
	err := Fields([]byte(`{"a":1,"b":2}`), func(string, []byte) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("callback error: %v after %d calls", err, calls)
	}
}

var surrogateEscape = regexp.MustCompile(`(?i)\\u[d][89a-f]`)

// FuzzFields checks Fields against encoding/json: it accepts only valid JSON
// objects, accepts every valid object that is valid UTF-8 without surrogate
// escapes, and yields members whose values are valid JSON.
func FuzzFields(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `{"a":"\ud83d\ude00"}`, `{"a":"x\u00e9","b":[1,{"c":null}]}`, `{}`, `{"a":1,}`, `[1]`, `{"a":1e5,"a":2}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var names []string
		var raws [][]byte
		err := Fields(b, func(name string, raw []byte) error {
			names = append(names, name)
			raws = append(raws, raw)
			return nil
		})
		trimmed := bytes.TrimSpace(b)
		isObject := json.Valid(b) && len(trimmed) > 0 && trimmed[0] == '{'
		if err == nil && !isObject {
			t.Fatalf("Fields(%q) accepted what is not a JSON object", b)
		}
		if err != nil && isObject && utf8.Valid(b) && !surrogateEscape.Match(b) {
			t.Fatalf("Fields(%q) rejected a valid object: %v", b, err)
		}
		if err != nil {
			return
		}
		for i, raw := range raws {
			if !json.Valid(raw) {
				t.Fatalf("member %q value %q is not valid JSON", names[i], raw)
			}
		}
	})
}
