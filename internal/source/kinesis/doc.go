// Package kinesis is a source that reads every shard of one Amazon Kinesis
// Data Streams stream with GetRecords (shared throughput, polling), follows
// reshards, and de-aggregates records of the Kinesis Producer Library.
// docs/kinesis.md explains the configuration and behaviour for operators.
//
// Positions: Raw.Position is {Source: stream name, Partition: shard id,
// Offset: sequence number (decimal)}. The user records of a KPL aggregate
// share the aggregate's sequence number and are told apart by Index (from 0)
// with Indexed set. Raw.Data is the record's data; Raw.Key is nil.
//
// Invariants:
//   - The sink is the source of truth. At start (and when new shards appear)
//     each shard's start is loaded from the sink's checkpoints
//     (Options.Checkpoints, else those given to Resume): AT_SEQUENCE_NUMBER
//     of Resume when Held; AT_SEQUENCE_NUMBER of Applied when Applied is a
//     KPL sub-record (the rest of its aggregate is not stored; the pipeline
//     drops the sub-records at or before Applied); else AFTER_SEQUENCE_NUMBER
//     of Applied. Without a checkpoint, shards that exist at start begin at
//     Options.Start (latest skips closed shards), and shards created later
//     begin at their first record (TRIM_HORIZON): a reshard loses nothing.
//   - Per shard, records are delivered in sequence order and each at most
//     once per run, except after a negative ack, which redelivers from the
//     first unacknowledged record. Nothing is skipped. An aggregate's
//     sub-records are always delivered together, in one batch.
//   - A child shard (after a split or merge) is read only once every parent
//     still listed is finished: read to its end (GetRecords returned no
//     NextShardIterator) and every record of it acknowledged. So all records
//     of a key from before a reshard are applied before any from after it.
//   - Acks may arrive from any goroutine, in read order. A shard's position
//     advances only through contiguous acknowledged batches. ack(err)
//     rewinds every shard of the batch to its first unacknowledged record and
//     drops that shard's later in-flight batches and fetched records; their
//     acks then change nothing.
//   - At most MaxInFlight batches are unacknowledged; Read blocks (honouring
//     its ctx) while the cap is reached. Each shard holds at most one fetched
//     GetRecords response (up to 10 MiB) not yet taken by Read.
//   - Throttling (ProvisionedThroughputExceeded, LimitExceeded), server
//     faults and transport errors are retried with capped exponential
//     backoff and full jitter, per shard, forever; the SDK's own retries are
//     off. An expired iterator is re-acquired AFTER the last record fetched
//     in the current generation (else at the shard's start). Errors retrying
//     cannot fix (access denied, invalid argument, stream deleted) are
//     returned by Read, naming the stream and shard.
//   - A record that starts with the KPL magic but is not a valid aggregate
//     (MD5 mismatch, malformed protobuf, no records) is delivered whole, with
//     a warning naming its position: never dropped.
//   - Close stops the readers and abandons unacknowledged batches (their
//     records are read again by the next run, from the sink's checkpoints).
//   - Without Options.Leases, one Source reads every shard. With it, the
//     sources sharing a lease table (Leaser, stored by the sink) split the
//     shards: each reads only shards whose lease it holds, takes free or
//     expired leases up to a fair share (ceil(readable shards / live
//     owners)), gives back leases above it, and stops reading a shard once a
//     renewal fails or has failed for two thirds of LeaseTTL. A taken shard
//     starts from the sink's checkpoint, loaded after the take. A shard read
//     to its end and fully acknowledged is marked finished in the table,
//     which unblocks its children for every owner.
//   - Leases alone do not stop a batch read under a lease that was then
//     lost from being stored: the sink must fence (store a checkpoint only
//     while the lease of LeaseEpoch is still held, in the same transaction),
//     and the pipeline should skip checkpoints of shards the source no
//     longer Owns. ReadEpochs gives the epoch each shard of the last batch
//     was read under (taken with the records, under the source's lock), so
//     a pipeline never attributes records read under a lost lease to a
//     later take of the same shard. A shard this source finished keeps its
//     LeaseEpoch, for late checkpoints of it.

package kinesis
