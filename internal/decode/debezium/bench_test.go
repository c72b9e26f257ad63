package debezium

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/cdcflow/cdcflow/internal/change"
)

// benchRecords generates schemaless Debezium PostgreSQL records of about
// 500 bytes: ten columns and a realistic source block, mostly inserts and
// updates with some deletes.
func benchRecords(n int) [][]byte {
	recs := make([][]byte, n)
	for i := range recs {
		row := fmt.Sprintf(`{"id":%d,"customer_id":%d,"status":"shipped","amount":%d.%02d,"currency":"EUR","note":"gift wrap, leave at door","created_at":"2024-01-%02dT10:%02d:05.123456Z","updated_at":1704164645123456,"active":true,"tags":"a,b"}`,
			100000+i, 5000+i%97, i%1000, i%100, 1+i%28, i%60)
		op, before, after := "u", "null", row
		switch i % 10 {
		case 0, 1, 2, 3:
			op = "c"
		case 9:
			op, before, after = "d", row, "null"
		}
		lsn := 24023184 + i*120
		recs[i] = fmt.Appendf(nil, `{"before":%s,"after":%s,"source":{"version":"2.5.0.Final","connector":"postgresql","name":"dbserver1","ts_ms":%d,"snapshot":"false","db":"inventory","sequence":"[\"%d\",\"%d\"]","schema":"public","table":"orders","txId":%d,"lsn":%d,"xmin":null},"op":"%s","ts_ms":%d,"transaction":null}`,
			before, after, 1705318200000+int64(i), lsn-56, lsn, 555+i/3, lsn, op, 1705318200100+int64(i))
	}
	return recs
}

func benchSize(recs [][]byte) int64 {
	var total int
	for _, r := range recs {
		total += len(r)
	}
	return int64(total / len(recs))
}

// BenchmarkDecode decodes one record per iteration: allocs/op is allocations
// per event (the dst slice is reused, as the pipeline does).
func BenchmarkDecode(b *testing.B) {
	recs := benchRecords(1024)
	b.SetBytes(benchSize(recs))
	b.ReportAllocs()
	dst := make([]change.Event, 0, 1)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		var err error
		dst, err = Decode(dst[:0], change.Raw{Data: recs[i%len(recs)]}, nil)
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeKafkaKey is BenchmarkDecode with the Debezium key as the
// Kafka message key.
func BenchmarkDecodeKafkaKey(b *testing.B) {
	recs := benchRecords(1024)
	keys := make([][]byte, len(recs))
	for i := range keys {
		keys[i] = fmt.Appendf(nil, `{"id":%d}`, 100000+i)
	}
	b.SetBytes(benchSize(recs))
	b.ReportAllocs()
	dst := make([]change.Event, 0, 1)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		var err error
		dst, err = Decode(dst[:0], change.Raw{Data: recs[i%len(recs)], Key: keys[i%len(keys)]}, nil)
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodingJSONMap is the baseline: encoding/json decoding the same
// records into map[string]any.
func BenchmarkEncodingJSONMap(b *testing.B) {
	recs := benchRecords(1024)
	b.SetBytes(benchSize(recs))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		var m map[string]any
		if err := json.Unmarshal(recs[i%len(recs)], &m); err != nil {
			b.Fatal(err)
		}
	}
}

// TestBenchRecords keeps the benchmark input honest: it decodes, and is
// about the advertised size.
func TestBenchRecords(t *testing.T) {
	recs := benchRecords(100)
	if n := benchSize(recs); n < 400 || n > 650 {
		t.Errorf("average record is %d bytes, want about 500", n)
	}
	for _, r := range recs {
		if _, err := Decode(nil, change.Raw{Data: r}, nil); err != nil {
			t.Fatalf("%s: %v", r, err)
		}
	}
}
