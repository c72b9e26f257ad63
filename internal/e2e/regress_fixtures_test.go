package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cdcflow/cdcflow/internal/sink/duckdb"
)

// Fixtures of the regression tests in regress_test.go.

// dsqlSource is the source block of a DSQL record committed at ts.
func dsqlSource(table string, ts int64) string {
	return fmt.Sprintf(`{"version":"1.0","ts_ms":%d,"ts_ns":%d,"txId":"tx%d","schema":"public","table":%q,"db":"postgres","cluster":"c1"}`, ts/1e6, ts, ts, table)
}

// dsqlFull is a complete DSQL insert of row id into table.
func dsqlFull(table string, id int) string {
	ts := int64(1705318200000000000) + int64(id)*1000
	return fmt.Sprintf(`{"type":"full","op":"c","before":null,"after":{"id":%d},"source":%s,"ts_ns":%d}`, id, dsqlSource(table, ts), ts+1)
}

// dsqlMain is the main record of an oversized insert of row id whose after
// image comes in the two fragments of dsqlFragment.
func dsqlMain(table string, id int, chunk string) string {
	ts := int64(1705318200000000000) + int64(id)*1000
	return fmt.Sprintf(`{"type":"chunked","op":"c","before":null,"after":null,"source":%s,"ts_ns":%d,"chunked":{"chunk_id":%q,"fragments":2,"field":"after"}}`,
		dsqlSource(table, ts), ts+1, chunk)
}

// dsqlFragment is fragment i (0 or 1) of row id's after image.
func dsqlFragment(id int, chunk string, i int) string {
	parts := []string{fmt.Sprintf(`{\"id\":%d,`, id), `\"big\":\"xxxxxxxx\"}`}
	return fmt.Sprintf(`{"type":"fragment","chunk_id":%q,"index":%d,"data":"%s"}`, chunk, i, parts[i])
}

// writeFile writes lines as an NDJSON file in dir and returns its absolute path.
func writeFile(t *testing.T, dir, name string, lines ...string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// deadLetters returns "position reason" of every stored dead letter, sorted.
func deadLetters(t *testing.T, path string) []string {
	t.Helper()
	snk, err := duckdb.Open(context.Background(), duckdb.Options{Path: path, DeadLetterTable: true})
	if err != nil {
		t.Fatal(err)
	}
	defer snk.Close(context.Background())
	rows, err := snk.DB().Query(`SELECT position, reason FROM cdc_dead_letters ORDER BY position`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var p, r string
		if err := rows.Scan(&p, &r); err != nil {
			t.Fatal(err)
		}
		out = append(out, p+" "+r)
	}
	return out
}

// crashThenFinish runs the pipeline over files, crashing after the
// crashAt-th commit (0: no crash), then runs it to the end, one record per
// Read and one event per batch. It returns the stored dead letters.
func crashThenFinish(t *testing.T, files []string, crashAt int) []string {
	t.Helper()
	db := filepath.Join(t.TempDir(), "w.duckdb")
	spec := runSpec{files: files, sink: duckdb.Options{Path: db, DeadLetterTable: true}, format: "dsql", batchRecords: 1, batchEvents: 1, crashAt: crashAt}
	if crashAt > 0 {
		if r, _ := runPipeline(t, spec); !r.crashed {
			t.Fatalf("run did not reach commit %d: %s", crashAt, r)
		}
		spec.crashAt = 0
	}
	if r, _ := runPipeline(t, spec); r.err != nil || r.crashed {
		t.Fatalf("final run: %s", r)
	}
	return deadLetters(t, db)
}

// resumeReholdFiles builds the files of TestBugResumeReholdsCompletedFragments:
// a.ndjson holds a set still held at the crash (fragments in c.ndjson)
// followed by a set completed by b.ndjson.
func resumeReholdFiles(t *testing.T) []string {
	dir := t.TempDir()
	return []string{
		writeFile(t, dir, "a.ndjson", dsqlMain("docs", 1, "H"), dsqlMain("docs", 2, "S"), dsqlFragment(2, "S", 0)),
		writeFile(t, dir, "b.ndjson", dsqlFragment(2, "S", 1), dsqlFull("orders", 3)),
		writeFile(t, dir, "c.ndjson", dsqlFragment(1, "H", 0), dsqlFragment(1, "H", 1)),
	}
}

// lateDuplicateFiles builds the file of TestBugLateDuplicateFragmentAfterRestart.
func lateDuplicateFiles(t *testing.T) []string {
	return []string{writeFile(t, t.TempDir(), "a.ndjson",
		dsqlMain("docs", 2, "S"), dsqlFragment(2, "S", 0), dsqlFragment(2, "S", 1), // S complete at line 3
		dsqlFull("orders", 3),
		dsqlFragment(2, "S", 1), // a redelivered copy of line 3
	)}
}

// relogFiles builds the files of TestBugResumeRelogsCompletedSet.
func relogFiles(t *testing.T) []string {
	dir := t.TempDir()
	return []string{
		writeFile(t, dir, "a.ndjson",
			dsqlFragment(2, "S", 0),
			dsqlMain("docs", 1, "H"), // held until b.ndjson: the checkpoint resumes here
			dsqlFragment(2, "S", 1),
			dsqlMain("docs", 2, "S"), // completes S: event at a:4
			dsqlFull("orders", 3),
			dsqlFragment(2, "S", 0), // a redelivered copy of line 1
		),
		writeFile(t, dir, "b.ndjson", dsqlFragment(1, "H", 0), dsqlFragment(1, "H", 1)),
	}
}

// eventRows returns the stream positions of the cdc_events rows of record
// id, in log order.
func eventRows(t *testing.T, path, id string) []string {
	t.Helper()
	snk, err := duckdb.Open(context.Background(), duckdb.Options{Path: path, DeadLetterTable: true})
	if err != nil {
		t.Fatal(err)
	}
	defer snk.Close(context.Background())
	rows, err := snk.DB().Query(`SELECT stream_position FROM cdc_events WHERE record_id = ? ORDER BY event_id`, id)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var p string
		if err := rows.Scan(&p); err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

// relogRun runs relogFiles with a crash after commit crashAt (0: none) and
// returns the log rows of set S (docs id 2).
func relogRun(t *testing.T, crashAt int) []string {
	t.Helper()
	files := relogFiles(t)
	db := filepath.Join(t.TempDir(), "w.duckdb")
	spec := runSpec{files: files, sink: duckdb.Options{Path: db, DeadLetterTable: true}, format: "dsql", batchRecords: 1, batchEvents: 1, crashAt: crashAt}
	if crashAt > 0 {
		if r, _ := runPipeline(t, spec); !r.crashed {
			t.Fatalf("run did not reach commit %d: %s", crashAt, r)
		}
		spec.crashAt = 0
	}
	if r, _ := runPipeline(t, spec); r.err != nil || r.crashed {
		t.Fatalf("final run: %s", r)
	}
	return eventRows(t, db, "2")
}
