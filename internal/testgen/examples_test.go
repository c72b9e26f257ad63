package testgen

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the example streams in examples/data")

const examplesDir = "../../examples/data"

// TestExampleFiles checks that the committed example streams are the ones
// ExampleFiles renders; -update rewrites them.
func TestExampleFiles(t *testing.T) {
	for name, data := range ExampleFiles() {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(examplesDir, name)
			if *update {
				if err := os.WriteFile(path, data, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("%s differs from ExampleFiles (run go test -update after checking the change)", path)
			}
		})
	}
}

// TestExampleStreams decodes the example streams with the reference decoder
// and checks the poison lines and the final state examples/data.md documents.
func TestExampleStreams(t *testing.T) {
	files := ExampleFiles()
	keys := DefaultKeys()
	afterTx := func(h *History, tx int64) State {
		s := State{}
		for i := range h.Events() {
			if h.Events()[i].Tx <= tx {
				s.Apply(&h.Events()[i])
			}
		}
		return s
	}
	only := func(h *History, seqs ...int64) State {
		s := State{}
		for i := range h.Events() {
			if slices.Contains(seqs, h.Events()[i].Seq) {
				s.Apply(&h.Events()[i])
			}
		}
		return s
	}
	big, small := ExampleHistory(true), ExampleHistory(false)
	// Every final row comes from a bare line except orders 1001 (line 10,
	// schema envelope): its Json column stays JSON text.
	debeziumFinal := small.Final()
	debeziumFinal[TableOrders] = small.FinalFor(FormatDebezium, EncodeOptions{DebeziumSchema: true})[TableOrders]
	if s := debeziumFinal[TableOrders]["1001"]["shipping"]; s != `{"city":"Zürich","express":false,"weights":[1.5,2]}` {
		t.Fatalf("shipping expected as JSON text, is %#v", s)
	}
	cases := []struct {
		file   string
		f      Format
		poison []int // 1-based lines the reference decoder rejects
		want   State
	}{
		{"dsql.ndjson", FormatDSQL, []int{12, 17}, big.Final()},
		{"debezium.ndjson", FormatDebezium, []int{14}, debeziumFinal},
		{"dms.ndjson", FormatDMS, nil, small.Final()},
		{"dynamodb-lambda-event.json", FormatDynamoDB, nil, only(small, 1, 2, 4, 6, 7, 11)},
		{"kinesis-get-records.json", FormatDSQL, nil, afterTx(big, 3)},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			var recs [][]byte
			switch c.file {
			case "dynamodb-lambda-event.json":
				var ev struct{ Records []json.RawMessage }
				if err := json.Unmarshal(files[c.file], &ev); err != nil {
					t.Fatal(err)
				}
				for _, r := range ev.Records {
					recs = append(recs, r)
				}
			case "kinesis-get-records.json":
				var out struct{ Records []struct{ Data []byte } }
				if err := json.Unmarshal(files[c.file], &out); err != nil {
					t.Fatal(err)
				}
				for _, r := range out.Records {
					recs = append(recs, r.Data)
				}
			default:
				sc := bufio.NewScanner(bytes.NewReader(files[c.file]))
				sc.Buffer(nil, 1<<20)
				for sc.Scan() {
					recs = append(recs, slices.Clone(sc.Bytes()))
				}
			}
			dec := newRefDecoder(c.f, keys)
			apply := newRefApply()
			var poison []int
			for i, r := range recs {
				evs, err := dec.decode(r)
				if err != nil {
					poison = append(poison, i+1)
					continue
				}
				for _, e := range evs {
					if err := apply.add(e); err != nil {
						t.Fatalf("line %d: %v", i+1, err)
					}
				}
			}
			if !slices.Equal(poison, c.poison) {
				t.Errorf("rejected lines %v, want %v", poison, c.poison)
			}
			if d := diffStates(c.want, apply.final()); d != "" {
				t.Fatalf("final state differs:\n%s", d)
			}
		})
	}
}
