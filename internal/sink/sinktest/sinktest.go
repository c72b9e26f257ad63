// Package sinktest is the conformance suite every warehouse sink passes
// (DuckDB now, PostgreSQL and others later): idempotent re-apply, crash
// before ack, commit-order merges under unordered duplicated delivery,
// schema evolution, poison isolation, checkpoints and soft deletes.
//
// The suite reads state back with plain SQL that DuckDB and PostgreSQL both
// accept (CAST(x AS VARCHAR), information_schema), with names quoted by
// sqlgen.QuoteIdent, and never relies on driver-specific value types.
package sinktest

import (
	"context"
	"database/sql"
	"encoding/json"
	"strings"
	"testing"

	"github.com/cdcflow/cdcflow/internal/change"
	"github.com/cdcflow/cdcflow/internal/sink"
	"github.com/cdcflow/cdcflow/internal/sqlgen"
)

// Config is what a test case asks of the sink it opens. Sinks under test
// also store dead letters in their table (DeadLetterTable), name merged
// tables after the source table, and write merged tables (not log-only).
type Config struct {
	SoftDelete bool
	// Columns pins column types: table -> column -> type (sqlgen.ParseType syntax).
	Columns map[string]map[string]string
}

// Harness adapts a sink to the suite.
type Harness struct {
	// Dialect is the sqlgen dialect of the store ("duckdb", "postgres").
	Dialect string
	// NewStore creates an empty store for one test and returns its address
	// (a file path, a schema name, ...). Cleanup is the harness's business
	// (t.Cleanup).
	NewStore func(t *testing.T) string
	// Open opens a sink on store with cfg. The suite calls it again on the
	// same store after closing the previous sink, to test reopening.
	Open func(t *testing.T, store string, cfg Config) sink.Sink
	// DB returns a handle for reading the state of the store s writes to.
	// It takes the open sink because an embedded store (DuckDB) allows only
	// one handle per file in a process.
	DB func(t *testing.T, s sink.Sink) *sql.DB
}

// Null is how the suite renders SQL NULL in read-back rows.
const Null = "<NULL>"

// env is one test's store and open sink.
type env struct {
	t     *testing.T
	h     Harness
	d     sqlgen.Dialect
	store string
	cfg   Config
	s     sink.Sink
}

func newEnv(t *testing.T, h Harness, cfg Config) *env {
	t.Helper()
	d, err := sqlgen.ForName(h.Dialect)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, h: h, d: d, store: h.NewStore(t), cfg: cfg}
	e.open()
	return e
}

func (e *env) open() {
	e.t.Helper()
	s := e.h.Open(e.t, e.store, e.cfg)
	e.s = s
	e.t.Cleanup(func() { _ = s.Close(context.Background()) })
}

// reopen closes the sink and opens a new one on the same store.
func (e *env) reopen() {
	e.t.Helper()
	if err := e.s.Close(context.Background()); err != nil {
		e.t.Fatalf("close: %v", err)
	}
	e.open()
}

func (e *env) db() *sql.DB { return e.h.DB(e.t, e.s) }

// apply applies b, fails the test on error, and checks that every logged
// event is counted exactly once as Applied, Duplicates or Stale.
func (e *env) apply(b *change.Batch) change.ApplyResult {
	e.t.Helper()
	res, err := e.s.Apply(context.Background(), b)
	if err != nil {
		e.t.Fatalf("apply: %v", err)
	}
	if res.Applied+res.Duplicates+res.Stale != res.Logged {
		e.t.Errorf("counts: applied %d + duplicates %d + stale %d != logged %d", res.Applied, res.Duplicates, res.Stale, res.Logged)
	}
	return res
}

// rows reads table (or view) as record_id -> column -> text, NULL as Null.
// keyCol names the record_id column.
func (e *env) rows(table, keyCol string, cols ...string) map[string]map[string]string {
	e.t.Helper()
	var b strings.Builder
	b.WriteString("SELECT CAST(" + sqlgen.QuoteIdent(keyCol) + " AS VARCHAR)")
	for _, c := range cols {
		b.WriteString(", CAST(" + sqlgen.QuoteIdent(c) + " AS VARCHAR)")
	}
	b.WriteString(" FROM " + sqlgen.QuoteIdent(table))
	r, err := e.db().QueryContext(context.Background(), b.String())
	if err != nil {
		e.t.Fatalf("read %s: %v", table, err)
	}
	defer r.Close()
	out := map[string]map[string]string{}
	for r.Next() {
		vals := make([]sql.NullString, len(cols)+1)
		ptrs := make([]any, len(vals))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := r.Scan(ptrs...); err != nil {
			e.t.Fatalf("read %s: %v", table, err)
		}
		row := map[string]string{}
		for i, c := range cols {
			row[c] = norm(vals[i+1])
		}
		if _, dup := out[vals[0].String]; dup {
			e.t.Errorf("%s: record_id %q appears twice", table, vals[0].String)
		}
		out[vals[0].String] = row
	}
	if err := r.Err(); err != nil {
		e.t.Fatalf("read %s: %v", table, err)
	}
	return out
}

// merged reads a merged table.
func (e *env) merged(table string, cols ...string) map[string]map[string]string {
	e.t.Helper()
	return e.rows(table, sqlgen.ColRecordID, cols...)
}

// view reads a current-state view.
func (e *env) view(table string, cols ...string) map[string]map[string]string {
	e.t.Helper()
	return e.rows(sqlgen.ViewName(table), "record_id", cols...)
}

// norm renders a value read back as text; JSON objects and arrays are
// re-encoded so dialects that store JSON differently compare equal.
func norm(v sql.NullString) string {
	if !v.Valid {
		return Null
	}
	s := strings.TrimSpace(v.String)
	if strings.HasPrefix(s, "{") || strings.HasPrefix(s, "[") {
		var x any
		if json.Unmarshal([]byte(s), &x) == nil {
			b, _ := json.Marshal(x)
			return string(b)
		}
	}
	return v.String
}

// count runs a SELECT count(*) query.
func (e *env) count(query string, args ...any) int {
	e.t.Helper()
	var n int
	if err := e.db().QueryRowContext(context.Background(), query, args...).Scan(&n); err != nil {
		e.t.Fatalf("%s: %v", query, err)
	}
	return n
}

// columnType returns the upper-cased information_schema data_type of a column, "" when absent.
func (e *env) columnType(table, col string) string {
	e.t.Helper()
	var typ string
	err := e.db().QueryRowContext(context.Background(),
		"SELECT data_type FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1 AND column_name = $2",
		table, col).Scan(&typ)
	if err == sql.ErrNoRows {
		return ""
	}
	if err != nil {
		e.t.Fatalf("type of %s.%s: %v", table, col, err)
	}
	return strings.ToUpper(typ)
}

// isKind reports whether an information_schema data_type is of a kind, in any dialect.
func isKind(dataType string, k sqlgen.Kind) bool {
	switch k {
	case sqlgen.BigInt:
		return dataType == "BIGINT"
	case sqlgen.Varchar:
		return dataType == "VARCHAR" || dataType == "TEXT" || dataType == "CHARACTER VARYING"
	case sqlgen.Decimal:
		return strings.HasPrefix(dataType, "DECIMAL") || strings.HasPrefix(dataType, "NUMERIC")
	case sqlgen.Double:
		return dataType == "DOUBLE" || dataType == "DOUBLE PRECISION"
	case sqlgen.Boolean:
		return dataType == "BOOLEAN"
	case sqlgen.JSON:
		return dataType == "JSON" || dataType == "JSONB"
	case sqlgen.Timestamp:
		return dataType == "TIMESTAMP" || dataType == "TIMESTAMP WITHOUT TIME ZONE"
	}
	return false
}

// deadLetters returns the reasons stored in cdc_dead_letters, in any order.
func (e *env) deadLetters() map[string]int {
	e.t.Helper()
	r, err := e.db().QueryContext(context.Background(), "SELECT reason FROM "+sqlgen.QuoteIdent(sqlgen.DeadLettersTable))
	if err != nil {
		e.t.Fatalf("read dead letters: %v", err)
	}
	defer r.Close()
	out := map[string]int{}
	for r.Next() {
		var reason string
		if err := r.Scan(&reason); err != nil {
			e.t.Fatal(err)
		}
		out[reason]++
	}
	return out
}

func (e *env) logCount() int {
	return e.count("SELECT count(*) FROM " + sqlgen.QuoteIdent(sqlgen.EventsTable))
}

// sameRows compares two read-backs and reports differences.
func sameRows(t *testing.T, what string, got, want map[string]map[string]string) {
	t.Helper()
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("%s: record_id %q missing (want %v)", what, k, w)
			continue
		}
		for c, wv := range w {
			if g[c] != wv {
				t.Errorf("%s: record_id %q column %s = %q, want %q", what, k, c, g[c], wv)
			}
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: unexpected record_id %q = %v", what, k, g)
		}
	}
}

// checkState asserts the merged table and the view both hold want.
func (e *env) checkState(table string, want map[string]map[string]string, cols ...string) {
	e.t.Helper()
	sameRows(e.t, table, e.merged(table, cols...), want)
	sameRows(e.t, sqlgen.ViewName(table), e.view(table, cols...), want)
}
