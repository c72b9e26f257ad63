package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/cdcflow/cdcflow/internal/testgen"
)

// freshOptions configure the freshness measurement.
type freshOptions struct {
	rate        int           // records (= events) per second
	warmup      time.Duration // produced at rate but not measured
	duration    time.Duration // measured
	poll        time.Duration // checkpoint poll interval (the measurement's resolution)
	seed        int64
	keys        int
	parts       int
	batch       int
	batchWait   time.Duration
	maxInFlight int // source.kafka.max_in_flight; 0 for the default
}

// freshResult is what the freshness measurement found.
type freshResult struct {
	measured        int     // records produced in the measured window
	producedPerSec  float64 // in the measured window
	visiblePerSec   float64 // records that became visible in the measured window, per second
	p50, p90, p99   time.Duration
	p999, max       time.Duration
	histP99         float64 // seconds, cdcflow_freshness_seconds over the window (bucket interpolation)
	histCount       float64
	cdcflowCores    float64 // cdcflow CPU seconds per second of the window
	pgCores         float64
	selfCores       float64 // this process: the kfake broker and the producer
	maxRSS          int64
	deadLetters     int64
	totalRecords    int
	backlogAtEndRec int64 // produced but not yet visible when the window closed
}

// visibility is one produced record's produce and first-visible times.
type visibility struct{ produced, visible int64 }

// tracker holds produce stamps per partition offset and turns checkpoint
// advances into visibilities.
type tracker struct {
	mu     sync.Mutex
	stamps map[int32][]int64 // partition -> offset -> produce ns (0 = not acknowledged yet)
	seen   map[int32]int64   // partition -> highest offset already turned visible
	vis    []visibility
	errs   int
	err    error
}

func newTracker() *tracker {
	return &tracker{stamps: map[int32][]int64{}, seen: map[int32]int64{}}
}

func (t *tracker) produced(part int32, off, ns int64, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err != nil {
		t.errs++
		if t.err == nil {
			t.err = err
		}
		return
	}
	s := t.stamps[part]
	for int64(len(s)) <= off {
		s = append(s, 0)
	}
	s[off] = ns
	t.stamps[part] = s
}

// advance records every offset up to cps[p] as visible at now. An offset
// whose produce acknowledgement has not arrived yet stops the advance of
// its partition until the next poll (it cannot be visible before it was
// acknowledged, but the callback may run late).
func (t *tracker) advance(cps map[int32]int64, now int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for p, applied := range cps {
		seen, ok := t.seen[p]
		if !ok {
			seen = -1
		}
		s := t.stamps[p]
		for off := seen + 1; off <= applied && off < int64(len(s)) && s[off] != 0; off++ {
			t.vis = append(t.vis, visibility{produced: s[off], visible: now})
			seen = off
		}
		t.seen[p] = seen
	}
}

// pending returns how many records up to the highest acknowledged offset
// of each partition are not visible yet.
func (t *tracker) pending() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	var n int64
	for p, s := range t.stamps {
		seen, ok := t.seen[p]
		if !ok {
			seen = -1
		}
		n += int64(len(s)) - 1 - seen
	}
	return n
}

var errEnough = errors.New("enough records")

// runFreshness produces opts.rate records per second into topic for
// warmup+duration, each stamped with its produce time as its commit time,
// while cdcflow run applies them to PostgreSQL, and measures produce-to-
// visible per record by polling the sink's checkpoints.
func runFreshness(ctx context.Context, env *benchEnv, opts freshOptions) (*freshResult, error) {
	const topic, group, db = "cdc.fresh", "cdcflow-fresh", "fresh"
	if err := env.pg.createDB(ctx, db); err != nil {
		return nil, err
	}
	url := env.pg.url(db)
	total := int(float64(opts.rate) * (opts.warmup + opts.duration).Seconds())

	// Records in commit order (no reordering, no duplicates), generated as
	// they are needed.
	ch := make(chan testgen.Record, 4*opts.rate)
	gctx, stopGen := context.WithCancel(ctx)
	defer stopGen()
	genDone := make(chan error, 1)
	go func() {
		n := 0
		_, err := testgen.Stream(opts.seed, genOptions(total+1000, opts.keys), testgen.FormatDSQL,
			testgen.EncodeOptions{Shards: opts.parts}, func(r testgen.Record) error {
				if n == total {
					return errEnough
				}
				select {
				case ch <- r:
					n++
					return nil
				case <-gctx.Done():
					return gctx.Err()
				}
			})
		close(ch)
		if errors.Is(err, errEnough) {
			err = nil
		}
		genDone <- err
	}()

	metricsAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(env.out, "fresh.yaml")
	rc := runConfig{brokers: env.kafka.addr, topic: topic, group: group, metrics: metricsAddr, batch: opts.batch, batchWait: opts.batchWait, maxInFlight: opts.maxInFlight}
	if err := rc.write(cfgPath); err != nil {
		return nil, err
	}
	c, err := startChild(env.cdcflow, []string{"run", "-c", cfgPath}, []string{pgURLEnv + "=" + url}, filepath.Join(env.out, "fresh.log"))
	if err != nil {
		return nil, err
	}
	defer c.wait(true) //nolint:errcheck // the error path only needs the process gone
	if err := waitReady(ctx, c, metricsAddr, time.Minute); err != nil {
		return nil, err
	}
	if err := env.kafka.waitGroupStable(ctx, c, group, time.Minute); err != nil {
		return nil, err
	}

	tr := newTracker()
	pollConn, err := pgx.Connect(ctx, url)
	if err != nil {
		return nil, err
	}
	defer pollConn.Close(context.WithoutCancel(ctx))
	stopPoll := make(chan struct{})
	pollDone := make(chan error, 1)
	go func() {
		tick := time.NewTicker(opts.poll)
		defer tick.Stop()
		for {
			select {
			case <-stopPoll:
				pollDone <- nil
				return
			case <-tick.C:
			}
			cps, err := readCheckpoints(ctx, pollConn, topic)
			if err != nil {
				pollDone <- err
				return
			}
			// The query's answer shows every commit made before it was
			// taken; stamping on receipt errs late by at most one round trip.
			tr.advance(cps, time.Now().UnixNano())
		}
	}()

	// The paced producer.
	res := &freshResult{totalRecords: total}
	start := time.Now()
	windowStart, windowEnd := start.Add(opts.warmup), start.Add(opts.warmup+opts.duration)
	var before scrape
	var cpu0, pg0, self0 time.Duration
	var tw0 time.Time
	var last int64
	sent := 0
	for sent < total {
		now := time.Now()
		if before == nil && !now.Before(windowStart) {
			tw0, cpu0, pg0, self0 = now, c.cpuNow(), env.pg.cpu(), selfCPU()
			if before, err = fetchMetrics(metricsAddr, filepath.Join(env.out, "fresh-window-start.metrics")); err != nil {
				return nil, err
			}
		}
		due := min(int(now.Sub(start).Seconds()*float64(opts.rate)), total)
		for ; sent < due; sent++ {
			r, ok := <-ch
			if !ok {
				return nil, fmt.Errorf("generator stopped after %d records: %v", sent, <-genDone)
			}
			ns := max(time.Now().UnixNano(), last+1)
			last = ns
			data, err := stampRecord(r.Data, ns)
			if err != nil {
				return nil, err
			}
			env.kafka.cl.Produce(ctx, &kgo.Record{Topic: topic, Partition: int32(r.Shard), Value: data}, func(kr *kgo.Record, err error) {
				tr.produced(kr.Partition, kr.Offset, ns, err)
			})
		}
		time.Sleep(time.Millisecond)
	}
	tw1 := time.Now()
	cpu1, pg1, self1 := c.cpuNow(), env.pg.cpu(), selfCPU()
	if err := env.kafka.cl.Flush(ctx); err != nil {
		return nil, err
	}
	res.backlogAtEndRec = tr.pending()
	if tw0.IsZero() {
		return nil, errors.New("the measured window never started")
	}
	if late := tw1.Sub(windowEnd); late > opts.duration/10 {
		return nil, fmt.Errorf("the producer fell behind: the window ended %s late (is the machine overloaded?)", late)
	}

	// Wait until everything produced is visible.
	deadline := time.Now().Add(10 * time.Minute)
	for tr.pending() > 0 {
		if c.exited() {
			return nil, fmt.Errorf("cdcflow exited; see %s", c.logPath)
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%d records not visible 10 minutes after the last was produced; see %s", tr.pending(), c.logPath)
		}
		time.Sleep(50 * time.Millisecond)
	}
	close(stopPoll)
	if err := <-pollDone; err != nil {
		return nil, err
	}
	after, err := fetchMetrics(metricsAddr, filepath.Join(env.out, "fresh-end.metrics"))
	if err != nil {
		return nil, err
	}
	u, err := c.wait(true)
	if err != nil {
		return nil, err
	}
	stopGen()
	if err := <-genDone; err != nil && !errors.Is(err, context.Canceled) {
		return nil, err
	}
	if tr.err != nil {
		return nil, fmt.Errorf("%d produce errors, first: %w", tr.errs, tr.err)
	}

	// Statistics over records produced in the measured window.
	wsNS, weNS := tw0.UnixNano(), tw1.UnixNano()
	var lats []time.Duration
	visibleInWindow := 0
	for _, v := range tr.vis {
		if v.produced >= wsNS && v.produced < weNS {
			lats = append(lats, time.Duration(v.visible-v.produced))
		}
		if v.visible >= wsNS && v.visible < weNS {
			visibleInWindow++
		}
	}
	if len(lats) == 0 {
		return nil, errors.New("no record was produced in the measured window")
	}
	sort.Slice(lats, func(i, j int) bool { return lats[i] < lats[j] })
	pct := func(q float64) time.Duration { return lats[max(int(math.Ceil(q*float64(len(lats))))-1, 0)] }
	win := tw1.Sub(tw0).Seconds()
	res.measured = len(lats)
	res.producedPerSec = float64(len(lats)) / win
	res.visiblePerSec = float64(visibleInWindow) / win
	res.p50, res.p90, res.p99, res.p999, res.max = pct(0.50), pct(0.90), pct(0.99), pct(0.999), lats[len(lats)-1]
	hist := after.histogram("cdcflow_freshness_seconds", before)
	res.histP99 = quantile(0.99, hist)
	if len(hist) > 0 {
		res.histCount = hist[len(hist)-1].count
	}
	res.cdcflowCores = (cpu1 - cpu0).Seconds() / win
	res.pgCores = (pg1 - pg0).Seconds() / win
	res.selfCores = (self1 - self0).Seconds() / win
	res.maxRSS = u.maxRSS
	if res.deadLetters, err = countRows(ctx, url, "cdc_dead_letters"); err != nil {
		return nil, err
	}
	return res, nil
}
