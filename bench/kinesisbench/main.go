// Command kinesisbench measures the Kinesis source (internal/source/kinesis)
// against the bare minimum: a GetRecords loop written with aws-sdk-go-v2
// and no cdcflow code, reading the same stream in the same run.
//
// It starts kinesalite (a node process), creates a stream of -shards shards
// and preloads it with -records generated DSQL change records (testgen, as
// bench/kafka-pg.sh generates them) with PutRecords. Then, -rounds times,
// alternating which goes first, it runs each reader in a process of its
// own, reading every record from TRIM_HORIZON:
//
//   - bare: per shard in parallel, GetShardIterator and GetRecords (limit
//     10,000) back to back until caught up;
//   - source: kinesis.New, then Read and ack(nil) until every record
//     arrived: the source alone, no decoding and no sink.
//
// Each reader measures its own wall time and process CPU time (rusage)
// around the read and checks the record count and total bytes. kinesalite's
// CPU time over each read is read from /proc. The tables give per round
// records/s, the source's rate as a share of the bare loop's (the target is
// at least 90%), the CPU per record of each reader and the source's own CPU
// per record (source minus bare), then the medians over rounds.
//
//	go run ./bench/kinesisbench -records 200000 -rounds 5
//
// bench/kinesis.sh builds and runs it.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cdcflow/cdcflow/internal/testgen"
)

// Target is the share of the bare loop's records/s the source must reach.
const Target = 0.90

// options are the command's flags.
type options struct {
	records  int
	shards   int
	rounds   int
	seed     int64
	out      string
	profile  bool
	progress io.Writer // progress lines; nil: none
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("kinesisbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&o.records, "records", 200_000, "DSQL records preloaded into the stream")
	fs.IntVar(&o.shards, "shards", 4, "shards of the stream")
	fs.IntVar(&o.rounds, "rounds", 5, "times each reader reads the stream (alternating which goes first)")
	fs.Int64Var(&o.seed, "seed", 42, "history seed of the records")
	fs.StringVar(&o.out, "out", "bench/out/kinesis", "directory for CPU profiles (with -cpuprofile)")
	fs.BoolVar(&o.profile, "cpuprofile", false, "write a CPU profile of every read to -out (profiling slows the readers a little)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	switch {
	case fs.NArg() > 0:
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case o.records < 1, o.shards < 1, o.rounds < 1:
		return o, errors.New("-records, -shards and -rounds must be positive")
	}
	o.progress = stderr
	return o, nil
}

func main() {
	if reader := os.Getenv(childEnv); reader != "" {
		os.Exit(childMain(reader, os.Args[1:], os.Stdout, os.Stderr))
	}
	o, err := parseFlags(os.Args[1:], os.Stderr)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "kinesisbench:", err)
		}
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "kinesisbench:", err)
		os.Exit(1)
	}
}

func (o options) logf(format string, args ...any) {
	if o.progress != nil {
		fmt.Fprintf(o.progress, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
	}
}

// result is one reader's read in one round.
type result struct {
	reading
	round   int
	nodeCPU float64 // kinesalite's CPU seconds during the read
}

func (r result) rate() float64         { return float64(r.Records) / r.Seconds }
func (r result) cpuPerRecord() float64 { return r.CPU * 1e6 / float64(r.Records) }
func (r result) nodePerRecord() float64 {
	return r.nodeCPU * 1e6 / float64(r.Records)
}

// dataset is the preloaded stream's content.
type dataset struct {
	records, bytes int64
	perShard       map[string]int
}

func run(ctx context.Context, o options, w io.Writer) error {
	started, load0 := time.Now(), loadAvg()
	self, err := os.Executable()
	if err != nil {
		return err
	}
	srv, err := startKinesalite()
	if err != nil {
		return err
	}
	defer srv.stop()
	o.logf("kinesalite on %s (node pid %d)", srv.endpoint, srv.cmd.Process.Pid)

	const stream = "bench-dsql"
	cl := client(srv.endpoint)
	if err := createStream(ctx, cl, stream, o.shards); err != nil {
		return err
	}
	data, err := generate(o.seed, o.records)
	if err != nil {
		return err
	}
	ds := dataset{records: int64(len(data))}
	for _, d := range data {
		ds.bytes += int64(len(d))
	}
	o.logf("putting %d DSQL records (%.1f MB) into %d shards", ds.records, float64(ds.bytes)/1e6, o.shards)
	t0 := time.Now()
	if ds.perShard, err = putAll(ctx, cl, stream, data); err != nil {
		return err
	}
	data = nil
	o.logf("put in %s: %v", time.Since(t0).Round(time.Millisecond), ds.perShard)
	if o.profile {
		if err := os.MkdirAll(o.out, 0o755); err != nil {
			return err
		}
	}

	var results []result
	for round := 1; round <= o.rounds; round++ {
		order := []string{readerBare, readerSource}
		if round%2 == 0 {
			order = []string{readerSource, readerBare}
		}
		for _, reader := range order {
			r, err := runReader(ctx, self, srv, o, reader, stream, ds, round)
			if err != nil {
				return fmt.Errorf("round %d %s: %w", round, reader, err)
			}
			o.logf("round %d %-6s %8.0f records/s, %.2f µs CPU/record", round, reader, r.rate(), r.cpuPerRecord())
			results = append(results, r)
		}
	}
	printReport(w, o, ds, results, load0, loadAvg(), time.Since(started))
	return nil
}

// generate returns n DSQL change records (no large values, fragments or
// duplicates: the workload of bench/kafka-pg.sh).
func generate(seed int64, n int) ([][]byte, error) {
	out := make([][]byte, 0, n)
	_, err := testgen.Stream(seed, testgen.Options{Changes: n, Keys: max(n/10, 40), BigRatio: -1}, testgen.FormatDSQL,
		testgen.EncodeOptions{Shards: 1}, func(r testgen.Record) error {
			if r.Kind != testgen.RecordChange {
				return fmt.Errorf("generated a %s record; want only whole changes", r.Kind)
			}
			out = append(out, r.Data)
			return nil
		})
	if err != nil {
		return nil, err
	}
	if len(out) != n {
		return nil, fmt.Errorf("testgen gave %d records, want %d", len(out), n)
	}
	return out, nil
}

// runReader runs one reader in a child process (this binary, or the test
// binary through TestMain, with childEnv set) and returns its reading.
func runReader(ctx context.Context, self string, srv *server, o options, reader, stream string, ds dataset, round int) (result, error) {
	args := []string{"-endpoint", srv.endpoint, "-stream", stream,
		"-records", strconv.FormatInt(ds.records, 10), "-bytes", strconv.FormatInt(ds.bytes, 10)}
	if o.profile {
		args = append(args, "-cpuprofile", filepath.Join(o.out, fmt.Sprintf("%s-%d.pprof", reader, round)))
	}
	cmd := exec.CommandContext(ctx, self, args...)
	cmd.Env = append(os.Environ(), childEnv+"="+reader, "AWS_EC2_METADATA_DISABLED=true",
		"AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null")
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	node0, err := srv.cpu()
	if err != nil {
		return result{}, err
	}
	if err := cmd.Run(); err != nil {
		return result{}, fmt.Errorf("%v: %s", err, strings.TrimSpace(stderr.String()))
	}
	node1, err := srv.cpu()
	if err != nil {
		return result{}, err
	}
	var r result
	if err := json.Unmarshal([]byte(stdout.String()), &r.reading); err != nil {
		return result{}, fmt.Errorf("reader output %q: %w", stdout.String(), err)
	}
	if r.Reader != reader || r.Records != ds.records || r.Seconds <= 0 {
		return result{}, fmt.Errorf("reader output %q: want %s reading %d records", stdout.String(), reader, ds.records)
	}
	r.round, r.nodeCPU = round, (node1 - node0).Seconds()
	return r, nil
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

// summary is the medians over rounds.
type summary struct {
	bareRate, sourceRate float64
	ratio                float64 // median of the per-round ratios source/bare records/s
	bareCPU, sourceCPU   float64 // µs per record
	ownCPU               float64 // median of the per-round source minus bare CPU per record
	bareNode, sourceNode float64 // kinesalite µs per record
}

// summarize pairs each round's readers and takes the medians.
func summarize(rs []result) summary {
	byRound := map[int]map[string]result{}
	for _, r := range rs {
		if byRound[r.round] == nil {
			byRound[r.round] = map[string]result{}
		}
		byRound[r.round][r.Reader] = r
	}
	var br, sr, ratio, bc, sc, own, bn, sn []float64
	for _, m := range byRound {
		b, okb := m[readerBare]
		s, oks := m[readerSource]
		if !okb || !oks {
			continue
		}
		br, sr = append(br, b.rate()), append(sr, s.rate())
		ratio = append(ratio, s.rate()/b.rate())
		bc, sc = append(bc, b.cpuPerRecord()), append(sc, s.cpuPerRecord())
		own = append(own, s.cpuPerRecord()-b.cpuPerRecord())
		bn, sn = append(bn, b.nodePerRecord()), append(sn, s.nodePerRecord())
	}
	return summary{bareRate: median(br), sourceRate: median(sr), ratio: median(ratio), bareCPU: median(bc), sourceCPU: median(sc),
		ownCPU: median(own), bareNode: median(bn), sourceNode: median(sn)}
}

var readerNames = map[string]string{
	readerBare:   "bare GetRecords loop (aws-sdk-go-v2)",
	readerSource: "kinesis source (Read + ack)",
}

func printReport(w io.Writer, o options, ds dataset, rs []result, load0, load1 string, took time.Duration) {
	fmt.Fprintf(w, "\n# Kinesis source vs a bare GetRecords loop, %s\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(w, "machine: %d cores (shared), %s %s/%s; load average at start %s, at end %s; run took %s\n",
		runtime.NumCPU(), runtime.Version(), runtime.GOOS, runtime.GOARCH, load0, load1, took.Round(time.Second))
	fmt.Fprintf(w, "\n%d DSQL records (%.1f MB, %.0f B each) in %d shards of kinesalite, read from TRIM_HORIZON, %d round(s)\n\n",
		ds.records, float64(ds.bytes)/1e6, float64(ds.bytes)/float64(ds.records), len(ds.perShard), o.rounds)
	fmt.Fprintln(w, "| round | reader | records | seconds | records/s | vs bare | reader CPU s | reader CPU µs/record | kinesalite CPU s | kinesalite CPU µs/record |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|")
	bare := map[int]float64{}
	for _, r := range rs {
		if r.Reader == readerBare {
			bare[r.round] = r.rate()
		}
	}
	for _, r := range rs {
		fmt.Fprintf(w, "| %d | %s | %d | %.2f | %.0f | %.0f%% | %.2f | %.2f | %.2f | %.2f |\n", r.round, readerNames[r.Reader], r.Records,
			r.Seconds, r.rate(), 100*r.rate()/bare[r.round], r.CPU, r.cpuPerRecord(), r.nodeCPU, r.nodePerRecord())
	}
	s := summarize(rs)
	fmt.Fprintln(w, "\nmedians over rounds (ratios and differences are per round, then the median):")
	fmt.Fprintln(w, "\n| reader | records/s | vs bare, records/s | reader CPU µs/record | kinesalite CPU µs/record |")
	fmt.Fprintln(w, "|---|---|---|---|---|")
	fmt.Fprintf(w, "| %s | %.0f | 100%% | %.2f | %.2f |\n", readerNames[readerBare], s.bareRate, s.bareCPU, s.bareNode)
	fmt.Fprintf(w, "| %s | %.0f | **%.0f%%** | %.2f | %.2f |\n", readerNames[readerSource], s.sourceRate, 100*s.ratio, s.sourceCPU, s.sourceNode)
	verdict := "met"
	if s.ratio < Target {
		verdict = "NOT met"
	}
	fmt.Fprintf(w, "\nsource's own CPU (source minus bare loop): %.2f µs/record; target source >= %.0f%% of the bare loop's records/s: %s\n",
		s.ownCPU, 100*Target, verdict)
	if o.profile {
		fmt.Fprintf(w, "CPU profiles (profiling on): %s/{bare,source}-<round>.pprof\n", o.out)
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
