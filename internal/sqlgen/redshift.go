package sqlgen

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// The Redshift dialect of DDL (RedshiftDDL) prints, for Amazon Redshift
// (Serverless or provisioned), seed 000's design of an append-only event log
// in a SUPER column, the per-table current-state views, and for each table a
// typed target table kept up to date by a generated stored procedure in the
// style of seeds 001/003, with their two bugs fixed:
//
//   - The watermark is the highest event_id (the log's ingestion sequence)
//     the procedure has processed, stored per table in WatermarksTable. It
//     advances on every run that saw events of the table, deletes and stale
//     events included, and never moves backwards. The seeds took
//     MAX(refresh_time) of the *target* table, which does not move on a
//     delete-only batch and is lower than before when the newest rows were
//     deleted.
//   - An older event never overwrites a newer row: each run stages the
//     latest event per record_id by commit order (ROW_NUMBER, a total order;
//     the seeds' RANK gives ties two winners), drops staged changes that are
//     not newer than the target row or the key's tombstone, and only then
//     updates, inserts, deletes and records tombstones, each statement
//     repeating its newer-than guard. The seeds deleted and re-inserted every
//     staged key blindly, so a late event overwrote newer state and a late
//     insert resurrected a deleted row.
//
// Invariants of the generated SQL, on top of the package's:
//   - Every identifier is quoted; names also pass ValidateIdent, must not
//     contain "$$" (which would end a procedure body) and must not differ
//     from another name only in ASCII case, because Redshift folds quoted
//     names to lower case in any session without
//     enable_case_sensitive_identifier.
//   - A sync run is one transaction (no COMMIT, no TRUNCATE, a temporary
//     staging table dropped at the end), serialized with other runs by a lock
//     on WatermarksTable taken before its first read.
//   - Re-running a procedure with no new events changes no row but its
//     WatermarksTable bookkeeping (last_run_at, last_run_events).
//
// Nothing here has run on Redshift itself: the tests render the same
// statements in a PostgreSQL translation (jsonb for SUPER) and run the sync
// logic on a real PostgreSQL server.

// Redshift column sizes. VARCHAR lengths are bytes in Redshift.
const (
	// RedshiftRecordIDLen is the width of record_id and _cdc_record_id:
	// composite keys are stored as a JSON array of their values
	// (change.RecordID), so two UUIDs already take 79 bytes, more than seed
	// 000's VARCHAR(50) holds, while a bounded width keeps the DISTKEY and
	// the window's sort narrow.
	RedshiftRecordIDLen = 512
	// RedshiftOrderLen is the width of commit_order and _cdc_commit_order
	// ("T" + 21 digits + " " + the source's sequence).
	RedshiftOrderLen = 512
	// RedshiftStreamOrderLen is the width of stream_order and
	// stream_position (stream or file name, partition, offset).
	RedshiftStreamOrderLen = 1024
	// RedshiftNameLen is the width of columns holding table and schema names.
	RedshiftNameLen = 128
)

// Names used by the Redshift DDL.
const (
	// WatermarksTable holds one row per synced table: the highest event_id
	// processed, the lookback window, and the last run's time and count.
	WatermarksTable = "_cdc_sync_watermarks"
	// SyncProcedurePrefix starts the name of each table's sync procedure.
	SyncProcedurePrefix = "incremental_sync_"
	// StagePrefix starts the name of each sync run's temporary staging table.
	StagePrefix = "_cdc_stage_"
	// DefaultLookbackSeconds is a new table's lookback window: each run also
	// re-stages the events ingested in the last this many seconds, whatever
	// their event_id, so a loader transaction that committed after a later
	// one (its IDENTITY values are lower than the watermark by then) is not
	// skipped. Re-staged events that were applied are no-ops.
	DefaultLookbackSeconds = 900
)

// SyncProcedureName is the name of table's incremental-sync procedure.
func SyncProcedureName(table string) string { return SyncProcedurePrefix + table }

// RedshiftDDL prints the Redshift DDL for tables: the session setting,
// cdc_events with its grant, the tombstone and watermark tables, and per
// table (by name) its typed target table, its <table>_current view and its
// incremental_sync_<table>() procedure. Statements end with ";" and are
// separated by blank lines; re-running the output changes nothing but
// replaced views and procedures. DDL("redshift", tables) calls it.
func RedshiftDDL(tables []TableSpec) (string, error) {
	return redshiftDDL(redshift{}, tables)
}

// rsFlavor spells the few parts of the Redshift DDL that a PostgreSQL
// translation spells differently. Everything else, and in particular every
// statement of the sync procedure, is shared text, so the tests can run the
// procedure's logic on PostgreSQL with a test-only flavor.
type rsFlavor interface {
	// preamble is the statements that start the script.
	preamble() []string
	// typeName spells a column type.
	typeName(t Type) string
	// orderType is a bytewise-ordered VARCHAR(n).
	orderType(n int) string
	// identity is the event_id column's type and generation clause.
	identity() string
	// now is the current UTC time as TIMESTAMP.
	now() string
	// secondsBefore is the TIMESTAMP secs seconds before now().
	secondsBefore(secs string) string
	// field reads member key of the JSON (SUPER) expression row as t.
	field(row, key string, t Type) string
	// tableOptions are the clauses after a CREATE TABLE's column list.
	tableOptions(o rsTableOptions) string
	// procedureOptions are the clauses after LANGUAGE plpgsql.
	procedureOptions() string
}

// rsTableOptions are a table's distribution and sort clauses.
type rsTableOptions struct {
	distStyle string   // KEY, ALL, EVEN, AUTO
	distKey   string   // with KEY
	sortKey   []string // may be empty
}

type redshift struct{}

func (redshift) preamble() []string {
	return []string{"-- Quoted names keep their case only with this setting. Views keep the value\n" +
		"-- they were created with, so run the whole script in one session (psql, Query\n" +
		"-- Editor v2, or redshift-data batch-execute-statement). Sessions that query\n" +
		"-- mixed-case columns need it too; the procedures set it for themselves.\n" +
		"SET enable_case_sensitive_identifier TO true"}
}

func (redshift) typeName(t Type) string {
	switch t.Kind {
	case Decimal:
		return "DECIMAL(" + strconv.Itoa(t.Precision) + "," + strconv.Itoa(t.Scale) + ")"
	case Double:
		return "DOUBLE PRECISION"
	case Varchar:
		return "VARCHAR(MAX)"
	case JSON:
		return "SUPER"
	}
	return t.String()
}

// orderType: Redshift compares strings bytewise; CASE_SENSITIVE guards
// against a database created with COLLATE CASE_INSENSITIVE.
func (redshift) orderType(n int) string {
	return "VARCHAR(" + strconv.Itoa(n) + ") COLLATE CASE_SENSITIVE"
}

func (redshift) identity() string { return "BIGINT IDENTITY(1,1)" }
func (redshift) now() string      { return "GETDATE()" }

func (redshift) secondsBefore(secs string) string {
	return "DATEADD(second, -" + secs + ", GETDATE())"
}

// field navigates SUPER with a quoted attribute name and casts; Redshift's
// SUPER casts are lax by default (cast_super_null_on_error), so a value that
// does not cast reads as NULL, like DuckDB's TRY_CAST. VARCHAR reads strings
// unquoted and other JSON values as their JSON text (a numeric key in an
// untyped key column stays "1001"), like PostgreSQL's ->>; JSON null and a
// missing member read as NULL. Timestamps are read with their offset and
// stored as UTC.
func (r redshift) field(row, key string, t Type) string {
	nav := row + "." + QuoteIdent(key)
	switch t.Kind {
	case JSON:
		return nav
	case Varchar:
		return "CASE WHEN JSON_TYPEOF(" + nav + ") = 'string' THEN " + nav + "::VARCHAR(MAX)" +
			" WHEN JSON_TYPEOF(" + nav + ") IN ('number', 'boolean', 'array', 'object') THEN JSON_SERIALIZE(" + nav + ") END"
	case Timestamp:
		return "(" + nav + "::TIMESTAMPTZ AT TIME ZONE 'UTC')"
	}
	return nav + "::" + r.typeName(t)
}

func (redshift) tableOptions(o rsTableOptions) string {
	s := "\nDISTSTYLE " + o.distStyle
	if o.distKey != "" {
		s += "\nDISTKEY (" + QuoteIdent(o.distKey) + ")"
	}
	if len(o.sortKey) > 0 {
		s += "\nSORTKEY (" + quoteList(o.sortKey) + ")"
	}
	return s
}

func (redshift) procedureOptions() string {
	return "\nSET enable_case_sensitive_identifier TO true"
}

// rsTable is a validated table spec with its columns in table order.
type rsTable struct {
	TableSpec
	source  string   // Source, or Name
	cols    []Column // keys first (untyped keys as VARCHAR), then by name
	untyped []string // key columns without a configured type
}

func redshiftDDL(f rsFlavor, tables []TableSpec) (string, error) {
	specs, err := rsTables(tables)
	if err != nil {
		return "", err
	}
	stmts := append(f.preamble(), rsEvents(f), rsGrant, rsTombstones(f), rsWatermarks(f))
	stmts[0] = rsHeader + stmts[0]
	for _, t := range specs {
		stmts = append(stmts, rsTarget(f, t), rsView(f, t), rsProcedure(f, t))
	}
	return strings.Join(stmts, ";\n\n") + ";\n", nil
}

const rsHeader = `-- cdcflow DDL for Amazon Redshift: the cdc_events log (seed 000's SUPER
-- design plus cdcflow's ordering columns), a <table>_current view and a typed
-- target table per configured table, kept current by CALL
-- incremental_sync_<table>(); see docs/redshift.md.
`

// rsTables validates and orders the specs.
func rsTables(tables []TableSpec) ([]rsTable, error) {
	specs := append([]TableSpec(nil), tables...)
	sort.Slice(specs, func(i, j int) bool { return specs[i].Name < specs[j].Name })
	// Table names and view names share one namespace; Redshift folds quoted
	// names to lower case without enable_case_sensitive_identifier.
	names, taken := map[string]bool{}, map[string]string{}
	out := make([]rsTable, 0, len(specs))
	for _, ts := range specs {
		if err := ValidateTable(ts.Name); err != nil {
			return nil, fmt.Errorf("table %q: %w", ts.Name, err)
		}
		if names[DuckDB.Fold(ts.Name)] {
			return nil, fmt.Errorf("table %q: listed twice (Redshift folds names to lower case)", ts.Name)
		}
		names[DuckDB.Fold(ts.Name)] = true
		for _, n := range []string{ts.Name, ViewName(ts.Name)} {
			if prev, ok := taken[DuckDB.Fold(n)]; ok {
				return nil, fmt.Errorf("table %q: %s collides with %s", ts.Name, n, prev)
			}
			taken[DuckDB.Fold(n)] = n
		}
		t := rsTable{TableSpec: ts, source: ts.Source}
		if t.source == "" {
			t.source = ts.Name
		}
		for _, n := range [][2]string{{"name", ts.Name}, {"schema", ts.Schema}, {"source", t.source}} {
			if strings.Contains(n[1], "$$") {
				return nil, fmt.Errorf("table %q: %s %q contains \"$$\", which would end the procedure body", ts.Name, n[0], n[1])
			}
		}
		cols, untyped, err := rsColumns(ts)
		if err != nil {
			return nil, fmt.Errorf("table %q: %w", ts.Name, err)
		}
		t.cols, t.untyped = cols, untyped
		out = append(out, t)
	}
	return out, nil
}

// rsColumns orders a spec's columns: key columns in key order (untyped ones
// as VARCHAR, since the procedure must extract every column it writes), then
// the others by name. Names differing only in ASCII case are rejected.
func rsColumns(ts TableSpec) ([]Column, []string, error) {
	typed, err := specColumns(DuckDB, ts) // DuckDB folds ASCII case, as Redshift does
	if err != nil {
		return nil, nil, err
	}
	byName := map[string]Column{}
	for _, c := range typed {
		byName[c.Name] = c
	}
	var cols []Column
	var untyped []string
	seen := map[string]bool{}
	for _, k := range ts.Key {
		if err := ValidateIdent(k); err != nil {
			return nil, nil, fmt.Errorf("key column: %w", err)
		}
		if seen[DuckDB.Fold(k)] {
			return nil, nil, fmt.Errorf("key column %q: listed twice", k)
		}
		seen[DuckDB.Fold(k)] = true
		c, ok := byName[k]
		if !ok {
			c = Column{Name: k, Type: TVarchar}
			untyped = append(untyped, k)
		}
		cols = append(cols, c)
	}
	for _, c := range typed {
		if !seen[DuckDB.Fold(c.Name)] {
			seen[DuckDB.Fold(c.Name)] = true
			cols = append(cols, c)
		}
	}
	for _, c := range cols {
		if strings.Contains(c.Name, "$$") {
			return nil, nil, fmt.Errorf("column %q: contains \"$$\", which would end the procedure body", c.Name)
		}
	}
	return cols, untyped, nil
}

func rsCreate(f rsFlavor, name string, defs []string, o rsTableOptions) string {
	return "CREATE TABLE IF NOT EXISTS " + QuoteIdent(name) + " (\n  " + strings.Join(defs, ",\n  ") + "\n)" + f.tableOptions(o)
}

// rsEvents is seed 000's cdc_events plus cdcflow's columns, in EventColumns order.
func rsEvents(f rsFlavor) string {
	q := QuoteIdent
	name := "VARCHAR(" + strconv.Itoa(RedshiftNameLen) + ")"
	defs := []string{
		q("event_id") + " " + f.identity() + " NOT NULL",
		q("source_table") + " " + name + " NOT NULL",
		q("operation") + " VARCHAR(10) NOT NULL",
		q("record_id") + " VARCHAR(" + strconv.Itoa(RedshiftRecordIDLen) + ") NOT NULL",
		q("event_data") + " " + f.typeName(TJSON),
		q("commit_timestamp") + " TIMESTAMP NOT NULL",
		q("ingested_at") + " TIMESTAMP NOT NULL DEFAULT " + f.now(),
		q("source_schema") + " " + name,
		q("commit_ts_ns") + " BIGINT NOT NULL",
		q("seq") + " VARCHAR(256)",
		q("tx_id") + " VARCHAR(256)",
		q("stream_position") + " VARCHAR(" + strconv.Itoa(RedshiftStreamOrderLen) + ")",
		q("commit_order") + " " + f.orderType(RedshiftOrderLen) + " NOT NULL",
		q("stream_order") + " " + f.orderType(RedshiftStreamOrderLen) + " NOT NULL",
		"PRIMARY KEY (" + q("event_id") + ")",
	}
	return `-- The append-only event log (seed 000). The loader inserts event_data with
-- JSON_PARSE(:param) and leaves event_id (IDENTITY: unique, for people and for
-- the sync watermark; order comes from commit_order) and ingested_at (the
-- lookback window reads it) to their defaults.
--   record_id is VARCHAR(512), not 50: composite keys are stored as a JSON
--     array of their values (two UUIDs already take 79 bytes).
--   commit_order decides which event of a record_id is current: commit time
--     plus the source's own sequence (or the log position first), compared
--     bytewise, so same-millisecond changes and LSN-ordered sources resolve
--     exactly; stream_order breaks the remaining ties.
--   DISTKEY(record_id) keeps a row's events on one slice for the window
--     functions; SORTKEY(source_table, commit_timestamp) lets zone maps prune.
--   PRIMARY KEY is informational in Redshift (not enforced).
` + rsCreate(f, EventsTable, defs, rsTableOptions{distStyle: "KEY", distKey: "record_id", sortKey: []string{"source_table", "commit_timestamp"}})
}

const rsGrant = `-- Seed 000 grants to PUBLIC to keep its demo simple. In production grant
-- INSERT, SELECT to the loader's IAM identity only (the database user Redshift
-- maps it to, e.g. "IAMR:<lambda-role-name>") and REVOKE the PUBLIC grant.
GRANT INSERT, SELECT ON "cdc_events" TO PUBLIC`

// rsTombstones is cdcflow's tombstone table (TombstoneColumns).
func rsTombstones(f rsFlavor) string {
	q := QuoteIdent
	defs := []string{
		q("table_name") + " VARCHAR(" + strconv.Itoa(RedshiftNameLen) + ") NOT NULL",
		q("record_id") + " VARCHAR(" + strconv.Itoa(RedshiftRecordIDLen) + ") NOT NULL",
		q("commit_order") + " " + f.orderType(RedshiftOrderLen) + " NOT NULL",
		q("commit_timestamp") + " TIMESTAMP",
		"PRIMARY KEY (" + q("table_name") + ", " + q("record_id") + ")",
	}
	return `-- The newest applied delete per (table_name, record_id): a late, older insert
-- of a deleted key is recognized and dropped instead of resurrecting it.
` + rsCreate(f, TombstonesTable, defs, rsTableOptions{distStyle: "KEY", distKey: "record_id"})
}

// rsWatermarks is the per-table sync state.
func rsWatermarks(f rsFlavor) string {
	q := QuoteIdent
	defs := []string{
		q("table_name") + " VARCHAR(" + strconv.Itoa(RedshiftNameLen) + ") NOT NULL",
		q("last_event_id") + " BIGINT NOT NULL",
		q("lookback_seconds") + " INTEGER NOT NULL DEFAULT " + strconv.Itoa(DefaultLookbackSeconds),
		q("last_run_at") + " TIMESTAMP",
		q("last_run_events") + " BIGINT",
		"PRIMARY KEY (" + q("table_name") + ")",
	}
	return `-- One row per synced table, created by its first run: the highest event_id
-- processed (it advances on every run that saw events, deletes included, and
-- never moves backwards), the lookback window (see docs/redshift.md), and the
-- last run's time and number of new events.
` + rsCreate(f, WatermarksTable, defs, rsTableOptions{distStyle: "ALL"})
}

// rsTarget is a table's typed target table.
func rsTarget(f rsFlavor, t rsTable) string {
	q := QuoteIdent
	defs := []string{
		q(ColRecordID) + " VARCHAR(" + strconv.Itoa(RedshiftRecordIDLen) + ") NOT NULL",
		q(ColCommitOrder) + " " + f.orderType(RedshiftOrderLen) + " NOT NULL",
		q(ColCommitTimestamp) + " TIMESTAMP",
		q(ColOp) + " VARCHAR(10) NOT NULL",
	}
	if t.SoftDelete {
		defs = append(defs, q(ColDeleted)+" BOOLEAN NOT NULL DEFAULT false")
	}
	for _, c := range t.cols {
		defs = append(defs, q(c.Name)+" "+f.typeName(c.Type))
	}
	defs = append(defs, "PRIMARY KEY ("+q(ColRecordID)+")")
	dist, why := ColRecordID, "_cdc_record_id: no key column is configured"
	if len(t.cols) > 0 && len(t.Key) > 0 {
		dist, why = t.cols[0].Name, "the first key column, so joins on it\n-- with other tables stay on their slices"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "-- Target table of %s: one row per record_id, typed columns, kept current\n-- by %s(). DISTKEY on %s.\n", t.Name, SyncProcedureName(t.Name), why)
	if t.SoftDelete {
		b.WriteString("-- Soft delete: a delete sets _deleted and keeps the row's last values.\n")
	}
	if len(t.untyped) > 0 {
		fmt.Fprintf(&b, "-- Key column(s) %s have no type under tables.%s.columns: typed VARCHAR(MAX).\n", strings.Join(t.untyped, ", "), t.Name)
	}
	b.WriteString("-- Columns not configured stay in cdc_events.event_data only.\n")
	b.WriteString(rsCreate(f, t.Name, defs, rsTableOptions{distStyle: "KEY", distKey: dist}))
	return b.String()
}

// rsView is seed 000's current-state view, ordered by commit order.
func rsView(f rsFlavor, t rsTable) string {
	q := QuoteIdent
	var b strings.Builder
	fmt.Fprintf(&b, "-- Current state of %s from the log alone: the latest event per\n"+
		"-- record_id by commit order (commit_timestamp alone ties within a millisecond\n"+
		"-- and is not the order of LSN-ordered sources), deletes hidden. Mixed-case\n"+
		"-- JSON keys need enable_case_sensitive_identifier when the view is created.\n", t.Name)
	fmt.Fprintf(&b, "CREATE OR REPLACE VIEW %s AS\nSELECT %s, %s, %s", q(ViewName(t.Name)),
		q("latest")+"."+q("record_id"), q("latest")+"."+q("event_data"), q("latest")+"."+q("commit_timestamp"))
	for _, c := range t.cols {
		if viewFixed[DuckDB.Fold(c.Name)] {
			continue // only reachable through event_data, as in CreateView
		}
		fmt.Fprintf(&b, ",\n  %s AS %s", f.field(q("latest")+"."+q("event_data"), c.Name, c.Type), q(c.Name))
	}
	fmt.Fprintf(&b, "\nFROM (\n  SELECT %s, %s, %s, %s,\n    ROW_NUMBER() OVER (PARTITION BY %s ORDER BY %s DESC, %s DESC, %s DESC) AS %s\n  FROM %s\n  WHERE %s\n) AS %s\nWHERE %s = 1 AND %s <> 'd'",
		q("record_id"), q("operation"), q("event_data"), q("commit_timestamp"),
		q("record_id"), q("commit_order"), q("stream_order"), q("event_id"), q("rn"),
		q(EventsTable), rsSourceFilter(t), q("latest"), q("rn"), q("operation"))
	return b.String()
}

// rsSourceFilter selects the log rows of t (source_table, and source_schema
// when set), before any window function so zone maps prune.
func rsSourceFilter(t rsTable) string {
	s := QuoteIdent("source_table") + " = " + QuoteLiteral(t.source)
	if t.Schema != "" {
		s += " AND " + QuoteIdent("source_schema") + " = " + QuoteLiteral(t.Schema)
	}
	return s
}

// The procedure's variables.
var rsVars = []string{"v_watermark", "v_lookback", "v_high", "v_new", "v_staged", "v_applied"}

// rsProcedure is the corrected incremental-sync procedure of t.
func rsProcedure(f rsFlavor, t rsTable) string {
	q := QuoteIdent
	tgt, stg, tomb, wm := q(t.Name), q(StagePrefix+t.Name), q(TombstonesTable), q(WatermarksTable)
	name := QuoteLiteral(t.Name)
	col := func(table, c string) string { return table + "." + q(c) }
	sKey, sOrder, sTS, sOp := col(stg, ColRecordID), col(stg, ColCommitOrder), col(stg, ColCommitTimestamp), col(stg, ColOp)
	keyMatch := col(tgt, ColRecordID) + " = " + sKey
	tombMatch := col(tomb, "table_name") + " = " + name + " AND " + col(tomb, "record_id") + " = " + sKey

	book := []string{ColRecordID, ColCommitOrder, ColCommitTimestamp, ColOp}
	stageCols := append([]string(nil), book...)
	for _, c := range t.cols {
		stageCols = append(stageCols, c.Name)
	}
	// Puts set every column from the staged image.
	var set []string
	for _, c := range stageCols[1:] {
		set = append(set, q(c)+" = "+col(stg, c))
	}
	if t.SoftDelete {
		set = append(set, q(ColDeleted)+" = false")
	}
	stageSelect := make([]string, len(stageCols))
	for i, c := range stageCols {
		stageSelect[i] = col(stg, c)
	}

	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	w("-- Incremental sync of %s from cdc_events, in the style of seeds 001/003\n", t.Name)
	w("-- with their bugs fixed: the watermark is the highest event_id processed, per table,\n")
	w("-- advancing on every run that saw events; an event changes the target only\n")
	w("-- when it is newer (by commit order) than the stored row and the key's\n")
	w("-- tombstone. One transaction; schedule CALL %s();\n", q(SyncProcedureName(t.Name)))
	w("CREATE OR REPLACE PROCEDURE %s()\nAS $$\nDECLARE\n", q(SyncProcedureName(t.Name)))
	w("  v_watermark BIGINT;\n  v_lookback INTEGER;\n  v_high BIGINT;\n  v_new BIGINT;\n  v_staged BIGINT;\n  v_applied BIGINT;\n")
	w("BEGIN\n")
	w("  -- Runs wait for each other here instead of failing with a serializable\n")
	w("  -- isolation error. The lock comes before the first read, so this run's\n")
	w("  -- snapshot includes what the previous run committed.\n")
	w("  LOCK %s;\n\n", wm)

	w("  SELECT INTO v_watermark, v_lookback %s, %s FROM %s WHERE %s = %s;\n", q("last_event_id"), q("lookback_seconds"), wm, q("table_name"), name)
	w("  IF NOT FOUND THEN\n    v_watermark := 0;\n    v_lookback := %d;\n", DefaultLookbackSeconds)
	w("    INSERT INTO %s (%s, %s, %s) VALUES (%s, 0, %d);\n  END IF;\n\n", wm, q("table_name"), q("last_event_id"), q("lookback_seconds"), name, DefaultLookbackSeconds)

	w("  -- (a) The new events are those logged after the watermark, whatever their\n")
	w("  -- operation; v_high bounds this run so every statement sees the same set.\n")
	w("  SELECT INTO v_high, v_new COALESCE(MAX(%s), v_watermark), COUNT(*)\n  FROM %s\n  WHERE %s AND %s > v_watermark;\n\n", q("event_id"), q(EventsTable), rsSourceFilter(t), q("event_id"))

	w("  -- Staging: a temporary table, not TRUNCATE (which commits in Redshift).\n")
	w("  CREATE TEMP TABLE %s (\n", stg)
	w("    %s VARCHAR(%d) NOT NULL,\n    %s %s NOT NULL,\n    %s TIMESTAMP,\n    %s VARCHAR(10) NOT NULL", q(ColRecordID), RedshiftRecordIDLen, q(ColCommitOrder), f.orderType(RedshiftOrderLen), q(ColCommitTimestamp), q(ColOp))
	for _, c := range t.cols {
		w(",\n    %s %s", q(c.Name), f.typeName(c.Type))
	}
	w("\n  );\n\n")

	w("  -- (b) Rank 1 per record_id by commit order (ROW_NUMBER: exactly one winner)\n")
	w("  -- among the new events and those ingested within the lookback window.\n")
	w("  INSERT INTO %s (%s)\n  SELECT %s, %s, %s, %s", stg, quoteList(stageCols), col(q("ranked"), "record_id"), col(q("ranked"), "commit_order"), col(q("ranked"), "commit_timestamp"), col(q("ranked"), "operation"))
	for _, c := range t.cols {
		w(",\n    %s", f.field(col(q("ranked"), "event_data"), c.Name, c.Type))
	}
	w("\n  FROM (\n    SELECT %s, %s, %s, %s, %s,\n", q("record_id"), q("operation"), q("event_data"), q("commit_order"), q("commit_timestamp"))
	w("      ROW_NUMBER() OVER (PARTITION BY %s ORDER BY %s DESC, %s DESC, %s DESC) AS %s\n", q("record_id"), q("commit_order"), q("stream_order"), q("event_id"), q("rn"))
	w("    FROM %s\n    WHERE %s\n      AND %s <= v_high\n      AND (%s > v_watermark OR %s >= %s)\n  ) AS %s\n  WHERE %s = 1;\n",
		q(EventsTable), rsSourceFilter(t), q("event_id"), q("event_id"), q("ingested_at"), f.secondsBefore("v_lookback"), q("ranked"), col(q("ranked"), "rn"))
	w("  GET DIAGNOSTICS v_staged := ROW_COUNT;\n\n")

	w("  -- Newer-than guards: drop staged changes not newer than the key's tombstone\n")
	w("  DELETE FROM %s USING %s\n  WHERE %s\n    AND %s >= %s;\n", stg, tomb, tombMatch, col(tomb, "commit_order"), sOrder)
	w("  -- ... or than the stored row.\n")
	w("  DELETE FROM %s USING %s\n  WHERE %s\n    AND %s >= %s;\n", stg, tgt, keyMatch, col(tgt, ColCommitOrder), sOrder)
	w("  SELECT INTO v_applied COUNT(*) FROM %s;\n\n", stg)

	w("  -- Puts: update newer rows, insert new keys.\n")
	w("  UPDATE %s SET\n    %s\n  FROM %s\n  WHERE %s\n    AND %s <> 'd'\n    AND %s > %s;\n",
		tgt, strings.Join(set, ",\n    "), stg, keyMatch, sOp, sOrder, col(tgt, ColCommitOrder))
	insCols := stageCols
	insSelect := stageSelect
	if t.SoftDelete {
		insCols = append(append([]string(nil), book...), ColDeleted)
		insCols = append(insCols, stageCols[len(book):]...)
		insSelect = append(append([]string(nil), stageSelect[:len(book)]...), "false")
		insSelect = append(insSelect, stageSelect[len(book):]...)
	}
	w("  INSERT INTO %s (%s)\n  SELECT %s\n  FROM %s\n  WHERE %s <> 'd'\n    AND NOT EXISTS (SELECT 1 FROM %s WHERE %s);\n\n",
		tgt, quoteList(insCols), strings.Join(insSelect, ", "), stg, sOp, tgt, keyMatch)

	if t.SoftDelete {
		w("  -- Deletes (soft): mark newer rows deleted, keeping their values; record\n")
		w("  -- unknown keys as deleted so an older insert cannot create them.\n")
		w("  UPDATE %s SET\n    %s = %s,\n    %s = %s,\n    %s = %s,\n    %s = true\n  FROM %s\n  WHERE %s\n    AND %s = 'd'\n    AND %s > %s;\n",
			tgt, q(ColCommitOrder), sOrder, q(ColCommitTimestamp), sTS, q(ColOp), sOp, q(ColDeleted), stg, keyMatch, sOp, sOrder, col(tgt, ColCommitOrder))
		w("  INSERT INTO %s (%s)\n  SELECT %s, true\n  FROM %s\n  WHERE %s = 'd'\n    AND NOT EXISTS (SELECT 1 FROM %s WHERE %s);\n",
			tgt, quoteList(append(append([]string(nil), book...), ColDeleted)), strings.Join(stageSelect[:len(book)], ", "), stg, sOp, tgt, keyMatch)
	} else {
		w("  -- Deletes: remove only rows older than the delete.\n")
		w("  DELETE FROM %s USING %s\n  WHERE %s\n    AND %s = 'd'\n    AND %s > %s;\n", tgt, stg, keyMatch, sOp, sOrder, col(tgt, ColCommitOrder))
	}
	w("  -- Tombstones: keep the newest delete per key.\n")
	w("  UPDATE %s SET\n    %s = %s,\n    %s = %s\n  FROM %s\n  WHERE %s\n    AND %s = 'd'\n    AND %s > %s;\n",
		tomb, q("commit_order"), sOrder, q("commit_timestamp"), sTS, stg, tombMatch, sOp, sOrder, col(tomb, "commit_order"))
	w("  INSERT INTO %s (%s, %s, %s, %s)\n  SELECT %s, %s, %s, %s\n  FROM %s\n  WHERE %s = 'd'\n    AND NOT EXISTS (SELECT 1 FROM %s WHERE %s);\n\n",
		tomb, q("table_name"), q("record_id"), q("commit_order"), q("commit_timestamp"), name, sKey, sOrder, sTS, stg, sOp, tomb, tombMatch)

	w("  -- (a) Advance the watermark: v_high >= v_watermark, so it never moves back,\n")
	w("  -- and it moves on delete-only and stale-only batches too.\n")
	w("  UPDATE %s SET\n    %s = v_high,\n    %s = %s,\n    %s = v_new\n  WHERE %s = %s;\n\n",
		wm, q("last_event_id"), q("last_run_at"), f.now(), q("last_run_events"), q("table_name"), name)
	w("  DROP TABLE %s;\n", stg)
	// The table name is a RAISE argument, not part of the format, so a "%" in it is inert.
	b.WriteString("  RAISE INFO 'sync of %: % new events up to event_id %, % keys staged, % applied', " + name + ", v_new, v_high, v_staged, v_applied;\n")
	w("END;\n$$ LANGUAGE plpgsql%s", f.procedureOptions())
	return b.String()
}
