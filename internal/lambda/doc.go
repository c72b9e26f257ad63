// Package lambda runs cdcflow as an AWS Lambda function behind an event
// source mapping: Kinesis (DSQL, DMS or DynamoDB-on-Kinesis records), Amazon
// MSK or self-managed Kafka (Debezium), and DynamoDB Streams events. One
// invocation is one batch: its records are decoded, and events, dead letters
// and checkpoints are applied to the sink in one transaction. docs/lambda.md
// is the operator's guide.
//
// Invariants:
//   - Every record keeps its native identity: Kinesis Source = stream name,
//     Partition = shard id (from eventID), Offset = sequence number; Kafka
//     Source = topic, Partition = partition, Offset = offset; DynamoDB Source
//     = stream ARN, Partition = "" (the event does not name the shard),
//     Offset = SequenceNumber.
//   - Never report success for a record that was not committed. The response
//     is a partial batch response: an empty batchItemFailures list only after
//     Apply returned nil. When Apply fails after MaxAttempts (or the deadline
//     minus Margin comes), every partition is reported from its first record,
//     so the event source mapping redelivers the whole batch. An Apply error
//     wrapping sink.ErrPermanent, an event that is not one of the three
//     kinds, and a batch with a partition none of whose records has an
//     identifier fail the invocation instead (the mapping retries, and
//     bisects when BisectBatchOnFunctionError is set).
//   - Poison records never fail the batch: a record that cannot be unwrapped
//     (bad base64, missing fields) or decoded becomes a dead letter with its
//     reason, raw bytes and position, stored by the sink in the same
//     transaction (sinks are opened with their dead-letter table).
//   - Redelivery adds nothing (Kinesis and Kafka): each applied batch stores
//     one checkpoint per partition at the highest position it reached, and
//     events and dead letters at or before a stored checkpoint are dropped
//     before Apply (the PostgreSQL sink repeats the check under a partition
//     lock). This is exact only while a partition's batches are applied in
//     stream order: Kinesis ParallelizationFactor must be 1.
//   - Redelivery adds nothing (DynamoDB Streams) either, by another means:
//     their positions are not checkpointed, because concurrent shards
//     would share the partition "", but a sequence number is unique within
//     its stream. Their batches set change.Batch.DedupePositions: the sink
//     stores each record's (stream ARN, sequence number) in
//     _cdc_record_positions in the batch's transaction and drops the events
//     and dead letters of records stored before, so cdc_events holds one
//     row per record however the mapping retries, splits or overlaps
//     batches. Positions are kept 48 hours (the stream keeps records 24);
//     a record without a usable SequenceNumber has no identity and is
//     dead-lettered at each delivery.
//   - DSQL pieces of an oversized record still incomplete at the end of a
//     batch are not lost with the invocation: the rest of the batch is
//     applied with a Held checkpoint and the oldest held piece is reported,
//     so the mapping redelivers from it and the set is reassembled.
//   - The sink is opened once per container and reused; invocations are
//     serialized. The sink URL is a secret: it never appears in errors or
//     logs (config.SecretURL).
package lambda
