package sqlgen

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestDDLGolden renders testdata/<case>.json for each dialect and compares
// with testdata/<case>.<dialect>.golden.sql.
func TestDDLGolden(t *testing.T) {
	inputs, err := filepath.Glob("testdata/*.json")
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no inputs: %v", err)
	}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".json")
		var spec struct{ Tables []TableSpec }
		b, err := os.ReadFile(in)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &spec); err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		for _, dialect := range []string{"duckdb", "postgres"} {
			t.Run(name+"/"+dialect, func(t *testing.T) {
				got, err := DDL(dialect, spec.Tables)
				if err != nil {
					t.Fatal(err)
				}
				golden := filepath.Join("testdata", name+"."+dialect+".golden.sql")
				if *update {
					if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
						t.Fatal(err)
					}
				}
				want, err := os.ReadFile(golden)
				if err != nil {
					t.Fatalf("%v (run with -update to create it)", err)
				}
				if got != string(want) {
					t.Errorf("DDL differs from %s (run with -update after checking):\n%s", golden, got)
				}
			})
		}
	}
}

func TestDDLErrors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		dialect string
		tables  []TableSpec
		want    string
	}{
		{"dialect", "oracle", nil, "unknown SQL dialect"},
		{"reserved table", "duckdb", []TableSpec{{Name: "_cdc_x"}}, "reserved prefix"},
		{"long table", "duckdb", []TableSpec{{Name: strings.Repeat("t", 56)}}, "exceeds 63"},
		{"bad type", "postgres", []TableSpec{{Name: "t", Columns: map[string]string{"c": "MONEY"}}}, `column "c": unknown column type`},
		{"twice", "duckdb", []TableSpec{{Name: "T"}, {Name: "t"}}, "listed twice"},
		{"column case", "duckdb", []TableSpec{{Name: "t", Columns: map[string]string{"A": "TEXT", "a": "TEXT"}}}, "listed twice"},
		{"control char", "duckdb", []TableSpec{{Name: "t", Columns: map[string]string{"a\tb": "TEXT"}}}, "control character"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DDL(tc.dialect, tc.tables)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
	// A key column without a declared type is left to inference, and said so.
	out, err := DDL("duckdb", []TableSpec{{Name: "t", Key: []string{"id"}}})
	if err != nil || !strings.Contains(out, "-- Key column(s) id have no type under tables.t.columns") {
		t.Errorf("untyped key column: %v\n%s", err, out)
	}
	// Postgres names are case-sensitive: T and t are two tables.
	if _, err := DDL("postgres", []TableSpec{{Name: "T"}, {Name: "t"}}); err != nil {
		t.Errorf("postgres T and t: %v", err)
	}
}
