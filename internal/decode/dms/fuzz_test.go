package dms

import (
	"os"
	"testing"

	"github.com/cdcflow/cdcflow/internal/change"
)

// FuzzDecode checks that Decode never panics, and that whatever it returns
// keeps the contract checkResult asserts, with default and composite keys.
func FuzzDecode(f *testing.F) {
	for _, input := range inputs(f) {
		data, err := os.ReadFile(input)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data, false)
		f.Add(data, true)
	}
	composite := &change.Keys{Default: []string{"id", "customer"}}
	f.Fuzz(func(t *testing.T, data []byte, useComposite bool) {
		var keys *change.Keys
		if useComposite {
			keys = composite
		}
		raw := change.Raw{Data: data, Position: change.Position{Source: "fuzz", Offset: "7"}}
		evs, err := Decode(nil, raw, keys)
		checkResult(t, raw, evs, err)
	})
}
