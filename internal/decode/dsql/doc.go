// Package dsql decodes Aurora DSQL CDC records (the JSON payloads DSQL
// writes to Kinesis) into change events, and reassembles oversized records
// that DSQL splits into a chunked main record and fragments.
//
// Invariants:
//   - An emitted event's Before and After are nil or one valid JSON object
//     (as encoding/json's Valid judges it). The whole record is validated;
//     invalid JSON anywhere is change.ReasonInvalidJSON poison.
//   - For full records, Before, After and Raw alias the input bytes; nothing
//     is copied. Events of reassembled records own their bytes.
//   - Order is (source.ts_ns, or source.ts_ms*1e6; envelope ts_ns, or
//     ts_ms*1e6, as change.SortableUint) with LogFirst false: commit time
//     decides, emission time breaks ties.
//   - Held pieces are copies, bounded by the assembler's byte limit; every
//     piece that does not end up in an event becomes exactly one dead letter
//     (returned as a Poison for the current record, or through TakeDead,
//     Expire or Drain), except duplicates, which are counted and skipped.
//   - Nothing reads the clock: time comes in through Decode and Expire.
//   - Every field name of the format lives in names.go.
//
// The scanner in scan.go is hand-written rather than encoding/json or a
// third-party parser: it validates and locates fields in one pass without
// allocating, and returns value slices that alias the input.
package dsql
