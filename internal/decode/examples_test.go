package decode

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/cdcflow/cdcflow/internal/change"
	"github.com/cdcflow/cdcflow/internal/testgen"
)

var update = flag.Bool("update", false, "rewrite testdata/examples.golden.ndjson")

const (
	examplesDir    = "../../examples/data"
	examplesGolden = "testdata/examples.golden.ndjson"
)

// exampleRaws reads one example file the way the file source cuts it: an
// .ndjson file is one record per line, a .json file is one document.
func exampleRaws(t *testing.T, name string) []change.Raw {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(examplesDir, name))
	if err != nil {
		t.Fatal(err)
	}
	src := "examples/data/" + name
	if strings.HasSuffix(name, ".json") {
		return []change.Raw{{Data: data, Position: at(src, 1)}}
	}
	var raws []change.Raw
	for i, line := range bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n")) {
		raws = append(raws, change.Raw{Data: line, Position: at(src, i+1)})
	}
	return raws
}

func exampleNames(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(examplesDir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if !e.IsDir() && (strings.HasSuffix(e.Name(), ".ndjson") || strings.HasSuffix(e.Name(), ".json")) {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	if len(names) < 5 {
		t.Fatalf("examples/data has %d streams, want at least 5", len(names))
	}
	return names
}

// decodeExample decodes one example file with a fresh Decoder, as
// `cdcflow inspect FILE` does, draining held pieces at the end.
func decodeExample(t *testing.T, name string) (Output, Stats) {
	t.Helper()
	d := newDecoder(t, Options{Keys: genKeys})
	out := decodeAll(d, exampleRaws(t, name)...)
	d.Drain(&out)
	return out, d.Stats()
}

// The golden lines: inspect's event keys, then dead letters (raw as text,
// clipped) and the decoder's counters per file.
type goldenEvent struct {
	File       string          `json:"file"`
	Schema     string          `json:"schema"`
	Table      string          `json:"table"`
	Op         change.Op       `json:"op"`
	Key        string          `json:"key"`
	KeyColumns []string        `json:"key_columns"`
	CommitTSNS int64           `json:"commit_ts_ns"`
	Seq        string          `json:"seq"`
	TxID       string          `json:"tx_id"`
	Before     json.RawMessage `json:"before"`
	After      json.RawMessage `json:"after"`
	Position   string          `json:"position"`
}

type goldenDead struct {
	File     string `json:"file"`
	Dead     string `json:"dead"`
	Format   string `json:"format"`
	Position string `json:"position"`
	Detail   string `json:"detail"`
	Raw      string `json:"raw"`
}

type goldenStats struct {
	File       string           `json:"file"`
	Records    int64            `json:"records"`
	Events     int64            `json:"events"`
	Skipped    map[string]int64 `json:"skipped"`
	Dead       map[string]int64 `json:"dead"`
	UnknownOps int64            `json:"unknown_ops"`
	Held       int64            `json:"held"`
}

func clip(b []byte, n int) string {
	if len(b) <= n {
		return string(b)
	}
	for n > 0 && !utf8.RuneStart(b[n]) {
		n--
	}
	return string(b[:n]) + "…"
}

// TestExamplesGolden renders every stream of examples/data through the
// Decoder into one golden file, so any change in how the examples decode
// shows in review. -update rewrites it.
func TestExamplesGolden(t *testing.T) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	for _, name := range exampleNames(t) {
		out, st := decodeExample(t, name)
		for _, e := range out.Events {
			if err := enc.Encode(goldenEvent{
				File: name, Schema: e.Schema, Table: e.Table, Op: e.Op, Key: e.Key, KeyColumns: e.KeyColumns,
				CommitTSNS: e.Order.CommitNS, Seq: e.Order.Seq, TxID: e.TxID,
				Before: e.Before, After: e.After, Position: e.Position.String(),
			}); err != nil {
				t.Fatalf("%s: event at %s: %v", name, e.Position, err)
			}
		}
		for _, dl := range out.Dead {
			_ = enc.Encode(goldenDead{File: name, Dead: dl.Reason, Format: dl.Format, Position: dl.Position.String(), Detail: dl.Detail, Raw: clip(dl.Raw, 120)})
		}
		_ = enc.Encode(goldenStats{File: name, Records: st.Records, Events: st.Events, Skipped: st.Skipped, Dead: st.Dead, UnknownOps: st.UnknownOps, Held: st.Held})
	}
	if *update {
		if err := os.WriteFile(examplesGolden, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(examplesGolden)
	if err != nil {
		t.Fatalf("%v (run go test ./internal/decode -run TestExamplesGolden -update to create it)", err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		gl, wl := strings.Split(buf.String(), "\n"), strings.Split(string(want), "\n")
		for i := 0; i < max(len(gl), len(wl)); i++ {
			var g, w string
			if i < len(gl) {
				g = gl[i]
			}
			if i < len(wl) {
				w = wl[i]
			}
			if g != w {
				t.Fatalf("%s line %d differs (run with -update after checking the change):\n got %.600s\nwant %.600s", examplesGolden, i+1, g, w)
			}
		}
	}
}

// TestExamples checks what examples/data.md promises about each stream:
// the dead letters and skips by line, and the final state after replaying
// the events by commit order.
func TestExamples(t *testing.T) {
	big, small := testgen.ExampleHistory(true), testgen.ExampleHistory(false)
	upTo := func(h *testgen.History, n int) testgen.State {
		s := testgen.State{}
		for i := range h.Events()[:n] {
			s.Apply(&h.Events()[i])
		}
		return s
	}
	only := func(h *testgen.History, idx ...int) testgen.State {
		s := testgen.State{}
		for _, i := range idx {
			s.Apply(&h.Events()[i])
		}
		return s
	}
	cases := []struct {
		file    string
		dead    map[string]string // position -> reason
		skipped map[string]int64
		state   testgen.State
	}{
		{"dsql.ndjson", map[string]string{
			"examples/data/dsql.ndjson:12": change.ReasonInvalidJSON,
			"examples/data/dsql.ndjson:17": change.ReasonMissingKey,
		}, map[string]int64{}, big.Final()},
		{"debezium.ndjson", map[string]string{
			"examples/data/debezium.ndjson:14": change.ReasonMissingOp,
		}, map[string]int64{change.SkipTombstone: 1},
			testgen.ExpectedState(small.Final(), small.Tables, testgen.FormatDebezium, testgen.EncodeOptions{DebeziumSchema: true})},
		{"dms.ndjson", map[string]string{}, map[string]int64{change.SkipControl: 1}, small.Final()},
		{"dynamodb-lambda-event.json", map[string]string{}, map[string]int64{}, only(small, 0, 1, 3, 5, 6, 10)},
		{"kinesis-get-records.json", map[string]string{}, map[string]int64{}, upTo(big, 8)},
	}
	names := exampleNames(t)
	for _, c := range cases {
		if !slices.Contains(names, c.file) {
			t.Errorf("examples/data has no %s", c.file)
		}
	}
	if len(names) != len(cases) {
		t.Errorf("examples/data has %d streams, the test knows %d: add the new one here", len(names), len(cases))
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			out, st := decodeExample(t, c.file)
			checkEvents(t, out.Events)
			dead := map[string]string{}
			for _, dl := range out.Dead {
				dead[dl.Position.String()] = dl.Reason
			}
			if !reflect.DeepEqual(dead, c.dead) {
				t.Errorf("dead letters %v, want %v", dead, c.dead)
			}
			if !reflect.DeepEqual(st.Skipped, c.skipped) {
				t.Errorf("skipped %v, want %v", st.Skipped, c.skipped)
			}
			latest := map[[2]string]*change.Event{}
			for i := range out.Events {
				e := &out.Events[i]
				k := [2]string{e.Table, e.Key}
				if prev := latest[k]; prev == nil || change.Compare(e, prev) > 0 {
					latest[k] = e
				}
			}
			state := testgen.State{}
			for k, e := range latest {
				if e.Op == change.Delete {
					continue
				}
				if state[k[0]] == nil {
					state[k[0]] = map[string]map[string]any{}
				}
				state[k[0]][k[1]] = decodeImage(t, e.After)
			}
			if !reflect.DeepEqual(state, c.state) {
				t.Errorf("final state differs from examples/data.md:\n%s", diffState(c.state, state))
			}
			if got := fmt.Sprint(st.Held); got != "0" {
				t.Errorf("%s pieces held after Drain", got)
			}
		})
	}
}
