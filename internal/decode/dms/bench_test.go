package dms

import (
	"encoding/json"
	"os"
	"testing"

	"github.com/cdcflow/cdcflow/internal/change"
)

// benchRecords are the change records a DMS CDC task typically emits.
func benchRecords(b *testing.B) [][]byte {
	b.Helper()
	var recs [][]byte
	for _, name := range []string{"insert", "update_before_image", "delete", "load", "transaction_details"} {
		data, err := os.ReadFile("testdata/" + name + ".json")
		if err != nil {
			b.Fatal(err)
		}
		recs = append(recs, data)
	}
	return recs
}

func totalBytes(recs [][]byte) int64 {
	var n int64
	for _, r := range recs {
		n += int64(len(r))
	}
	return n
}

func BenchmarkDecode(b *testing.B) {
	recs := benchRecords(b)
	b.SetBytes(totalBytes(recs))
	b.ReportAllocs()
	dst := make([]change.Event, 0, len(recs))
	for b.Loop() {
		dst = dst[:0]
		for _, r := range recs {
			var err error
			if dst, err = Decode(dst, change.Raw{Data: r}, nil); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkEncodingJSONMap is the baseline: unmarshalling the same records
// into map[string]any, the least a generic decoder would do.
func BenchmarkEncodingJSONMap(b *testing.B) {
	recs := benchRecords(b)
	b.SetBytes(totalBytes(recs))
	b.ReportAllocs()
	for b.Loop() {
		for _, r := range recs {
			var m map[string]any
			if err := json.Unmarshal(r, &m); err != nil {
				b.Fatal(err)
			}
		}
	}
}
