// Package sqlgen writes the SQL of cdcflow's warehouse sinks, per dialect
// (duckdb, postgres; redshift for `cdcflow ddl` only, see docs/redshift.md):
// the event log, dead letters,
// checkpoints, tombstones, the registries of merged tables and columns, the
// per-table merged tables and current-state views, and the statements that
// merge staged rows. It also holds what every warehouse sink shares about
// row images: iterating a JSON object (Fields), inferring a column type from
// a value (Infer), the widening lattice (Widen) and converting values
// (Convert).
//
// Invariants:
//   - No row value ever appears in generated SQL: values are bound as
//     parameters (Dialect.Param, InList) or staged by the sink (appender,
//     COPY) in a relation the statements read from.
//   - Names are always quoted with QuoteIdent; names that come from the
//     stream pass ValidateIdent (tables: ValidateTable) first. Names inside
//     DDL text that must be literals (view filters, JSON member keys) are
//     quoted with QuoteLiteral.
//   - Ordering columns (commit_order, stream_order, _cdc_commit_order) have
//     Dialect.OrderType, which compares bytewise, so SQL sorts agree with
//     change.CompareOrder and change.ComparePosition.
//   - Widen only ever widens: every value a column held stays representable
//     after an ALTER to the widened type, and the current-state views' casts
//     succeed on every logged value of an inferred column.
//   - A merged row changes only for a strictly newer commit order
//     (Dialect.Upsert's WHERE, DeleteRows' condition), so re-applying a batch
//     never changes merged state.
package sqlgen
