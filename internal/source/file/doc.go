// Package file is a source that reads change records from files and stdin:
// NDJSON (one record per line) and pretty-printed JSON documents (a Lambda
// event fixture, `aws kinesis get-records` output), plain or gzip-compressed.
//
// Record boundaries:
//   - Each non-blank line is one record. A trailing "\r\n" or "\n" is removed;
//     blank (whitespace-only) lines are skipped but still counted.
//   - A line whose trimmed text is exactly "{" or "[" starts a multi-line
//     document: lines are accumulated, joined with "\n", until the brackets
//     outside strings balance; the document is one record. A document still
//     open at end of input is emitted as it is, so it becomes a dead letter.
//   - A line or document longer than Options.MaxRecordBytes is truncated to
//     that length (and logged): the truncated record fails to decode and is
//     dead-lettered rather than aborting the run.
//
// Positions: Position.Source is the cleaned absolute path of the file (so a
// checkpoint resumes from any working directory) or "-" for stdin;
// Position.Offset is the decimal line number (from 1) of the record's first
// line; Partition is "".
//
// Invariants:
//   - Inputs are read one after another in the order given; a glob's matches
//     are sorted. A path listed twice (or matched by two globs) is read once.
//   - Raw.Data of a record is never reused or modified by the source: it stays
//     valid after the batch is acknowledged.
//   - Acks only advance an in-memory committed position (Committed): files
//     have no broker. Restarting from where a run stopped is done by Resume
//     with the checkpoints the sink stored. Stdin cannot resume (CanResume
//     reports false for "-"): a checkpoint for "-" is ignored, because the
//     next run's stdin is a different stream.
//   - A negative ack (the pipeline could not apply a batch) stops the source:
//     every later Read fails, since a file source does not redeliver within a
//     run. The next run resumes from the stored checkpoints.
package file
