package kinesis

import (
	"crypto/md5"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

// aggregate builds a KPL aggregated record by hand: magic, the protobuf
// AggregatedRecord (with an explicit hash key table and a tag, which
// de-aggregation skips) and the MD5 trailer. keyIx[i] is record i's index
// into keys.
func aggregate(keys []string, records [][]byte, keyIx []uint64) []byte {
	var body []byte
	for _, k := range keys {
		body = protowire.AppendTag(body, 1, protowire.BytesType)
		body = protowire.AppendString(body, k)
	}
	body = protowire.AppendTag(body, 2, protowire.BytesType)
	body = protowire.AppendString(body, "12345")
	for i, r := range records {
		body = protowire.AppendTag(body, 3, protowire.BytesType)
		body = protowire.AppendBytes(body, subRecordBytes(keyIx[i], r))
	}
	return seal(body)
}

func subRecordBytes(keyIx uint64, data []byte) []byte {
	var rec []byte
	rec = protowire.AppendTag(rec, 1, protowire.VarintType)
	rec = protowire.AppendVarint(rec, keyIx)
	rec = protowire.AppendTag(rec, 3, protowire.BytesType)
	rec = protowire.AppendBytes(rec, data)
	rec = protowire.AppendTag(rec, 4, protowire.BytesType) // a Tag message
	rec = protowire.AppendBytes(rec, protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "k"))
	return rec
}

func seal(body []byte) []byte {
	sum := md5.Sum(body)
	out := append(append([]byte(nil), kplMagic...), body...)
	return append(out, sum[:]...)
}

func TestDeaggregate(t *testing.T) {
	good := aggregate([]string{"a", "b"}, [][]byte{[]byte("one"), []byte("two")}, []uint64{1, 0})
	badMD5 := append([]byte(nil), good...)
	badMD5[5] ^= 1
	cases := []struct {
		name string
		in   []byte
		ok   bool
		why  string // part of the reason; "" when not an aggregate at all
		keys []string
		data []string
	}{
		{"plain json", []byte(`{"a":1}`), false, "", nil, nil},
		{"empty", nil, false, "", nil, nil},
		{"aggregate", good, true, "", []string{"b", "a"}, []string{"one", "two"}},
		{"magic only", kplMagic, false, "shorter than magic", nil, nil},
		{"md5 mismatch", badMD5, false, "md5 mismatch", nil, nil},
		{"no records", seal(protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "k")), false, "no records", nil, nil},
		{"key index out of range", aggregate([]string{"a"}, [][]byte{[]byte("x")}, []uint64{3}), false, "out of range", nil, nil},
		{"truncated protobuf", seal([]byte{0x1a, 0x05, 0x08}), false, "records[0]", nil, nil},
		{"record without data", seal(protowire.AppendBytes(protowire.AppendTag(
			protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "k"), 3, protowire.BytesType),
			protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), 0))), false, "data missing", nil, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			recs, ok, why := deaggregate(c.in)
			if ok != c.ok {
				t.Fatalf("ok = %v, want %v (why %v)", ok, c.ok, why)
			}
			switch {
			case c.why == "" && why != nil:
				t.Fatalf("unexpected reason %v", why)
			case c.why != "" && (why == nil || !strings.Contains(why.Error(), c.why)):
				t.Fatalf("reason %v, want one containing %q", why, c.why)
			}
			if len(recs) != len(c.data) {
				t.Fatalf("got %d records, want %d", len(recs), len(c.data))
			}
			for i := range recs {
				if recs[i].PartitionKey != c.keys[i] || string(recs[i].Data) != c.data[i] {
					t.Errorf("record %d = %q %q, want %q %q", i, recs[i].PartitionKey, recs[i].Data, c.keys[i], c.data[i])
				}
			}
		})
	}
}

// FuzzDeaggregate checks that no input panics, and that whatever
// de-aggregates re-aggregates to the same records.
func FuzzDeaggregate(f *testing.F) {
	f.Add([]byte(`{"a":1}`))
	f.Add(aggregate([]string{"a", "b"}, [][]byte{[]byte("one"), {}}, []uint64{1, 0}))
	f.Add(seal([]byte{0x1a, 0x05, 0x08}))
	f.Fuzz(func(t *testing.T, in []byte) {
		recs, ok, why := deaggregate(in)
		if ok && (why != nil || len(recs) == 0) || !ok && recs != nil {
			t.Fatalf("inconsistent result: ok %v, %d records, why %v", ok, len(recs), why)
		}
		if !ok {
			return
		}
		keys := make([]string, len(recs))
		data := make([][]byte, len(recs))
		ix := make([]uint64, len(recs))
		for i, r := range recs {
			keys[i], data[i], ix[i] = r.PartitionKey, r.Data, uint64(i)
		}
		again, ok, why := deaggregate(aggregate(keys, data, ix))
		if !ok || len(again) != len(recs) {
			t.Fatalf("re-aggregated: ok %v, %d records, why %v", ok, len(again), why)
		}
		for i := range again {
			if again[i].PartitionKey != recs[i].PartitionKey || string(again[i].Data) != string(recs[i].Data) {
				t.Fatalf("record %d changed", i)
			}
		}
	})
}
