// Package debezium decodes Debezium change events in Kafka Connect's JSON
// form, with or without the schema envelope ({"schema":..,"payload":..}),
// into change.Events. See docs/formats/debezium.md for the mapping.
//
// Invariants:
//   - Decode is pure and safe for concurrent use; it keeps no state beyond
//     a bounded, lock-free cache of table names and key column lists.
//   - One record yields exactly one event, or a *change.Skip (tombstones,
//     logical decoding messages), or a *change.Poison naming the field at
//     fault. It never panics on any input.
//   - The whole record is validated as JSON (RFC 8259, UTF-8 strings) in
//     one pass; emitted Before and After are nil or JSON objects that alias
//     the record, except when the schema envelope asks for logical-type
//     conversion, which rewrites the image into a new buffer.
//   - Without the schema envelope, values pass through exactly as written:
//     a number stays the same literal, base64 decimals stay strings.
//   - Order: CommitNS is the source commit time (source.ts_ns, ts_us or
//     ts_ms; never the envelope ts_ms, which is processing time). When the
//     source block carries a log position (PostgreSQL lsn, MySQL file/pos/row,
//     SQL Server commit_lsn/change_lsn, Oracle scn) it becomes Order.Seq with
//     LogFirst set, so log order decides before time and a snapshot row read
//     late never beats a change streamed after the snapshot point.
//   - Key: a Kafka message key, when present, is the Debezium key struct and
//     decides the key columns; else the configured columns are read from
//     after (before for deletes). Key column lists are shared, never copied
//     per event: callers must not modify Event.KeyColumns.
//   - Duplicate member names: in records and sources the last occurrence
//     counts; for key columns read from an image, the first one does.
package debezium
