package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/cdcflow/cdcflow/internal/sink/duckdb"
)

// cli runs cdcflow in-process and returns its exit code, stdout and stderr.
func cli(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

// repoFile returns the path of a file in the repository from this package.
func repoFile(parts ...string) string {
	return filepath.Join(append([]string{"..", ".."}, parts...)...)
}

func exampleFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(repoFile("examples", "data", "*"))
	if err != nil || len(files) < 5 {
		t.Fatalf("examples: %v %v", files, err)
	}
	return files
}

func TestUsageErrorsExit2(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown command", []string{"frobnicate"}, "unknown command"},
		{"unknown flag", []string{"inspect", "--nope", "x"}, "unknown flag: --nope"},
		{"inspect without files", []string{"inspect"}, "requires at least 1 arg"},
		{"bad format", []string{"inspect", "--format", "xml", "x"}, `"xml" is not one of`},
		{"bad key flag", []string{"inspect", "--key", "orders", "x"}, `--key "orders": want TABLE=col1,col2`},
		{"missing file", []string{"inspect", "/nonexistent/file.ndjson"}, "/nonexistent/file.ndjson"},
		{"load without sink", []string{"load", "x"}, "--sink is required"},
		{"load bad sink", []string{"load", "--sink", "mysql://x", "x"}, `unknown scheme "mysql"`},
		{"query bad output", []string{"query", "--sink", "duckdb://x.db", "--output", "xml", "SELECT 1"}, `--output "xml"`},
		{"validate without config", []string{"validate"}, "-c FILE is required"},
		{"validate bad config", []string{"validate", "-c", repoFile("internal", "config", "testdata", "unknown_deep.bad.yaml")}, "unknown field"},
		{"ddl bad dialect", []string{"ddl", "--dialect", "oracle"}, `--dialect "oracle"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errOut := cli(t, "", tt.args...)
			if code != exitUsage {
				t.Fatalf("exit code %d, want %d; stderr: %s", code, exitUsage, errOut)
			}
			if !strings.Contains(errOut, tt.want) {
				t.Errorf("stderr %q does not contain %q", errOut, tt.want)
			}
			if strings.Contains(errOut, "goroutine ") || strings.Contains(errOut, "panic") {
				t.Errorf("stderr has a stack trace: %s", errOut)
			}
		})
	}
}

func TestInspectExamples(t *testing.T) {
	args := append([]string{"inspect", "--key", "orders=order_id", "--key", "order_items=order_id,line_no"}, exampleFiles(t)...)
	code, out, errOut := cli(t, "", args...)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	wantKeys := []string{"after", "before", "commit_ts_ns", "key", "key_columns", "op", "position", "schema", "seq", "table", "tx_id"}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	tables := map[string]int{}
	for _, line := range lines {
		var m map[string]json.RawMessage
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("stdout line is not JSON: %q", line)
		}
		var keys []string
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		if strings.Join(keys, ",") != strings.Join(wantKeys, ",") {
			t.Fatalf("keys %v, want exactly %v", keys, wantKeys)
		}
		var table string
		_ = json.Unmarshal(m["table"], &table)
		tables[table]++
	}
	for _, table := range []string{"orders", "order_items", "customers"} {
		if tables[table] == 0 {
			t.Errorf("no events for %s: %v", table, tables)
		}
	}
	// The examples hold poison lines: each is a dead letter on stderr, then
	// a summary line.
	var dead int
	for _, line := range strings.Split(strings.TrimSpace(errOut), "\n") {
		if strings.HasPrefix(line, "inspect: ") {
			continue
		}
		var dl struct{ Reason, Position, Raw string }
		if err := json.Unmarshal([]byte(line), &dl); err != nil || dl.Reason == "" || dl.Position == "" || dl.Raw == "" {
			t.Errorf("stderr line is not a dead letter with reason, position and raw: %q", line)
		}
		dead++
	}
	if dead < 3 {
		t.Errorf("%d dead letters, the examples hold at least 3 poison lines", dead)
	}
	if !strings.Contains(errOut, "inspect: ") || !strings.Contains(errOut, "tombstone 1") {
		t.Errorf("summary missing or incomplete: %s", errOut)
	}
}

func TestInspectStdinAndEnvelope(t *testing.T) {
	// A Lambda Kinesis event on stdin, its record base64 DSQL.
	rec := `{"type":"full","op":"c","before":null,"after":{"id":7,"v":"x"},"source":{"ts_ns":1705318200000000000,"txId":"t1","schema":"public","table":"t","cluster":"c"},"ts_ns":1705318200000000001}`
	ev := `{"Records":[{"kinesis":{"data":"` + b64(rec) + `","sequenceNumber":"1"},"eventSource":"aws:kinesis"},{"kinesis":{"data":"!!!"}}]}`
	code, out, errOut := cli(t, ev+"\n", "inspect", "-")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var got inspectEvent
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("stdout %q: %v", out, err)
	}
	if got.Table != "t" || got.Key != "7" || got.Position != "-:1#0" || got.Seq == "" {
		t.Errorf("event %+v", got)
	}
	if !strings.Contains(errOut, `"reason":"invalid_envelope"`) || !strings.Contains(errOut, `"position":"-:1#1"`) {
		t.Errorf("bad base64 record must be a dead letter at -:1#1: %s", errOut)
	}
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestLoadQueryRoundTrip(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "demo.duckdb")
	sink := "duckdb://" + db
	dlFile := filepath.Join(dir, "dead.ndjson")
	args := append([]string{"load", "--sink", sink, "--dead-letters", dlFile, "--key", "orders=order_id", "--key", "order_items=order_id,line_no"}, exampleFiles(t)...)
	code, _, errOut := cli(t, "", args...)
	if code != exitOK {
		t.Fatalf("load exit %d: %s", code, errOut)
	}
	for _, want := range []string{"read ", "applied ", "duplicates ignored ", "dead letters 3", "per table:"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("summary lacks %q:\n%s", want, errOut)
		}
	}

	// The examples' documented final state (examples/data.md): order 1001
	// shipped, 1002 deleted; two customers; two order items.
	code, out, errOut := cli(t, "", "query", "--sink", sink, "--output", "csv",
		"SELECT record_id, status FROM orders_current ORDER BY record_id")
	if code != exitOK {
		t.Fatalf("query exit %d: %s", code, errOut)
	}
	rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[0][0] != "record_id" || rows[1][0] != "1001" || rows[1][1] != "shipped" {
		t.Errorf("orders_current = %v, want header + [1001 shipped]", rows)
	}
	code, out, _ = cli(t, "", "query", "--sink", sink, "--output", "json",
		"SELECT count(*) AS n FROM orders UNION ALL SELECT count(*) FROM customers UNION ALL SELECT count(*) FROM order_items")
	var counts []map[string]int
	if code != exitOK || json.Unmarshal([]byte(out), &counts) != nil || len(counts) != 3 {
		t.Fatalf("json output %q", out)
	}
	if counts[0]["n"] != 1 || counts[1]["n"] != 2 || counts[2]["n"] != 2 {
		t.Errorf("merged row counts %v, want orders 1, customers 2, order_items 2", counts)
	}
	// The dead-letter file holds the same 3 poison records as the table.
	b, err := os.ReadFile(dlFile)
	if err != nil || strings.Count(string(b), "\n") != 3 {
		t.Errorf("dead-letter file: %v %q", err, b)
	}

	// Loading the same files again neither duplicates nor skips.
	code, _, errOut = cli(t, "", args...)
	if code != exitOK {
		t.Fatalf("second load exit %d: %s", code, errOut)
	}
	code, out, _ = cli(t, "", "query", "--sink", sink, "--output", "csv", "SELECT count(*) FROM cdc_events")
	first := out
	code, out, _ = cli(t, "", "query", "--sink", sink, "--output", "csv", "SELECT count(*) FROM cdc_dead_letters")
	if code != exitOK || strings.TrimSpace(out) != "count_star()\n3" && !strings.HasSuffix(strings.TrimSpace(out), "\n3") {
		t.Errorf("dead letters after reload: %q", out)
	}
	if !strings.HasSuffix(strings.TrimSpace(first), "\n50") {
		t.Errorf("cdc_events after reload: %q, want 50 rows (one per delivered good record)", first)
	}
}

func TestRunConfigAndDDL(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "cdcflow.yaml")
	cfg := `source:
  file: { paths: ["` + repoFile("examples", "data") + `/*.ndjson"] }
decode: { format: auto }
tables:
  orders: { key: [order_id], columns: { total: "DECIMAL(12,2)" } }
  order_items: { key: [order_id, line_no] }
sink:
  duckdb: { path: ` + filepath.Join(dir, "run.duckdb") + ` }
dead_letters: { file: ` + filepath.Join(dir, "dl.ndjson") + ` }
`
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := cli(t, "", "run", "-c", cfgPath)
	if code != exitOK {
		t.Fatalf("run exit %d: %s", code, errOut)
	}
	code, out, _ := cli(t, "", "query", "--sink", "duckdb://"+filepath.Join(dir, "run.duckdb"), "--output", "csv",
		"SELECT typeof(total), CAST(total AS VARCHAR) FROM orders")
	if code != exitOK || !strings.Contains(out, `"DECIMAL(12,2)",24.99`) {
		t.Errorf("pinned DECIMAL(12,2) column: %q", out)
	}
	for _, dialect := range []string{"duckdb", "postgres", "redshift"} {
		code, out, errOut := cli(t, "", "ddl", "--dialect", dialect, "-c", cfgPath)
		if code != exitOK {
			t.Fatalf("ddl %s exit %d: %s", dialect, code, errOut)
		}
		for _, want := range []string{"cdc_events", `"orders_current"`, `"order_items"`} {
			if !strings.Contains(out, want) {
				t.Errorf("ddl %s lacks %s", dialect, want)
			}
		}
	}
}

// TestDuckDBResourceKeys checks that sink.duckdb's memory_limit, threads and
// checkpoint_threshold reach the database.
func TestDuckDBResourceKeys(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "cdcflow.yaml")
	cfg := "source:\n  file: { paths: [x.ndjson] }\nsink:\n  duckdb: { path: " + filepath.Join(dir, "r.duckdb") +
		", memory_limit: 300MiB, threads: 2, checkpoint_threshold: 100MB }\n"
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := loadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	s, err := duckdb.Open(context.Background(), duckOptions(c))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	var mem, threads, ckpt string
	err = s.DB().QueryRow(`SELECT current_setting('memory_limit'), CAST(current_setting('threads') AS VARCHAR), current_setting('checkpoint_threshold')`).Scan(&mem, &threads, &ckpt)
	if err != nil {
		t.Fatal(err)
	}
	// DuckDB prints sizes in its own rounding; DuckDB's checkpoint_threshold
	// is twice the sink's (a safety net, docs/sinks.md).
	if mem != "300.0 MiB" || threads != "2" || ckpt != "190.7 MiB" {
		t.Errorf("memory_limit %q threads %q checkpoint_threshold %q, want 300.0 MiB, 2, 190.7 MiB", mem, threads, ckpt)
	}
}
