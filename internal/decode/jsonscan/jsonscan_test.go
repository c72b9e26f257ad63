package jsonscan

import "testing"

func TestMembersAndLookup(t *testing.T) {
	obj := []byte(`{ "a" : 1, "b\u0063":{"x":[1,"]"]}, "s":"q\"uo", "n":null, "a":2 }`)
	var names, vals []string
	m := NewMembers(obj)
	for m.Next() {
		names = append(names, string(m.Name()))
		vals = append(vals, string(m.Val))
	}
	wantNames := []string{"a", "bc", "s", "n", "a"}
	wantVals := []string{"1", `{"x":[1,"]"]}`, `"q\"uo"`, "null", "2"}
	for i := range wantNames {
		if i >= len(names) || names[i] != wantNames[i] || vals[i] != wantVals[i] {
			t.Fatalf("members = %q %q, want %q %q", names, vals, wantNames, wantVals)
		}
	}
	if v, ok := Lookup(obj, "a"); !ok || string(v) != "2" {
		t.Errorf("Lookup(a) = %q, %v; want the last one, 2", v, ok)
	}
	if _, ok := Lookup(obj, "zz"); ok {
		t.Error("Lookup(zz) found a member that is not there")
	}
	if v, _ := Lookup(obj, "n"); !IsNull(v) || Kind(v) != "null" {
		t.Errorf("n: IsNull %v Kind %q", IsNull(v), Kind(v))
	}
}

// TestInvalidStaysInBounds feeds broken JSON: answers may mean nothing, but
// nothing may panic.
func TestInvalidStaysInBounds(t *testing.T) {
	for _, s := range []string{`{`, `{"a"`, `{"a":`, `{"a":"x`, `{"a":[1,`, `{"a" 1}`, `{,}`, `{"\`} {
		m := NewMembers([]byte(s))
		for i := 0; m.Next() && i < 10; i++ {
		}
		Lookup([]byte(s), "a")
	}
}
