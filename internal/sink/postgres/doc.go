// Package postgres is cdcflow's PostgreSQL sink: in one schema of a
// PostgreSQL database it keeps an append-only event log, a current-state
// view and a typed merged table per source table, tombstones, dead letters
// and checkpoints, with the same names and semantics as the DuckDB sink
// (docs/sinks.md; PostgreSQL specifics in docs/postgres.md).
//
//	cdc_events          every accepted event, appended with binary COPY (event_data jsonb)
//	<table>_current     view: latest event per record_id, deletes hidden
//	<table>             merged table: live rows, typed columns, _cdc_* bookkeeping
//	_cdc_tombstones     (table, record_id, commit_order) of applied deletes
//	_cdc_chunks         chunk ids of reassembled DSQL records (sink.ChunkStore); unique: a claim
//	_cdc_pieces         DSQL pieces parked for another process to complete (sink.PieceStore)
//	_cdc_record_positions  (source, position) of records of DedupePositions batches, pruned after 48 h
//	_cdc_leases, _cdc_lease_owners  Kinesis shard leases (LeaseTable), fenced in Apply
//	cdc_dead_letters    rejected records and rows (with DeadLetterTable)
//	_cdc_checkpoints    one row per stream partition
//	_cdc_tables, _cdc_columns   what the sink created, and the column types
//	_cdc_event_ids      the sequence numbering cdc_events.event_id
//
// Invariants:
//   - One Apply is one transaction (READ COMMITTED): partition locks, log
//     rows, DDL for new tables and columns, merged rows, tombstones, dead
//     letters and checkpoints commit together or not at all. The sink's
//     in-memory schema changes only after COMMIT succeeds.
//   - Exactly once in effect: Apply first takes a transaction-scoped advisory
//     lock per partition of the batch (sorted, so writers never deadlock on
//     them), reads those partitions' checkpoints FOR UPDATE, and drops every
//     event and dead letter at or before the stored Applied position of a
//     resumable partition (Options.CanResume), keeping fragment dead letters
//     at or after a Held checkpoint's Resume position as change.Checkpoint
//     requires. A redelivered batch (a crash before the ack, a second daemon
//     on the same partition) therefore adds nothing; a checkpoint never
//     moves back.
//   - Commit order decides, never arrival order: a merged row changes only
//     for an event whose Order.Key is greater than both the row's
//     _cdc_commit_order and the key's tombstone. The merge statements decide
//     in SQL (ON CONFLICT ... WHERE newer, a tombstone guard, tombstones only
//     for deletes newer than the row, DELETE ... WHERE older) and return the
//     keys they applied; where Go decides first (keys with several events in
//     the batch, soft deletes) they repeat its decision, so a concurrent
//     writer cannot make an older event win. Within a batch only the latest
//     event per key is merged.
//   - A merged row is never older than its key's tombstone (a put goes in
//     only past the tombstone; a tombstone only past the row, whose older
//     version it deletes).
//   - Every logged event is counted once: Logged == Applied + Duplicates +
//     Stale (without LogOnly); a single event a statement did not apply is
//     a duplicate or stale by the stored orders read after the statements,
//     which did not change them.
//   - Nothing is lost silently: an event PostgreSQL cannot store (invalid
//     operation, identifier, UTF-8, NUL or \u0000 in text or JSON, a value a
//     pinned column cannot hold) becomes a dead letter in the same
//     transaction, or, without DeadLetterTable, fails Apply with
//     sink.ErrPermanent naming its position.
//   - No SQL is built from data: row values travel by COPY or as bind
//     parameters (chunked under sqlgen.MaxParams); table and column names
//     from the stream are validated (sqlgen.ValidateIdent) and quoted.
//   - Columns only widen (sqlgen.Widen); a pinned column never changes type.
//     A writer changes a table's schema only under that table's advisory
//     lock and after checking the registry still matches what it planned
//     from; otherwise it reloads the registry and plans the batch again.
//   - The URL is a secret: errors and logs name user@host:port/database
//     only, and every error's text is scrubbed of the URL and password.
//   - Errors wrap sink.ErrPermanent only when the data is at fault (SQLSTATE
//     classes 22 and 23); connection loss, serialization failures,
//     deadlocks, shutdowns and the rest are retryable, and a lost connection
//     is re-established by the next call.
package postgres
