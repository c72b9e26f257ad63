package dynamodb

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cdcflow/cdcflow/internal/change"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.json")

// goldenResult is what a golden file holds for one input record.
type goldenResult struct {
	Events []goldenEvent `json:"events,omitempty"`
	Skip   string        `json:"skip,omitempty"`
	Poison *goldenPoison `json:"poison,omitempty"`
}

type goldenEvent struct {
	Schema     string          `json:"schema"`
	Table      string          `json:"table"`
	Op         change.Op       `json:"op"`
	KeyColumns []string        `json:"key_columns"`
	Key        string          `json:"key"`
	Before     json.RawMessage `json:"before"`
	After      json.RawMessage `json:"after"`
	CommitNS   int64           `json:"commit_ns"`
	CommitTime string          `json:"commit_time"`
	Seq        string          `json:"seq"`
	LogFirst   bool            `json:"log_first"`
	OrderKey   string          `json:"order_key"`
	TxID       string          `json:"tx_id"`
	Position   string          `json:"position"`
}

type goldenPoison struct {
	Reason string `json:"reason"`
	Field  string `json:"field"`
	Detail string `json:"detail"`
}

// caseKeys reads testdata/<case>.keys.json when it exists.
func caseKeys(t *testing.T, input string) *change.Keys {
	t.Helper()
	b, err := os.ReadFile(strings.TrimSuffix(input, ".json") + ".keys.json")
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var k struct {
		Tables  map[string][]string `json:"tables"`
		Default []string            `json:"default"`
	}
	if err := json.Unmarshal(b, &k); err != nil {
		t.Fatalf("%s.keys.json: %v", input, err)
	}
	return &change.Keys{Tables: k.Tables, Default: k.Default}
}

func inputs(t testing.TB) []string {
	t.Helper()
	all, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range all {
		if strings.HasSuffix(p, ".golden.json") || strings.HasSuffix(p, ".keys.json") {
			continue
		}
		out = append(out, p)
	}
	if len(out) == 0 {
		t.Fatal("no test inputs in testdata")
	}
	return out
}

func TestGolden(t *testing.T) {
	for _, input := range inputs(t) {
		name := strings.TrimSuffix(filepath.Base(input), ".json")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(input)
			if err != nil {
				t.Fatal(err)
			}
			raw := change.Raw{Data: data, Position: change.Position{Source: "testdata/" + name + ".json", Offset: "1"}}
			evs, err := Decode(nil, raw, caseKeys(t, input))
			checkResult(t, raw, evs, err)

			var res goldenResult
			var p *change.Poison
			var s *change.Skip
			switch {
			case err == nil:
				for _, e := range evs {
					res.Events = append(res.Events, goldenEvent{
						Schema: e.Schema, Table: e.Table, Op: e.Op, KeyColumns: e.KeyColumns, Key: e.Key,
						Before: e.Before, After: e.After,
						CommitNS: e.Order.CommitNS, CommitTime: time.Unix(0, e.Order.CommitNS).UTC().Format(time.RFC3339Nano),
						Seq: e.Order.Seq, LogFirst: e.Order.LogFirst, OrderKey: e.Order.Key(),
						TxID: e.TxID, Position: e.Position.String(),
					})
				}
			case errors.As(err, &p):
				res.Poison = &goldenPoison{Reason: p.Reason, Field: p.Field, Detail: p.Detail}
			case errors.As(err, &s):
				res.Skip = s.Reason
			}
			got, err := json.MarshalIndent(res, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			goldenPath := strings.TrimSuffix(input, ".json") + ".golden.json"
			if *update {
				if err := os.WriteFile(goldenPath, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(goldenPath)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("result differs from %s (run go test -update and review the diff):\ngot:\n%s\nwant:\n%s", goldenPath, got, want)
			}
		})
	}
}

// checkResult asserts the contract every Decode result keeps, whatever the
// input: a skip or a poison with a reason and no event, or exactly one event
// whose images are nil or a JSON object.
func checkResult(t *testing.T, raw change.Raw, evs []change.Event, err error) {
	t.Helper()
	if err != nil {
		if len(evs) != 0 {
			t.Fatalf("error %v with %d events", err, len(evs))
		}
		var p *change.Poison
		var s *change.Skip
		switch {
		case errors.As(err, &p):
			if p.Reason == "" || p.Detail == "" {
				t.Fatalf("poison without reason or detail: %#v", p)
			}
		case errors.As(err, &s):
			t.Fatalf("DynamoDB records are never skipped: %v", s)
		default:
			t.Fatalf("error is neither *change.Poison nor *change.Skip: %T %v", err, err)
		}
		return
	}
	if len(evs) != 1 {
		t.Fatalf("got %d events, want 1", len(evs))
	}
	e := evs[0]
	if !e.Op.Valid() {
		t.Fatalf("invalid op %q", e.Op)
	}
	if e.Schema != "" || e.TxID != "" {
		t.Fatalf("schema %q and tx id %q must be empty", e.Schema, e.TxID)
	}
	if e.Table == "" || e.Key == "" || len(e.KeyColumns) == 0 {
		t.Fatalf("empty table %q, key %q or key columns %q", e.Table, e.Key, e.KeyColumns)
	}
	for name, img := range map[string]json.RawMessage{"before": e.Before, "after": e.After} {
		if img == nil {
			continue
		}
		if !json.Valid(img) || bytes.TrimSpace(img)[0] != '{' {
			t.Fatalf("%s image is not a JSON object: %q", name, img)
		}
	}
	if e.Op == change.Delete {
		if e.Before == nil || e.After != nil {
			t.Fatalf("delete with before %q after %q", e.Before, e.After)
		}
	} else if e.After == nil {
		t.Fatalf("%s without after image", e.Op)
	}
	if e.Order.CommitNS < 0 || e.Order.LogFirst || strings.ContainsAny(e.Order.Seq, " \t\n") {
		t.Fatalf("unexpected order %+v", e.Order)
	}
	if len(e.Raw) != len(raw.Data) || (len(e.Raw) > 0 && &e.Raw[0] != &raw.Data[0]) {
		t.Fatal("event Raw is not the record's bytes")
	}
	if e.Position != raw.Position {
		t.Fatalf("position %v, want %v", e.Position, raw.Position)
	}
	checkConversion(t, raw.Data, e)
}

// checkConversion compares the event's images with a reference conversion
// of the record's typed images through encoding/json.
func checkConversion(t *testing.T, data []byte, e change.Event) {
	t.Helper()
	var rec struct {
		Dynamodb map[string]any `json:"dynamodb"`
	}
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	if err := d.Decode(&rec); err != nil {
		t.Fatalf("reference decode: %v", err)
	}
	var wantAfter any
	if e.Op != change.Delete {
		wantAfter, _ = refItem(rec.Dynamodb["NewImage"])
	}
	wantBefore, ok := refItem(rec.Dynamodb["OldImage"])
	if !ok && e.Op == change.Delete {
		wantBefore, _ = refItem(rec.Dynamodb["Keys"])
	}
	for _, img := range []struct {
		name string
		got  json.RawMessage
		want any
	}{{"after", e.After, wantAfter}, {"before", e.Before, wantBefore}} {
		var got any
		if img.got != nil {
			d := json.NewDecoder(bytes.NewReader(img.got))
			d.UseNumber()
			if err := d.Decode(&got); err != nil {
				t.Fatalf("%s image: %v", img.name, err)
			}
		}
		if !reflect.DeepEqual(got, img.want) {
			t.Fatalf("%s image %s, reference conversion %#v", img.name, img.got, img.want)
		}
	}
}

// refItem converts a typed item the slow, obvious way; ok is false when v is
// not an item.
func refItem(v any) (any, bool) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, false
	}
	out := make(map[string]any, len(m))
	for k, a := range m {
		if out[k], ok = refAttr(a); !ok {
			return nil, false
		}
	}
	return out, true
}

func refAttr(v any) (any, bool) {
	m, ok := v.(map[string]any)
	if !ok || len(m) != 1 {
		return nil, false
	}
	for typ, x := range m {
		switch typ {
		case "S", "B":
			s, ok := x.(string)
			return s, ok
		case "N":
			s, ok := x.(string)
			return json.Number(s), ok
		case "BOOL":
			b, ok := x.(bool)
			return b, ok
		case "NULL":
			return nil, x == true
		case "M":
			return refItem(x)
		case "L", "SS", "BS", "NS":
			arr, ok := x.([]any)
			if !ok {
				return nil, false
			}
			out := make([]any, len(arr))
			for i, el := range arr {
				switch typ {
				case "L":
					out[i], ok = refAttr(el)
				case "NS":
					var s string
					s, ok = el.(string)
					out[i] = json.Number(s)
				default:
					out[i], ok = el.(string)
				}
				if !ok {
					return nil, false
				}
			}
			return out, true
		}
	}
	return nil, false
}

func TestDecodeAppends(t *testing.T) {
	data, err := os.ReadFile("testdata/lambda_insert.json")
	if err != nil {
		t.Fatal(err)
	}
	dst := []change.Event{{Table: "earlier"}}
	out, err := Decode(dst, change.Raw{Data: data}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 2 || out[0].Table != "earlier" || out[1].Table != "ExampleTableWithStream" {
		t.Fatalf("Decode did not append: %+v", out)
	}
	bad, err := os.ReadFile("testdata/lambda_insert_keys_only.json")
	if err != nil {
		t.Fatal(err)
	}
	out2, err := Decode(out, change.Raw{Data: bad}, nil)
	var p *change.Poison
	if !errors.As(err, &p) || len(out2) != 2 {
		t.Fatalf("KEYS_ONLY insert: err %v, %d events", err, len(out2))
	}
}

// TestImagesDoNotAlias checks that the converted images are fresh memory:
// rewriting the record's bytes afterwards leaves the event unchanged.
func TestImagesDoNotAlias(t *testing.T) {
	data, err := os.ReadFile("testdata/lambda_modify.json")
	if err != nil {
		t.Fatal(err)
	}
	evs, err := Decode(nil, change.Raw{Data: data}, nil)
	if err != nil {
		t.Fatal(err)
	}
	before, after := string(evs[0].Before), string(evs[0].After)
	for i := range data {
		data[i] = 'x'
	}
	if string(evs[0].Before) != before || string(evs[0].After) != after {
		t.Fatal("images changed with the record's bytes")
	}
}

func TestCommitNS(t *testing.T) {
	tests := []struct {
		created   string
		precision string // "" for none
		kinesis   bool
		want      int64
	}{
		{"1479499740", "", false, 1479499740_000000000},
		{"1.479499740E9", "", false, 1479499740_000000000},
		{"1479499740.5", "", false, 1479499740_500000000},
		{"1479499740.9999999999", "", false, 1479499740_999999999}, // below 1 ns is truncated
		{"1e-10", "", false, 0},
		{"0", "", false, 0},
		{"-0", "", false, 0},
		{"9223372036.854775807", "", false, 9223372036854775807},
		{"1605634424658", "", true, 1605634424658_000000},
		{"1605634424658", `"MILLISECOND"`, true, 1605634424658_000000},
		{"1605634424658123", `"MICROSECOND"`, true, 1605634424658123_000},
		{"1605634424658", `"MILLISECOND"`, false, 1605634424658_000000},
		{"16056344246.58E2", `"MILLISECOND"`, false, 1605634424658_000000},
		{`"2016-11-18T20:09:00Z"`, "", false, 1479499740_000000000},
	}
	for _, tt := range tests {
		t.Run(tt.created+tt.precision, func(t *testing.T) {
			var b strings.Builder
			b.WriteString(`{"eventName":"INSERT",`)
			if tt.kinesis {
				b.WriteString(`"tableName":"T",`)
			} else {
				b.WriteString(`"eventSourceARN":"arn:aws:dynamodb:us-east-1:1:table/T/stream/x",`)
			}
			b.WriteString(`"dynamodb":{"ApproximateCreationDateTime":` + tt.created)
			if tt.precision != "" {
				b.WriteString(`,"ApproximateCreationDateTimePrecision":` + tt.precision)
			}
			b.WriteString(`,"Keys":{"id":{"S":"a"}},"NewImage":{"id":{"S":"a"}}}}`)
			evs, err := Decode(nil, change.Raw{Data: []byte(b.String())}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := evs[0].Order.CommitNS; got != tt.want {
				t.Fatalf("CommitNS = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestEpochNSRejects(t *testing.T) {
	for _, lit := range []string{"-1", "-0.5", "9223372036.854775808", "1e30", "92233720368547758070"} {
		if ns, err := epochNS([]byte(lit), 9); err == nil {
			t.Errorf("epochNS(%s seconds) = %d, want an error", lit, ns)
		}
	}
}

func TestSequenceSorts(t *testing.T) {
	// Sequence numbers of different lengths must sort numerically as Seq.
	rec := func(seq string) []byte {
		return []byte(`{"eventName":"MODIFY","eventSourceARN":"arn:aws:dynamodb:us-east-1:1:table/T/stream/x","dynamodb":{"ApproximateCreationDateTime":1,"Keys":{"id":{"S":"a"}},"NewImage":{"id":{"S":"a"}},"SequenceNumber":"` + seq + `"}}`)
	}
	a, err := Decode(nil, change.Raw{Data: rec("999")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Decode(nil, change.Raw{Data: rec("1000")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if change.CompareOrder(a[0].Order, b[0].Order) >= 0 || a[0].Order.Key() >= b[0].Order.Key() {
		t.Fatalf("sequence 999 does not sort before 1000: %q %q", a[0].Order.Key(), b[0].Order.Key())
	}
}

func TestKeyColumns(t *testing.T) {
	rec := []byte(`{"eventName":"INSERT","eventSourceARN":"arn:aws:dynamodb:us-east-1:1:table/Orders/stream/x","dynamodb":{"ApproximateCreationDateTime":1,"Keys":{"sk":{"N":"2"},"pk":{"S":"c#1"}},"NewImage":{"pk":{"S":"c#1"},"sk":{"N":"2"},"gsi":{"S":"g"}}}}`)
	tests := []struct {
		name     string
		keys     *change.Keys
		wantCols string
		wantKey  string
	}{
		{"nil keys: Keys sorted by name", nil, "pk,sk", `["c#1",2]`},
		{"default ignored", &change.Keys{Default: []string{"id"}}, "pk,sk", `["c#1",2]`},
		{"other table configured", &change.Keys{Tables: map[string][]string{"Users": {"id"}}}, "pk,sk", `["c#1",2]`},
		{"configured order kept", &change.Keys{Tables: map[string][]string{"Orders": {"sk", "pk"}}}, "sk,pk", `[2,"c#1"]`},
		{"configured single", &change.Keys{Tables: map[string][]string{"Orders": {"pk"}}}, "pk", "c#1"},
		{"configured empty list ignored", &change.Keys{Tables: map[string][]string{"Orders": {}}}, "pk,sk", `["c#1",2]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			evs, err := Decode(nil, change.Raw{Data: rec}, tt.keys)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(evs[0].KeyColumns, ","); got != tt.wantCols || evs[0].Key != tt.wantKey {
				t.Fatalf("key columns %q key %q, want %q %q", got, evs[0].Key, tt.wantCols, tt.wantKey)
			}
		})
	}
}

func TestDetect(t *testing.T) {
	tests := []struct {
		name string
		data string
		want bool
	}{
		{"lambda", `{"eventName":"INSERT","eventSource":"aws:dynamodb","dynamodb":{"Keys":{}}}`, true},
		{"kinesis with spaces", " {\"eventName\": \"MODIFY\", \"dynamodb\": {}, \"eventSource\": \"aws:dynamodb\"}", true},
		{"dms", `{"data":{"id":1},"metadata":{"record-type":"data"}}`, false},
		{"kinesis lambda envelope", `{"eventSource":"aws:kinesis","eventName":"aws:kinesis:record","kinesis":{"data":"e30="}}`, false},
		{"array", `[{"eventName":"INSERT","eventSource":"aws:dynamodb","dynamodb":{}}]`, false},
		{"empty", ``, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Detect([]byte(tt.data)); got != tt.want {
				t.Fatalf("Detect = %v, want %v", got, tt.want)
			}
		})
	}
	// Every record Decode accepts is detected (all carry eventSource here,
	// and none spells those member names with escapes).
	for _, input := range inputs(t) {
		data, err := os.ReadFile(input)
		if err != nil {
			t.Fatal(err)
		}
		if evs, err := Decode(nil, change.Raw{Data: data}, caseKeys(t, input)); err == nil && len(evs) == 1 && !Detect(data) {
			t.Errorf("%s decodes but Detect is false", input)
		}
	}
}
