package testgen

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/cdcflow/cdcflow/internal/change"
)

func concat(recs []Record) []byte {
	var b bytes.Buffer
	for _, r := range recs {
		b.Write(r.Data)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

func TestGenerateIsDeterministic(t *testing.T) {
	opts := Options{Changes: 500, SnapshotRows: 20}
	eo := EncodeOptions{Shards: 4, DupRatio: 0.2, ReorderWindow: 8, FragmentBytes: 600}
	for _, f := range Formats {
		t.Run(string(f), func(t *testing.T) {
			a, err := Encode(Generate(7, opts), f, eo)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := Encode(Generate(7, opts), f, eo)
			if !bytes.Equal(concat(a), concat(b)) {
				t.Fatal("same seed gave different records")
			}
			c, _ := Encode(Generate(8, opts), f, eo)
			if bytes.Equal(concat(a), concat(c)) {
				t.Fatal("different seeds gave the same records")
			}
			eo2 := eo
			eo2.Seed = 1
			d, _ := Encode(Generate(7, opts), f, eo2)
			if bytes.Equal(concat(a), concat(d)) {
				t.Fatal("EncodeOptions.Seed does not change delivery")
			}
		})
	}
}

func TestStreamEqualsEncode(t *testing.T) {
	opts := Options{Changes: 400, SnapshotRows: 10, BigRatio: 0.05, BigBytes: 900}
	eo := EncodeOptions{Shards: 3, DupRatio: 0.1, ReorderWindow: 5, FragmentBytes: 500, Tombstones: true, ControlRecords: true, DebeziumSchema: true}
	for _, f := range Formats {
		t.Run(string(f), func(t *testing.T) {
			h := Generate(3, opts)
			want, err := Encode(h, f, eo)
			if err != nil {
				t.Fatal(err)
			}
			var got []Record
			g, err := Stream(3, opts, f, eo, func(r Record) error { got = append(got, r); return nil })
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(want, got) {
				t.Fatalf("Stream gave %d records, Encode %d, or different ones", len(got), len(want))
			}
			if !reflect.DeepEqual(h.Final(), g.Final()) {
				t.Fatal("Generator.Final differs from History.Final")
			}
		})
	}
}

// TestHistoryIsConsistent checks the history against itself: commit order,
// sequence numbers, and that every change starts from the key's current row.
func TestHistoryIsConsistent(t *testing.T) {
	h := Generate(11, Options{Changes: 3000, SnapshotRows: 100})
	cur := map[string][]any{}
	var lastCommit, lastSeq, lastTx int64
	lastIndex := -1
	for i := range h.Events() {
		e := &h.Events()[i]
		if e.Seq != lastSeq+1 {
			t.Fatalf("event %d: seq %d after %d", i, e.Seq, lastSeq)
		}
		lastSeq = e.Seq
		switch {
		case e.Tx == lastTx:
			if e.CommitNS != lastCommit || e.TxIndex != lastIndex+1 {
				t.Fatalf("event %d: inside tx %d commit %d index %d after %d/%d", i, e.Tx, e.CommitNS, e.TxIndex, lastCommit, lastIndex)
			}
		case e.Tx == lastTx+1:
			if e.CommitNS <= lastCommit || e.TxIndex != 0 {
				t.Fatalf("event %d: tx %d commits at %d, not after %d", i, e.Tx, e.CommitNS, lastCommit)
			}
		default:
			t.Fatalf("event %d: tx %d after %d", i, e.Tx, lastTx)
		}
		lastTx, lastCommit, lastIndex = e.Tx, e.CommitNS, e.TxIndex
		if e.TxIndex >= e.TxSize {
			t.Fatalf("event %d: index %d of %d", i, e.TxIndex, e.TxSize)
		}
		if e.Op != e.Kind.Op() {
			t.Fatalf("event %d: op %s for kind %s", i, e.Op, e.Kind)
		}
		if got := RecordID(e.Table.KeyOf(e.Image())); got != e.RecordID {
			t.Fatalf("event %d: record id %q, image key gives %q", i, e.RecordID, got)
		}
		raw := make([]json.RawMessage, len(e.Key))
		for n, v := range e.Key {
			raw[n] = appendValue(nil, v)
		}
		if id, err := change.RecordID(e.Table.Key, raw); err != nil || id != e.RecordID {
			t.Fatalf("event %d: change.RecordID gives %q (%v), want %q", i, id, err, e.RecordID)
		}
		k := e.Table.Name + " " + e.RecordID
		if !reflect.DeepEqual(e.Before, cur[k]) {
			t.Fatalf("event %d (%s %s): before is not the key's current row", i, e.Kind, k)
		}
		if (e.Before == nil) != (e.Kind == KindInsert || e.Kind == KindReinsert || e.Kind == KindKeyInsert || e.Kind == KindSnapshot) {
			t.Fatalf("event %d: kind %s with before %v", i, e.Kind, e.Before != nil)
		}
		for _, row := range [][]any{e.Before, e.After} {
			if row != nil && len(row) != len(e.Table.Columns) {
				t.Fatalf("event %d: row of %d values for %d columns", i, len(row), len(e.Table.Columns))
			}
		}
		cur[k] = e.After
		if e.After == nil {
			delete(cur, k)
		}
	}
}

func TestFinalMatchesReplay(t *testing.T) {
	for _, seed := range []int64{1, 2, 99} {
		h := Generate(seed, Options{Changes: 2000, SnapshotRows: 30})
		want := State{}
		for _, e := range h.Events() {
			key := e.RecordID
			if e.After == nil {
				delete(want[e.Table.Name], key)
				continue
			}
			if want[e.Table.Name] == nil {
				want[e.Table.Name] = map[string]map[string]any{}
			}
			row := map[string]any{}
			for i, c := range e.Table.Columns {
				row[c.Name] = e.After[i]
			}
			want[e.Table.Name][key] = row
		}
		for tbl, rows := range want {
			if len(rows) == 0 {
				delete(want, tbl)
			}
		}
		got := h.Final()
		if d := diffStates(want, got); d != "" {
			t.Fatalf("seed %d: Final differs from replay:\n%s", seed, d)
		}
		if got.Rows() == 0 {
			t.Fatalf("seed %d: empty final state", seed)
		}
		// Final values must be what encoding/json gives with UseNumber.
		var round State
		if err := useNumber(appendValue(nil, stateAsAny(got)), &round); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(round, got) {
			t.Fatalf("seed %d: Final does not survive a JSON round trip", seed)
		}
	}
}

func stateAsAny(s State) map[string]any {
	out := map[string]any{}
	for t, rows := range s {
		r := map[string]any{}
		for id, row := range rows {
			r[id] = row
		}
		out[t] = r
	}
	return out
}

// TestCoverage checks that the default options produce every kind of change
// and every kind of awkward value.
func TestCoverage(t *testing.T) {
	h := Generate(5, Options{SnapshotRows: 20})
	kinds := map[Kind]int{}
	repeats, nulls, unicode, big, emoji, nested, bigints := 0, 0, 0, 0, 0, 0, 0
	type txKey struct {
		tx  int64
		key string
	}
	seen := map[txKey]bool{}
	for _, e := range h.Events() {
		kinds[e.Kind]++
		k := txKey{e.Tx, e.Table.Name + " " + e.RecordID}
		if seen[k] {
			repeats++
		}
		seen[k] = true
		for _, v := range e.After {
			switch v := v.(type) {
			case nil:
				nulls++
			case string:
				if strings.ContainsAny(v, "\"\\\n") && strings.ContainsFunc(v, func(r rune) bool { return r > 127 }) {
					unicode++
				}
				if strings.Contains(v, "🚀") {
					emoji++
				}
				if len(v) >= h.Options.BigBytes {
					big++
				}
			case map[string]any:
				nested++
			case json.Number:
				if len(v) >= 16 {
					bigints++
				}
			}
		}
	}
	for _, k := range AllKinds {
		if kinds[k] == 0 {
			t.Errorf("no %s changes (kinds %v)", k, kinds)
		}
	}
	for name, n := range map[string]int{"repeated keys in a tx": repeats, "nulls": nulls, "unicode with escapes": unicode,
		"large texts": big, "emoji": emoji, "nested objects": nested, "integers beyond 2^53": bigints} {
		if n == 0 {
			t.Errorf("no %s", name)
		}
	}
	if w := h.Table(TableWide); w == nil || len(w.Columns) < 50 {
		t.Errorf("wide table missing or narrow")
	}
	if h.Table(TableOrderItems) == nil || len(h.Table(TableOrderItems).Key) != 2 {
		t.Errorf("order_items has no composite key")
	}
}

// TestEncodersRoundTrip decodes every format with a strict reference decoder
// after sharding, duplication, reordering and fragmentation, and checks the
// final state and each key's change sequence against the history.
func TestEncodersRoundTrip(t *testing.T) {
	opts := Options{Changes: 3000, SnapshotRows: 60, BigRatio: 0.03, BigBytes: 1500}
	cases := []struct {
		name string
		f    Format
		o    EncodeOptions
	}{
		{"dsql", FormatDSQL, EncodeOptions{FragmentBytes: 700}},
		{"dsql-u-together", FormatDSQL, EncodeOptions{FragmentBytes: 300, UpdateOp: "u", KeepChunksTogether: true}},
		{"debezium", FormatDebezium, EncodeOptions{Tombstones: true}},
		{"debezium-schema", FormatDebezium, EncodeOptions{DebeziumSchema: true, Tombstones: true}},
		{"dms", FormatDMS, EncodeOptions{ControlRecords: true}},
		{"dynamodb", FormatDynamoDB, EncodeOptions{}},
	}
	h := Generate(42, opts)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want := h.FinalFor(c.f, c.o)
			wantKeys := historyByKey(h, c.f, c.o)
			c.o.Shards, c.o.DupRatio, c.o.ReorderWindow = 4, 0.15, 32
			recs, err := Encode(h, c.f, c.o)
			if err != nil {
				t.Fatal(err)
			}
			del := Deliver(recs, 9, 4)
			dec := newRefDecoder(c.f, DefaultKeys())
			apply := newRefApply()
			kinds := map[RecordKind]int{}
			for i, r := range del.Merged {
				if !r.Duplicate {
					kinds[r.Kind]++
				}
				evs, err := dec.decode(r.Data)
				if err != nil {
					t.Fatalf("record %d (%s): %v", i, r.Kind, err)
				}
				for _, e := range evs {
					if err := apply.add(e); err != nil {
						t.Fatalf("record %d: %v", i, err)
					}
				}
			}
			if d := diffStates(want, apply.final()); d != "" {
				t.Fatalf("decoded final state differs:\n%s", d)
			}
			got := apply.keyHistory()
			for k, seq := range wantKeys {
				if !reflect.DeepEqual(seq, got[k]) {
					t.Fatalf("%s: decoded changes in order\n%q\nwant\n%q", k, got[k], seq)
				}
			}
			if c.f == FormatDSQL && (kinds[RecordChunked] == 0 || kinds[RecordFragment] <= kinds[RecordChunked]) {
				t.Errorf("no fragmented records: %v", kinds)
			}
			if c.o.Tombstones && kinds[RecordTombstone] == 0 || c.o.ControlRecords && kinds[RecordControl] != len(h.Tables) {
				t.Errorf("record kinds %v", kinds)
			}
		})
	}
}

func TestDuplicatesAndShards(t *testing.T) {
	h := Generate(21, Options{Changes: 4000})
	for _, f := range Formats {
		for _, window := range []int{0, 16} {
			o := EncodeOptions{Shards: 4, DupRatio: 0.12, ReorderWindow: window, FragmentBytes: 800}
			recs, err := Encode(h, f, o)
			if err != nil {
				t.Fatal(err)
			}
			orig, dups := 0, 0
			perShard := make([]int, 4)
			seen := map[string]int{} // data -> shard of the first delivery
			outOfOrder := 0
			lastSeq := make([]int64, 4)
			for _, r := range recs {
				perShard[r.Shard]++
				if r.Duplicate {
					dups++
					s, ok := seen[string(r.Data)]
					if !ok || s != r.Shard {
						t.Fatalf("%s: duplicate without an earlier original on shard %d", f, r.Shard)
					}
					continue
				}
				orig++
				seen[string(r.Data)] = r.Shard
				if r.Seq < lastSeq[r.Shard] {
					outOfOrder++
				}
				lastSeq[r.Shard] = max(lastSeq[r.Shard], r.Seq)
			}
			if ratio := float64(dups) / float64(orig); ratio < 0.10 || ratio > 0.14 {
				t.Errorf("%s window %d: duplicate ratio %.3f", f, window, ratio)
			}
			for s, n := range perShard {
				if n < len(recs)/8 {
					t.Errorf("%s: shard %d has %d of %d records", f, s, n, len(recs))
				}
			}
			if (window > 1) != (outOfOrder > 0) {
				t.Errorf("%s window %d: %d records out of commit order in their shard", f, window, outOfOrder)
			}
		}
	}
}

func TestKeyShardingKeepsKeysTogether(t *testing.T) {
	h := Generate(4, Options{Changes: 1000})
	for _, f := range []Format{FormatDebezium, FormatDMS, FormatDynamoDB} {
		recs, _ := Encode(h, f, EncodeOptions{Shards: 4})
		shardOf := map[string]int{}
		for _, r := range recs {
			e := h.Events()[r.Seq-1]
			k := e.Table.Name + " " + e.RecordID
			if s, ok := shardOf[k]; ok && s != r.Shard {
				t.Fatalf("%s: key %s on shards %d and %d", f, k, s, r.Shard)
			}
			shardOf[k] = r.Shard
		}
	}
}

func TestDebeziumKey(t *testing.T) {
	h := ExampleHistory(false)
	recs := EncodeDebezium(h, false, EncodeOptions{})
	if got := string(recs[2].Key); got != `{"order_id":1001,"line_no":1}` {
		t.Errorf("composite key %s", got)
	}
	recs = EncodeDebezium(h, true, EncodeOptions{})
	var k struct {
		Schema  struct{ Name string }
		Payload map[string]any
	}
	if err := json.Unmarshal(recs[1].Key, &k); err != nil || k.Schema.Name != "pg.public.orders.Key" || k.Payload["order_id"] != 1001.0 {
		t.Errorf("key with schema %s (%v)", recs[1].Key, err)
	}
}

func TestDebeziumDecimal(t *testing.T) {
	cases := []struct {
		in    string
		scale int
		want  string
	}{
		{"19.99", 2, "B88="},
		{"0.00", 2, "AA=="},
		{"-0.01", 2, "/w=="},
		{"-1.28", 2, "gA=="},
		{"-1.29", 2, "/38="},
		{"1.28", 2, "AIA="},
		{"5", 2, "AfQ="},
		{"-123456789012.34", 2, "9MWMMdAO"},
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			got := DebeziumDecimal(c.in, c.scale)
			if got != c.want {
				t.Fatalf("DebeziumDecimal(%s) = %s, want %s", c.in, got, c.want)
			}
			back := fromConnectDecimal(got, "2")
			n, _ := json.Number(c.in).Float64()
			b, _ := back.Float64()
			if n != b {
				t.Fatalf("round trip %s -> %s", c.in, back)
			}
		})
	}
}

func TestRecordID(t *testing.T) {
	cases := []struct {
		key  []any
		want string
	}{
		{[]any{json.Number("1001")}, "1001"},
		{[]any{"c-1"}, "c-1"},
		{[]any{`c-"q"`}, `c-"q"`},
		{[]any{json.Number("1001"), json.Number("42")}, "[1001,42]"},
		{[]any{"a", json.Number("1")}, `["a",1]`},
		{[]any{json.Number("9007199254740993")}, "9007199254740993"},
	}
	for _, c := range cases {
		t.Run(c.want, func(t *testing.T) {
			if got := RecordID(c.key); got != c.want {
				t.Fatalf("RecordID = %q, want %q", got, c.want)
			}
		})
	}
}

func TestDeliverAndBatches(t *testing.T) {
	recs, _ := Encode(Generate(6, Options{Changes: 500}), FormatDSQL, EncodeOptions{Shards: 4})
	d := Deliver(recs, 1, 4)
	if len(d.Merged) != len(recs) {
		t.Fatalf("merged %d of %d", len(d.Merged), len(recs))
	}
	total := 0
	for s, sh := range d.Shards {
		total += len(sh)
		var fromMerged []Record
		for _, r := range d.Merged {
			if r.Shard == s {
				fromMerged = append(fromMerged, r)
			}
		}
		if !reflect.DeepEqual(fromMerged, sh) {
			t.Fatalf("shard %d: merged order differs from shard order", s)
		}
	}
	if total != len(recs) {
		t.Fatalf("shards hold %d of %d", total, len(recs))
	}
	if reflect.DeepEqual(d.Merged, recs) {
		t.Fatal("merged interleaving is the input order")
	}
	bs := Batches(d.Merged, 2, 10)
	var flat []Record
	sizes := map[int]bool{}
	for _, b := range bs {
		if len(b) < 1 || len(b) > 10 {
			t.Fatalf("batch of %d", len(b))
		}
		sizes[len(b)] = true
		flat = append(flat, b...)
	}
	if !reflect.DeepEqual(flat, d.Merged) || len(sizes) < 3 {
		t.Fatalf("batches do not cover the input or sizes are not random (%d sizes)", len(sizes))
	}
}

func TestEnvelopes(t *testing.T) {
	h := ExampleHistory(false)
	dsql := EncodeDSQL(h, EncodeOptions{})
	var gr struct {
		Records []struct {
			SequenceNumber string
			Data           []byte
		}
	}
	if err := json.Unmarshal(KinesisGetRecords(dsql, 1, 0, ExampleBase), &gr); err != nil {
		t.Fatal(err)
	}
	if len(gr.Records) != len(dsql) || !bytes.Equal(gr.Records[3].Data, dsql[3].Data) || gr.Records[0].SequenceNumber >= gr.Records[1].SequenceNumber {
		t.Fatalf("get-records output does not carry the records")
	}
	var ke struct {
		Records []struct {
			Kinesis struct{ Data []byte }
		}
	}
	if err := json.Unmarshal(KinesisLambdaEvent(dsql, "cdc", 0, 0, ExampleBase), &ke); err != nil || !bytes.Equal(ke.Records[5].Kinesis.Data, dsql[5].Data) {
		t.Fatalf("kinesis lambda event: %v", err)
	}
	deb := EncodeDebezium(h, false, EncodeOptions{Tombstones: true, Shards: 2})
	var msk struct {
		Records map[string][]struct {
			Key, Value []byte
		}
	}
	topic := func(r Record) string { return DebeziumTopic(h.Table(r.Table)) }
	if err := json.Unmarshal(MSKLambdaEvent(deb, topic, 100, ExampleBase), &msk); err != nil {
		t.Fatal(err)
	}
	n, tomb := 0, 0
	for _, rs := range msk.Records {
		for _, r := range rs {
			n++
			if r.Value == nil {
				tomb++
			}
		}
	}
	if n != len(deb) || tomb != 1 {
		t.Fatalf("msk event has %d records, %d tombstones", n, tomb)
	}
	var de struct{ Records []json.RawMessage }
	if err := json.Unmarshal(DynamoDBLambdaEvent(EncodeDynamoDB(h, EncodeOptions{})), &de); err != nil || len(de.Records) != len(h.Events()) {
		t.Fatalf("dynamodb lambda event: %v", err)
	}
}

func TestInvalidOptions(t *testing.T) {
	if _, err := Encode(ExampleHistory(false), FormatDSQL, EncodeOptions{UpdateOp: "x"}); err == nil || !strings.Contains(err.Error(), "update op") {
		t.Errorf("UpdateOp x: %v", err)
	}
	if _, err := Encode(ExampleHistory(false), "csv", EncodeOptions{}); err == nil || !strings.Contains(err.Error(), "csv") {
		t.Errorf("format csv: %v", err)
	}
	b := NewBuilder(ExampleTables()...)
	if err := b.Tx(ExampleBase, Change{Table: TableOrders, Op: change.Update, Row: map[string]any{"order_id": json.Number("1")}}); err == nil || !strings.Contains(err.Error(), "absent key") {
		t.Errorf("update of an absent key: %v", err)
	}
}

func BenchmarkStreamDSQL(b *testing.B) {
	for b.Loop() {
		n := 0
		_, err := Stream(1, Options{Changes: 100_000, Keys: 10_000}, FormatDSQL, EncodeOptions{Shards: 4, DupRatio: 0.1, ReorderWindow: 64},
			func(r Record) error { n += len(r.Data); return nil })
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(n))
	}
}
