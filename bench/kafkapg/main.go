// Command kafkapg benchmarks cdcflow's production path, Kafka -> PostgreSQL,
// in one run on one machine:
//
//   - limit: pgx CopyFrom of the pre-decoded rows into an identical
//     cdc_events table, one transaction per batch: the ceiling of the log.
//   - log-only: `cdcflow load --log-only --sink postgres://…` on the same
//     records written to a file (`cdcflow run` has no log-only setting).
//   - merged (file): `cdcflow load --sink postgres://…`, event log plus
//     merged tables.
//   - merged (Kafka): the records produced into an in-process kfake broker
//     (one broker, 4 partitions, 127.0.0.1) first, then `cdcflow run -c` with
//     source.kafka and sink.postgres until every partition's checkpoint
//     reaches its last offset.
//   - freshness: a paced producer writes -rate records/s for -warmup plus
//     -duration, each record's commit time (DSQL source.ts_ns) set to its
//     produce time, while `cdcflow run` applies them; every record's
//     produce-to-visible time is measured by polling the sink's checkpoint
//     table (committed in the same transaction as the record's rows), and
//     cross-checked with cdcflow_freshness_seconds from /metrics.
//
// cdcflow is the real binary (-cdcflow), run as a child process: its CPU
// time and peak RSS come from its rusage. PostgreSQL is a private server
// (Debian's packages, fsync on) started and stopped by this program; its CPU
// time is read from /proc. Every load is checked: log rows, merged row
// counts against the generator's final state, no dead letters.
//
//	go build -o /tmp/cdcflow ./cmd/cdcflow && go run ./bench/kafkapg -cdcflow /tmp/cdcflow
//
// bench/kafka-pg.sh does that and prints the tables.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// options are the command's flags.
type options struct {
	cdcflow   string
	out       string
	seed      int64
	changes   int
	keys      int
	parts     int
	batch     int
	rounds    int
	fresh     freshOptions
	skipFresh bool
	skipLoad  bool
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("kafkapg", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.cdcflow, "cdcflow", "", "cdcflow binary to benchmark (required)")
	fs.StringVar(&o.out, "out", "bench/out/kafkapg", "directory for data files, configs and cdcflow logs")
	fs.Int64Var(&o.seed, "seed", 42, "history seed")
	fs.IntVar(&o.changes, "changes", 1_000_000, "DSQL records (one change each) of the throughput runs")
	fs.IntVar(&o.keys, "keyspace", 100_000, "distinct keys")
	fs.IntVar(&o.parts, "partitions", 4, "Kafka partitions (the records' shards)")
	fs.IntVar(&o.batch, "batch", 10_000, "events per transaction: the limit's batch, load --batch and pipeline.batch_max_events")
	fs.IntVar(&o.rounds, "rounds", 3, "times the throughput measurements are repeated (alternating, so each round's ratio sees one load)")
	fs.BoolVar(&o.skipLoad, "skip-throughput", false, "skip the throughput measurements")
	fs.BoolVar(&o.skipFresh, "skip-freshness", false, "skip the freshness measurement")
	fs.IntVar(&o.fresh.rate, "rate", 20_000, "freshness: records per second")
	fs.DurationVar(&o.fresh.warmup, "warmup", 10*time.Second, "freshness: produced at -rate before measuring")
	fs.DurationVar(&o.fresh.duration, "duration", 60*time.Second, "freshness: measured time")
	fs.DurationVar(&o.fresh.poll, "poll", 10*time.Millisecond, "freshness: checkpoint poll interval (the resolution)")
	fs.DurationVar(&o.fresh.batchWait, "batch-wait", 250*time.Millisecond, "freshness: pipeline.batch_max_wait (250ms is the default)")
	fs.IntVar(&o.fresh.maxInFlight, "max-in-flight", 0, "freshness: source.kafka.max_in_flight (0: the default, 64)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	switch {
	case fs.NArg() > 0:
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case o.cdcflow == "":
		return o, errors.New("-cdcflow is required")
	case o.changes < 1, o.keys < 1, o.parts < 1, o.batch < 1, o.rounds < 1, o.fresh.rate < 1:
		return o, errors.New("-changes, -keyspace, -partitions, -batch, -rounds and -rate must be positive")
	case o.fresh.duration <= 0, o.fresh.poll <= 0, o.fresh.warmup < 0:
		return o, errors.New("-duration and -poll must be positive, -warmup not negative")
	}
	o.fresh.seed, o.fresh.keys, o.fresh.parts, o.fresh.batch = o.seed+1, o.keys, o.parts, o.batch
	return o, nil
}

// benchEnv is what the measurements share.
type benchEnv struct {
	pg      *pgServer
	kafka   *broker
	out     string
	cdcflow string
}

// result is one throughput measurement.
type result struct {
	name    string
	round   int
	events  int64
	seconds float64
	cpu     time.Duration // the client's user+system: cdcflow, or this process for the limit
	rss     int64         // cdcflow peak RSS
	pgCPU   time.Duration
	selfCPU time.Duration // this process (the kfake broker) during a Kafka run
	applied int64         // events that changed a merged table (cdcflow's summary); -1 unknown
	stale   int64         // events older than the stored row, not merged; -1 unknown
	note    string
}

func (r result) rate() float64 { return float64(r.events) / r.seconds }

// cpuPerEvent is the client's and PostgreSQL's CPU time per event, in µs.
func (r result) cpuPerEvent() float64 {
	return float64((r.cpu + r.pgCPU).Nanoseconds()) / 1e3 / float64(r.events)
}

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400) // the kept records and rows are most of the heap
	}
	o, err := parseFlags(os.Args[1:], os.Stderr)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "kafkapg:", err)
		}
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "kafkapg:", err)
		os.Exit(1)
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

func run(ctx context.Context, o options) error {
	load0 := loadAvg()
	started := time.Now()
	bin, err := filepath.Abs(o.cdcflow)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	pg, err := startPostgres()
	if err != nil {
		return err
	}
	defer func() {
		if err := pg.stop(); err != nil {
			logf("stop postgres: %v", err)
		}
	}()
	kb, err := startBroker(int32(o.parts), "cdc.dsql", "cdc.fresh")
	if err != nil {
		return err
	}
	defer kb.close()
	env := &benchEnv{pg: pg, kafka: kb, out: o.out, cdcflow: bin}
	logf("postgres %s on 127.0.0.1:%d (fsync on), kfake broker on %s", pg.version, pg.port, kb.addr)

	var results []result
	if !o.skipLoad {
		if results, err = throughput(ctx, env, o); err != nil {
			return err
		}
	}
	var fr *freshResult
	if !o.skipFresh {
		logf("freshness: %d records/s for %s (+%s warm-up), batch_max_wait %s", o.fresh.rate, o.fresh.duration, o.fresh.warmup, o.fresh.batchWait)
		if fr, err = runFreshness(ctx, env, o.fresh); err != nil {
			return fmt.Errorf("freshness: %w", err)
		}
	}
	printReport(os.Stdout, o, results, fr, load0, loadAvg(), time.Since(started), pg.version)
	return nil
}

// throughput runs the limit and the three cdcflow loads, o.rounds times.
func throughput(ctx context.Context, env *benchEnv, o options) ([]result, error) {
	logf("generating %d DSQL changes over %d keys (seed %d, %d partitions)", o.changes, o.keys, o.seed, o.parts)
	ds, err := generate(o.seed, o.changes, o.keys, o.parts)
	if err != nil {
		return nil, err
	}
	for t := range keys().Tables {
		if _, ok := ds.expected[t]; !ok {
			ds.expected[t] = 0
		}
	}
	path := filepath.Join(o.out, "data", "dsql.ndjson")
	if err := writeFile(path, ds); err != nil {
		return nil, err
	}
	logf("%d records, %.0f MB; producing them into kfake", len(ds.recs), float64(ds.bytes)/1e6)
	t0 := time.Now()
	last, err := env.kafka.produceAll(ctx, "cdc.dsql", ds.recs)
	if err != nil {
		return nil, err
	}
	logf("produced in %s", time.Since(t0).Round(time.Millisecond))
	rows, err := limitRows(ds, "cdc.dsql")
	if err != nil {
		return nil, err
	}

	var out []result
	for round := 1; round <= o.rounds; round++ {
		// limit
		db := fmt.Sprintf("limit_%d", round)
		if err := env.pg.createDB(ctx, db); err != nil {
			return nil, err
		}
		pg0, self0 := env.pg.cpu(), selfCPU()
		took, err := copyLimit(ctx, env.pg.url(db), rows, o.batch)
		if err != nil {
			return nil, fmt.Errorf("limit: %w", err)
		}
		// The client side of the limit is this process (pgx encoding the rows).
		r := result{name: "limit", round: round, applied: -1, stale: -1, events: int64(len(rows)), seconds: took.Seconds(), pgCPU: env.pg.cpu() - pg0, cpu: selfCPU() - self0}
		logf("round %d limit: %.0f events/s", round, r.rate())
		out = append(out, r)
		if err := env.pg.dropDB(ctx, db); err != nil {
			return nil, err
		}

		for _, logOnly := range []bool{true, false} {
			name, db := "load-merged", fmt.Sprintf("load_merged_%d", round)
			if logOnly {
				name, db = "load-log", fmt.Sprintf("load_log_%d", round)
			}
			r, err := runLoad(ctx, env, o, ds, path, name, db, logOnly)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			r.round = round
			logf("round %d %s: %.0f events/s", round, name, r.rate())
			out = append(out, r)
		}

		r, err = runKafka(ctx, env, o, ds, last, round)
		if err != nil {
			return nil, fmt.Errorf("run-merged: %w", err)
		}
		r.round = round
		logf("round %d run-merged: %.0f events/s", round, r.rate())
		out = append(out, r)
	}
	return out, nil
}

var (
	summaryLine = regexp.MustCompile(`read (\d+) records, (\d+) events in`)
	appliedLine = regexp.MustCompile(`applied (\d+), duplicates ignored \d+, stale \(older than stored\) (\d+),`)
)

// mergeCounts reads the applied and stale counts of cdcflow's summary from
// its log; -1 when absent.
func mergeCounts(logPath string) (applied, stale int64) {
	b, _ := os.ReadFile(logPath)
	m := appliedLine.FindSubmatch(b)
	if m == nil {
		return -1, -1
	}
	applied, _ = strconv.ParseInt(string(m[1]), 10, 64)
	stale, _ = strconv.ParseInt(string(m[2]), 10, 64)
	return applied, stale
}

// runLoad runs cdcflow load on the file into a new database and checks it.
func runLoad(ctx context.Context, env *benchEnv, o options, ds *dataset, path, name, db string, logOnly bool) (result, error) {
	if err := env.pg.createDB(ctx, db); err != nil {
		return result{}, err
	}
	url := env.pg.url(db)
	args := []string{"load", "--no-progress", "--format", "dsql", "--batch", strconv.Itoa(o.batch)}
	for t, cols := range keys().Tables {
		args = append(args, "--key", t+"="+strings.Join(cols, ","))
	}
	if logOnly {
		args = append(args, "--log-only")
	}
	args = append(args, "--sink", url, path)
	pg0 := env.pg.cpu()
	c, err := startChild(env.cdcflow, args, nil, filepath.Join(env.out, db+".log"))
	if err != nil {
		return result{}, err
	}
	u, err := c.wait(false)
	if err != nil {
		return result{}, err
	}
	pgCPU := env.pg.cpu() - pg0
	logText, _ := os.ReadFile(c.logPath)
	m := summaryLine.FindSubmatch(logText)
	if m == nil {
		return result{}, fmt.Errorf("no summary line in %s", c.logPath)
	}
	events, _ := strconv.ParseInt(string(m[2]), 10, 64)
	if err := verify(ctx, url, ds, !logOnly); err != nil {
		return result{}, fmt.Errorf("check %s: %w", db, err)
	}
	if err := env.pg.dropDB(ctx, db); err != nil {
		return result{}, err
	}
	applied, stale := mergeCounts(c.logPath)
	return result{name: name, events: events, seconds: u.wall.Seconds(), cpu: u.cpu, rss: u.maxRSS, pgCPU: pgCPU,
		applied: applied, stale: stale, note: "process start to exit"}, nil
}

// runKafka runs cdcflow run on the pre-produced topic (a new consumer group
// and database per round) until every partition is applied.
func runKafka(ctx context.Context, env *benchEnv, o options, ds *dataset, last map[int32]int64, round int) (result, error) {
	db := fmt.Sprintf("run_merged_%d", round)
	if err := env.pg.createDB(ctx, db); err != nil {
		return result{}, err
	}
	url := env.pg.url(db)
	maddr, err := freeAddr()
	if err != nil {
		return result{}, err
	}
	cfgPath := filepath.Join(env.out, db+".yaml")
	rc := runConfig{brokers: env.kafka.addr, topic: "cdc.dsql", group: "cdcflow-" + db, metrics: maddr,
		batch: o.batch, batchWait: time.Second}
	if err := rc.write(cfgPath); err != nil {
		return result{}, err
	}
	pg0, self0 := env.pg.cpu(), selfCPU()
	c, err := startChild(env.cdcflow, []string{"run", "-c", cfgPath}, []string{pgURLEnv + "=" + url}, filepath.Join(env.out, db+".log"))
	if err != nil {
		return result{}, err
	}
	first, done, err := waitApplied(ctx, c, url, "cdc.dsql", last, 30*time.Minute)
	if err != nil {
		c.wait(true) //nolint:errcheck // reporting the first error
		return result{}, err
	}
	u, err := c.wait(true)
	if err != nil {
		return result{}, err
	}
	pgCPU, self := env.pg.cpu()-pg0, selfCPU()-self0
	if err := verify(ctx, url, ds, true); err != nil {
		return result{}, fmt.Errorf("check %s: %w", db, err)
	}
	if err := env.pg.dropDB(ctx, db); err != nil {
		return result{}, err
	}
	applied, stale := mergeCounts(c.logPath)
	return result{name: "run-merged", events: int64(len(ds.recs)), seconds: done.Sub(c.start).Seconds(), cpu: u.cpu, rss: u.maxRSS, pgCPU: pgCPU,
		selfCPU: self, applied: applied, stale: stale, note: fmt.Sprintf("seconds from process start to the last checkpoint; first commit %.1f s after start; "+
			"the benchmark process (kfake broker serving the fetches, checkpoint polling) used %.1f CPU s", first.Sub(c.start).Seconds(), self.Seconds())}, nil
}

// verify checks a loaded database: every record logged, no dead letters,
// and with merged tables the generator's final row count per table.
func verify(ctx context.Context, url string, ds *dataset, merged bool) error {
	n, err := countRows(ctx, url, "cdc_events")
	if err != nil {
		return err
	}
	if n != int64(len(ds.recs)) {
		return fmt.Errorf("cdc_events holds %d rows, want %d", n, len(ds.recs))
	}
	if n, err = countRows(ctx, url, "cdc_dead_letters"); err != nil {
		return err
	}
	if n != 0 {
		return fmt.Errorf("cdc_dead_letters holds %d rows, want 0", n)
	}
	if !merged {
		return nil
	}
	for table, want := range ds.expected {
		n, err := countRows(ctx, url, table)
		if err != nil {
			return err
		}
		if n != int64(want) {
			return fmt.Errorf("merged table %s holds %d rows, want %d (the generator's final state)", table, n, want)
		}
	}
	return nil
}

// loadAvg returns /proc/loadavg's three averages.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

var names = map[string]string{
	"limit":       "limit: pgx CopyFrom, pre-decoded rows",
	"load-log":    "log-only: cdcflow load --log-only (file)",
	"load-merged": "merged: cdcflow load (file)",
	"run-merged":  "merged: cdcflow run (Kafka, kfake)",
}

func printReport(w io.Writer, o options, rs []result, fr *freshResult, load0, load1 string, took time.Duration, pgVersion string) {
	fmt.Fprintf(w, "\n# Kafka to PostgreSQL, %s\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(w, "machine: %d cores (shared), %s %s/%s, PostgreSQL %s (fsync on); load average at start %s, at end %s; run took %s\n",
		runtime.NumCPU(), runtime.Version(), runtime.GOOS, runtime.GOARCH, pgVersion, load0, load1, took.Round(time.Second))
	if len(rs) > 0 {
		fmt.Fprintf(w, "\n%d DSQL records over %d keys, %d partitions, batch %d events per transaction, %d round(s)\n\n",
			o.changes, o.keys, o.parts, o.batch, o.rounds)
		fmt.Fprintln(w, "| round | measurement | events | seconds | events/s | vs limit | client CPU s | PostgreSQL CPU s | CPU µs/event (client+PG) | client peak RSS MiB | merged / stale |")
		fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|")
		limits, limitCPU := map[int]float64{}, map[int]float64{}
		for _, r := range rs {
			if r.name == "limit" {
				limits[r.round], limitCPU[r.round] = r.rate(), r.cpuPerEvent()
			}
		}
		for _, r := range rs {
			rss := "-" // the limit's client is this process, holding every record
			if r.name != "limit" {
				rss = fmt.Sprintf("%.0f", float64(r.rss)/(1<<20))
			}
			merged := "-"
			if r.applied > 0 || r.stale > 0 {
				merged = fmt.Sprintf("%d / %d", r.applied, r.stale)
			}
			fmt.Fprintf(w, "| %d | %s | %d | %.1f | %.0f | %.0f%% | %.1f | %.1f | %.1f | %s | %s |\n", r.round, names[r.name], r.events, r.seconds, r.rate(),
				100*r.rate()/limits[r.round], r.cpu.Seconds(), r.pgCPU.Seconds(), r.cpuPerEvent(), rss, merged)
		}
		fmt.Fprintln(w, "\nmedians over rounds (ratios are per round, then the median; the CPU ratio is the limit's CPU per event over the run's, which load on a shared machine disturbs less than wall time):")
		fmt.Fprintln(w, "\n| measurement | events/s | vs limit, events/s | vs limit, CPU per event | CPU µs/event (client+PG) | client peak RSS MiB |")
		fmt.Fprintln(w, "|---|---|---|---|---|---|")
		for _, name := range []string{"limit", "load-log", "load-merged", "run-merged"} {
			var rates, ratios, cpuRatios, cpus, rss []float64
			for _, r := range rs {
				if r.name == name {
					rates = append(rates, r.rate())
					ratios = append(ratios, r.rate()/limits[r.round])
					cpuRatios = append(cpuRatios, limitCPU[r.round]/r.cpuPerEvent())
					cpus = append(cpus, r.cpuPerEvent())
					rss = append(rss, float64(r.rss)/(1<<20))
				}
			}
			if len(rates) == 0 {
				continue
			}
			peak := "-"
			if name != "limit" {
				peak = fmt.Sprintf("%.0f", slices.Max(rss))
			}
			fmt.Fprintf(w, "| %s | %.0f | %.0f%% | %.0f%% | %.1f | %s |\n", names[name], median(rates), 100*median(ratios), 100*median(cpuRatios), median(cpus), peak)
		}
		for _, r := range rs {
			if r.name == "run-merged" {
				fmt.Fprintf(w, "\nrun-merged round %d: %s\n", r.round, r.note)
			}
		}
	}
	if fr != nil {
		f := o.fresh
		inFlight := "default (64)"
		if f.maxInFlight > 0 {
			inFlight = strconv.Itoa(f.maxInFlight)
		}
		fmt.Fprintf(w, "\nfreshness: %d records/s target for %s after %s warm-up, batch_max_events %d, batch_max_wait %s, max_in_flight %s, checkpoint poll every %s\n\n",
			f.rate, f.duration, f.warmup, f.batch, f.batchWait, inFlight, f.poll)
		fmt.Fprintln(w, "| produced/s | visible/s | records measured | p50 | p90 | p99 | p99.9 | max | p99 from cdcflow_freshness_seconds | cdcflow cores | PostgreSQL cores | broker+producer cores | cdcflow peak RSS MiB |")
		fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|---|")
		ms := func(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d)/1e6) }
		fmt.Fprintf(w, "| %.0f | %.0f | %d | %s | %s | %s | %s | %s | %.0f ms (%.0f events) | %.2f | %.2f | %.2f | %.0f |\n",
			fr.producedPerSec, fr.visiblePerSec, fr.measured, ms(fr.p50), ms(fr.p90), ms(fr.p99), ms(fr.p999), ms(fr.max),
			fr.histP99*1000, fr.histCount, fr.cdcflowCores, fr.pgCores, fr.selfCores, float64(fr.maxRSS)/(1<<20))
		fmt.Fprintf(w, "\nbacklog when the window closed: %d records; dead letters: %d; p99 target < 1 s: %s\n",
			fr.backlogAtEndRec, fr.deadLetters, map[bool]string{true: "met", false: "NOT met"}[fr.p99 < time.Second])
	}
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
