package dms

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
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
			if s.Reason != change.SkipControl {
				t.Fatalf("unexpected skip reason %q", s.Reason)
			}
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
	if e.Order.CommitNS < 0 || e.Order.Seq != "" || e.Order.LogFirst {
		t.Fatalf("unexpected order %+v", e.Order)
	}
	if len(e.Raw) != len(raw.Data) || (len(e.Raw) > 0 && &e.Raw[0] != &raw.Data[0]) {
		t.Fatal("event Raw is not the record's bytes")
	}
	if e.Position != raw.Position {
		t.Fatalf("position %v, want %v", e.Position, raw.Position)
	}
}

func TestDecodeAppends(t *testing.T) {
	data, err := os.ReadFile("testdata/insert.json")
	if err != nil {
		t.Fatal(err)
	}
	dst := []change.Event{{Table: "earlier"}}
	out, err := Decode(dst, change.Raw{Data: data}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 2 || out[0].Table != "earlier" || out[1].Table != "orders" {
		t.Fatalf("Decode did not append: %+v", out)
	}
	ctl, err := os.ReadFile("testdata/control.json")
	if err != nil {
		t.Fatal(err)
	}
	out2, err := Decode(out, change.Raw{Data: ctl}, nil)
	var s *change.Skip
	if !errors.As(err, &s) || len(out2) != 2 {
		t.Fatalf("control record: err %v, %d events", err, len(out2))
	}
}

func TestKeyFromConfiguredDefault(t *testing.T) {
	rec := []byte(`{"data":{"tenant":"t1","sku":"A","qty":1},"metadata":{"timestamp":"2020-01-01T00:00:00Z","record-type":"data","operation":"insert","schema-name":"s","table-name":"stock"}}`)
	tests := []struct {
		name     string
		keys     *change.Keys
		wantCols []string
		wantKey  string
	}{
		{"default list", &change.Keys{Default: []string{"tenant", "sku"}}, []string{"tenant", "sku"}, `["t1","A"]`},
		{"schema-qualified wins over bare", &change.Keys{Tables: map[string][]string{"s.stock": {"sku"}, "stock": {"tenant"}}}, []string{"sku"}, "A"},
		{"bare table", &change.Keys{Tables: map[string][]string{"stock": {"tenant"}}}, []string{"tenant"}, "t1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			evs, err := Decode(nil, change.Raw{Data: rec}, tt.keys)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(evs[0].KeyColumns, ",") != strings.Join(tt.wantCols, ",") || evs[0].Key != tt.wantKey {
				t.Fatalf("key columns %q key %q, want %q %q", evs[0].KeyColumns, evs[0].Key, tt.wantCols, tt.wantKey)
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
		{"dms data", `{"data":{"id":1},"metadata":{"record-type":"data"}}`, true},
		{"dms control with leading space", " \n{\"metadata\":{\"record-type\":\"control\"}}", true},
		{"debezium", `{"before":null,"after":{"id":1},"source":{"ts_ms":1},"op":"c"}`, false},
		{"dynamodb", `{"eventName":"INSERT","eventSource":"aws:dynamodb","dynamodb":{"Keys":{}}}`, false},
		{"array", `[{"metadata":{"record-type":"data"}}]`, false},
		{"empty", ``, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Detect([]byte(tt.data)); got != tt.want {
				t.Fatalf("Detect = %v, want %v", got, tt.want)
			}
		})
	}
	// Every record Decode accepts is detected, except those spelling member
	// names with escapes, which Detect's byte search does not unescape.
	for _, input := range inputs(t) {
		if strings.Contains(input, "escaped_") {
			continue
		}
		data, err := os.ReadFile(input)
		if err != nil {
			t.Fatal(err)
		}
		evs, err := Decode(nil, change.Raw{Data: data}, caseKeys(t, input))
		var s *change.Skip
		if (err == nil && len(evs) == 1) || errors.As(err, &s) {
			if !Detect(data) {
				t.Errorf("%s decodes but Detect is false", input)
			}
		}
	}
}
