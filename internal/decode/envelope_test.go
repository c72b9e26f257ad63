package decode

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/cdcflow/cdcflow/internal/change"
	"github.com/cdcflow/cdcflow/internal/testgen"
)

// editJSON decodes data, lets edit change it and encodes it again.
func editJSON(t *testing.T, data []byte, edit func(m map[string]any)) []byte {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// records returns the envelope's "Records" array of objects.
func records(m map[string]any) []any { return m["Records"].([]any) }

func obj(v any) map[string]any { return v.(map[string]any) }

var envPos = change.Position{Source: "events.json", Offset: "7"}

// wantInner checks that p is envPos with envelope index i.
func wantInner(t *testing.T, what string, p change.Position, i int) {
	t.Helper()
	want := envPos
	want.Index, want.Indexed = i, true
	if p != want {
		t.Errorf("%s: position %s (%+v), want %s", what, p, p, want)
	}
}

// wantDead checks one dead letter: reason, the field named in the detail,
// and the position.
func wantDead(t *testing.T, dl change.DeadLetter, reason, field string, index int) {
	t.Helper()
	if dl.Reason != reason {
		t.Errorf("dead letter reason %q, want %q (%s)", dl.Reason, reason, dl.Detail)
	}
	if !strings.Contains(dl.Detail, field) {
		t.Errorf("dead letter detail %q does not name %s", dl.Detail, field)
	}
	if index < 0 {
		if dl.Position != envPos {
			t.Errorf("dead letter position %s, want the envelope's %s", dl.Position, envPos)
		}
	} else {
		wantInner(t, "dead letter", dl.Position, index)
	}
}

func exampleDSQL() []testgen.Record {
	return testgen.EncodeDSQL(testgen.ExampleHistory(false), testgen.EncodeOptions{})
}

func TestEnvelopeKinesisLambda(t *testing.T) {
	recs := exampleDSQL()[:5]
	event := testgen.KinesisLambdaEvent(recs, "cdc", 0, 0, testgen.ExampleBase)

	t.Run("all records", func(t *testing.T) {
		d := newDecoder(t, Options{Keys: genKeys})
		out := decodeAll(d, change.Raw{Data: event, Position: envPos})
		if len(out.Dead) != 0 || len(out.Events) != len(recs) {
			t.Fatalf("%d events, dead letters: %s", len(out.Events), deadSummary(out.Dead))
		}
		checkEvents(t, out.Events)
		for i, e := range out.Events {
			wantInner(t, "event "+strconv.Itoa(i), e.Position, i)
			if !bytes.Equal(e.Raw, recs[i].Data) {
				t.Errorf("event %d: Raw is not the base64-decoded record", i)
			}
			if e.Table != recs[i].Table {
				t.Errorf("event %d: table %s, want %s", i, e.Table, recs[i].Table)
			}
		}
		if st := d.Stats(); st.Records != int64(len(recs)) || st.Events != int64(len(recs)) {
			t.Errorf("stats: %d records, %d events; want %d each", st.Records, st.Events, len(recs))
		}
	})

	t.Run("bad inner records", func(t *testing.T) {
		bad := editJSON(t, event, func(m map[string]any) {
			rs := records(m)
			obj(obj(rs[1])["kinesis"])["data"] = "not*base64!"
			delete(obj(obj(rs[2])["kinesis"]), "data")
			obj(obj(rs[3])["kinesis"])["data"] = base64.StdEncoding.EncodeToString([]byte("garbage"))
		})
		d := newDecoder(t, Options{Keys: genKeys})
		out := decodeAll(d, change.Raw{Data: bad, Position: envPos})
		if len(out.Events) != 2 || len(out.Dead) != 3 {
			t.Fatalf("%d events, %d dead letters, want 2 and 3: %s", len(out.Events), len(out.Dead), deadSummary(out.Dead))
		}
		wantInner(t, "event 0", out.Events[0].Position, 0)
		wantInner(t, "event 1", out.Events[1].Position, 4)
		wantDead(t, out.Dead[0], change.ReasonInvalidEnvelope, "Records[1].kinesis.data", 1)
		wantDead(t, out.Dead[1], change.ReasonInvalidEnvelope, "Records[2].kinesis.data", 2)
		wantDead(t, out.Dead[2], change.ReasonUnknownFormat, "", 3)
		if string(out.Dead[0].Raw) != "not*base64!" {
			t.Errorf("invalid base64 dead letter keeps %q, want the field's text", out.Dead[0].Raw)
		}
		if string(out.Dead[2].Raw) != "garbage" {
			t.Errorf("undecodable record dead letter keeps %q, want the decoded bytes", out.Dead[2].Raw)
		}
		st := d.Stats()
		if st.Records != 5 || st.Events != 2 || st.Dead[change.ReasonInvalidEnvelope] != 2 || st.Dead[change.ReasonUnknownFormat] != 1 {
			t.Errorf("stats %+v", st)
		}
	})
}

func TestEnvelopeGetRecords(t *testing.T) {
	recs := exampleDSQL()[:4]
	out := testgen.KinesisGetRecords(recs, 0, 0, testgen.ExampleBase)
	bad := editJSON(t, out, func(m map[string]any) {
		obj(records(m)[1])["Data"] = "%%%"
		delete(obj(records(m)[2]), "Data")
	})
	d := newDecoder(t, Options{Keys: genKeys})
	got := decodeAll(d, change.Raw{Data: out, Position: envPos}, change.Raw{Data: bad, Position: envPos})
	if len(got.Events) != 4+2 || len(got.Dead) != 2 {
		t.Fatalf("%d events, want 6; dead letters: %s", len(got.Events), deadSummary(got.Dead))
	}
	checkEvents(t, got.Events)
	for i, e := range got.Events[:4] {
		wantInner(t, "event", e.Position, i)
		if !bytes.Equal(e.Raw, recs[i].Data) {
			t.Errorf("event %d: Raw is not the record", i)
		}
	}
	wantInner(t, "event", got.Events[4].Position, 0)
	wantInner(t, "event", got.Events[5].Position, 3)
	wantDead(t, got.Dead[0], change.ReasonInvalidEnvelope, "Records[1].Data", 1)
	wantDead(t, got.Dead[1], change.ReasonInvalidEnvelope, "Records[2]", 2)
}

func TestEnvelopeDynamoDBLambda(t *testing.T) {
	h := testgen.ExampleHistory(false)
	recs := testgen.EncodeDynamoDB(h, testgen.EncodeOptions{})[:5]
	event := testgen.DynamoDBLambdaEvent(recs)

	d := newDecoder(t, Options{Keys: genKeys})
	out := decodeAll(d, change.Raw{Data: event, Position: envPos})
	if len(out.Dead) != 0 || len(out.Events) != len(recs) {
		t.Fatalf("%d events, dead letters: %s", len(out.Events), deadSummary(out.Dead))
	}
	checkEvents(t, out.Events)
	evs := h.Events()
	for i, e := range out.Events {
		wantInner(t, "event", e.Position, i)
		if e.Table != evs[i].Table.Name || e.Key != evs[i].RecordID {
			t.Errorf("event %d: %s %s, want %s %s", i, e.Table, e.Key, evs[i].Table.Name, evs[i].RecordID)
		}
	}

	bad := editJSON(t, event, func(m map[string]any) {
		rs := records(m)
		rs[1] = json.Number("5")
		rs[2] = map[string]any{"foo": "bar"}
	})
	d = newDecoder(t, Options{Keys: genKeys})
	out = decodeAll(d, change.Raw{Data: bad, Position: envPos})
	if len(out.Events) != 3 || len(out.Dead) != 2 {
		t.Fatalf("%d events, want 3; dead letters: %s", len(out.Events), deadSummary(out.Dead))
	}
	for i, idx := range []int{0, 3, 4} {
		wantInner(t, "event", out.Events[i].Position, idx)
	}
	wantDead(t, out.Dead[0], change.ReasonInvalidEnvelope, "Records[1]", 1)
	wantDead(t, out.Dead[1], change.ReasonInvalidEnvelope, "Records[2]", 2)
	if string(out.Dead[0].Raw) != "5" {
		t.Errorf("dead letter keeps %q, want the array element", out.Dead[0].Raw)
	}
}

func TestEnvelopeMSK(t *testing.T) {
	h := testgen.ExampleHistory(false)
	recs := testgen.EncodeDebezium(h, false, testgen.EncodeOptions{Tombstones: true, Shards: 2})
	topic := func(r testgen.Record) string { return testgen.DebeziumTopic(h.Table(r.Table)) }
	event := testgen.MSKLambdaEvent(recs, topic, 100, testgen.ExampleBase)

	// The order inner records get: topic-partitions sorted by name, each in
	// offset order.
	groups := map[string][]testgen.Record{}
	for _, r := range recs {
		g := topic(r) + "-" + strconv.Itoa(r.Shard)
		groups[g] = append(groups[g], r)
	}
	names := make([]string, 0, len(groups))
	for g := range groups {
		names = append(names, g)
	}
	sort.Strings(names)
	if len(names) < 3 {
		t.Fatalf("the event has %d topic-partitions; the test wants several", len(names))
	}
	var order []testgen.Record
	for _, g := range names {
		order = append(order, groups[g]...)
	}

	t.Run("all records", func(t *testing.T) {
		// No key configuration: orders and order_items are keyed only by the
		// Kafka message key, which must reach the decoder.
		d := newDecoder(t, Options{})
		out := decodeAll(d, change.Raw{Data: event, Position: envPos})
		if len(out.Dead) != 0 {
			t.Fatalf("dead letters: %s", deadSummary(out.Dead))
		}
		checkEvents(t, out.Events)
		j := 0
		tombstones := 0
		for i, r := range order {
			if r.Kind == testgen.RecordTombstone {
				tombstones++
				continue
			}
			if j >= len(out.Events) {
				t.Fatalf("%d events, want %d", len(out.Events), len(recs)-1)
			}
			e := out.Events[j]
			j++
			wantInner(t, "event", e.Position, i)
			if !bytes.Equal(e.Raw, r.Data) {
				t.Errorf("event at index %d: Raw is not record %s", i, r.Data)
			}
			if e.Table == testgen.TableOrders && !slices.Equal(e.KeyColumns, []string{"order_id"}) {
				t.Errorf("orders event key columns %v: the Kafka key was not used", e.KeyColumns)
			}
		}
		if j != len(out.Events) || tombstones != 1 {
			t.Fatalf("%d events, want %d; %d tombstones", len(out.Events), j, tombstones)
		}
		st := d.Stats()
		if st.Records != int64(len(recs)) || st.Skipped[change.SkipTombstone] != 1 || st.Events != int64(len(recs)-1) {
			t.Errorf("stats %+v, want %d records, 1 tombstone", st, len(recs))
		}
	})

	t.Run("bad key and value", func(t *testing.T) {
		bad := editJSON(t, event, func(m map[string]any) {
			rs := obj(m["records"])
			first := rs[names[0]].([]any)
			obj(first[0])["value"] = "@@@"
			second := rs[names[1]].([]any)
			obj(second[0])["key"] = "@@@"
		})
		d := newDecoder(t, Options{})
		out := decodeAll(d, change.Raw{Data: bad, Position: envPos})
		if len(out.Dead) != 2 || len(out.Events) != len(recs)-3 {
			t.Fatalf("%d events, want %d; dead letters: %s", len(out.Events), len(recs)-3, deadSummary(out.Dead))
		}
		wantDead(t, out.Dead[0], change.ReasonInvalidEnvelope, "records."+names[0]+"[offset 100].value", 0)
		wantDead(t, out.Dead[1], change.ReasonInvalidEnvelope, "records."+names[1]+"[offset 100].key", len(groups[names[0]]))
	})

	t.Run("records not a map", func(t *testing.T) {
		d := newDecoder(t, Options{})
		out := decodeAll(d, change.Raw{Data: []byte(`{"eventSource":"aws:kafka","records":[1,2]}`), Position: envPos})
		if len(out.Events) != 0 || len(out.Dead) != 1 {
			t.Fatalf("%d events, dead letters: %s", len(out.Events), deadSummary(out.Dead))
		}
		wantDead(t, out.Dead[0], change.ReasonInvalidEnvelope, "records", -1)
	})
}

// TestEnvelopeInvalid: an envelope whose records member is not what it must
// be is one dead letter naming the member, at the envelope's position.
func TestEnvelopeInvalid(t *testing.T) {
	cases := []struct{ name, data, field string }{
		{"Records object", `{"Records":{"a":1}}`, "Records"},
		{"Records string", `{"Records":"x"}`, "Records"},
		{"Records number", `{"Records":5,"NextShardIterator":"AAA"}`, "Records"},
		{"Records null", `{"Records":null}`, "Records"},
		{"msk records null", `{"eventSource":"aws:kafka","records":null}`, "records"},
		{"msk partition not a list", `{"eventSource":"aws:kafka","records":{"t-0":{"value":"e30="}}}`, "records"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := newDecoder(t, Options{})
			out := decodeAll(d, change.Raw{Data: []byte(c.data), Position: envPos})
			if len(out.Events) != 0 || len(out.Dead) != 1 {
				t.Fatalf("%d events, %d dead letters (%s), want one dead letter", len(out.Events), len(out.Dead), deadSummary(out.Dead))
			}
			wantDead(t, out.Dead[0], change.ReasonInvalidEnvelope, c.field, -1)
			if !bytes.Equal(out.Dead[0].Raw, []byte(c.data)) {
				t.Errorf("dead letter keeps %q, want the envelope", out.Dead[0].Raw)
			}
			if st := d.Stats(); st.Records != 1 || st.Dead[change.ReasonInvalidEnvelope] != 1 {
				t.Errorf("stats %+v, want 1 record, 1 invalid_envelope", st)
			}
		})
	}

	t.Run("empty Records", func(t *testing.T) {
		// An empty poll is not an error: there is nothing to decode.
		d := newDecoder(t, Options{})
		out := decodeAll(d, change.Raw{Data: []byte(`{"Records":[],"NextShardIterator":"AAA","MillisBehindLatest":0}`), Position: envPos})
		if len(out.Events)+len(out.Dead) != 0 {
			t.Fatalf("%d events, dead letters %s", len(out.Events), deadSummary(out.Dead))
		}
	})
}

// TestNotAnEnvelope: change records whose rows have a column called Records
// or records are change records, not envelopes.
func TestNotAnEnvelope(t *testing.T) {
	row := `{"order_id":1001,"Records":[{"kinesis":{"data":"e30="}}],"records":{"t-0":[]},"eventSource":"aws:kafka"}`
	plain := `{"order_id":1001,"status":"new"}`
	cases := []struct{ name, data, format string }{
		{"dsql", strings.Replace(dsqlFull, plain, row, 1), FormatDSQL},
		{"dsql delete", strings.Replace(dsqlDelete, `{"order_id":1001}`, row, 1), FormatDSQL},
		{"debezium", strings.Replace(dbzBare, plain, row, 1), FormatDebezium},
		{"debezium schema", strings.Replace(dbzSchema, plain, row, 1), FormatDebezium},
		{"dms", strings.Replace(dmsData, plain, row, 1), FormatDMS},
		{"dynamodb", strings.Replace(ddbLambda, `"status":{"S":"new"}`, `"Records":{"L":[{"S":"x"}]}`, 1), FormatDynamoDB},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if !strings.Contains(c.data, `"Records"`) {
				t.Fatal("test record has no Records member")
			}
			d := newDecoder(t, Options{Keys: genKeys})
			out := decodeAll(d, change.Raw{Data: []byte(c.data), Position: envPos})
			if len(out.Dead) != 0 || len(out.Events) != 1 {
				t.Fatalf("%d events, dead letters: %s", len(out.Events), deadSummary(out.Dead))
			}
			e := out.Events[0]
			if e.Position != envPos || e.Key != "1001" || !bytes.Contains(e.Image(), []byte(`"Records"`)) {
				t.Errorf("event %s key %s at %s, image %s", e.Table, e.Key, e.Position, e.Image())
			}
			if got := Detect([]byte(c.data)); got != c.format {
				t.Errorf("Detect = %q, want %q", got, c.format)
			}
		})
	}
}
