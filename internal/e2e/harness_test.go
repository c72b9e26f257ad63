package e2e

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cdcflow/cdcflow/internal/change"
	"github.com/cdcflow/cdcflow/internal/decode"
	"github.com/cdcflow/cdcflow/internal/pipeline"
	"github.com/cdcflow/cdcflow/internal/sink"
	"github.com/cdcflow/cdcflow/internal/sink/duckdb"
	"github.com/cdcflow/cdcflow/internal/source/file"
	"github.com/cdcflow/cdcflow/internal/testgen"
)

// variant is one encoding of a history.
type variant struct {
	name   string
	format testgen.Format
	schema bool // Debezium schema envelope
}

// variants are every format the decoders accept, Debezium in both shapes.
var variants = []variant{
	{"dsql", testgen.FormatDSQL, false},
	{"debezium", testgen.FormatDebezium, false},
	{"debezium_schema", testgen.FormatDebezium, true},
	{"dms", testgen.FormatDMS, false},
	{"dynamodb", testgen.FormatDynamoDB, false},
}

// poisonLines are records no decoder accepts. Each must become exactly one
// dead letter at its position, whatever the decode format.
var poisonLines = []string{
	`{"type":"full","op":"c","before":null,"after":{"id":1}`, // truncated JSON
	`this is not json`,
	`{"unrelated":true,"n":1}`,
	`[1,2,3]`,
	"{\"bad_utf8\":\"\xff\xfe\"}",
}

// scenario is one format's encoding of a history, written as shard files.
type scenario struct {
	seed      int64
	v         variant
	hist      *testgen.History
	enc       testgen.EncodeOptions
	rng       *rand.Rand
	dir       string
	db        string            // the DuckDB file
	files     []string          // one per shard, absolute, in reading order
	units     [][]unit          // per file, its records in order
	envelopes bool              // records are wrapped in envelopes
	poison    map[string]string // position -> injected line
	pieces    map[string]bool   // positions of DSQL chunked records and fragments
	keys      *change.Keys
	final     testgen.State
	soft      bool
	naming    string
	crashes   int
	maxBatch  int // largest batch size drawn
}

func hashString(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
}

// newScenario encodes hist in v's format with delivery options drawn from
// the seed and writes one NDJSON file per shard into a fresh directory.
func newScenario(t *testing.T, seed int64, hist *testgen.History, v variant, p params) *scenario {
	t.Helper()
	rng := rand.New(rand.NewPCG(uint64(seed), hashString(v.name)))
	s := &scenario{
		seed: seed, v: v, hist: hist, rng: rng, dir: t.TempDir(),
		poison: map[string]string{}, pieces: map[string]bool{},
		keys: &change.Keys{Tables: testgen.DefaultKeys()},
	}
	s.enc = testgen.EncodeOptions{
		Seed:           int64(rng.Uint64() >> 1),
		Shards:         4 + rng.IntN(3),
		DupRatio:       0.12 + 0.13*rng.Float64(),
		ReorderWindow:  2 + rng.IntN(15),
		DebeziumSchema: v.schema,
	}
	switch v.format {
	case testgen.FormatDSQL:
		s.enc.FragmentBytes = 64 + logUniform(rng, 1800) // from dozens of fragments per set to a few sets

		s.enc.KeepChunksTogether = rng.IntN(3) == 0
		s.enc.UpdateOp = []string{"", "c", "u"}[rng.IntN(3)]
	case testgen.FormatDebezium:
		s.enc.Tombstones = rng.IntN(2) == 0
	case testgen.FormatDMS:
		s.enc.ControlRecords = rng.IntN(2) == 0
	}
	s.soft = rng.IntN(4) == 0
	s.naming = duckdb.NamingTable
	if rng.IntN(4) == 0 {
		s.naming = duckdb.NamingSchemaTable
	}
	s.db = filepath.Join(s.dir, "warehouse.duckdb")
	s.crashes = 1 + rng.IntN(3)
	s.maxBatch = max(64, p.changes/20)
	s.final = hist.FinalFor(v.format, s.enc)

	recs, err := testgen.Encode(hist, v.format, s.enc)
	if err != nil {
		t.Fatalf("encode: %v", err)
	}
	dups := 0
	for _, r := range recs {
		if r.Duplicate {
			dups++
		}
	}
	if float64(dups) < 0.05*float64(len(recs)) {
		t.Fatalf("only %d duplicates in %d records", dups, len(recs))
	}
	shards := testgen.Deliver(recs, seed, s.enc.Shards).Shards
	s.envelopes = rng.IntN(3) == 0
	s.units = make([][]unit, len(shards))
	for i, sh := range shards {
		s.units[i] = s.wrap(sh, i)
	}
	nPoison := 0
	if p.poison && rng.IntN(2) == 0 {
		nPoison = 1 + rng.IntN(3)
	}
	for range nPoison {
		f := rng.IntN(len(s.units))
		at := rng.IntN(len(s.units[f]) + 1)
		u := unit{text: poisonLines[rng.IntN(len(poisonLines))], poison: true}
		s.units[f] = append(s.units[f][:at], append([]unit{u}, s.units[f][at:]...)...)
	}
	for i, us := range s.units {
		name := filepath.Join(s.dir, fmt.Sprintf("shard-%02d.ndjson", i))
		var b strings.Builder
		line := 1
		for n := range us {
			us[n].line = line
			b.WriteString(us[n].text)
			b.WriteByte('\n')
			line += strings.Count(us[n].text, "\n") + 1
		}
		if err := os.WriteFile(name, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		abs, err := filepath.Abs(name)
		if err != nil {
			t.Fatal(err)
		}
		s.files = append(s.files, filepath.Clean(abs))
		for _, u := range us {
			pos := change.Position{Source: s.files[i], Offset: strconv.Itoa(u.line)}
			if u.poison {
				s.poison[pos.String()] = u.text
			}
			for _, k := range u.pieces {
				p := pos
				p.Index, p.Indexed = k, u.envelope
				s.pieces[p.String()] = true
			}
		}
	}
	return s
}

// unit is one record of a shard file: a change record on one line, an
// envelope of several (a pretty-printed multi-line document), or a poison
// line.
type unit struct {
	text     string
	line     int   // first line, from 1
	envelope bool  // text is an envelope: inner records are positioned line#index
	pieces   []int // indexes of DSQL chunked records and fragments (0 when not an envelope)
	poison   bool
}

// wrap turns one shard's records into file units: each record on its own
// line, or, in envelope scenarios, runs of 1-8 records wrapped as a
// transport delivers them (Lambda events from Kinesis, DynamoDB Streams or
// MSK, `aws kinesis get-records` output).
func (s *scenario) wrap(recs []testgen.Record, shard int) []unit {
	isPiece := func(r testgen.Record) bool {
		return r.Kind == testgen.RecordChunked || r.Kind == testgen.RecordFragment
	}
	var out []unit
	if !s.envelopes {
		for _, r := range recs {
			u := unit{text: string(r.Data)}
			if isPiece(r) {
				u.pieces = []int{0}
			}
			out = append(out, u)
		}
		return out
	}
	arrival := time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < len(recs); {
		n := min(1+s.rng.IntN(8), len(recs)-i)
		group := recs[i : i+n]
		var doc []byte
		switch {
		case s.v.format == testgen.FormatDynamoDB:
			doc = testgen.DynamoDBLambdaEvent(group)
		case s.v.format == testgen.FormatDebezium && s.rng.IntN(2) == 0:
			// Inner records are regrouped by topic-partition, so piece
			// indexes below would not hold; Debezium has no pieces.
			topic := func(r testgen.Record) string { return "pg.public." + r.Table }
			doc = testgen.MSKLambdaEvent(group, topic, int64(i), arrival)
		case s.rng.IntN(2) == 0:
			doc = testgen.KinesisLambdaEvent(group, "cdc", shard, i, arrival)
		default:
			doc = testgen.KinesisGetRecords(group, shard, i, arrival)
		}
		u := unit{text: strings.TrimRight(string(doc), "\n"), envelope: true}
		for k, r := range group {
			if isPiece(r) {
				u.pieces = append(u.pieces, k)
			}
		}
		out = append(out, u)
		i += n
	}
	return out
}

// reference decodes every record once, in the order the file source reads
// them, with a fresh decoder: the events a single uninterrupted run logs
// and the dead letters it stores.
func (s *scenario) reference(t *testing.T) (events map[string]change.Event, dead map[string]change.DeadLetter) {
	t.Helper()
	dec, err := decode.New(decode.Options{Format: decode.FormatAuto, Keys: s.keys})
	if err != nil {
		t.Fatal(err)
	}
	events, dead = map[string]change.Event{}, map[string]change.DeadLetter{}
	var out decode.Output
	now := time.Now()
	take := func() {
		for _, e := range out.Events {
			p := e.Position.String()
			if _, dup := events[p]; dup {
				t.Fatalf("reference decode: two events at %s", p)
			}
			events[p] = e.Clone()
		}
		for _, d := range out.Dead {
			dead[d.Position.String()] = d
		}
		out.Reset()
	}
	for f, us := range s.units {
		for _, u := range us {
			dec.Decode(change.Raw{Data: []byte(u.text), Position: change.Position{Source: s.files[f], Offset: strconv.Itoa(u.line)}}, now, &out)
			take()
		}
	}
	dec.Drain(&out)
	take()
	return events, dead
}

// errCrashed is what a crashed sink answers.
var errCrashed = errors.New("e2e: sink process crashed after commit")

// crashSink wraps the DuckDB sink. After its crashAt-th successful Apply
// (0: never) it behaves as a process that died right after COMMIT: the batch
// is stored, but Apply reports an error, the run's context is cancelled, and
// every later call fails at once. The pipeline therefore never acknowledges
// the committed batch. With before set, the crashAt-th Apply dies before
// reaching the database instead (nothing of that batch is stored).
type crashSink struct {
	inner   *duckdb.Sink
	crashAt int
	before  bool
	cancel  context.CancelFunc

	mu      sync.Mutex
	applies int
	crashed bool
}

var (
	_ sink.Sink          = (*crashSink)(nil)
	_ sink.PositionStore = (*crashSink)(nil)
	_ sink.ChunkStore    = (*crashSink)(nil)
)

func (c *crashSink) Apply(ctx context.Context, b *change.Batch) (change.ApplyResult, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.crashed {
		return change.ApplyResult{}, errCrashed
	}
	if c.before && c.applies+1 == c.crashAt {
		c.crashed = true
		c.cancel()
		return change.ApplyResult{}, errCrashed
	}
	res, err := c.inner.Apply(ctx, b)
	if err != nil {
		return res, err
	}
	c.applies++
	if c.applies == c.crashAt {
		c.crashed = true
		c.cancel()
		return change.ApplyResult{}, errCrashed
	}
	return res, nil
}

func (c *crashSink) Checkpoints(ctx context.Context, source string) ([]change.Checkpoint, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.crashed {
		return nil, errCrashed
	}
	return c.inner.Checkpoints(ctx, source)
}

func (c *crashSink) CompletedChunks(ctx context.Context, after int64, limit int) ([]string, int64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.crashed {
		return nil, after, errCrashed
	}
	return c.inner.CompletedChunks(ctx, after, limit)
}

func (c *crashSink) Close(ctx context.Context) error { return c.inner.Close(ctx) }

// runRecord describes one pipeline run, for failure messages.
type runRecord struct {
	format       string
	batchRecords int
	batchEvents  int
	crashAt      int
	crashBefore  bool
	crashed      bool
	applies      int // successful applies
	err          error
	sum          pipeline.Summary
}

func (r runRecord) String() string {
	when := "after_commit"
	if r.crashBefore {
		when = "before_commit"
	}
	s := fmt.Sprintf("format=%s batch_records=%d batch_events=%d crash_at=%d(%s) crashed=%v records=%d events=%d already_stored=%d logged=%d dead=%v",
		r.format, r.batchRecords, r.batchEvents, r.crashAt, when, r.crashed, r.sum.Records, r.sum.Events, r.sum.AlreadyStored, r.sum.Logged, r.sum.Dead)
	if r.err != nil {
		s += " err=" + r.err.Error()
	}
	return s
}

func (s *scenario) sinkOptions() duckdb.Options {
	return duckdb.Options{Path: s.db, DeadLetterTable: true, SoftDelete: s.soft, TableNaming: s.naming}
}

func (s *scenario) openSink(t *testing.T) *duckdb.Sink {
	t.Helper()
	snk, err := duckdb.Open(context.Background(), s.sinkOptions())
	if err != nil {
		t.Fatalf("open sink: %v", err)
	}
	return snk
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// runSpec is one pipeline run over files into a DuckDB database.
type runSpec struct {
	files        []string
	sink         duckdb.Options
	format       string // decode format
	keys         *change.Keys
	batchRecords int  // file source records per Read
	batchEvents  int  // pipeline BatchMaxEvents
	crashAt      int  // crash after this successful Apply; 0 never
	crashBefore  bool // crash in the crashAt-th Apply, before it commits
}

// runPipeline runs the real pipeline once, from the stored checkpoints, with
// a new decoder and file source, and returns what happened and the
// checkpoints stored at the end.
func runPipeline(t *testing.T, spec runSpec) (runRecord, []change.Checkpoint) {
	t.Helper()
	rec := runRecord{format: spec.format, batchRecords: spec.batchRecords, batchEvents: spec.batchEvents, crashAt: spec.crashAt, crashBefore: spec.crashBefore}
	dec, err := decode.New(decode.Options{Format: spec.format, Keys: spec.keys})
	if err != nil {
		t.Fatal(err)
	}
	src, err := file.Open(spec.files, file.Options{BatchRecords: spec.batchRecords, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	snk, err := duckdb.Open(context.Background(), spec.sink)
	if err != nil {
		t.Fatalf("open sink: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cs := &crashSink{inner: snk, crashAt: spec.crashAt, before: spec.crashBefore, cancel: cancel}
	rec.sum, rec.err = pipeline.Run(ctx, pipeline.Config{
		Source: src, Decoder: dec, Sink: cs,
		BatchMaxEvents:  spec.batchEvents,
		BatchMaxWait:    time.Hour, // batches are cut by size only: runs are reproducible
		MaxAttempts:     2,
		RetryInitial:    time.Millisecond,
		RetryMax:        2 * time.Millisecond,
		ShutdownTimeout: 30 * time.Millisecond,
		ExpireEvery:     time.Hour,
		Logger:          quiet,
	})
	rec.crashed, rec.applies = cs.crashed, cs.applies
	cps, err := snk.Checkpoints(context.Background(), "")
	if err != nil {
		t.Fatalf("read checkpoints: %v", err)
	}
	if err := snk.Close(context.Background()); err != nil {
		t.Fatalf("close sink: %v", err)
	}
	return rec, cps
}

// logUniform draws an integer in [1, n], each order of magnitude alike:
// small batches (where crash bugs hide) stay frequent when n is large.
func logUniform(rng *rand.Rand, n int) int {
	return min(n, max(1, int(math.Exp(rng.Float64()*math.Log(float64(n)+1)))))
}

// run crashes the pipeline s.crashes times at random commits, restarting
// each time with a new decoder, source and sink on the same database, then
// runs it to the end. Batch sizes and the decode format (auto or explicit)
// are drawn for every run. At least one crash always happens. It returns the
// runs, for reports.
func (s *scenario) run(t *testing.T, items int) []runRecord {
	t.Helper()
	var runs []runRecord
	total := s.totalLines()
	stored, crashes := 0, 0
	for planned := 0; ; planned++ {
		spec := runSpec{
			files: s.files, sink: s.sinkOptions(), format: decode.FormatAuto, keys: s.keys,
			batchRecords: logUniform(s.rng, s.maxBatch),
			batchEvents:  logUniform(s.rng, s.maxBatch),
		}
		if s.rng.IntN(2) == 0 {
			spec.format = string(s.v.format)
		}
		if planned < s.crashes {
			// Aim the crash anywhere in what is left: a batch is applied
			// about every batchEvents events and dead letters.
			left := items * (total - stored) / max(total, 1)
			spec.crashAt = 1 + s.rng.IntN(max(1, left/spec.batchEvents*9/10))
			// Mostly between commit and ack, the case that matters;
			// sometimes before the commit.
			spec.crashBefore = s.rng.IntN(5) == 0
		}
		r, cps := runPipeline(t, spec)
		runs = append(runs, r)
		stored = storedLines(cps)
		if r.crashed {
			crashes++
			continue
		}
		if r.err != nil {
			t.Fatalf("seed %d %s: run %d failed without a crash: %v\nruns:\n%s", s.seed, s.v.name, len(runs), r.err, showRuns(runs))
		}
		if r.sum.Retries != 0 || r.sum.Bisects != 0 {
			t.Errorf("seed %d %s: clean run retried %d times and bisected %d times", s.seed, s.v.name, r.sum.Retries, r.sum.Bisects)
		}
		if crashes > 0 {
			return runs
		}
		// The first planned crash lay beyond the end: start over on an
		// empty database with the same batching, which makes the same
		// applies, and crash within them.
		for _, f := range []string{s.db, s.db + ".wal"} {
			if err := os.Remove(f); err != nil && !os.IsNotExist(err) {
				t.Fatal(err)
			}
		}
		spec.crashAt = 1 + s.rng.IntN(max(1, r.applies))
		r, cps = runPipeline(t, spec)
		runs = append(runs, r)
		stored = storedLines(cps)
		if !r.crashed {
			t.Fatalf("seed %d %s: a fresh run with the same batching did not reach apply %d:\n%s", s.seed, s.v.name, spec.crashAt, showRuns(runs))
		}
		crashes++
	}
}

// storedLines is the number of lines checkpoints cover.
func storedLines(cps []change.Checkpoint) int {
	n := 0
	for _, cp := range cps {
		off := cp.Applied.Offset
		if cp.Held {
			off = cp.Resume.Offset
		}
		v, _ := strconv.Atoi(off)
		n += v
	}
	return n
}

func showRuns(runs []runRecord) string {
	var b strings.Builder
	for i, r := range runs {
		fmt.Fprintf(&b, "  run %d: %s\n", i+1, r)
	}
	return b.String()
}

// totalLines is the number of lines of all files.
func (s *scenario) totalLines() int {
	n := 0
	for _, us := range s.units {
		if len(us) > 0 {
			last := us[len(us)-1]
			n += last.line + strings.Count(last.text, "\n")
		}
	}
	return n
}
