// Package testgen generates deterministic random source-database histories
// and renders them as CDC records in every supported format (DSQL, Debezium,
// DMS, DynamoDB Streams), with the delivery faults a real stream has:
// shards, duplicates, reordering and oversized-record fragments. Differential
// tests decode the records, apply them, and compare the result with
// History.Final.
//
// Invariants:
//   - Everything is a pure function of the seeds: Generate(seed, opts) and
//     the encoders with the same EncodeOptions return the same bytes on every
//     run and platform. Stream produces exactly the records of encoding
//     Generate's history, without keeping the history in memory.
//   - Commit times strictly increase from one transaction to the next (by at
//     least 1ms plus 1µs per change of the previous transaction). Changes of
//     one transaction share the commit time and are ordered by the sequence
//     each encoder emits: DSQL the top-level ts_ns, Debezium source.lsn, DMS a
//     per-change microsecond in metadata.timestamp, DynamoDB SequenceNumber.
//     Ordering every format's records by those fields reproduces Events().
//   - A transaction may touch one key several times (RepeatInTx): only the
//     sequence decides between its changes.
//   - Row values are what encoding/json decodes with UseNumber: json.Number,
//     string, bool, nil, map[string]any, []any. Encoders write every value so
//     that a faithful decoder returns the same JSON value (DynamoDB typed
//     attributes are undone by the decoder). The one exception is Debezium
//     with the schema envelope, whose logical types follow Debezium:
//     ExpectedState (History.FinalFor) gives the state the project's
//     decoder contract yields there.
//   - record_id follows change.RecordID: a single key's text (strings
//     unquoted, numbers as written), a composite key as a compact JSON array.
//   - Duplicates are exact byte copies delivered later on the same shard;
//     Record.Duplicate marks them for tests, decoders must not rely on it.
package testgen
