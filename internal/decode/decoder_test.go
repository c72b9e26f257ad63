package decode

import (
	"encoding/base64"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/cdcflow/cdcflow/internal/change"
)

func TestNew(t *testing.T) {
	for _, f := range []string{"", FormatAuto, FormatDSQL, FormatDebezium, FormatDMS, FormatDynamoDB} {
		t.Run("format "+f, func(t *testing.T) {
			if _, err := New(Options{Format: f}); err != nil {
				t.Fatalf("New: %v", err)
			}
		})
	}
	for _, f := range []string{"avro", "DSQL", "Auto", " dms", "kinesis"} {
		t.Run("bad format "+f, func(t *testing.T) {
			d, err := New(Options{Format: f})
			if err == nil {
				t.Fatalf("New accepted format %q", f)
			}
			if d != nil {
				t.Error("New returned a Decoder with its error")
			}
			msg := err.Error()
			if !strings.Contains(msg, "decode.format") || !strings.Contains(msg, `"`+f+`"`) || !strings.Contains(msg, "dynamodb") {
				t.Errorf("error %q should name decode.format, the value and the choices", msg)
			}
		})
	}
}

// TestExplicitFormat: an explicit format decodes every record with that
// decoder (a record of another format is its dead letter, marked with the
// format), while auto picks the decoder per record.
func TestExplicitFormat(t *testing.T) {
	records := map[string]string{
		FormatDSQL: dsqlFull, FormatDebezium: dbzBare, FormatDMS: dmsData, FormatDynamoDB: ddbLambda,
	}
	for _, format := range []string{FormatDSQL, FormatDebezium, FormatDMS, FormatDynamoDB} {
		t.Run(format, func(t *testing.T) {
			d := newDecoder(t, Options{Format: format, Keys: genKeys})
			out := decodeAll(d, change.Raw{Data: []byte(records[format]), Position: at("in", 1)})
			if len(out.Events) != 1 || len(out.Dead) != 0 {
				t.Fatalf("own record: %d events, dead letters %s", len(out.Events), deadSummary(out.Dead))
			}
			checkEvents(t, out.Events)

			// Records of the formats a decoder cannot read as its own.
			var others []string
			switch format {
			case FormatDSQL:
				others = []string{dmsData, ddbLambda, "garbage"}
			case FormatDebezium:
				others = []string{dmsData, ddbLambda, "garbage"}
			case FormatDMS:
				others = []string{dsqlFull, dbzBare, ddbLambda, "null", "garbage"}
			case FormatDynamoDB:
				others = []string{dsqlFull, dbzBare, dmsData, "null", "garbage"}
			}
			d = newDecoder(t, Options{Format: format, Keys: genKeys})
			var raws []change.Raw
			for i, o := range others {
				raws = append(raws, change.Raw{Data: []byte(o), Position: at("in", i+1)})
			}
			out = decodeAll(d, raws...)
			if len(out.Events) != 0 || len(out.Dead) != len(others) {
				t.Fatalf("foreign records: %d events, dead letters %s; want %d dead letters", len(out.Events), deadSummary(out.Dead), len(others))
			}
			for i, dl := range out.Dead {
				if dl.Format != format {
					t.Errorf("dead letter %d: format %q, want %q", i, dl.Format, format)
				}
				if dl.Reason == change.ReasonUnknownFormat && format == FormatDSQL {
					t.Errorf("dead letter %d: the dsql decoder does not detect formats", i)
				}
				if dl.Position != at("in", i+1) || string(dl.Raw) != others[i] {
					t.Errorf("dead letter %d: position %s raw %.40q", i, dl.Position, dl.Raw)
				}
			}
		})
	}

	t.Run("auto", func(t *testing.T) {
		d := newDecoder(t, Options{Keys: genKeys})
		var raws []change.Raw
		for _, f := range []string{FormatDSQL, FormatDebezium, FormatDMS, FormatDynamoDB} {
			raws = append(raws, change.Raw{Data: []byte(records[f])})
		}
		raws = append(raws, change.Raw{Data: []byte("garbage"), Position: at("in", 9)}, change.Raw{Data: []byte(`{"a":1}`), Position: at("in", 10)})
		out := decodeAll(d, raws...)
		if len(out.Events) != 4 || len(out.Dead) != 2 {
			t.Fatalf("%d events, dead letters %s", len(out.Events), deadSummary(out.Dead))
		}
		for i, dl := range out.Dead {
			if dl.Reason != change.ReasonUnknownFormat || dl.Format != "" {
				t.Errorf("dead letter %d: reason %q format %q, want unknown_format and no format", i, dl.Reason, dl.Format)
			}
		}
		if !strings.Contains(out.Dead[0].Detail, "not a JSON object") || strings.Contains(out.Dead[1].Detail, "not a JSON object") {
			t.Errorf("details %q, %q: only the first is not a JSON object", out.Dead[0].Detail, out.Dead[1].Detail)
		}
	})

	t.Run("explicit format unwraps envelopes", func(t *testing.T) {
		recs := exampleDSQL()[:3]
		d := newDecoder(t, Options{Format: FormatDSQL, Keys: genKeys})
		out := decodeAll(d, change.Raw{Data: []byte(`{"Records":[` +
			`{"kinesis":{"data":"` + base64.StdEncoding.EncodeToString(recs[0].Data) + `"}},` +
			`{"kinesis":{"data":"` + base64.StdEncoding.EncodeToString(recs[1].Data) + `"}}]}`)})
		if len(out.Events) != 2 || len(out.Dead) != 0 {
			t.Fatalf("%d events, dead letters %s", len(out.Events), deadSummary(out.Dead))
		}
	})
}

// TestStats feeds one of everything and checks every counter.
func TestStats(t *testing.T) {
	chunk2 := strings.ReplaceAll(strings.Replace(dsqlChunked, `"fragments":2`, `"fragments":3`, 1), "ck-1", "ck-2")
	envelope := `{"Records":[{"kinesis":{"data":"` + base64.StdEncoding.EncodeToString([]byte(dbzBare)) + `"}},{"kinesis":{"data":"?"}}]}`
	steps := []struct {
		data        string
		events      int
		dead        int
		held        int64 // Stats.Held after the step
		description string
	}{
		{dsqlFull, 1, 0, 0, "full record"},
		{strings.Replace(dsqlFull, `"op":"c"`, `"op":"x"`, 1), 1, 0, 0, "unknown op: an upsert"},
		{dsqlChunked, 0, 0, 1, "main record held"},
		{dsqlFragment, 0, 0, 2, "fragment held"},
		{dsqlFragment, 0, 0, 2, "duplicate fragment skipped"},
		{dsqlFrag1, 1, 0, 0, "set complete"},
		{dsqlChunked, 0, 0, 0, "late duplicate main record skipped"},
		{"null", 0, 0, 0, "tombstone"},
		{dmsControl, 0, 0, 0, "control record"},
		{dbzNoOp, 0, 1, 0, "missing op"},
		{"garbage", 0, 1, 0, "unknown format"},
		{dsqlFull[:60], 0, 1, 0, "invalid JSON"},
		{chunk2, 0, 0, 1, "second set: main held"},
		{strings.ReplaceAll(dsqlFragment, "ck-1", "ck-2"), 0, 0, 2, "second set: fragment held"},
		{envelope, 1, 1, 2, "envelope: one event, one invalid_envelope"},
	}
	d := newDecoder(t, Options{Keys: genKeys})
	for i, s := range steps {
		var out Output
		d.Decode(change.Raw{Data: []byte(s.data), Position: at("in", i+1)}, t0, &out)
		if len(out.Events) != s.events || len(out.Dead) != s.dead {
			t.Fatalf("step %d (%s): %d events, dead letters %s; want %d and %d", i+1, s.description, len(out.Events), deadSummary(out.Dead), s.events, s.dead)
		}
		if held := d.Stats().Held; held != s.held {
			t.Fatalf("step %d (%s): %d pieces held, want %d", i+1, s.description, held, s.held)
		}
	}
	st := d.Stats()
	want := Stats{
		Records:    16,
		Events:     4,
		Skipped:    map[string]int64{change.SkipTombstone: 1, change.SkipControl: 1, "duplicate_fragment": 2},
		Dead:       map[string]int64{change.ReasonMissingOp: 1, change.ReasonUnknownFormat: 1, change.ReasonInvalidJSON: 1, change.ReasonInvalidEnvelope: 1},
		UnknownOps: 1,
		Held:       2,
	}
	checkStats(t, st, want)

	// A snapshot is a copy: changing it does not change the Decoder.
	st.Dead["x"] = 9
	st.Skipped["x"] = 9
	if s := d.Stats(); s.Dead["x"] != 0 || s.Skipped["x"] != 0 {
		t.Error("Stats shares its maps with the Decoder")
	}

	var out Output
	d.Drain(&out)
	if len(out.Dead) != 2 {
		t.Fatalf("drain: dead letters %s, want the 2 held pieces", deadSummary(out.Dead))
	}
	for _, dl := range out.Dead {
		if dl.Reason != change.ReasonFragmentTimeout || dl.Format != FormatDSQL {
			t.Errorf("drained dead letter %s format %q", dl.Reason, dl.Format)
		}
	}
	want.Held = 0
	want.Dead[change.ReasonFragmentTimeout] = 2
	checkStats(t, d.Stats(), want)
}

func checkStats(t *testing.T, got, want Stats) {
	t.Helper()
	if got.Records != want.Records || got.Events != want.Events || got.UnknownOps != want.UnknownOps || got.Held != want.Held ||
		!maps.Equal(got.Skipped, want.Skipped) || !maps.Equal(got.Dead, want.Dead) {
		t.Errorf("stats\n got %+v\nwant %+v", got, want)
	}
}

func TestFragmentOptions(t *testing.T) {
	t.Run("timeout", func(t *testing.T) {
		d := newDecoder(t, Options{Keys: genKeys, FragmentTimeout: time.Minute})
		var out Output
		d.Decode(change.Raw{Data: []byte(dsqlChunked), Position: at("in", 1)}, t0, &out)
		d.Expire(t0.Add(time.Minute), &out)
		if len(out.Dead) != 0 || d.Stats().Held != 1 {
			t.Fatalf("expired at the timeout: %s", deadSummary(out.Dead))
		}
		d.Expire(t0.Add(time.Minute+time.Nanosecond), &out)
		if len(out.Dead) != 1 || out.Dead[0].Reason != change.ReasonFragmentTimeout || out.Dead[0].Position != at("in", 1) {
			t.Fatalf("after the timeout: dead letters %s", deadSummary(out.Dead))
		}
		if st := d.Stats(); st.Held != 0 || st.Dead[change.ReasonFragmentTimeout] != 1 {
			t.Errorf("stats %+v", st)
		}
	})

	t.Run("default timeout", func(t *testing.T) {
		d := newDecoder(t, Options{Keys: genKeys})
		var out Output
		d.Decode(change.Raw{Data: []byte(dsqlChunked)}, t0, &out)
		d.Expire(t0.Add(DefaultFragmentTimeout), &out)
		if len(out.Dead) != 0 {
			t.Fatalf("expired before the default timeout: %s", deadSummary(out.Dead))
		}
		d.Expire(t0.Add(DefaultFragmentTimeout+time.Second), &out)
		if len(out.Dead) != 1 {
			t.Fatalf("not expired after the default timeout")
		}
	})

	t.Run("memory bound", func(t *testing.T) {
		d := newDecoder(t, Options{Keys: genKeys, MaxFragmentBytes: 100})
		var out Output
		d.Decode(change.Raw{Data: []byte(dsqlChunked), Position: at("in", 1)}, t0, &out)
		if len(dsqlChunked) <= 100 || len(out.Dead) != 1 || out.Dead[0].Reason != change.ReasonFragmentLimit {
			t.Fatalf("a %d-byte piece over a 100-byte bound: dead letters %s", len(dsqlChunked), deadSummary(out.Dead))
		}
		if d.Stats().Held != 0 {
			t.Error("the rejected piece is held")
		}
		// The set's fragments follow their main record into the dead letters.
		d.Decode(change.Raw{Data: []byte(dsqlFragment), Position: at("in", 2)}, t0, &out)
		if len(out.Dead) != 2 || out.Dead[1].Reason != change.ReasonFragmentLimit || d.Stats().Held != 0 {
			t.Fatalf("fragment of a rejected set: dead letters %s", deadSummary(out.Dead))
		}
	})

	t.Run("eviction", func(t *testing.T) {
		// Room for the pieces of one set: a second set evicts the first.
		d := newDecoder(t, Options{Keys: genKeys, MaxFragmentBytes: int64(len(dsqlChunked) + len(dsqlFragment) + 10)})
		var out Output
		d.Decode(change.Raw{Data: []byte(dsqlChunked), Position: at("in", 1)}, t0, &out)
		d.Decode(change.Raw{Data: []byte(dsqlFragment), Position: at("in", 2)}, t0, &out)
		d.Decode(change.Raw{Data: []byte(strings.ReplaceAll(dsqlChunked, "ck-1", "ck-2")), Position: at("in", 3)}, t0, &out)
		if len(out.Dead) != 2 || out.Dead[0].Reason != change.ReasonFragmentLimit || out.Dead[1].Reason != change.ReasonFragmentLimit {
			t.Fatalf("dead letters %s, want both pieces of the first set", deadSummary(out.Dead))
		}
		if st := d.Stats(); st.Held != 1 || st.Dead[change.ReasonFragmentLimit] != 2 {
			t.Errorf("stats %+v", st)
		}
	})
}

func TestOldestHeld(t *testing.T) {
	d := newDecoder(t, Options{Keys: genKeys})
	pos := func(shard, off string) change.Position {
		return change.Position{Source: "cdc", Partition: shard, Offset: off}
	}
	var out Output
	d.Decode(change.Raw{Data: []byte(dsqlChunked), Position: pos("shard-1", "90")}, t0, &out)
	d.Decode(change.Raw{Data: []byte(dsqlFragment), Position: pos("shard-2", "5")}, t0, &out)
	d.Decode(change.Raw{Data: []byte(strings.ReplaceAll(dsqlChunked, "ck-1", "ck-2")), Position: pos("shard-1", "100")}, t0, &out)
	if len(out.Events)+len(out.Dead) != 0 {
		t.Fatalf("pieces were not held: %s", deadSummary(out.Dead))
	}
	if p, ok := d.OldestHeld("cdc", "shard-1"); !ok || p != pos("shard-1", "90") {
		t.Errorf("shard-1: oldest held %s %v, want offset 90", p, ok)
	}
	if p, ok := d.OldestHeld("cdc", "shard-2"); !ok || p != pos("shard-2", "5") {
		t.Errorf("shard-2: oldest held %s %v", p, ok)
	}
	if _, ok := d.OldestHeld("cdc", "shard-3"); ok {
		t.Error("shard-3 holds nothing")
	}
	d.Decode(change.Raw{Data: []byte(dsqlFrag1), Position: pos("shard-2", "6")}, t0, &out)
	if len(out.Events) != 1 {
		t.Fatalf("set ck-1 did not complete: %s", deadSummary(out.Dead))
	}
	if e := out.Events[0]; e.Position != pos("shard-2", "6") || e.Key != "1001" {
		t.Errorf("reassembled event at %s key %s", e.Position, e.Key)
	}
	if p, ok := d.OldestHeld("cdc", "shard-1"); !ok || p != pos("shard-1", "100") {
		t.Errorf("shard-1 after completion: oldest held %s %v, want offset 100", p, ok)
	}
	if _, ok := d.OldestHeld("cdc", "shard-2"); ok {
		t.Error("shard-2 still holds a piece of a completed set")
	}
}

func TestOutputReset(t *testing.T) {
	d := newDecoder(t, Options{Keys: genKeys})
	out := decodeAll(d, change.Raw{Data: []byte(dsqlFull)}, change.Raw{Data: []byte("garbage")})
	if len(out.Events) != 1 || len(out.Dead) != 1 {
		t.Fatalf("%d events %d dead", len(out.Events), len(out.Dead))
	}
	ev, dead := cap(out.Events), cap(out.Dead)
	out.Reset()
	if len(out.Events) != 0 || len(out.Dead) != 0 || cap(out.Events) != ev || cap(out.Dead) != dead {
		t.Errorf("Reset: len %d/%d cap %d/%d", len(out.Events), len(out.Dead), cap(out.Events), cap(out.Dead))
	}
	if full := out.Events[:1]; full[0].Raw != nil || out.Dead[:1][0].Raw != nil {
		t.Error("Reset keeps references to the previous batch's bytes")
	}
}
