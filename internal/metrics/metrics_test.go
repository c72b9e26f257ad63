package metrics

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/cdcflow/cdcflow/internal/change"
)

var base = time.Date(2025, 1, 15, 12, 0, 0, 0, time.UTC)

// ev returns an event of schema.table committed at base+commit.
func ev(schema, table string, commit time.Duration) change.Event {
	return change.Event{Schema: schema, Table: table, Op: change.Insert, Key: "1",
		Order: change.Order{CommitNS: base.Add(commit).UnixNano()}}
}

// TestSyntheticSequence drives every method the pipeline calls and checks
// the exposition of every metric.
func TestSyntheticSequence(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)

	orders := []change.Event{ev("public", "orders", 0), ev("public", "orders", time.Second), ev("public", "orders", 2*time.Second)}
	mixed := []change.Event{ev("public", "orders", 3*time.Second), ev("", "customers", 4*time.Second), ev("public", "orders", 0)}
	m.Decoded(orders)
	m.Decoded(mixed)
	m.Decoded(nil)

	// One batch of one table: everything attributed to it. The sink does not
	// report the batch's dead letters: they are counted from the batch.
	m.BatchApplied(&change.Batch{Events: orders, Dead: []change.DeadLetter{{Reason: change.ReasonInvalidJSON}}},
		change.ApplyResult{Logged: 3, Applied: 2, Duplicates: 1}, 31250*time.Microsecond, base.Add(2500*time.Millisecond))
	// A batch spanning tables: per-batch counts go to "*". The sink reports
	// the batch's dead letter and one of its own rejections of the same
	// reason, and one of another reason: max per reason counts each once.
	m.BatchApplied(&change.Batch{Events: mixed, Dead: []change.DeadLetter{{Reason: change.ReasonInvalidJSON}}},
		change.ApplyResult{Logged: 3, Applied: 1, Stale: 2, Dead: map[string]int{change.ReasonInvalidJSON: 2, "type_conflict": 1}},
		2*time.Second, base.Add(10*time.Second))
	// A dead-letter-only batch (a sink-rejected event isolated by bisection).
	m.BatchApplied(&change.Batch{Dead: []change.DeadLetter{{Reason: change.ReasonSinkRejected}}},
		change.ApplyResult{Dead: map[string]int{change.ReasonSinkRejected: 1}}, time.Second/512, base.Add(11*time.Second))
	m.Retry()
	m.Retry()
	m.Bisect()
	m.Skipped(change.SkipTombstone, 3)
	m.Skipped(change.SkipControl, 0) // no series for zero
	m.Dead(change.ReasonFragmentTimeout, 1)
	m.Held(7)
	m.Held(4)
	m.SetLagFunc(func() map[string]map[int32]int64 {
		return map[string]map[int32]int64{"orders": {0: 12, 3: 0}, "customers": {1: 5}}
	})

	want := `
# HELP cdcflow_events_in_total Events decoded, by source schema.table (records already stored by an earlier run excluded).
# TYPE cdcflow_events_in_total counter
cdcflow_events_in_total{table="customers"} 1
cdcflow_events_in_total{table="public.orders"} 5
# HELP cdcflow_events_applied_total Events that changed a merged table, by source schema.table ("*": a batch spanning several tables).
# TYPE cdcflow_events_applied_total counter
cdcflow_events_applied_total{table="*"} 1
cdcflow_events_applied_total{table="public.orders"} 2
# HELP cdcflow_events_duplicate_total Events the sink found to be exact duplicates of one already applied, by source schema.table.
# TYPE cdcflow_events_duplicate_total counter
cdcflow_events_duplicate_total{table="public.orders"} 1
# HELP cdcflow_events_stale_total Events older than the stored row or tombstone: logged, not merged, by source schema.table.
# TYPE cdcflow_events_stale_total counter
cdcflow_events_stale_total{table="*"} 2
# HELP cdcflow_dead_letters_total Dead letters stored, by reason.
# TYPE cdcflow_dead_letters_total counter
cdcflow_dead_letters_total{reason="fragment_timeout"} 1
cdcflow_dead_letters_total{reason="invalid_json"} 3
cdcflow_dead_letters_total{reason="sink_rejected"} 1
cdcflow_dead_letters_total{reason="type_conflict"} 1
# HELP cdcflow_records_skipped_total Records deliberately skipped (tombstones, control records), by reason.
# TYPE cdcflow_records_skipped_total counter
cdcflow_records_skipped_total{reason="tombstone"} 3
# HELP cdcflow_apply_retries_total Sink Apply attempts that failed and were retried.
# TYPE cdcflow_apply_retries_total counter
cdcflow_apply_retries_total 2
# HELP cdcflow_bisects_total Batches split to isolate an event the sink rejects.
# TYPE cdcflow_bisects_total counter
cdcflow_bisects_total 1
# HELP cdcflow_last_commit_timestamp_seconds Source commit time (Unix seconds) of the newest event stored by the sink.
# TYPE cdcflow_last_commit_timestamp_seconds gauge
cdcflow_last_commit_timestamp_seconds 1.736942404e+09
# HELP cdcflow_fragments_held Aurora DSQL record pieces held in memory until their set is complete.
# TYPE cdcflow_fragments_held gauge
cdcflow_fragments_held 4
# HELP cdcflow_consumer_lag Records not yet consumed, by topic (or stream) and partition, as the source reports at scrape time.
# TYPE cdcflow_consumer_lag gauge
cdcflow_consumer_lag{partition="0",topic="orders"} 12
cdcflow_consumer_lag{partition="1",topic="customers"} 5
cdcflow_consumer_lag{partition="3",topic="orders"} 0
`
	names := []string{
		"cdcflow_events_in_total", "cdcflow_events_applied_total", "cdcflow_events_duplicate_total", "cdcflow_events_stale_total",
		"cdcflow_dead_letters_total", "cdcflow_records_skipped_total", "cdcflow_apply_retries_total", "cdcflow_bisects_total",
		"cdcflow_last_commit_timestamp_seconds", "cdcflow_fragments_held", "cdcflow_consumer_lag",
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}

	// Histograms: three applies (durations exact in binary, so the sum is); 3 + 3 + 0 events; six freshness samples.
	wantHist := `
# HELP cdcflow_batch_apply_seconds Duration of successful sink Apply calls (one commit).
# TYPE cdcflow_batch_apply_seconds histogram
cdcflow_batch_apply_seconds_bucket{le="0.001"} 0
cdcflow_batch_apply_seconds_bucket{le="0.0025"} 1
cdcflow_batch_apply_seconds_bucket{le="0.005"} 1
cdcflow_batch_apply_seconds_bucket{le="0.01"} 1
cdcflow_batch_apply_seconds_bucket{le="0.025"} 1
cdcflow_batch_apply_seconds_bucket{le="0.05"} 2
cdcflow_batch_apply_seconds_bucket{le="0.1"} 2
cdcflow_batch_apply_seconds_bucket{le="0.25"} 2
cdcflow_batch_apply_seconds_bucket{le="0.5"} 2
cdcflow_batch_apply_seconds_bucket{le="1"} 2
cdcflow_batch_apply_seconds_bucket{le="2.5"} 3
cdcflow_batch_apply_seconds_bucket{le="5"} 3
cdcflow_batch_apply_seconds_bucket{le="10"} 3
cdcflow_batch_apply_seconds_bucket{le="30"} 3
cdcflow_batch_apply_seconds_bucket{le="60"} 3
cdcflow_batch_apply_seconds_bucket{le="+Inf"} 3
cdcflow_batch_apply_seconds_sum 2.033203125
cdcflow_batch_apply_seconds_count 3
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(wantHist), "cdcflow_batch_apply_seconds"); err != nil {
		t.Error(err)
	}
	h := histogram(t, reg, "cdcflow_batch_events")
	if h.GetSampleCount() != 3 || h.GetSampleSum() != 6 || h.GetBucket()[0].GetCumulativeCount() != 1 {
		t.Errorf("batch_events = count %d sum %g first bucket %d; want 3, 6, 1 (the empty batch)",
			h.GetSampleCount(), h.GetSampleSum(), h.GetBucket()[0].GetCumulativeCount())
	}
	// Freshness: batch 1 applied at +2.5s: 2.5, 1.5, 0.5; batch 2 at +10s: 7, 6, 10.
	f := histogram(t, reg, "cdcflow_freshness_seconds")
	if f.GetSampleCount() != 6 || f.GetSampleSum() != 27.5 {
		t.Errorf("freshness = count %d sum %g; want 6, 27.5", f.GetSampleCount(), f.GetSampleSum())
	}
	le := map[float64]uint64{}
	for _, b := range f.GetBucket() {
		le[b.GetUpperBound()] = b.GetCumulativeCount()
	}
	if le[0.5] != 1 || le[1] != 1 || le[2.5] != 3 || le[5] != 3 || le[10] != 6 {
		t.Errorf("freshness buckets = %v", le)
	}
}

// histogram gathers the one histogram named name from reg.
func histogram(t *testing.T, reg *prometheus.Registry, name string) *dto.Histogram {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			if len(mf.GetMetric()) != 1 || mf.GetMetric()[0].GetHistogram() == nil {
				t.Fatalf("%s is not one histogram: %v", name, mf)
			}
			return mf.GetMetric()[0].GetHistogram()
		}
	}
	t.Fatalf("%s not gathered", name)
	return nil
}

func TestLastCommitOnlyMovesForward(t *testing.T) {
	m := New(prometheus.NewRegistry())
	now := base.Add(time.Hour)
	m.BatchApplied(&change.Batch{Events: []change.Event{ev("", "t", 10*time.Second)}}, change.ApplyResult{Applied: 1}, 0, now)
	// A redelivered older event does not move the gauge back.
	m.BatchApplied(&change.Batch{Events: []change.Event{ev("", "t", time.Second)}}, change.ApplyResult{Duplicates: 1}, 0, now)
	if got, want := testutil.ToFloat64(m.lastCommit), float64(base.Add(10*time.Second).Unix()); got != want {
		t.Errorf("last commit = %v, want %v", got, want)
	}
	// An event without a commit time and one committed "after" now (clock
	// skew) give no negative freshness.
	noTime := change.Event{Table: "t"}
	future := ev("", "t", 2*time.Hour)
	m.BatchApplied(&change.Batch{Events: []change.Event{noTime, future}}, change.ApplyResult{Applied: 2}, 0, now)
	if got := testutil.ToFloat64(m.lastCommit); got != float64(base.Add(2*time.Hour).Unix()) {
		t.Errorf("last commit = %v, want the future event's", got)
	}
	var h dto.Metric
	if err := m.freshness.Write(&h); err != nil {
		t.Fatal(err)
	}
	if h.GetHistogram().GetSampleCount() != 3 || h.GetHistogram().GetBucket()[0].GetCumulativeCount() != 1 {
		t.Errorf("freshness: %d samples, %d at <=10ms; want 3 and 1 (the skewed one, clamped to 0)",
			h.GetHistogram().GetSampleCount(), h.GetHistogram().GetBucket()[0].GetCumulativeCount())
	}
}

func TestLagFunc(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	if n, err := testutil.GatherAndCount(reg, "cdcflow_consumer_lag"); err != nil || n != 0 {
		t.Fatalf("lag series before SetLagFunc = %d, %v", n, err)
	}
	var mu sync.Mutex
	lag := int64(100)
	m.SetLagFunc(func() map[string]map[int32]int64 {
		mu.Lock()
		defer mu.Unlock()
		return map[string]map[int32]int64{"t": {2: lag}}
	})
	mu.Lock()
	lag = 40
	mu.Unlock()
	// Polled at scrape time: the value read is the current one.
	want := "# HELP cdcflow_consumer_lag Records not yet consumed, by topic (or stream) and partition, as the source reports at scrape time.\n" +
		"# TYPE cdcflow_consumer_lag gauge\ncdcflow_consumer_lag{partition=\"2\",topic=\"t\"} 40\n"
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "cdcflow_consumer_lag"); err != nil {
		t.Error(err)
	}
	m.SetLagFunc(nil)
	if n, err := testutil.GatherAndCount(reg, "cdcflow_consumer_lag"); err != nil || n != 0 {
		t.Errorf("lag series after SetLagFunc(nil) = %d, %v", n, err)
	}
}

func TestBehindFunc(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m := New(reg)
	const name = "cdcflow_source_millis_behind_latest"
	if n, err := testutil.GatherAndCount(reg, name); err != nil || n != 0 {
		t.Fatalf("series before SetBehindFunc = %d, %v", n, err)
	}
	var mu sync.Mutex
	shards := map[string]int64{"shardId-000000000000": 1500, "shardId-000000000001": 0}
	m.SetBehindFunc(func() map[string]map[string]int64 {
		mu.Lock()
		defer mu.Unlock()
		cp := map[string]int64{}
		for k, v := range shards {
			cp[k] = v
		}
		return map[string]map[string]int64{"dsql-cdc": cp}
	})
	const help = "# HELP cdcflow_source_millis_behind_latest Milliseconds the reader of each shard being read is behind the shard's newest record (Kinesis MillisBehindLatest of the last GetRecords), by stream and shard.\n" +
		"# TYPE cdcflow_source_millis_behind_latest gauge\n"
	want := help +
		`cdcflow_source_millis_behind_latest{shard="shardId-000000000000",stream="dsql-cdc"} 1500` + "\n" +
		`cdcflow_source_millis_behind_latest{shard="shardId-000000000001",stream="dsql-cdc"} 0` + "\n"
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), name); err != nil {
		t.Error(err)
	}
	// A shard the source stops reading disappears from the next scrape.
	mu.Lock()
	delete(shards, "shardId-000000000000")
	shards["shardId-000000000001"] = 250
	mu.Unlock()
	want = help + `cdcflow_source_millis_behind_latest{shard="shardId-000000000001",stream="dsql-cdc"} 250` + "\n"
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), name); err != nil {
		t.Error(err)
	}
	m.SetBehindFunc(nil)
	if n, err := testutil.GatherAndCount(reg, name); err != nil || n != 0 {
		t.Errorf("series after SetBehindFunc(nil) = %d, %v", n, err)
	}
}

func TestNilMetricsIsNoop(t *testing.T) {
	var m *Metrics
	m.Decoded([]change.Event{ev("", "t", 0)})
	m.BatchApplied(&change.Batch{}, change.ApplyResult{Applied: 1}, time.Second, base)
	m.Retry()
	m.Bisect()
	m.Dead("x", 1)
	m.Skipped("x", 1)
	m.Held(1)
	m.SetLagFunc(nil)
	m.SetBehindFunc(nil)
}

func TestRegisterTwicePanics(t *testing.T) {
	reg := prometheus.NewRegistry()
	New(reg)
	defer func() {
		if recover() == nil {
			t.Error("second New on one registry did not panic")
		}
	}()
	New(reg)
}

func TestPedanticRegistry(t *testing.T) {
	// The pedantic registry checks that collected metrics match their
	// descriptions (the custom lag collector included).
	reg := prometheus.NewPedanticRegistry()
	m := New(reg)
	m.SetLagFunc(func() map[string]map[int32]int64 { return map[string]map[int32]int64{"t": {0: 1}} })
	m.Decoded([]change.Event{ev("", "t", 0)})
	if _, err := reg.Gather(); err != nil {
		t.Fatal(err)
	}
}

func BenchmarkBatchApplied(b *testing.B) {
	m := New(prometheus.NewRegistry())
	events := make([]change.Event, 10000)
	for i := range events {
		events[i] = ev("public", "orders", time.Duration(i)*time.Millisecond)
	}
	batch := &change.Batch{Events: events}
	res := change.ApplyResult{Applied: len(events)}
	now := base.Add(time.Minute)
	b.ReportAllocs()
	for b.Loop() {
		m.Decoded(events)
		m.BatchApplied(batch, res, time.Millisecond, now)
	}
}
