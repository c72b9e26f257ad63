package dsql

import (
	"encoding/json"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/cdcflow/cdcflow/internal/change"
)

// benchRecords returns n realistic full records: a 10-column order row,
// a new transaction every other record, about 500 bytes each.
func benchRecords(n int) ([][]byte, int64) {
	recs := make([][]byte, n)
	var total int64
	ops := []string{"c", "u", "c", "d"}
	for i := range recs {
		commit := int64(1705318200000000000) + int64(i)*1_000_003
		after := fmt.Sprintf(`{"id":%d,"customer_id":%d,"email":"user%d@example.com","name":"Zoë O'Brien %d",`+
			`"amount":"%d.%02d","currency":"EUR","status":"shipped","created_at":"2024-01-15T11:30:%02d.123456Z",`+
			`"is_gift":%t,"note":"ring twice \"bell\"\n"}`,
			100000+i, 5000+i%977, i, i, 10+i%500, i%100, i%60, i%3 == 0)
		before, op := "null", ops[i%len(ops)]
		if op == "d" {
			before, after = fmt.Sprintf(`{"id":%d}`, 100000+i), "null"
		}
		recs[i] = fmt.Appendf(nil, `{"type":"full","op":%q,"before":%s,"after":%s,"source":{"version":"1.0",`+
			`"ts_ms":%d,"ts_ns":%d,"txId":"tx%024d","schema":"public","table":"orders","db":"postgres",`+
			`"cluster":"kmabugltfmjdaj2siqr2qbxgju"},"ts_ms":%d,"ts_ns":%d}`,
			op, before, after, commit/1e6, commit, i/2, commit/1e6+125, commit+125483291)
		total += int64(len(recs[i]))
	}
	return recs, total
}

// benchBatch is the number of records per benchmark op.
const benchBatch = 256

// BenchmarkDecode decodes full records; compare its MB/s and allocs/event
// with BenchmarkEncodingJSONMap over the same records.
func BenchmarkDecode(b *testing.B) {
	recs, _ := benchRecords(benchBatch)
	var batchBytes int64
	for _, r := range recs {
		batchBytes += int64(len(r))
	}
	d := NewDecoder(nil, 64<<20, 5*time.Minute)
	dst := make([]change.Event, 0, benchBatch)
	now := time.Now()
	b.SetBytes(batchBytes)
	b.ReportAllocs()
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		dst = dst[:0]
		for _, r := range recs {
			var err error
			if dst, err = d.Decode(dst, change.Raw{Data: r}, now); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.StopTimer()
	runtime.ReadMemStats(&ms1)
	events := float64(b.N) * benchBatch
	b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/events, "allocs/event")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/events, "ns/event")
}

// BenchmarkEncodingJSONMap decodes the same records with encoding/json into
// map[string]any, the baseline.
func BenchmarkEncodingJSONMap(b *testing.B) {
	recs, _ := benchRecords(benchBatch)
	var batchBytes int64
	for _, r := range recs {
		batchBytes += int64(len(r))
	}
	b.SetBytes(batchBytes)
	b.ReportAllocs()
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, r := range recs {
			var m map[string]any
			if err := json.Unmarshal(r, &m); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.StopTimer()
	runtime.ReadMemStats(&ms1)
	events := float64(b.N) * benchBatch
	b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/events, "allocs/event")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/events, "ns/event")
}

// BenchmarkReassemble reassembles a 1 MiB image sent as a main record and
// four fragments.
func BenchmarkReassemble(b *testing.B) {
	img := fmt.Sprintf(`{"id":1,"blob":"%s"}`, make([]byte, 0))
	pad := make([]byte, 1<<20)
	for i := range pad {
		pad[i] = 'a' + byte(i%26)
	}
	img = `{"id":1,"blob":"` + string(pad) + `"}`
	main, frags := chunkSet(b, "bench", img, 4, "c", "after")
	var total int64 = int64(len(main))
	for _, f := range frags {
		total += int64(len(f))
	}
	d := NewDecoder(nil, 64<<20, 5*time.Minute)
	now := time.Now()
	b.SetBytes(total)
	b.ReportAllocs()
	var dst []change.Event
	for i := 0; i < b.N; i++ {
		d.Reset() // the same chunk id again
		dst = dst[:0]
		for _, r := range append([][]byte{main}, frags...) {
			dst, _ = d.Decode(dst, change.Raw{Data: r}, now)
		}
		if len(dst) != 1 {
			b.Fatalf("%d events", len(dst))
		}
	}
}
