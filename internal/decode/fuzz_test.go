package decode

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cdcflow/cdcflow/internal/change"
	"github.com/cdcflow/cdcflow/internal/testgen"
)

// fuzzSep separates the records of one fuzz input (records may hold
// newlines: pretty-printed envelopes).
const fuzzSep = "\x1e"

// fuzzMaxHeld is the fragment memory bound under fuzzing: small, so that
// eviction and rejection run often.
const fuzzMaxHeld = 2048

// FuzzDecoder feeds arbitrary records, one input being several records,
// through one Decoder in auto mode: it never panics, every event keeps the
// change.Event invariants, every failure is a dead letter with a reason at a
// position that was fed, the counters agree with the output, and held
// fragments stay under the memory bound.
func FuzzDecoder(f *testing.F) {
	join := func(recs ...string) []byte { return []byte(joinRecords(recs)) }
	for _, s := range []string{dsqlFull, dsqlUntyped, dsqlDelete, dbzBare, dbzNoOp, dbzSchema, dmsData, dmsControl, ddbLambda, ddbKinesis, "null", "", "garbage"} {
		f.Add([]byte(s))
	}
	f.Add(join(dsqlChunked, dsqlFragment, dsqlFragment, dsqlFrag1, dsqlChunked))
	f.Add(join(dsqlFrag1, "null", dsqlChunked, `{"Records":null}`, dsqlFragment))
	files, _ := filepath.Glob(filepath.Join(examplesDir, "*"))
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		if filepath.Ext(file) == ".ndjson" {
			data = bytes.ReplaceAll(bytes.TrimSuffix(data, []byte("\n")), []byte("\n"), []byte(fuzzSep))
		}
		f.Add(data)
	}
	h := testgen.ExampleHistory(true)
	dsqlRecs := testgen.EncodeDSQL(h, testgen.EncodeOptions{FragmentBytes: 300})
	var pieces []string
	for _, r := range dsqlRecs {
		pieces = append(pieces, string(r.Data))
	}
	f.Add(join(pieces...))
	f.Add(testgen.KinesisLambdaEvent(dsqlRecs[:6], "s", 0, 0, testgen.ExampleBase))
	f.Add(testgen.KinesisGetRecords(dsqlRecs[6:], 0, 0, testgen.ExampleBase))
	deb := testgen.EncodeDebezium(h, true, testgen.EncodeOptions{Tombstones: true, Shards: 2})
	f.Add(testgen.MSKLambdaEvent(deb, func(r testgen.Record) string { return r.Table }, 0, testgen.ExampleBase))
	f.Add(testgen.DynamoDBLambdaEvent(testgen.EncodeDynamoDB(h, testgen.EncodeOptions{})))

	f.Fuzz(func(t *testing.T, input []byte) {
		d, err := New(Options{Keys: genKeys, MaxFragmentBytes: fuzzMaxHeld, FragmentTimeout: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		recs := bytes.Split(input, []byte(fuzzSep))
		if len(recs) > 64 {
			recs = recs[:64]
		}
		fed := map[change.Position]bool{}
		var out Output
		now := t0
		var events, dead int
		for i, rec := range recs {
			pos := at("fuzz", i+1)
			fed[pos] = true
			out.Reset()
			d.Decode(change.Raw{Data: rec, Position: pos}, now, &out)
			if i%8 == 7 {
				now = now.Add(40 * time.Second)
				d.Expire(now, &out)
			}
			checkFuzzOutput(t, &out, fed)
			events += len(out.Events)
			dead += len(out.Dead)
			if held := d.dsql.Asm.HeldBytes(); held > fuzzMaxHeld {
				t.Fatalf("record %d: %d bytes of fragments held, bound %d", i+1, held, fuzzMaxHeld)
			}
		}
		out.Reset()
		d.Drain(&out)
		checkFuzzOutput(t, &out, fed)
		if len(out.Events) != 0 {
			t.Fatal("Drain emitted events")
		}
		dead += len(out.Dead)
		st := d.Stats()
		if st.Held != 0 || d.dsql.Asm.HeldBytes() != 0 {
			t.Fatalf("after Drain: %d pieces, %d bytes held", st.Held, d.dsql.Asm.HeldBytes())
		}
		if st.Events != int64(events) {
			t.Fatalf("Stats.Events %d, %d events emitted", st.Events, events)
		}
		var nDead int64
		for _, n := range st.Dead {
			nDead += n
		}
		if nDead != int64(dead) {
			t.Fatalf("Stats.Dead adds up to %d, %d dead letters emitted", nDead, dead)
		}
		if st.Records < int64(events) {
			t.Fatalf("%d events from %d records", events, st.Records)
		}
	})
}

func joinRecords(recs []string) string {
	var b bytes.Buffer
	for i, r := range recs {
		if i > 0 {
			b.WriteString(fuzzSep)
		}
		b.WriteString(r)
	}
	return b.String()
}

// checkFuzzOutput checks the invariants of one Decode's output.
func checkFuzzOutput(t *testing.T, out *Output, fed map[change.Position]bool) {
	t.Helper()
	wasFed := func(p change.Position) bool {
		p.Index, p.Indexed = 0, false // inner records of an envelope
		return fed[p]
	}
	for i := range out.Events {
		e := &out.Events[i]
		if !e.Op.Valid() {
			t.Fatalf("event at %s: op %q", e.Position, e.Op)
		}
		if e.Table == "" || len(e.KeyColumns) == 0 {
			t.Fatalf("event at %s: table %q, key columns %v", e.Position, e.Table, e.KeyColumns)
		}
		if e.Image() == nil {
			t.Fatalf("event at %s: op %s without its image", e.Position, e.Op)
		}
		for _, img := range [][]byte{e.Before, e.After} {
			if img != nil && !isJSONObject(img) {
				t.Fatalf("event at %s: image %.200q is not a JSON object", e.Position, img)
			}
		}
		if e.Order.CommitNS < 0 {
			t.Fatalf("event at %s: commit time %d", e.Position, e.Order.CommitNS)
		}
		for j := 0; j < len(e.Order.Seq); j++ {
			if e.Order.Seq[j] <= ' ' {
				t.Fatalf("event at %s: seq %q holds byte %#x", e.Position, e.Order.Seq, e.Order.Seq[j])
			}
		}
		if !wasFed(e.Position) {
			t.Fatalf("event at %s, a position never fed", e.Position)
		}
	}
	for _, dl := range out.Dead {
		if dl.Reason == "" || dl.Detail == "" {
			t.Fatalf("dead letter at %s: reason %q detail %q", dl.Position, dl.Reason, dl.Detail)
		}
		if !wasFed(dl.Position) {
			t.Fatalf("dead letter at %s, a position never fed", dl.Position)
		}
	}
}
