// Package pipeline runs read -> decode -> batch -> apply -> ack: it reads raw
// records from a source, decodes them, groups events and dead letters into
// batches, applies each batch to a sink with retries, isolates events the
// sink rejects, and acknowledges the source only once what it delivered is
// stored. docs/pipeline.md explains the guarantees for operators.
//
// Invariants:
//   - At-least-once, never skip: a source batch is acknowledged (ack(nil))
//     only after every event and dead letter decoded from it was applied by
//     the sink (Apply returned nil) and its dead letters were written and
//     flushed to the dead-letter writer. Acks are delivered in read order.
//   - Checkpoints: each applied batch carries one change.Checkpoint per
//     partition it touched (and per partition whose last checkpoint was
//     Held). Applied is the highest raw position the decoder consumed in this
//     run; Held/Resume is decoder.OldestHeld. A checkpoint travels only with
//     the last piece of a batch that is split (chunked or bisected), so it is
//     stored only once everything before it is stored.
//   - Leases: with a LeasedSource (partitions shared by several processes),
//     each checkpoint names the lease its partition's records were read
//     under (LeaseOwner, LeaseEpoch from ReadEpochs, taken with each Read),
//     and the sink stores nothing of a partition whose lease moved on. A
//     partition the source no longer holds at that epoch is dropped from
//     the batch before Apply (events, dead letters and checkpoint); its new
//     owner reads it again from the stored checkpoint. When a partition's
//     records arrive under a new epoch, the pending batch is applied first
//     and the partition's Applied position starts again from the new
//     lease's records. Fenced partitions are logged and counted
//     (Summary.Fenced).
//   - Resume: when the sink is a sink.PositionStore, its checkpoints are
//     loaded at start and, when the source is a source.Resumer, passed to
//     Resume. Events and dead letters at or before a stored Applied position
//     are dropped (they were stored), but their records are still decoded so
//     held DSQL pieces are re-absorbed. Fragment dead letters (timeout,
//     memory limit) at or after a stored Resume position are kept: those
//     pieces were held, not stored, when the checkpoint was written.
//   - Retries: a failed Apply is retried with capped exponential backoff and
//     full jitter. After MaxAttempts failures, or at once for an error
//     wrapping sink.ErrPermanent, the batch is bisected until the single
//     rejected event is isolated; it becomes a change.ReasonSinkRejected dead
//     letter and the rest is applied. A batch without events (dead letters
//     and checkpoints only) is never split or dropped: it is retried until it
//     is stored or the run is stopped.
//   - A single event is dead-lettered after transient (non-permanent)
//     failures only if the sink then stores its dead letter: a sink that is
//     down rejects that too, and the event is retried instead.
//   - Shutdown: cancelling the context stops reading; the batch in flight is
//     finished and applied with a fresh context bounded by ShutdownTimeout,
//     acknowledged, and the source is closed. Records not applied are
//     negatively acknowledged (redelivered by the next run).
package pipeline
