package dynamodb

import (
	"os"
	"testing"

	"github.com/cdcflow/cdcflow/internal/change"
)

// FuzzDecode checks that Decode never panics, and that whatever it returns
// keeps the contract checkResult asserts, with and without configured keys.
func FuzzDecode(f *testing.F) {
	for _, input := range inputs(f) {
		data, err := os.ReadFile(input)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data, false)
		f.Add(data, true)
	}
	configured := &change.Keys{Tables: map[string][]string{
		"ExampleTableWithStream": {"Id"},
		"Music":                  {"SongTitle", "Artist"},
	}}
	f.Fuzz(func(t *testing.T, data []byte, configure bool) {
		var keys *change.Keys
		if configure {
			keys = configured
		}
		raw := change.Raw{Data: data, Position: change.Position{Source: "fuzz", Partition: "shardId-000000000001", Offset: "7"}}
		evs, err := Decode(nil, raw, keys)
		checkResult(t, raw, evs, err)
	})
}
