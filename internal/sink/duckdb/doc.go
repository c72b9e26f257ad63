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
//	_cdc_chunks         chunk ids of reassembled DSQL records (sink.ChunkStore)
//	_cdc_record_positions  (source, position) of records of DedupePositions batches, pruned after 48 h
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
// Merge strategy: the batch's keys are appended to a temporary table and
// joined with each merged table and the tombstones to read the stored
// orders, inside the transaction; Go decides which winners are newer; the
// older stored rows of those keys are deleted (DELETE ... USING, guarded by
// "stored order < winner's order", the Go decision repeated in SQL) and the
// winners appended (INSERT ... SELECT from a query appender); tombstones
// likewise. Soft deletes that keep the stored values copy the stored row
// with the delete's bookkeeping before the old row goes.
//
// Why not UPDATE or INSERT ... ON CONFLICT: DuckDB is a column store. An
// updated row makes the next checkpoint rewrite its whole row group, and a
// PRIMARY KEY is an ART index maintained and written at every checkpoint,
// so both cost in proportion to the table, not the batch (a 100k-row table
// took 3.2k upserts/s with ON CONFLICT, 47k/s with DELETE + append and no
// key). The merged tables and the tombstone table the sink creates
// therefore have no PRIMARY KEY; keys stay unique because the single
// writer reads the stored rows in the same transaction, deletes exactly the
// rows it read (older than the winner) and appends one winner per key.
// Tables created with a key (by an older version, or cdcflow ddl) work the
// same way, more slowly.
//
// Resources (Options.MemoryLimit, Threads, CheckpointThreshold): DuckDB
// runs with one thread and a buffer limit, every statement runs on one
// locked OS thread (allocator arenas are per thread), and the sink
// checkpoints itself every CheckpointRows log rows or CheckpointThreshold
// of WAL, so log row groups are written once instead of merged and
// rewritten. A checkpoint that fails fatally (DuckDB invalidates the
// database) makes the sink reopen the database: the WAL keeps what was
// committed.
package duckdb
