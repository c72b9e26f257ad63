package decode

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/cdcflow/cdcflow/internal/change"
	"github.com/cdcflow/cdcflow/internal/testgen"
)

// The decoders' differential test: generated histories are encoded in every
// format with the faults of a real stream (duplicates, shards, reordering,
// DSQL fragments on random shards), delivered as plain records or inside
// envelopes, and decoded by one Decoder in auto mode. Deduplicated by
// change.SameChange and replayed by change.Compare, the events must give
// every key exactly the history's sequence of changes and leave exactly
// History.FinalFor(format, options), the state testgen documents as what the
// project's decoder contracts yield.

type e2eVariant struct {
	name   string
	format testgen.Format
	o      testgen.EncodeOptions
}

func e2eVariants() []e2eVariant {
	faults := testgen.EncodeOptions{Shards: 4, DupRatio: 0.15, ReorderWindow: 8}
	with := func(f func(o *testgen.EncodeOptions)) testgen.EncodeOptions {
		o := faults
		f(&o)
		return o
	}
	return []e2eVariant{
		{"dsql", testgen.FormatDSQL, with(func(o *testgen.EncodeOptions) { o.FragmentBytes = 1024 })},
		{"dsql fragments together, update op u", testgen.FormatDSQL, with(func(o *testgen.EncodeOptions) {
			o.FragmentBytes, o.KeepChunksTogether, o.UpdateOp = 700, true, "u"
		})},
		{"debezium", testgen.FormatDebezium, with(func(o *testgen.EncodeOptions) { o.Tombstones = true })},
		{"debezium schema", testgen.FormatDebezium, with(func(o *testgen.EncodeOptions) { o.DebeziumSchema, o.Tombstones = true, true })},
		{"dms", testgen.FormatDMS, with(func(o *testgen.EncodeOptions) { o.ControlRecords = true })},
		{"dynamodb", testgen.FormatDynamoDB, faults},
	}
}

// Transports: how records reach the Decoder.
const (
	viaRecords = "records"        // one change.Raw per record, Kafka key included
	viaKinesis = "kinesis lambda" // Lambda events of Kinesis records, base64
	viaMSK     = "msk lambda"     // Lambda events of MSK records, key and value base64
	viaDynamo  = "dynamodb lambda"
	viaCLI     = "get-records" // `aws kinesis get-records` output
)

func transports(f testgen.Format) []string {
	switch f {
	case testgen.FormatDebezium:
		return []string{viaRecords, viaMSK}
	case testgen.FormatDynamoDB:
		return []string{viaRecords, viaDynamo, viaKinesis}
	}
	return []string{viaRecords, viaKinesis, viaCLI}
}

// deliver turns records into the raws a source would hand the Decoder: the
// shards interleaved at random, each shard in order, as single records or
// as envelopes of 1-12 records.
func deliver(recs []testgen.Record, h *testgen.History, seed int64, shards int, via string) []change.Raw {
	d := testgen.Deliver(recs, seed, shards)
	stream := "cdc-stream"
	if via == viaRecords {
		next := make([]int, shards)
		raws := make([]change.Raw, 0, len(d.Merged))
		for _, r := range d.Merged {
			s := r.Shard % shards
			raws = append(raws, change.Raw{Data: r.Data, Key: r.Key, Position: change.Position{
				Source: stream, Partition: testgen.KinesisShardID(s), Offset: testgen.KinesisSequenceNumber(s, next[s]),
			}})
			next[s]++
		}
		return raws
	}
	// Envelopes: cut each shard into batches, then take batches from the
	// shards in turn.
	var perShard [][]change.Raw
	for s, rs := range d.Shards {
		var raws []change.Raw
		first := 0
		for i, b := range testgen.Batches(rs, seed+int64(s), 12) {
			var data []byte
			switch via {
			case viaKinesis:
				data = testgen.KinesisLambdaEvent(b, stream, s, first, testgen.ExampleBase)
			case viaCLI:
				data = testgen.KinesisGetRecords(b, s, first, testgen.ExampleBase)
			case viaDynamo:
				data = testgen.DynamoDBLambdaEvent(b)
			case viaMSK:
				topic := func(r testgen.Record) string { return testgen.DebeziumTopic(h.Table(r.Table)) }
				data = testgen.MSKLambdaEvent(b, topic, int64(first), testgen.ExampleBase)
			}
			raws = append(raws, change.Raw{Data: data, Position: change.Position{
				Source: stream + ".events", Partition: testgen.KinesisShardID(s), Offset: strconv.Itoa(i + 1),
			}})
			first += len(b)
		}
		perShard = append(perShard, raws)
	}
	var raws []change.Raw
	for more := true; more; {
		more = false
		for s := range perShard {
			if len(perShard[s]) > 0 {
				raws = append(raws, perShard[s][0])
				perShard[s] = perShard[s][1:]
				more = true
			}
		}
	}
	return raws
}

func TestDecodeGenerated(t *testing.T) {
	seeds := []int64{1, 2, 3}
	if testing.Short() {
		seeds = seeds[:1]
	}
	opts := testgen.Options{Changes: 600, SnapshotRows: 30, BigRatio: 0.05, BigBytes: 2500, MaxTxSize: 5, RepeatInTx: 0.1}
	for _, v := range e2eVariants() {
		for _, via := range transports(v.format) {
			for _, seed := range seeds {
				t.Run(fmt.Sprintf("%s/%s/seed %d", v.name, via, seed), func(t *testing.T) {
					o := v.o
					o.Seed = seed * 31
					h := testgen.Generate(seed, opts)
					recs, err := testgen.Encode(h, v.format, o)
					if err != nil {
						t.Fatal(err)
					}
					runDifferential(t, h, v.format, o, recs, deliver(recs, h, seed, o.Shards, via))
				})
			}
		}
	}
}

// runDifferential decodes raws (the delivery of recs) and compares the
// result with the history.
func runDifferential(t *testing.T, h *testgen.History, f testgen.Format, o testgen.EncodeOptions, recs []testgen.Record, raws []change.Raw) {
	t.Helper()
	d := newDecoder(t, Options{Keys: genKeys})
	var out Output
	for _, r := range raws {
		d.Decode(r, t0, &out)
	}
	if len(out.Dead) != 0 {
		t.Fatalf("%d dead letters in a clean stream: %.2000s", len(out.Dead), deadSummary(out.Dead))
	}
	if held := d.Stats().Held; held != 0 {
		var drained Output
		d.Drain(&drained)
		t.Fatalf("%d pieces still held at end of input: %s", held, deadSummary(drained.Dead))
	}
	checkEvents(t, out.Events)

	// What the delivered records must add up to.
	var kinds [6]int64
	var dupPieces int64
	for _, r := range recs {
		kinds[r.Kind]++
		if r.Duplicate && (r.Kind == testgen.RecordChunked || r.Kind == testgen.RecordFragment) {
			dupPieces++
		}
	}
	var sets int64
	for _, r := range recs {
		if r.Kind == testgen.RecordChunked && !r.Duplicate {
			sets++
		}
	}
	st := d.Stats()
	t.Logf("%d raws, %d records (%d duplicates of pieces, %d oversized sets), %d events, skipped %v", len(raws), len(recs), dupPieces, sets, st.Events, st.Skipped)
	wantSkipped := map[string]int64{}
	if n := kinds[testgen.RecordTombstone]; n > 0 {
		wantSkipped[change.SkipTombstone] = n
	}
	if n := kinds[testgen.RecordControl]; n > 0 {
		wantSkipped[change.SkipControl] = n
	}
	if dupPieces > 0 {
		wantSkipped["duplicate_fragment"] = dupPieces
	}
	checkStats(t, st, Stats{
		Records: int64(len(recs)),
		Events:  kinds[testgen.RecordChange] + sets,
		Skipped: wantSkipped,
		Dead:    map[string]int64{},
	})
	if st.Events != int64(len(out.Events)) {
		t.Errorf("Stats.Events %d, but %d events were emitted", st.Events, len(out.Events))
	}

	// Deduplicate: a duplicate delivery is the same change with the same
	// images; anything else with the same identity is a decoder bug.
	type ident struct {
		schema, table, key string
		op                 change.Op
		order              string
	}
	distinct := map[ident]*change.Event{}
	for i := range out.Events {
		e := &out.Events[i]
		id := ident{e.Schema, e.Table, e.Key, e.Op, e.Order.Key()}
		if prev, ok := distinct[id]; ok {
			if !change.SameChange(prev, e) || !bytes.Equal(prev.After, e.After) || !bytes.Equal(prev.Before, e.Before) {
				t.Fatalf("events at %s and %s share table, key, op and order but differ", prev.Position, e.Position)
			}
			continue
		}
		distinct[id] = e
	}
	if len(distinct) != len(h.Events()) {
		t.Errorf("%d distinct events, the history has %d changes", len(distinct), len(h.Events()))
	}

	// Per key: the decoded changes in commit order must be the history's.
	type rowKey struct{ table, key string }
	got := map[rowKey][]*change.Event{}
	for _, e := range distinct {
		k := rowKey{e.Table, e.Key}
		got[k] = append(got[k], e)
	}
	for _, evs := range got {
		slices.SortFunc(evs, change.Compare)
	}
	want := map[rowKey][]*testgen.Event{}
	for i := range h.Events() {
		e := &h.Events()[i]
		k := rowKey{e.Table.Name, e.RecordID}
		want[k] = append(want[k], e)
	}
	bad := 0
	for k, hist := range want {
		evs := got[k]
		if msg := compareKeyHistory(h, f, o, hist, evs); msg != "" {
			bad++
			if bad <= 5 {
				t.Errorf("%s %s: %s", k.table, k.key, msg)
			}
		}
	}
	for k := range got {
		if want[k] == nil {
			t.Errorf("%s %s: decoded events for a key the history never touched", k.table, k.key)
		}
	}

	// Replay: the latest change per key, deletes removed.
	state := testgen.State{}
	for k, evs := range got {
		last := evs[len(evs)-1]
		if last.Op == change.Delete {
			continue
		}
		rows := state[k.table]
		if rows == nil {
			rows = map[string]map[string]any{}
			state[k.table] = rows
		}
		rows[k.key] = decodeImage(t, last.After)
	}
	if wantState := h.FinalFor(f, o); !reflect.DeepEqual(state, wantState) {
		t.Errorf("replayed state differs from FinalFor: %s", diffState(wantState, state))
	}
}

// compareKeyHistory compares one key's decoded events, in commit order, with
// the history's changes of that key.
func compareKeyHistory(h *testgen.History, f testgen.Format, o testgen.EncodeOptions, hist []*testgen.Event, evs []*change.Event) string {
	if len(evs) != len(hist) {
		return fmt.Sprintf("%d decoded changes, history has %d", len(evs), len(hist))
	}
	for i, he := range hist {
		e := evs[i]
		if (he.Op == change.Delete) != (e.Op == change.Delete) {
			return fmt.Sprintf("change %d: op %s, history %s (%s)", i, e.Op, he.Op, he.Kind)
		}
		if !slices.Equal(e.KeyColumns, he.KeyColumns()) {
			return fmt.Sprintf("change %d: key columns %v, want %v", i, e.KeyColumns, he.KeyColumns())
		}
		if he.After == nil {
			continue
		}
		want := testgen.ExpectedState(testgen.State{he.Table.Name: {he.RecordID: he.AfterMap()}}, h.Tables, f, o)[he.Table.Name][he.RecordID]
		var got map[string]any
		if err := useNumber(e.After, &got); err != nil {
			return fmt.Sprintf("change %d: after: %v", i, err)
		}
		if !reflect.DeepEqual(got, want) {
			return fmt.Sprintf("change %d (%s at %s): after %s, want %v", i, he.Kind, e.Position, e.After, want)
		}
	}
	return ""
}

func useNumber(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	return dec.Decode(v)
}

func decodeImage(t *testing.T, img []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := useNumber(img, &m); err != nil {
		t.Fatalf("image %.200s: %v", img, err)
	}
	return m
}

// diffState describes the first differences between two states.
func diffState(want, got testgen.State) string {
	var diffs []string
	tables := map[string]bool{}
	for t := range want {
		tables[t] = true
	}
	for t := range got {
		tables[t] = true
	}
	names := make([]string, 0, len(tables))
	for t := range tables {
		names = append(names, t)
	}
	sort.Strings(names)
	for _, tb := range names {
		ids := map[string]bool{}
		for id := range want[tb] {
			ids[id] = true
		}
		for id := range got[tb] {
			ids[id] = true
		}
		for id := range ids {
			w, g := want[tb][id], got[tb][id]
			switch {
			case w == nil:
				diffs = append(diffs, fmt.Sprintf("%s %s: unexpected row %v", tb, id, g))
			case g == nil:
				diffs = append(diffs, fmt.Sprintf("%s %s: missing row %v", tb, id, w))
			case !reflect.DeepEqual(w, g):
				for col := range w {
					if !reflect.DeepEqual(w[col], g[col]) {
						diffs = append(diffs, fmt.Sprintf("%s %s.%s: got %#v, want %#v", tb, id, col, g[col], w[col]))
					}
				}
			}
		}
	}
	sort.Strings(diffs)
	if len(diffs) > 10 {
		diffs = append(diffs[:10], fmt.Sprintf("... %d more", len(diffs)-10))
	}
	return strings.Join(diffs, "\n")
}
