package e2e

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/cdcflow/cdcflow/internal/change"
	"github.com/cdcflow/cdcflow/internal/sink/duckdb"
	"github.com/cdcflow/cdcflow/internal/sink/sinktest"
)

// Regression tests of bugs TestDifferential found, each reduced to its
// smallest reproduction.

// TestViewJSONNullIsSQLNull: in <table>_current a JSON-typed column whose
// value is JSON null read as the JSON value 'null', not SQL NULL, while the
// merged table gave SQL NULL, so `WHERE doc IS NULL` found different rows in
// the view and the merged table (the view used the JSON operator ->).
func TestViewJSONNullIsSQLNull(t *testing.T) {
	viewIsNull, mergedIsNull, text := viewJSONNull(t)
	if !mergedIsNull {
		t.Fatalf("merged table: JSON null stored as a value, want SQL NULL")
	}
	if !viewIsNull {
		t.Errorf("docs_current.doc for {\"doc\":null} is %s, want SQL NULL like the merged table", showNull(text))
	}
}

// viewJSONNull reports, for a fresh DuckDB sink, what the current-state view
// and the merged table return for a JSON column whose value is JSON null.
func viewJSONNull(t *testing.T) (viewIsNull, mergedIsNull bool, viewText sql.NullString) {
	t.Helper()
	snk, err := duckdb.Open(context.Background(), duckdb.Options{Path: filepath.Join(t.TempDir(), "w.duckdb"), DeadLetterTable: true})
	if err != nil {
		t.Fatal(err)
	}
	defer snk.Close(context.Background())
	st := sinktest.NewStream("s", "0")
	b := &change.Batch{Events: []change.Event{
		st.Put("docs", "1", 1000, `{"id":"1","doc":{"a":1}}`),
		st.Put("docs", "2", 2000, `{"id":"2","doc":null}`),
	}}
	if _, err := snk.Apply(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	db := snk.DB()
	if err := db.QueryRow(`SELECT doc IS NULL, CAST(doc AS VARCHAR) FROM docs_current WHERE record_id = '2'`).Scan(&viewIsNull, &viewText); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow(`SELECT doc IS NULL FROM docs WHERE _cdc_record_id = '2'`).Scan(&mergedIsNull); err != nil {
		t.Fatal(err)
	}
	return viewIsNull, mergedIsNull, viewText
}

// The three tests below pin the fix of DSQL reassembly across restarts:
// sinks store the chunk ids of reassembled events in the batch's
// transaction (sink.ChunkStore) and the pipeline hands them to the decoder
// at start, so pieces of stored sets are recognised as duplicates. Each
// comment describes the bug as it was.

// TestResumeSkipsStoredFragments: after a crash, a partition whose
// checkpoint is Held is re-read from Resume, and every DSQL piece between
// Resume and Applied is fed to the new decoder again, including pieces of
// sets that were completed (and stored) before the crash by pieces in other
// partitions, which are not re-read. Those sets never complete again, and at
// end of input (or after fragment_timeout) their pieces become
// fragment_timeout dead letters, which the pipeline keeps because they lie
// at or after Resume. Nothing is lost, but records that were applied are
// reported as dead letters.
//
// a.ndjson: 1 main H (fragments in c.ndjson), 2 main S, 3 fragment S#0
// b.ndjson: 1 fragment S#1 (completes S), 2 a full record
// c.ndjson: 1-2 fragments of H
// Commit 1 stores S with checkpoint a: Applied 3, Held from 1. A crash
// after it, then a restart: a.ndjson:2 and :3 are held again and drained.
func TestResumeSkipsStoredFragments(t *testing.T) {
	files := resumeReholdFiles(t)
	if got := crashThenFinish(t, files, 0); len(got) != 0 {
		t.Fatalf("without a crash: dead letters %v, want none", got)
	}
	if got := crashThenFinish(t, files, 1); len(got) != 0 {
		t.Errorf("crash after commit 1, restart: dead letters %v, want none (set S was stored by commit 1)", got)
	}
}

// TestLateDuplicateFragmentAfterRestart: the decoder remembers the chunk
// ids of completed sets only in memory, so a redelivered piece of a set
// completed before a restart is held as a new set with its main record
// missing and dead-lettered as fragment_timeout at end of input; in one
// uninterrupted run the same copy is recognised and dropped. Duplicates are
// normal under at-least-once delivery, so every restart can turn them into
// dead letters for records that were applied.
//
// a.ndjson: 1 main S, 2-3 fragments (S complete at 3), 4 a full record,
// 5 a copy of line 3. A crash after commit 2 (line 4) and a restart read
// only line 5.
func TestLateDuplicateFragmentAfterRestart(t *testing.T) {
	files := lateDuplicateFiles(t)
	if got := crashThenFinish(t, files, 0); len(got) != 0 {
		t.Fatalf("without a crash: dead letters %v, want none", got)
	}
	if got := crashThenFinish(t, files, 2); len(got) != 0 {
		t.Errorf("crash after commit 2, restart: dead letters %v, want none (line 5 copies a piece of a stored set)", got)
	}
}

// TestResumeDoesNotRelogStoredSet: the same cause as
// TestResumeSkipsStoredFragments (a restart re-feeds every DSQL
// piece from Resume on, although only the held ones were not stored) with
// another symptom. A set completed before the crash whose first piece lies
// before Resume is re-read without that piece, held again, and completed
// anew by a later redelivered copy of the piece, at a position after
// Applied: its event passes the already-stored filter and is logged a second
// time. The merged table absorbs it (same commit order), but cdc_events
// holds the change twice, which an uninterrupted run never does.
//
// a.ndjson: 1 fragment S#0, 2 main H (fragments in b.ndjson, so the
// checkpoint resumes at 2), 3 fragment S#1, 4 main S (completes S), 5 a full
// record, 6 a copy of line 1. Crash after commit 2 (Applied 5, Held from 2).
func TestResumeDoesNotRelogStoredSet(t *testing.T) {
	if got := relogRun(t, 0); len(got) != 1 {
		t.Fatalf("without a crash: set S logged at %v, want once", got)
	}
	if got := relogRun(t, 2); len(got) != 1 {
		t.Errorf("crash after commit 2, restart: set S logged at %v, want once (at a.ndjson:4)", got)
	}
}
