// Package deadletter writes dead letters as JSON lines, one per record that
// could not become an event or that a sink rejected:
//
//	{"reason":"invalid_json","detail":"...","format":"dsql","position":"/data/a.ndjson:42","raw":"eyJv...","at":"2025-01-02T03:04:05.123456789Z"}
//
// raw is the record's bytes in standard base64 (they need not be UTF-8);
// position is change.Position.String(); at is the time the line was written,
// UTC, RFC 3339 with nanoseconds.
//
// Invariants:
//   - Write either appends whole lines or returns an error; a line is never
//     interleaved with another Write (a Writer is safe for concurrent use).
//   - After Flush returns nil every line written so far has been handed to the
//     underlying writer, and for a File fsynced to disk. The pipeline flushes
//     before it acknowledges the records the dead letters came from.
//   - A File is opened in append mode: lines from earlier runs are kept, so a
//     record re-read after a crash may appear twice (at-least-once).
package deadletter
