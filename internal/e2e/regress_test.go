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
