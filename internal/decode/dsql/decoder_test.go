package dsql

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cdcflow/cdcflow/internal/change"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.json")

// testKeys is the key configuration of every golden case.
var testKeys = &change.Keys{Tables: map[string][]string{
	"order_items":     {"order_id", "item_id"},
	"public.accounts": {"account_id"},
}}

var t0 = time.Date(2024, 1, 15, 11, 30, 0, 0, time.UTC)

// goldenEvent is an event as the golden files show it.
type goldenEvent struct {
	Schema     string          `json:"schema"`
	Table      string          `json:"table"`
	Op         change.Op       `json:"op"`
	KeyColumns []string        `json:"key_columns"`
	Key        string          `json:"key"`
	Before     json.RawMessage `json:"before"`
	After      json.RawMessage `json:"after"`
	CommitNS   int64           `json:"commit_ns"`
	Seq        string          `json:"seq"`
	OrderKey   string          `json:"order_key"`
	TxID       string          `json:"tx_id"`
	Position   string          `json:"position"`
	RawLine    int             `json:"raw_line"` // the input line Raw holds
}

type goldenDead struct {
	Line     int    `json:"line,omitempty"` // the record's line; 0 for held pieces dead-lettered later
	Reason   string `json:"reason"`
	Field    string `json:"field,omitempty"`
	Detail   string `json:"detail"`
	Format   string `json:"format,omitempty"`
	Position string `json:"position"`
	RawLine  int    `json:"raw_line"`
}

type goldenSkip struct {
	Line   int    `json:"line"`
	Reason string `json:"reason"`
}

type golden struct {
	Events          []goldenEvent `json:"events"`
	Dead            []goldenDead  `json:"dead"`
	Skips           []goldenSkip  `json:"skips"`
	UnknownOps      int64         `json:"unknown_ops"`
	DuplicatePieces int64         `json:"duplicate_pieces"`
}

// runLines decodes each line of input as one record (position = file:line),
// then drains the assembler, and renders everything for a golden file.
func runLines(t *testing.T, name string, input []byte) golden {
	t.Helper()
	d := NewDecoder(testKeys, 1<<20, time.Minute)
	lines := bytes.Split(bytes.TrimRight(input, "\n"), []byte("\n"))
	lineOf := func(raw []byte) int {
		for i, l := range lines {
			if bytes.Equal(l, raw) {
				return i + 1
			}
		}
		return -1
	}
	g := golden{Events: []goldenEvent{}, Dead: []goldenDead{}, Skips: []goldenSkip{}}
	addDead := func(line int, dl change.DeadLetter, field string) {
		g.Dead = append(g.Dead, goldenDead{Line: line, Reason: dl.Reason, Field: field, Detail: dl.Detail,
			Format: dl.Format, Position: dl.Position.String(), RawLine: lineOf(dl.Raw)})
	}
	var evs []change.Event
	for i, line := range lines {
		pos := change.Position{Source: name, Offset: strconv.Itoa(i + 1)}
		var err error
		n := len(evs)
		evs, err = d.Decode(evs, change.Raw{Data: line, Position: pos}, t0)
		var p *change.Poison
		var s *change.Skip
		switch {
		case err == nil:
			if len(evs) != n+1 {
				t.Fatalf("line %d: nil error but %d events", i+1, len(evs)-n)
			}
		case errors.As(err, &p):
			addDead(i+1, change.DeadLetter{Reason: p.Reason, Detail: p.Error(), Position: pos, Raw: line}, p.Field)
		case errors.As(err, &s):
			g.Skips = append(g.Skips, goldenSkip{Line: i + 1, Reason: s.Reason})
		default:
			t.Fatalf("line %d: unexpected error type %T: %v", i+1, err, err)
		}
		if err != nil && len(evs) != n {
			t.Fatalf("line %d: error %v with %d events", i+1, err, len(evs)-n)
		}
		for _, dl := range d.TakeDead() {
			addDead(0, dl, "")
		}
	}
	for _, dl := range d.Drain() {
		addDead(0, dl, "")
	}
	if d.Asm.HeldCount() != 0 || d.Asm.HeldBytes() != 0 {
		t.Fatalf("after Drain: %d pieces, %d bytes held", d.Asm.HeldCount(), d.Asm.HeldBytes())
	}
	for _, e := range evs {
		assertEventInvariants(t, e)
		g.Events = append(g.Events, goldenEvent{
			Schema: e.Schema, Table: e.Table, Op: e.Op, KeyColumns: e.KeyColumns, Key: e.Key,
			Before: e.Before, After: e.After, CommitNS: e.Order.CommitNS, Seq: e.Order.Seq,
			OrderKey: e.Order.Key(), TxID: e.TxID, Position: e.Position.String(), RawLine: lineOf(e.Raw),
		})
	}
	g.UnknownOps, g.DuplicatePieces = d.UnknownOps, d.DuplicatePieces
	return g
}

func assertEventInvariants(t *testing.T, e change.Event) {
	t.Helper()
	for name, img := range map[string][]byte{"before": e.Before, "after": e.After} {
		if img == nil {
			continue
		}
		if !json.Valid(img) || bytes.TrimSpace(img)[0] != '{' {
			t.Fatalf("event %s is not a JSON object: %q", name, img)
		}
	}
	if e.Table == "" || e.Key == "" {
		t.Fatalf("event without table or key: %+v", e)
	}
	if e.Image() == nil {
		t.Fatalf("event %s without its image", e.Op)
	}
}

func TestGolden(t *testing.T) {
	inputs, err := filepath.Glob("testdata/*.json")
	if err != nil {
		t.Fatal(err)
	}
	cases := 0
	for _, in := range inputs {
		if strings.HasSuffix(in, ".golden.json") {
			continue
		}
		cases++
		name := strings.TrimSuffix(filepath.Base(in), ".json")
		t.Run(name, func(t *testing.T) {
			input, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			got, err := json.MarshalIndent(runLines(t, filepath.Base(in), input), "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			goldenPath := strings.TrimSuffix(in, ".json") + ".golden.json"
			if *update {
				if err := os.WriteFile(goldenPath, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(goldenPath)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("output differs from %s (run with -update after checking):\n%s", goldenPath, got)
			}
		})
	}
	if cases < 11 {
		t.Fatalf("found %d golden cases, want at least 11", cases)
	}
}

// TestGoldenExpectations pins the headline outcome of each case, so that a
// careless -update cannot bless a regression.
func TestGoldenExpectations(t *testing.T) {
	tests := []struct {
		name    string
		events  int
		reasons []string // dead-letter reasons, in order
		check   func(t *testing.T, g golden)
	}{
		{name: "insert", events: 1, check: func(t *testing.T, g golden) {
			e := g.Events[0]
			if e.Op != change.Insert || e.Key != "1" || e.Schema != "public" || e.Table != "test_cdc" ||
				e.CommitNS != 1705318200000000000 || e.Seq != change.SortableUint(1705318200125483291) ||
				e.TxID != "ffthunp5stx6ffs2vyfqoatmfu" || e.Before != nil {
				t.Errorf("insert event: %+v", e)
			}
		}},
		{name: "update", events: 1, check: func(t *testing.T, g golden) {
			if g.Events[0].Op != change.Update {
				t.Errorf("op %q, want u", g.Events[0].Op)
			}
		}},
		{name: "unknown_op", events: 1, check: func(t *testing.T, g golden) {
			if g.UnknownOps != 1 || g.Events[0].Op != change.Insert {
				t.Errorf("unknown op: counted %d, op %q", g.UnknownOps, g.Events[0].Op)
			}
		}},
		{name: "delete_key_only", events: 1, reasons: []string{change.ReasonMissingKey}, check: func(t *testing.T, g golden) {
			if g.Events[0].Op != change.Delete || g.Events[0].After != nil || g.Events[0].Key != "[1001,42]" {
				t.Errorf("delete event: %+v", g.Events[0])
			}
			if d := g.Dead[0].Detail; !strings.Contains(d, "[order_id, item_id]") || !strings.Contains(d, "tables.order_lines.key") {
				t.Errorf("delete missing-key detail does not name the carried columns and the setting: %s", d)
			}
		}},
		{name: "composite_key", events: 2, check: func(t *testing.T, g golden) {
			if g.Events[0].Key != "[1001,42]" || g.Events[1].Key != `["a\"b",7]` {
				t.Errorf("keys %q %q", g.Events[0].Key, g.Events[1].Key)
			}
		}},
		{name: "unicode_escaped", events: 3, check: func(t *testing.T, g golden) {
			if g.Events[0].Key != "ünï\"cødé😀" || g.Events[1].Table != "tåble" || g.Events[2].Key != "7" {
				t.Errorf("keys %q %q %q", g.Events[0].Key, g.Events[1].Table, g.Events[2].Key)
			}
		}},
		{name: "missing_ts", reasons: []string{change.ReasonMissingTime, change.ReasonInvalidValue, change.ReasonInvalidValue}},
		{name: "missing_table", reasons: []string{change.ReasonMissingTable, change.ReasonMissingTable, change.ReasonInvalidEnvelope}},
		{name: "missing_key", reasons: []string{change.ReasonMissingKey, change.ReasonMissingKey, change.ReasonMissingImage}},
		{name: "invalid_json", reasons: []string{change.ReasonInvalidJSON, change.ReasonInvalidJSON, change.ReasonInvalidJSON,
			change.ReasonInvalidJSON, change.ReasonInvalidEnvelope, change.ReasonInvalidValue}},
		{name: "missing_op", reasons: []string{change.ReasonMissingOp, change.ReasonMissingOp, change.ReasonInvalidOp}},
		{name: "chunked", events: 2, check: func(t *testing.T, g golden) {
			if g.DuplicatePieces != 2 {
				t.Errorf("duplicates %d, want 2", g.DuplicatePieces)
			}
			var img map[string]any
			if err := json.Unmarshal(g.Events[0].After, &img); err != nil || img["note"] != "split 😀 here \"quoted\"\n" {
				t.Errorf("reassembled after %s (%v)", g.Events[0].After, err)
			}
			if g.Events[1].Op != change.Delete || g.Events[1].Key != "9" {
				t.Errorf("chunked delete: %+v", g.Events[1])
			}
		}},
		{name: "chunked_invalid", reasons: nil, check: func(t *testing.T, g golden) {
			if len(g.Dead) < 6 {
				t.Fatalf("want at least 6 dead letters, got %d", len(g.Dead))
			}
			for _, d := range g.Dead {
				if d.RawLine <= 0 {
					t.Errorf("dead letter without its raw record: %+v", d)
				}
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			input, err := os.ReadFile(filepath.Join("testdata", tt.name+".json"))
			if err != nil {
				t.Fatal(err)
			}
			g := runLines(t, tt.name+".json", input)
			if len(g.Events) != tt.events {
				t.Fatalf("%d events, want %d: %+v", len(g.Events), tt.events, g.Events)
			}
			if tt.reasons != nil {
				var got []string
				for _, d := range g.Dead {
					got = append(got, d.Reason)
				}
				if strings.Join(got, ",") != strings.Join(tt.reasons, ",") {
					t.Fatalf("dead-letter reasons %v, want %v", got, tt.reasons)
				}
			}
			if tt.check != nil {
				tt.check(t, g)
			}
		})
	}
}

func TestDecodeAliasesInput(t *testing.T) {
	rec := []byte(`{"type":"full","op":"c","before":{"id":1},"after":{"id":1,"v":"x"},"source":{"ts_ns":5,"table":"t"}}`)
	d := NewDecoder(nil, 1<<20, time.Minute)
	evs, err := d.Decode(nil, change.Raw{Data: rec}, t0)
	if err != nil {
		t.Fatal(err)
	}
	e := evs[0]
	within := func(b []byte) bool {
		for i := 0; len(b) > 0 && i+len(b) <= len(rec); i++ {
			if &rec[i] == &b[0] {
				return true
			}
		}
		return false
	}
	if !within(e.Before) || !within(e.After) || &e.Raw[0] != &rec[0] {
		t.Fatal("Before/After/Raw are copies, want slices of the input")
	}
	if string(e.After) != `{"id":1,"v":"x"}` || string(e.Before) != `{"id":1}` {
		t.Fatalf("images %s %s", e.Before, e.After)
	}
	if e.Order.Seq != "" {
		t.Fatalf("Seq %q without envelope ts, want empty", e.Order.Seq)
	}
}

func TestKeyColumnsShared(t *testing.T) {
	d := NewDecoder(testKeys, 1<<20, time.Minute)
	rec := []byte(`{"op":"c","after":{"order_id":1,"item_id":2},"source":{"ts_ns":5,"table":"order_items"}}`)
	evs, err := d.Decode(nil, change.Raw{Data: rec}, t0)
	if err != nil {
		t.Fatal(err)
	}
	if &evs[0].KeyColumns[0] != &testKeys.Tables["order_items"][0] {
		t.Fatal("KeyColumns is a copy, want the configured slice")
	}
}

func TestOrderFallbacks(t *testing.T) {
	tests := []struct {
		name   string
		rec    string
		commit int64
		seq    string
	}{
		{"ns", `{"op":"c","after":{"id":1},"source":{"ts_ns":7,"ts_ms":1,"table":"t"},"ts_ns":9,"ts_ms":1}`, 7, change.SortableUint(9)},
		{"ms", `{"op":"c","after":{"id":1},"source":{"ts_ms":2,"table":"t"},"ts_ms":3}`, 2e6, change.SortableUint(3e6)},
		{"null ns falls back", `{"op":"c","after":{"id":1},"source":{"ts_ns":null,"ts_ms":2,"table":"t"},"ts_ns":null}`, 2e6, ""},
		{"zero", `{"op":"c","after":{"id":1},"source":{"ts_ns":0,"table":"t"},"ts_ns":0}`, 0, change.SortableUint(0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := NewDecoder(nil, 1<<20, time.Minute)
			evs, err := d.Decode(nil, change.Raw{Data: []byte(tt.rec)}, t0)
			if err != nil {
				t.Fatal(err)
			}
			o := evs[0].Order
			if o.CommitNS != tt.commit || o.Seq != tt.seq || o.LogFirst {
				t.Fatalf("order %+v, want commit %d seq %q", o, tt.commit, tt.seq)
			}
		})
	}
}

func TestTxIDReuse(t *testing.T) {
	d := NewDecoder(nil, 1<<20, time.Minute)
	var evs []change.Event
	for i, rec := range []string{
		`{"op":"c","after":{"id":1},"source":{"ts_ns":1,"table":"t","txId":"a"},"ts_ns":10}`,
		`{"op":"c","after":{"id":2},"source":{"ts_ns":1,"table":"t","txId":"a"},"ts_ns":11}`,
		`{"op":"c","after":{"id":3},"source":{"ts_ns":1,"table":"t"},"ts_ns":12}`,
		`{"op":"c","after":{"id":4},"source":{"ts_ns":1,"table":"t","txId":"b"}}`,
		`{"op":"c","after":{"id":5},"source":{"ts_ns":1,"table":"t","txId":"b"}}`,
	} {
		var err error
		if evs, err = d.Decode(evs, change.Raw{Data: []byte(rec)}, t0); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
	}
	want := []struct{ tx, seq string }{
		{"a", change.SortableUint(10)}, {"a", change.SortableUint(11)}, {"", change.SortableUint(12)}, {"b", ""}, {"b", ""},
	}
	for i, w := range want {
		if evs[i].TxID != w.tx || evs[i].Order.Seq != w.seq {
			t.Errorf("event %d: tx %q seq %q, want %q %q", i, evs[i].TxID, evs[i].Order.Seq, w.tx, w.seq)
		}
	}
}

func TestDetect(t *testing.T) {
	tests := []struct {
		name string
		data string
		want bool
	}{
		{"full", `{"type":"full","op":"c"}`, true},
		{"chunked", `{"op":"c","type":"chunked"}`, true},
		{"fragment", `{"type":"fragment","chunk_id":"x","index":0,"data":"{"}`, true},
		{"no type, dsql source", `{"op":"c","after":{"id":1},"source":{"ts_ns":1,"txId":"x","cluster":"c","table":"t"}}`, true},
		{"debezium", `{"op":"c","after":{"id":1},"source":{"ts_ms":1,"ts_ns":1,"txId":5,"connector":"postgresql","table":"t"}}`, false},
		{"debezium with schema", `{"schema":{"type":"struct"},"payload":{"op":"c"}}`, false},
		{"other type", `{"type":"insert"}`, false},
		{"dynamodb", `{"eventName":"INSERT","dynamodb":{"Keys":{}}}`, false},
		{"not json", `hello`, false},
		{"array", `[{"type":"full"}]`, false},
		{"empty", ``, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Detect([]byte(tt.data)); got != tt.want {
				t.Fatalf("Detect(%s) = %v, want %v", tt.data, got, tt.want)
			}
		})
	}
}

// TestScannerAgreesWithEncodingJSON checks the hand scanner against
// json.Valid on tricky documents.
func TestScannerAgreesWithEncodingJSON(t *testing.T) {
	docs := []string{
		`{}`, ` { } `, `{"a":1}`, `{"a":-0.5e+10}`, `{"a":01}`, `{"a":1.}`, `{"a":.5}`, `{"a":-}`, `{"a":1e}`,
		`{"a":"\u00e9\ud83d\ude00"}`, `{"a":"\x"}`, `{"a":"\u12"}`, "{\"a\":\"\x01\"}", "{\"a\":\"\xff\"}",
		`{"a":[1,2,]}`, `{"a":[,]}`, `{"a":{"b":}}`, `{"a":tru}`, `{"a":nul}`, `{"a":true}`, `{"a" 1}`,
		`{"a":1,}`, `{,"a":1}`, `{"a":1}}`, `{"a":[1,[2,{"b":null}]]}`, `{"a":"\/\b\f\n\r\t\"\\"}`, "{\"a\":1}\n",
		`{"a":1} {}`, `{"a":1`, `{"a`, `{`, ``, `"x"`,
	}
	for _, doc := range docs {
		var h header
		err := h.parse([]byte(doc))
		ok := err == nil || errors.Is(err, errNotObject)
		if ok != json.Valid([]byte(doc)) {
			t.Errorf("%q: scanner ok=%v (%v), json.Valid=%v", doc, ok, err, !ok)
		}
	}
}

func TestAppendUnescaped(t *testing.T) {
	for _, s := range []string{`plain`, `q\"uote\\ \/ \b\f\n\r\t`, `\u00e9\u4e2d`, `\ud83d\ude00`, `\ud83d`, `\ude00x`, `\ud83dx`, "raw ü"} {
		var want string
		if err := json.Unmarshal([]byte(`"`+s+`"`), &want); err != nil {
			t.Fatal(err)
		}
		if got := string(appendUnescaped(nil, []byte(s))); got != want {
			t.Errorf("%q: got %q, want %q", s, got, want)
		}
	}
}
