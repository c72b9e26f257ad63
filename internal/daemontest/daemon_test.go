package daemontest

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/cdcflow/cdcflow/internal/pgtest"
	"github.com/cdcflow/cdcflow/internal/testgen"
)

// n scales a record count.
func n(records int) int { return max(100, int(float64(records)*scale())) }

// Generous bounds that only catch a hung daemon; they assert no speed.
const (
	bigTimeout   = 8 * time.Minute
	smallTimeout = 3 * time.Minute
)

// topicsOf lists the streams' topics.
func topicsOf(streams []*stream) []string {
	var out []string
	for _, s := range streams {
		out = append(out, s.topic)
	}
	return out
}

// checkSettled checks what a daemon that stored everything reports: zero
// consumer lag (on every partition when allPartitions, else on those it
// fetched from: a partition that had nothing left to fetch has no lag
// sample), the poison records as dead letters and the tombstones as
// skipped records, live and ready.
func checkSettled(t *testing.T, d *daemon, streams []*stream, allPartitions bool) {
	t.Helper()
	var poisons, tombs int
	for _, s := range streams {
		_, p, tb := s.counts()
		poisons += p
		tombs += tb
	}
	checkLagZero(t, d, len(streams), allPartitions)
	if got := d.metric("cdcflow_dead_letters_total"); got != float64(poisons) {
		t.Errorf("%s: cdcflow_dead_letters_total = %v, want %d (its run saw every poison record)", d.name, got, poisons)
	}
	if got := d.metric("cdcflow_records_skipped_total"); got != float64(tombs) {
		t.Errorf("%s: cdcflow_records_skipped_total = %v, want %d tombstones", d.name, got, tombs)
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if code := d.status(path); code != 200 {
			t.Errorf("%s: GET %s = %d, want 200", d.name, path, code)
		}
	}
}

// checkLagZero waits until d reports zero lag on every partition it
// reports, and on all of them when allPartitions.
func checkLagZero(t *testing.T, d *daemon, topics int, allPartitions bool) {
	t.Helper()
	waitFor(t, smallTimeout, "zero consumer lag on "+d.name, func() (bool, string) {
		lag := d.lagPartitions()
		total := 0.0
		for _, v := range lag {
			total += v
		}
		return lag != nil && total == 0 && (!allPartitions || len(lag) == partitions*topics), fmt.Sprintf("lag %v", lag)
	}, d)
}

// TestEndToEnd runs one daemon over two topics, 100k DSQL records and 100k
// Debezium records (schema envelope, Kafka keys, tombstones) with 15%
// duplicates, reordering inside and across partitions and poison records,
// produced while the daemon runs; then SIGTERM and the exact checks.
func TestEndToEnd(t *testing.T) {
	began := time.Now()
	streams := newStreams(t,
		streamSpec{topic: "dsql.cdc", format: testgen.FormatDSQL, schema: "public", seed: 101, records: n(100_000), poison: 3},
		streamSpec{topic: "pg.inventory", format: testgen.FormatDebezium, schema: "inventory", seed: 202, records: n(100_000), dbzSchema: true, poison: 3, scatter: 0.2, snapshot: 3000})
	dsql, dbz := streams[0], streams[1]
	for _, s := range streams {
		t.Log(s.describe())
	}
	t.Logf("generated in %s", time.Since(began).Round(time.Millisecond))
	b := newBroker(t, topicsOf(streams)...)
	url := pgtest.Start(t)
	d := startDaemon(t, "daemon", daemonConfig{broker: b.addr, topics: topicsOf(streams), group: "cdcflow", pgURL: url})
	start := time.Now()
	// Produce while the daemon runs: half of each stream, then the rest.
	for _, s := range streams {
		produce(t, b, s, 0, len(s.recs)/2)
	}
	for _, s := range streams {
		produce(t, b, s, len(s.recs)/2, len(s.recs))
	}
	t.Logf("produced in %s", time.Since(start).Round(time.Millisecond))
	waitStored(t, url, bigTimeout, streams, d)
	t.Logf("stored %d records in %s", len(dsql.recs)+len(dbz.recs), time.Since(start).Round(time.Millisecond))
	checkSettled(t, d, streams, true)
	if got, _ := want(streams...); d.metric("cdcflow_events_in_total") != float64(got) {
		t.Errorf("cdcflow_events_in_total = %v, want %d", d.metric("cdcflow_events_in_total"), got)
	}
	d.terminate(t)
	verify(t, url, streams...)
}

// TestKcatProducer has Debian's kcat produce a few thousand Debezium
// records with keys (key<TAB>value lines, empty values sent as NULL
// tombstones), partitioned by librdkafka's key hash; the positions are
// read back from the broker.
func TestKcatProducer(t *testing.T) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Fatalf("kcat not found: run scripts/test.sh (installs kcat)")
	}
	s := newStream(t, streamSpec{topic: "kcat.inventory", format: testgen.FormatDebezium, schema: "inventory", seed: 303, records: n(4000), poison: 2})
	t.Log(s.describe())
	b := newBroker(t, s.topic)

	var lines bytes.Buffer
	for i := range s.recs {
		r := &s.recs[i]
		if bytes.ContainsAny(r.key, "\t\n") || bytes.ContainsAny(r.value, "\t\n") || len(r.key) == 0 {
			t.Fatalf("record %d cannot travel as a key<TAB>value line: key %q value %q", i, r.key, r.value)
		}
		lines.Write(r.key)
		lines.WriteByte('\t')
		lines.Write(r.value) // nil for a tombstone: an empty value, sent as NULL (-Z)
		lines.WriteByte('\n')
	}
	file := filepath.Join(t.TempDir(), "records.tsv")
	if err := os.WriteFile(file, lines.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(kcat, "-P", "-b", b.addr, "-t", s.topic, "-K", `\t`, "-Z", "-l", file)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kcat -P: %v\n%s", err, out)
	}
	readBack(t, b, s)

	url := pgtest.Start(t)
	d := startDaemon(t, "daemon", daemonConfig{broker: b.addr, topics: []string{s.topic}, group: "cdcflow", pgURL: url})
	waitStored(t, url, smallTimeout, []*stream{s}, d)
	checkSettled(t, d, []*stream{s}, true)
	d.terminate(t)
	verify(t, url, s)
}

// readBack consumes s.topic from the start and assigns each record of s
// the partition and offset the broker gave it, matching by key and value in
// production order (identical records are interchangeable).
func readBack(t *testing.T, b *broker, s *stream) {
	t.Helper()
	queues := map[string][]int{}
	ident := func(key, value []byte, null bool) string {
		return fmt.Sprintf("%q\x00%t\x00%q", key, null, value)
	}
	for i := range s.recs {
		r := &s.recs[i]
		k := ident(r.key, r.value, r.value == nil)
		queues[k] = append(queues[k], i)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.addr), kgo.ConsumeTopics(s.topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	got := 0
	deadline := time.Now().Add(time.Minute)
	for got < len(s.recs) {
		if time.Now().After(deadline) {
			t.Fatalf("read back %d of the %d records kcat produced", got, len(s.recs))
		}
		ctx, cancel := ctxTimeout()
		fs := cl.PollFetches(ctx)
		cancel()
		if errs := fs.Errors(); len(errs) > 0 {
			t.Fatalf("read back: %v", errs[0].Err)
		}
		fs.EachRecord(func(kr *kgo.Record) {
			k := ident(kr.Key, kr.Value, kr.Value == nil)
			q := queues[k]
			if len(q) == 0 {
				t.Fatalf("read back a record kcat was not given: %s[%d]@%d key %q value %.80q", kr.Topic, kr.Partition, kr.Offset, kr.Key, kr.Value)
			}
			r := &s.recs[q[0]]
			queues[k] = q[1:]
			r.partition, r.offset = kr.Partition, kr.Offset
			got++
		})
	}
	used := map[int32]bool{}
	for i := range s.recs {
		used[s.recs[i].partition] = true
	}
	if len(used) < 2 {
		t.Fatalf("kcat put every record on one partition; the test wants several")
	}
}

// TestKillNine kills the daemon with SIGKILL five times at random points
// while it consumes about 100k records (after a random time, or once its
// events-in counter passes a random mark, whichever comes first) and
// restarts it each time with a random batch size; the outcome must be
// exact.
func TestKillNine(t *testing.T) {
	streams := newStreams(t,
		streamSpec{topic: "dsql.cdc", format: testgen.FormatDSQL, schema: "public", seed: 404, records: n(60_000), poison: 2, updateOp: "u"},
		streamSpec{topic: "pg.inventory", format: testgen.FormatDebezium, schema: "inventory", seed: 505, records: n(40_000), poison: 2, scatter: 0.2})
	for _, s := range streams {
		t.Log(s.describe())
	}
	b := newBroker(t, topicsOf(streams)...)
	url := pgtest.Start(t)
	for _, s := range streams {
		produceAll(t, b, s)
	}
	wantEvents, _ := want(streams...)
	rng := rand.New(rand.NewPCG(606, 0))
	batchSizes := []int{500, 2000, 5000, 10000}
	const kills = 5
	group := ""
	for k := 1; k <= kills; k++ {
		// A member killed with SIGKILL stays in its group until its session
		// times out (45s) and blocks the next member's join until then: the
		// lives before the last use a group each (the sink's checkpoints,
		// not the group's offsets, decide where partitions start).
		group = fmt.Sprintf("cdcflow-%d", k)
		batch := batchSizes[rng.IntN(len(batchSizes))]
		d := startDaemon(t, fmt.Sprintf("life-%d", k), daemonConfig{broker: b.addr, topics: topicsOf(streams), group: group, pgURL: url, batchMaxEvents: batch})
		stored, _ := progress(url)
		left := wantEvents - stored
		if left <= 0 {
			t.Fatalf("everything was stored before kill %d", k)
		}
		// Kill by events in, or by time capped by events in, so that every
		// life leaves work for the next.
		mark := float64(1 + rng.Int64N(max(1, left/int64(kills-k+2))))
		var after time.Duration
		if k%2 == 1 {
			after = time.Duration(50+rng.IntN(1500)) * time.Millisecond
		}
		waitFor(t, smallTimeout, "/metrics of "+d.name, func() (bool, string) {
			return d.metric("cdcflow_events_in_total") >= 0, "no /metrics yet"
		}, d)
		up := time.Now()
		var in float64
		for {
			in = d.metric("cdcflow_events_in_total")
			if in >= mark || (after > 0 && time.Since(up) >= after) {
				break
			}
			if d.exited() {
				t.Fatalf("%s exited with %d before its kill; output tail:\n%s", d.name, d.exitCode(), d.stderr)
			}
			if time.Since(up) > smallTimeout {
				t.Fatalf("%s: events in %v after %s, kill mark %v; output tail:\n%s", d.name, in, smallTimeout, mark, d.stderr)
			}
			time.Sleep(10 * time.Millisecond)
		}
		d.kill(t)
		now, _ := progress(url)
		how := fmt.Sprintf("at events in >= %v", mark)
		if after > 0 {
			how = fmt.Sprintf("%s after /metrics or %s", after, how)
		}
		t.Logf("kill %d (batch_max_events %d) %s: events in %v, stored %d -> %d of %d", k, batch, how, in, stored, now, wantEvents)
	}
	// The last life joins the group of the killed fifth: it gets the
	// partitions once the dead member's session expired.
	d := startDaemon(t, "last", daemonConfig{broker: b.addr, topics: topicsOf(streams), group: group, pgURL: url})
	start := time.Now()
	waitStored(t, url, bigTimeout, streams, d)
	t.Logf("the last life stored the rest in %s", time.Since(start).Round(time.Millisecond))
	checkLagZero(t, d, len(streams), false)
	d.terminate(t)
	verify(t, url, streams...)
}

// TestScaleOut scales a group out and in while records flow: daemon a
// consumes alone with a backlog, daemon b joins the group mid-run (a gives
// up partitions with batches in flight), then a is stopped with SIGTERM once
// both consume, and b must take every partition over and consume what is
// produced to them afterwards. Every change of a key is on one partition
// here, as Kafka's key partitioner puts them: while two daemons write, a
// key spread over partitions runs into the race of
// TestConcurrentWritersNeverResurrect.
func TestScaleOut(t *testing.T) {
	streams := newStreams(t,
		streamSpec{topic: "dsql.cdc", format: testgen.FormatDSQL, schema: "public", seed: 707, records: n(20_000), poison: 2, byKey: true},
		streamSpec{topic: "pg.inventory", format: testgen.FormatDebezium, schema: "inventory", seed: 808, records: n(10_000), poison: 1, byKey: true})
	b := newBroker(t, topicsOf(streams)...)
	url := pgtest.Start(t)
	cfg := daemonConfig{broker: b.addr, topics: topicsOf(streams), group: "cdcflow", pgURL: url, batchMaxEvents: 1000}
	const slices = 40
	next := 12 // the first 30% are the backlog a starts with
	for _, s := range streams {
		produce(t, b, s, 0, len(s.recs)*next/slices)
	}
	a := startDaemon(t, "daemon-a", cfg)
	waitFor(t, smallTimeout, "a storing its backlog", func() (bool, string) {
		e, _ := progress(url)
		return e > 0, "nothing stored yet"
	}, a)
	backlog, _ := progress(url)
	c := startDaemon(t, "daemon-b", cfg)
	t.Logf("b joins when %d of the backlog's records are stored", backlog)
	all := partitions * len(streams)
	// Produce a slice every 200ms while b joins (the kafka source logs its
	// assignments), then until both members report partitions they fetched
	// from, together all of them; keep the last tenth of the records for
	// after the takeover.
	const assignedLog = "kafka partitions assigned"
	var la, lc map[string]float64
	deadline := time.Now().Add(smallTimeout)
	for {
		la, lc = a.lagPartitions(), c.lagPartitions()
		if len(la) > 0 && len(lc) > 0 && len(la)+len(lc) == all && len(union(la, lc)) == all {
			break
		}
		for _, d := range []*daemon{a, c} {
			if d.exited() {
				t.Fatalf("%s exited with %d; output tail:\n%s", d.name, d.exitCode(), d.stderr)
			}
		}
		if next == slices*9/10 || time.Now().After(deadline) {
			t.Fatalf("after %d of %d slices, the daemons do not share the partitions: a fetched from %v, b from %v\n--- a:\n%s\n--- b:\n%s",
				next, slices, keys(la), keys(lc), a.stderr, c.stderr)
		}
		if next >= slices*3/4 && !c.stderr.contains(assignedLog) {
			// Keep records for when b has partitions.
			time.Sleep(200 * time.Millisecond)
			continue
		}
		for _, s := range streams {
			produce(t, b, s, len(s.recs)*next/slices, len(s.recs)*(next+1)/slices)
		}
		next++
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("after %d of %d slices: a holds %v, b holds %v", next, slices, keys(la), keys(lc))
	stop := time.Now()
	a.terminate(t)
	t.Logf("a exited %s after SIGTERM", time.Since(stop).Round(time.Millisecond))
	for ; next < slices; next++ {
		for _, s := range streams {
			produce(t, b, s, len(s.recs)*next/slices, len(s.recs)*(next+1)/slices)
		}
	}
	waitFor(t, smallTimeout, "b consuming every partition", func() (bool, string) {
		lc := c.lagPartitions()
		return len(lc) == all, fmt.Sprintf("b fetched from %v", keys(lc))
	}, c)
	t.Logf("b fetched from every partition %s after the SIGTERM", time.Since(stop).Round(time.Millisecond))
	waitStored(t, url, smallTimeout, streams, c)
	checkLagZero(t, c, len(streams), true)
	c.terminate(t)
	verify(t, url, streams...)
}

func union(ms ...map[string]float64) map[string]bool {
	out := map[string]bool{}
	for _, m := range ms {
		for k := range m {
			out[k] = true
		}
	}
	return out
}

func keys(m map[string]float64) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// culpritLog is what the pipeline logs when it bisected a batch down to
// one event while the sink is down.
const culpritLog = "sink is down: an event and its dead letter both failed"

// TestPostgresRestart stops PostgreSQL while the daemon applies batches and
// keeps it down while more records are produced: past the readiness grace
// period (10s) and until the pipeline has bisected a failing batch down to
// single events (or 25s). Then it starts it again on the same port and
// data: the daemon must have retried, report not ready while down and
// ready after, lose nothing and dead-letter nothing good.
func TestPostgresRestart(t *testing.T) {
	streams := newStreams(t,
		streamSpec{topic: "dsql.cdc", format: testgen.FormatDSQL, schema: "public", seed: 909, records: n(20_000), poison: 1},
		streamSpec{topic: "pg.inventory", format: testgen.FormatDebezium, schema: "inventory", seed: 1010, records: n(10_000), poison: 1, scatter: 0.2, snapshot: 500})
	b := newBroker(t, topicsOf(streams)...)
	url := pgtest.Start(t)
	for _, s := range streams {
		produce(t, b, s, 0, len(s.recs)/2)
	}
	d := startDaemon(t, "daemon", daemonConfig{broker: b.addr, topics: topicsOf(streams), group: "cdcflow", pgURL: url, batchMaxEvents: 1000})
	total, _ := want(streams...)
	waitFor(t, smallTimeout, "a quarter of the records stored", func() (bool, string) {
		e, _ := progress(url)
		return e >= total/4, fmt.Sprintf("cdc_events %d of %d", e, total/4)
	}, d)
	pgtest.Stop(t)
	down := time.Now()
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			pgtest.Restart(t) // leave the shared server running for the other tests
		}
	})
	for _, s := range streams {
		produce(t, b, s, len(s.recs)/2, len(s.recs))
	}
	waitFor(t, time.Minute, "/readyz 503 while PostgreSQL is down", func() (bool, string) {
		code := d.status("/readyz")
		return code == 503, fmt.Sprintf("/readyz %d after %s down", code, time.Since(down).Round(time.Second))
	}, d)
	if code := d.status("/healthz"); code != 200 {
		t.Errorf("/healthz = %d while the sink is down, want 200 (the process is alive)", code)
	}
	waitFor(t, time.Minute, "bisected to single events, or 25s down", func() (bool, string) {
		return d.stderr.contains(culpritLog) || time.Since(down) > 25*time.Second, "down " + time.Since(down).Round(time.Second).String()
	}, d)
	pgtest.Restart(t)
	restarted = true
	t.Logf("PostgreSQL was down for %s (bisected to single events: %t)", time.Since(down).Round(time.Millisecond), d.stderr.contains(culpritLog))
	waitStored(t, url, smallTimeout, streams, d)
	waitFor(t, time.Minute, "/readyz 200 after PostgreSQL is back", func() (bool, string) {
		code := d.status("/readyz")
		return code == 200, fmt.Sprintf("/readyz %d", code)
	}, d)
	if got := d.metric("cdcflow_apply_retries_total"); got <= 0 {
		t.Errorf("cdcflow_apply_retries_total = %v, want > 0 after an outage", got)
	}
	checkSettled(t, d, streams, true)
	d.terminate(t)
	verify(t, url, streams...)
}

// TestTwoDaemonsKeysOnEveryPartition runs two daemons of one group over a
// live DSQL topic whose records land on any partition (DSQL gives no key
// order across a stream's shards), so that both daemons write changes of
// the same keys at the same time. Commit order must still decide: it fails
// most runs while TestConcurrentWritersNeverResurrect fails (rows
// deleted by a newer change come back).
func TestTwoDaemonsKeysOnEveryPartition(t *testing.T) {
	streams := newStreams(t,
		streamSpec{topic: "dsql.cdc", format: testgen.FormatDSQL, schema: "public", seed: 1212, records: n(40_000), keys: 2000, poison: 1})
	s := streams[0]
	b := newBroker(t, s.topic)
	url := pgtest.Start(t)
	cfg := daemonConfig{broker: b.addr, topics: []string{s.topic}, group: "cdcflow", pgURL: url, batchMaxEvents: 1000}
	a := startDaemon(t, "daemon-a", cfg)
	c := startDaemon(t, "daemon-b", cfg)
	const slices = 40
	for i := range slices {
		produce(t, b, s, len(s.recs)*i/slices, len(s.recs)*(i+1)/slices)
		time.Sleep(150 * time.Millisecond)
	}
	waitStored(t, url, smallTimeout, streams, a, c)
	la, lc := a.lagPartitions(), c.lagPartitions()
	if len(la) == 0 || len(lc) == 0 {
		t.Errorf("one daemon did all the work (a fetched from %v, b from %v): the test wants two writers", keys(la), keys(lc))
	}
	a.terminate(t)
	c.terminate(t)
	verify(t, url, streams...)
}
