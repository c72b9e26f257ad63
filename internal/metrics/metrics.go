package metrics

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cdcflow/cdcflow/internal/change"
)

// Namespace prefixes every metric name.
const Namespace = "cdcflow"

// MultiTable is the table label of counts the sink reports only per batch,
// for a batch that spans several tables.
const MultiTable = "*"

// Histogram buckets, in seconds or events.
var (
	// ApplyBuckets cover one sink commit from 1 ms to 60 s.
	ApplyBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}
	// BatchEventBuckets cover batch sizes from 1 to the default limit and beyond.
	BatchEventBuckets = []float64{1, 10, 50, 100, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000}
	// FreshnessBuckets cover commit-to-apply delays from 10 ms to 2 h.
	FreshnessBuckets = []float64{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200}
)

// LagFunc returns the consumer lag in records, by topic (or stream) and
// partition. It is called at every scrape, from the scraping goroutine, so it
// must be quick and safe for concurrent use (return a cached value).
type LagFunc func() map[string]map[int32]int64

// BehindFunc returns, by stream and shard, how many milliseconds the
// source's reader of each shard is behind the shard's newest record
// (Kinesis MillisBehindLatest of the last GetRecords). Only the shards read
// now are in it: a shard that is finished or whose lease went to another
// process is left out, so its series disappears. It is called at every
// scrape, from the scraping goroutine: it must be quick and safe for
// concurrent use.
type BehindFunc func() map[string]map[string]int64

// Metrics holds cdcflow's collectors, registered on one registry. Build it
// with New.
type Metrics struct {
	eventsIn        *prometheus.CounterVec
	eventsApplied   *prometheus.CounterVec
	eventsDuplicate *prometheus.CounterVec
	eventsStale     *prometheus.CounterVec
	deadLetters     *prometheus.CounterVec
	skipped         *prometheus.CounterVec
	applySeconds    prometheus.Histogram
	batchEvents     prometheus.Histogram
	freshness       prometheus.Histogram
	retries         prometheus.Counter
	bisects         prometheus.Counter
	lastCommit      prometheus.Gauge
	held            prometheus.Gauge
	lag             *lagCollector
	behind          *behindCollector

	mu           sync.Mutex
	lastCommitNS int64 // highest commit time applied so far
}

// New creates cdcflow's collectors and registers them on reg. A nil reg
// means a private registry nobody scrapes. New panics if reg already holds
// cdcflow's metrics: call it once per registry.
func New(reg *prometheus.Registry) *Metrics {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	counterVec := func(name, help, label string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: name, Help: help}, []string{label})
	}
	m := &Metrics{
		eventsIn:        counterVec("events_in_total", "Events decoded, by source schema.table (records already stored by an earlier run excluded).", "table"),
		eventsApplied:   counterVec("events_applied_total", "Events that changed a merged table, by source schema.table (\"*\": a batch spanning several tables).", "table"),
		eventsDuplicate: counterVec("events_duplicate_total", "Events the sink found to be exact duplicates of one already applied, by source schema.table.", "table"),
		eventsStale:     counterVec("events_stale_total", "Events older than the stored row or tombstone: logged, not merged, by source schema.table.", "table"),
		deadLetters:     counterVec("dead_letters_total", "Dead letters stored, by reason.", "reason"),
		skipped:         counterVec("records_skipped_total", "Records deliberately skipped (tombstones, control records), by reason.", "reason"),
		applySeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: Namespace, Name: "batch_apply_seconds",
			Help: "Duration of successful sink Apply calls (one commit).", Buckets: ApplyBuckets}),
		batchEvents: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: Namespace, Name: "batch_events",
			Help: "Events per successful sink Apply call.", Buckets: BatchEventBuckets}),
		freshness: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: Namespace, Name: "freshness_seconds",
			Help: "Per event, time from the source commit to the sink commit that stored it.", Buckets: FreshnessBuckets}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Name: "apply_retries_total",
			Help: "Sink Apply attempts that failed and were retried."}),
		bisects: prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Name: "bisects_total",
			Help: "Batches split to isolate an event the sink rejects."}),
		lastCommit: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Name: "last_commit_timestamp_seconds",
			Help: "Source commit time (Unix seconds) of the newest event stored by the sink."}),
		held: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Name: "fragments_held",
			Help: "Aurora DSQL record pieces held in memory until their set is complete."}),
		lag:    newLagCollector(),
		behind: newBehindCollector(),
	}
	reg.MustRegister(m.eventsIn, m.eventsApplied, m.eventsDuplicate, m.eventsStale, m.deadLetters, m.skipped,
		m.applySeconds, m.batchEvents, m.freshness, m.retries, m.bisects, m.lastCommit, m.held, m.lag, m.behind)
	return m
}

// Decoded counts events decoded from the source, by table.
func (m *Metrics) Decoded(events []change.Event) {
	if m == nil || len(events) == 0 {
		return
	}
	addByTable(m.eventsIn, events)
}

// BatchApplied records one successful sink Apply of b, which returned res
// and took took; now is when Apply returned (the commit time used for
// freshness). b is not retained.
func (m *Metrics) BatchApplied(b *change.Batch, res change.ApplyResult, took time.Duration, now time.Time) {
	if m == nil || b == nil {
		return
	}
	m.applySeconds.Observe(took.Seconds())
	m.batchEvents.Observe(float64(len(b.Events)))

	table := batchTable(b.Events)
	add := func(v *prometheus.CounterVec, n int) {
		if n > 0 {
			v.WithLabelValues(table).Add(float64(n))
		}
	}
	add(m.eventsApplied, res.Applied)
	add(m.eventsDuplicate, res.Duplicates)
	add(m.eventsStale, res.Stale)

	// Dead letters: the batch's own (decoder, sink_rejected) and the rows
	// the sink rejected itself. A sink may or may not include the batch's
	// in res.Dead; the larger count per reason counts each once.
	var dead map[string]int
	if len(b.Dead) > 0 {
		dead = make(map[string]int, 4)
		for i := range b.Dead {
			dead[b.Dead[i].Reason]++
		}
	}
	for reason, n := range res.Dead {
		if n > dead[reason] {
			if dead == nil {
				dead = make(map[string]int, len(res.Dead))
			}
			dead[reason] = n
		}
	}
	for reason, n := range dead {
		m.deadLetters.WithLabelValues(reason).Add(float64(n))
	}

	nowNS := now.UnixNano()
	var newest int64
	for i := range b.Events {
		c := b.Events[i].Order.CommitNS
		if c <= 0 {
			continue // unknown commit time: no freshness to report
		}
		m.freshness.Observe(float64(max(nowNS-c, 0)) / 1e9)
		newest = max(newest, c)
	}
	if newest > 0 {
		m.mu.Lock()
		if newest > m.lastCommitNS {
			m.lastCommitNS = newest
			m.lastCommit.Set(float64(newest) / 1e9)
		}
		m.mu.Unlock()
	}
}

// Retry counts one failed Apply that will be retried.
func (m *Metrics) Retry() {
	if m != nil {
		m.retries.Inc()
	}
}

// Bisect counts one batch split to isolate a rejected event.
func (m *Metrics) Bisect() {
	if m != nil {
		m.bisects.Inc()
	}
}

// Dead counts n dead letters of reason stored outside a sink Apply. The
// pipeline does not call it (BatchApplied counts every dead letter a sink
// stores); it is for components that store dead letters elsewhere.
func (m *Metrics) Dead(reason string, n int) {
	if m != nil && n > 0 {
		m.deadLetters.WithLabelValues(reason).Add(float64(n))
	}
}

// Skipped counts n records deliberately skipped for reason.
func (m *Metrics) Skipped(reason string, n int) {
	if m != nil && n > 0 {
		m.skipped.WithLabelValues(reason).Add(float64(n))
	}
}

// Held sets the number of DSQL pieces held for reassembly.
func (m *Metrics) Held(n int64) {
	if m != nil {
		m.held.Set(float64(n))
	}
}

// SetLagFunc sets the function polled at every scrape for the consumer lag;
// nil stops reporting lag. Sources that have a lag (Kafka) provide one.
func (m *Metrics) SetLagFunc(f LagFunc) {
	if m != nil {
		m.lag.f.Store(&f)
	}
}

// SetBehindFunc sets the function polled at every scrape for
// cdcflow_source_millis_behind_latest; nil stops reporting it. Sources that
// know how far each shard's reader trails the shard's tip (Kinesis)
// provide one.
func (m *Metrics) SetBehindFunc(f BehindFunc) {
	if m != nil {
		m.behind.f.Store(&f)
	}
}

// addByTable adds the events to v by schema.table, one Add per table.
func addByTable(v *prometheus.CounterVec, events []change.Event) {
	start := 0
	for i := 1; i <= len(events); i++ {
		// Runs of one table are the common case: count them without a map.
		if i < len(events) && sameTable(&events[i], &events[start]) {
			continue
		}
		v.WithLabelValues(events[start].QualifiedTable()).Add(float64(i - start))
		start = i
	}
}

func sameTable(a, b *change.Event) bool { return a.Table == b.Table && a.Schema == b.Schema }

// batchTable returns the one table of events, or MultiTable when they span
// several (or there are none).
func batchTable(events []change.Event) string {
	if len(events) == 0 {
		return MultiTable
	}
	for i := 1; i < len(events); i++ {
		if !sameTable(&events[i], &events[0]) {
			return MultiTable
		}
	}
	return events[0].QualifiedTable()
}

// lagCollector reports cdcflow_consumer_lag from a LagFunc at scrape time.
type lagCollector struct {
	desc *prometheus.Desc
	f    atomic.Pointer[LagFunc]
}

func newLagCollector() *lagCollector {
	return &lagCollector{desc: prometheus.NewDesc(Namespace+"_consumer_lag",
		"Records not yet consumed, by topic (or stream) and partition, as the source reports at scrape time.",
		[]string{"topic", "partition"}, nil)}
}

// Describe implements prometheus.Collector.
func (c *lagCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *lagCollector) Collect(ch chan<- prometheus.Metric) {
	fp := c.f.Load()
	if fp == nil || *fp == nil {
		return
	}
	for topic, parts := range (*fp)() {
		for p, lag := range parts {
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(lag), topic, strconv.FormatInt(int64(p), 10))
		}
	}
}

// behindCollector reports cdcflow_source_millis_behind_latest from a
// BehindFunc at scrape time, so shards no longer read disappear at once.
type behindCollector struct {
	desc *prometheus.Desc
	f    atomic.Pointer[BehindFunc]
}

func newBehindCollector() *behindCollector {
	return &behindCollector{desc: prometheus.NewDesc(Namespace+"_source_millis_behind_latest",
		"Milliseconds the reader of each shard being read is behind the shard's newest record (Kinesis MillisBehindLatest of the last GetRecords), by stream and shard.",
		[]string{"stream", "shard"}, nil)}
}

// Describe implements prometheus.Collector.
func (c *behindCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *behindCollector) Collect(ch chan<- prometheus.Metric) {
	fp := c.f.Load()
	if fp == nil || *fp == nil {
		return
	}
	for stream, shards := range (*fp)() {
		for shard, ms := range shards {
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(ms), stream, shard)
		}
	}
}
