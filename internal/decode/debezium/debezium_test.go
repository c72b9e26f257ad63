package debezium

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unsafe"

	"github.com/cdcflow/cdcflow/internal/change"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.json")

// testKeys is the key configuration of the golden cases.
var testKeys = &change.Keys{Tables: map[string][]string{
	"sales.order_lines": {"order_id", "line_no"},
	"amounts":           {"amount"},
	"CUSTOMERS":         {"ID"},
}}

// golden is what a case decodes to.
type golden struct {
	Events []goldenEvent `json:"events,omitempty"`
	Skip   string        `json:"skip,omitempty"`
	Poison *goldenPoison `json:"poison,omitempty"`
}

type goldenPoison struct {
	Reason string `json:"reason"`
	Field  string `json:"field"`
	Detail string `json:"detail"`
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
	Seq        string          `json:"seq"`
	LogFirst   bool            `json:"log_first"`
	OrderKey   string          `json:"order_key"`
	TxID       string          `json:"tx_id"`
	Position   string          `json:"position"`
	RawIsInput bool            `json:"raw_is_input"`
}

// decodeFile decodes testdata/<name>.json with its optional <name>.key.json.
func decodeFile(t *testing.T, name string) (golden, change.Raw) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := os.ReadFile(filepath.Join("testdata", name+".key.json"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	r := change.Raw{Data: data, Key: key, Position: change.Position{Source: "testdata/" + name + ".json", Offset: "1"}}
	evs, err := Decode(nil, r, testKeys)
	var g golden
	var skip *change.Skip
	var poison *change.Poison
	switch {
	case errors.As(err, &skip):
		g.Skip = skip.Reason
	case errors.As(err, &poison):
		g.Poison = &goldenPoison{Reason: poison.Reason, Field: poison.Field, Detail: poison.Detail}
	case err != nil:
		t.Fatalf("error is neither *change.Skip nor *change.Poison: %T %v", err, err)
	}
	if err != nil && len(evs) != 0 {
		t.Fatalf("error %v with %d events", err, len(evs))
	}
	if err == nil && len(evs) != 1 {
		t.Fatalf("got %d events, want 1", len(evs))
	}
	for _, e := range evs {
		g.Events = append(g.Events, goldenEvent{
			Schema: e.Schema, Table: e.Table, Op: e.Op, KeyColumns: e.KeyColumns, Key: e.Key,
			Before: e.Before, After: e.After,
			CommitNS: e.Order.CommitNS, Seq: e.Order.Seq, LogFirst: e.Order.LogFirst, OrderKey: e.Order.Key(),
			TxID: e.TxID, Position: e.Position.String(), RawIsInput: bytes.Equal(e.Raw, data),
		})
	}
	return g, r
}

func TestGolden(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	var n int
	for _, f := range files {
		base := filepath.Base(f)
		if strings.HasSuffix(base, ".golden.json") || strings.HasSuffix(base, ".key.json") {
			continue
		}
		n++
		name := strings.TrimSuffix(base, ".json")
		t.Run(name, func(t *testing.T) {
			g, _ := decodeFile(t, name)
			for _, e := range g.Events {
				checkEvent(t, e.Before, e.After, e.Table, e.Key, e.Seq)
			}
			got, err := json.MarshalIndent(g, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			path := filepath.Join("testdata", name+".golden.json")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("decoded %s differs from %s (run with -update to accept):\n%s", f, path, got)
			}
		})
	}
	if n < 40 {
		t.Fatalf("found only %d cases in testdata", n)
	}
}

// checkEvent asserts the invariants of every emitted event.
func checkEvent(t *testing.T, before, after json.RawMessage, table, key, seq string) {
	t.Helper()
	for _, img := range []json.RawMessage{before, after} {
		if img == nil {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(img, &m); err != nil || m == nil {
			t.Errorf("image %q is not a JSON object: %v", img, err)
		}
	}
	if table == "" || key == "" {
		t.Errorf("empty table %q or key %q", table, key)
	}
	for i := 0; i < len(seq); i++ {
		if seq[i] <= ' ' {
			t.Errorf("seq %q holds byte %#x", seq, seq[i])
		}
	}
}

// TestAliasing checks that images alias the input unless they were rewritten.
func TestAliasing(t *testing.T) {
	data, err := os.ReadFile("testdata/pg_update_full_before.json")
	if err != nil {
		t.Fatal(err)
	}
	evs, err := Decode(nil, change.Raw{Data: data}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, img := range map[string][]byte{"before": evs[0].Before, "after": evs[0].After} {
		if !within(img, data) {
			t.Errorf("%s does not alias the input", name)
		}
	}
	data, err = os.ReadFile("testdata/logical_types_schema.json")
	if err != nil {
		t.Fatal(err)
	}
	evs, err = Decode(nil, change.Raw{Data: data}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if within(evs[0].After, data) {
		t.Error("converted after still aliases the input")
	}
}

func within(sub, buf []byte) bool {
	if len(sub) == 0 || len(buf) == 0 {
		return false
	}
	p, start := uintptr(unsafe.Pointer(&sub[0])), uintptr(unsafe.Pointer(&buf[0]))
	return p >= start && p < start+uintptr(len(buf))
}

func TestTombstones(t *testing.T) {
	for name, data := range map[string][]byte{"nil": nil, "empty": {}, "spaces": []byte(" \n"), "null": []byte("null"), "null_spaced": []byte(" null\n")} {
		t.Run(name, func(t *testing.T) {
			evs, err := Decode(nil, change.Raw{Data: data, Key: []byte(`{"id":1}`)}, nil)
			var skip *change.Skip
			if !errors.As(err, &skip) || skip.Reason != change.SkipTombstone || len(evs) != 0 {
				t.Fatalf("got %v, %d events; want a tombstone skip", err, len(evs))
			}
		})
	}
}

// TestKeyColumnsShared checks that configured key columns and Kafka keys
// matching them share the configured slice instead of allocating.
func TestKeyColumnsShared(t *testing.T) {
	data, err := os.ReadFile("testdata/kafka_key.json")
	if err != nil {
		t.Fatal(err)
	}
	cols := []string{"id"}
	keys := &change.Keys{Default: cols}
	for _, key := range [][]byte{nil, []byte(`{"id":1001}`)} {
		evs, err := Decode(nil, change.Raw{Data: data, Key: key}, keys)
		if err != nil {
			t.Fatal(err)
		}
		if &evs[0].KeyColumns[0] != &cols[0] {
			t.Errorf("key %s: key columns %v do not share the configured slice", key, evs[0].KeyColumns)
		}
	}
	// A Kafka key naming other columns decides, and its list is reused.
	var first []string
	for i := 0; i < 2; i++ {
		evs, err := Decode(nil, change.Raw{Data: data, Key: []byte(`{"id":1001,"email":"sally@example.com"}`)}, keys)
		if err != nil {
			t.Fatal(err)
		}
		got := evs[0].KeyColumns
		if strings.Join(got, ",") != "id,email" || evs[0].Key != `[1001,"sally@example.com"]` {
			t.Fatalf("got columns %v key %s", got, evs[0].Key)
		}
		if i == 1 && &got[0] != &first[0] {
			t.Error("second decode did not reuse the cached key column list")
		}
		first = got
	}
}

func TestDetect(t *testing.T) {
	tests := []struct {
		name string
		data string
		want bool
	}{
		{"bare payload", `{"before":null,"after":{"id":1},"source":{"version":"2.5","connector":"postgresql","table":"t"},"op":"c"}`, true},
		{"schema envelope", `{"schema":{"type":"struct"},"payload":{"op":"c"}}`, true},
		{"envelope tombstone", `{"schema":null,"payload":null}`, true},
		{"payload without schema", `{"payload":{"op":"u","source":{"connector":"mysql"}}}`, true},
		{"dsql record", `{"type":"full","op":"c","before":null,"after":{"id":1},"source":{"version":"1.0","ts_ns":1,"table":"t","cluster":"c"}}`, false},
		{"dsql record with connector column", `{"type":"full","op":"c","after":{"connector":"x"},"source":{"table":"t"}}`, false},
		{"dms", `{"data":{"id":1},"metadata":{"operation":"insert","table-name":"t"}}`, false},
		{"dynamodb", `{"eventName":"INSERT","dynamodb":{"Keys":{"id":{"N":"1"}}}}`, false},
		{"array", `[{"op":"c"}]`, false},
		{"empty", ``, false},
		{"broken debezium", `{"after":{"id":1,"x":"unterminated},"source":{"connector":"postgresql"},"op":"c"}`, true},
		{"broken other", `{"after":{"id":1,`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Detect([]byte(tt.data)); got != tt.want {
				t.Errorf("Detect(%s) = %v, want %v", tt.data, got, tt.want)
			}
		})
	}
	files, _ := filepath.Glob("testdata/pg_*.json")
	for _, f := range files {
		if strings.HasSuffix(f, ".golden.json") {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !Detect(data) {
			t.Errorf("Detect(%s) = false", f)
		}
	}
}

// TestConcurrent decodes from several goroutines at once; with -race it
// checks the shared name and key-column caches.
func TestConcurrent(t *testing.T) {
	done := make(chan error)
	for g := 0; g < 4; g++ {
		go func() {
			var err error
			for i := 0; i < 200 && err == nil; i++ {
				data := fmt.Sprintf(`{"after":{"id":%d,"k%d":1},"source":{"connector":"postgresql","ts_ms":1,"schema":"s%d","table":"t%d","lsn":%d},"op":"c"}`, i, i%7, g, i%13, i)
				key := fmt.Sprintf(`{"id":%d,"k%d":1}`, i, i%7)
				var evs []change.Event
				evs, err = Decode(nil, change.Raw{Data: []byte(data), Key: []byte(key)}, nil)
				if err == nil && (evs[0].Table != fmt.Sprintf("t%d", i%13) || evs[0].Schema != fmt.Sprintf("s%d", g) ||
					strings.Join(evs[0].KeyColumns, ",") != fmt.Sprintf("id,k%d", i%7)) {
					err = fmt.Errorf("event %d of goroutine %d: %s.%s %v", i, g, evs[0].Schema, evs[0].Table, evs[0].KeyColumns)
				}
			}
			done <- err
		}()
	}
	for g := 0; g < 4; g++ {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

func TestNoKeyColumnsConfigured(t *testing.T) {
	data := []byte(`{"after":{"id":1},"source":{"connector":"postgresql","ts_ms":1,"schema":"public","table":"t"},"op":"c"}`)
	_, err := Decode(nil, change.Raw{Data: data}, &change.Keys{Tables: map[string][]string{"public.t": {}}})
	var p *change.Poison
	if !errors.As(err, &p) || p.Reason != change.ReasonMissingKey {
		t.Fatalf("got %v, want a missing_key poison", err)
	}
}
