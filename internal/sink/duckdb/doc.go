// Package duckdb is cdcflow's embedded warehouse sink: one DuckDB file that
// holds an append-only event log, a current-state view and a typed merged
// table per source table, tombstones, dead letters and checkpoints.
//
// Tables (SQL from internal/sqlgen; see docs/sinks.md for the semantics):
//
//	cdc_events          every accepted event, appended (never updated)
//	<table>_current     view: latest event per record_id, deletes hidden
//	<table>             merged table: live rows, typed columns, _cdc_* bookkeeping
//	_cdc_tombstones     (table, record_id, commit_order) of applied deletes
//	cdc_dead_letters    rejected records and rows (with DeadLetterTable)
//	_cdc_checkpoints    one row per stream partition
//	_cdc_tables, _cdc_columns   what the sink created, and the column types
//
// Invariants:
//   - One Apply is one transaction: DDL for new tables and columns, log rows,
//     merged rows, tombstones, dead letters and checkpoints commit together or
//     not at all. Rows written through the DuckDB appender on the sink's
//     connection belong to the open transaction (TestAppenderInTransaction);
//     the sink's in-memory schema and event_id counter change only after
//     COMMIT succeeds.
//   - Commit order decides, never arrival order: a merged row changes only
//     for an event whose Order.Key is greater than both the row's
//     _cdc_commit_order and the key's tombstone. Within a batch only the
//     latest event per key (change.Compare) is merged.
//   - Every logged event is counted once: Logged == Applied + Duplicates +
//     Stale (without LogOnly). Duplicates are events equal in order to the
//     stored state or the same change as the batch's winner; the rest lose
//     to a newer event and are Stale.
//   - Nothing is lost silently: an event the sink cannot store (invalid
//     operation, identifier, UTF-8 or image; a value a pinned column cannot
//     hold) becomes a dead letter in the same transaction, or, without
//     DeadLetterTable, fails Apply with sink.ErrPermanent naming its position.
//   - No SQL is built from data: row values are appended or bound as
//     parameters; table and column names from the stream are validated
//     (sqlgen.ValidateIdent) and quoted.
//   - Columns only widen (sqlgen.Widen); a pinned column never changes type.
//
// Merge strategy: the sink reads the stored orders (row and tombstone) of
// the batch's keys inside the transaction, decides in Go which winners are
// newer, then stages them with DuckDB query appenders and runs
// INSERT ... ON CONFLICT DO UPDATE ... WHERE newer (puts), DELETE ... USING
// (deletes) and a tombstone upsert. The WHERE guards repeat the Go decision in
// SQL. Measured on DuckDB 1.5: ON CONFLICT beat DELETE-by-key + append and
// MERGE INTO on a table with a primary key.
package duckdb
