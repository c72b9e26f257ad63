// Package metrics exposes what the cdcflow daemon does as Prometheus metrics
// on a registry the caller injects (never the global one), and serves them
// over HTTP with liveness and readiness probes. docs/metrics.md lists every
// metric with example queries and alerts.
//
// The pipeline reports to a *Metrics through its pipeline.Observer hook; the
// source's consumer lag (SetLagFunc) and per-shard delay behind the tip
// (SetBehindFunc) are polled at scrape time, so a partition or shard the
// source no longer reads disappears from the next scrape.
//
// Invariants:
//   - Counters count what was stored, once: events applied, duplicates,
//     stale events and dead letters are counted from successful Apply calls
//     only, so a batch that is retried or bisected counts once, when (and in
//     the pieces in which) it is committed.
//   - Dead letters are counted once whether or not the sink reports the
//     pipeline's dead letters in ApplyResult.Dead: per reason the larger of
//     the sink's count and the batch's count is taken (the sink's count also
//     holds rows it rejected itself).
//   - Per-table labels use the source's schema.table (change.Event
//     QualifiedTable). When one Apply spans several tables, the sink reports
//     applied, duplicate and stale counts for the whole batch only; they are
//     then counted under table="*" (MultiTable) rather than guessed.
//   - Freshness is observed per event at sink commit: now minus the event's
//     commit time, clamped at 0 (clock skew). cdcflow_last_commit_timestamp_seconds
//     only moves forward.
//   - Every method is safe for concurrent use and does nothing on a nil
//     *Metrics. Label values come from the stream (table names, reasons,
//     topics): their cardinality is bounded by the source's tables and
//     partitions and the decoders' reason codes, never by record contents.
//   - Ready errors are served verbatim on /readyz: they must not contain
//     secrets (DSNs are redacted by the components that produce them).
package metrics
