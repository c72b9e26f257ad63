package main

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/cdcflow/cdcflow/internal/testgen"
)

func readShards(t *testing.T, dir, pattern string) map[string][]byte {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, pattern))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(p)] = b
	}
	return out
}

func TestRunWritesShardsAndFinalState(t *testing.T) {
	dir := t.TempDir()
	final := filepath.Join(dir, "final.json")
	args := []string{"-format", "debezium", "-seed", "5", "-changes", "800", "-shards", "4", "-dup", "0.2", "-keys", "sidecar", "-tombstones", "-final", final, "-out", dir}
	var stderr bytes.Buffer
	if err := run(args, &stderr); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stderr.String(), "800 changes") {
		t.Errorf("summary %q", stderr.String())
	}
	data := readShards(t, dir, "shard-*[0-9].ndjson")
	keys := readShards(t, dir, "shard-*.keys.ndjson")
	if len(data) != 4 || len(keys) != 4 {
		t.Fatalf("%d data files, %d key files", len(data), len(keys))
	}
	records := 0
	for name, b := range data {
		lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
		klines := strings.Split(strings.TrimSuffix(string(keys[strings.TrimSuffix(name, ".ndjson")+".keys.ndjson"]), "\n"), "\n")
		if len(lines) != len(klines) {
			t.Fatalf("%s: %d lines, %d keys", name, len(lines), len(klines))
		}
		for i, l := range lines {
			if !json.Valid([]byte(l)) || !json.Valid([]byte(klines[i])) {
				t.Fatalf("%s line %d is not JSON", name, i+1)
			}
		}
		records += len(lines)
	}
	if records < 800*11/10 {
		t.Errorf("%d records for 800 changes with 20%% duplicates", records)
	}
	b, err := os.ReadFile(final)
	if err != nil {
		t.Fatal(err)
	}
	var got testgen.State
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&got); err != nil {
		t.Fatal(err)
	}
	if want := testgen.Generate(5, testgen.Options{Changes: 800}).Final(); !reflect.DeepEqual(got, want) {
		t.Fatal("final state file differs from the history's Final")
	}

	// The same flags give the same bytes.
	dir2 := t.TempDir()
	args[len(args)-1] = dir2
	args[len(args)-3] = filepath.Join(dir2, "final.json")
	if err := run(args, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(data, readShards(t, dir2, "shard-*[0-9].ndjson")) {
		t.Fatal("second run wrote different shards")
	}
}

func TestRunTSVKeys(t *testing.T) {
	dir := t.TempDir()
	if err := run([]string{"-format", "debezium", "-schema", "-changes", "50", "-shards", "1", "-keys", "tsv", "-out", dir}, io.Discard); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "shard-000.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		k, v, ok := strings.Cut(l, "\t")
		if !ok || !json.Valid([]byte(k)) || !json.Valid([]byte(v)) || !strings.Contains(k, `"payload"`) {
			t.Fatalf("line %d is not key<TAB>value: %.100s", i+1, l)
		}
	}
}

func TestRunExamples(t *testing.T) {
	dir := t.TempDir()
	if err := run([]string{"-examples", "-out", dir}, io.Discard); err != nil {
		t.Fatal(err)
	}
	for name, want := range testgen.ExampleFiles() {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s not written as ExampleFiles renders it (%v)", name, err)
		}
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"-changes", "5"}, "-out is required"},
		{[]string{"-format", "csv", "-out", "X"}, `-format "csv"`},
		{[]string{"-keys", "both", "-out", "X"}, `-keys "both"`},
		{[]string{"-shards", "0", "-out", "X"}, "-shards 0"},
		{[]string{"-dup", "1.5", "-out", "X"}, "-dup 1.5"},
		{[]string{"-update-op", "x", "-out", "X"}, `-update-op "x"`},
		{[]string{"-out", "X", "extra"}, `unexpected argument "extra"`},
	}
	for _, c := range cases {
		t.Run(c.want, func(t *testing.T) {
			for i, a := range c.args {
				if a == "X" {
					c.args[i] = t.TempDir()
				}
			}
			err := run(c.args, io.Discard)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("run(%v) = %v, want an error containing %q", c.args, err, c.want)
			}
		})
	}
}
