// Package dms decodes AWS Database Migration Service records as DMS writes
// them to a Kinesis Data Streams or Apache Kafka target (JSON message format,
// one record per message).
//
// A record is {"data":{...row...},"metadata":{...},"before-image":{...}}.
// Record type "control" is skipped (*change.Skip with change.SkipControl);
// record type "data" with operation insert, update, delete or load becomes
// one event with op c, u, d or r.
//
// Invariants:
//   - Decode never panics and never returns broken JSON: Before and After are
//     nil or a JSON object, sub-slices of the record's bytes (they alias
//     r.Data; see change.Event.Clone).
//   - For a delete, data is the deleted row: Before is before-image when the
//     record has one, else data; After is nil. For every other op After is
//     data and Before is before-image or nil.
//   - The key always comes from data, the row DMS reports for every op.
//   - Order.CommitNS is metadata.timestamp (the time DMS emitted the change,
//     on the same clock for full-load and CDC records); Order.Seq is always
//     empty because DMS publishes no position that sorts as bytes across
//     source engines. Events with equal timestamps fall back to stream
//     position (change.Compare).
//   - Every failure is a *change.Poison whose Field is the JSON path at fault.
package dms
