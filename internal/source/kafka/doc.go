// Package kafka is a source that consumes Kafka (and Amazon MSK) topics as a
// member of a consumer group, with cooperative-sticky balancing, topics by
// list or regular expression, TLS and SASL (PLAIN, SCRAM, AWS MSK IAM).
// docs/kafka.md explains the configuration and behaviour for operators.
//
// Positions: Raw.Position is {Source: topic, Partition: partition number,
// Offset: record offset}, all decimal text. Raw.Data is the record value (nil
// for a tombstone), Raw.Key the record key.
//
// Invariants:
//   - The sink is the source of truth. When a partition is assigned, its
//     start is loaded from the sink's checkpoints (Options.Checkpoints, else
//     those given to Resume): Resume's offset when Held, else Applied+1.
//     Without a checkpoint the group's committed offset is used, else Start.
//     The start is set before the partition is fetched, so no record before
//     it is delivered.
//   - Per partition, records are delivered in offset order and each at most
//     once per assignment, except after a negative ack, which redelivers
//     from the first unacknowledged offset. Nothing is skipped.
//   - Acks may arrive in any order and from any goroutine. A partition's
//     position advances only through contiguous acknowledged batches; each
//     ack(nil) that advances one commits the new positions to the group
//     (synchronously), so standard lag tooling sees the progress. A failed
//     commit is returned by the AckFunc and retried by the next ack: the
//     group commit is informational, the sink's checkpoints decide.
//   - ack(err) rewinds every partition of the batch to its first
//     unacknowledged offset and drops that partition's later in-flight
//     batches; their acks then change nothing and their records are read
//     again.
//   - At most MaxInFlight batches are unacknowledged; Read blocks (honouring
//     its ctx) while the cap is reached.
//   - Revoke: in-flight batches of revoked partitions get RevokeWait to be
//     acknowledged; acknowledged positions are committed, and what is still
//     unacknowledged is abandoned. Lost partitions (the member was expelled)
//     are abandoned at once. An abandoned batch's ack commits nothing.
//     Assigned turns false when a partition is released; a pipeline should
//     not store a checkpoint of a partition that is not Assigned: the new
//     owner may have stored a newer one, and moving it back costs re-reading
//     on the next restart. Epoch tells one assignment from the next.
//   - Rebalance callbacks never run between a poll and the matching of its
//     records to partition state (BlockRebalanceOnPoll): a batch never holds
//     records of a partition the source had already given up.
//   - Close commits what was acknowledged, abandons the rest and leaves the
//     group.
//   - SASL passwords and session tokens never appear in logs, errors or the
//     String forms of Options.SASL.
package kafka
