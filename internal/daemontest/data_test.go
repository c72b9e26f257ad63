package daemontest

import (
	"context"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/cdcflow/cdcflow/internal/change"
	"github.com/cdcflow/cdcflow/internal/testgen"
)

// recKind says what a produced record must become.
type recKind uint8

const (
	good      recKind = iota + 1 // decodes to one event: one cdc_events row
	poison                       // decodes to nothing: one dead letter
	tombstone                    // a Kafka tombstone (null value): skipped, no row
)

// outRecord is one record to produce, and what it carries.
type outRecord struct {
	partition int32
	key       []byte
	value     []byte // nil for a tombstone
	kind      recKind
	offset    int64 // assigned by the broker when produced; -1 before

	// Of a good record: the change it carries.
	table    string
	recordID string
	del      bool
}

// position is the record's stream position as the Kafka source renders it.
func (r *outRecord) position(topic string) string {
	return change.Position{Source: topic, Partition: strconv.Itoa(int(r.partition)), Offset: strconv.FormatInt(r.offset, 10)}.String()
}

// poisonValues are records no decoder accepts.
var poisonValues = []string{
	`{"type":"full","op":"c","before":null,"after":{"id":1}`, // truncated JSON
	`this is not json`,
	`{"unrelated":true,"n":1}`,
	`[1,2,3]`,
}

// stream is one topic: a generated history in one format, the records to
// produce and the state they must leave.
type stream struct {
	topic  string
	format testgen.Format
	schema string // source schema of the history's tables
	hist   *testgen.History
	enc    testgen.EncodeOptions
	final  testgen.State
	recs   []outRecord
}

// scale multiplies record counts (CDCFLOW_DAEMONTEST_SCALE, default 1).
func scale() float64 {
	if v, err := strconv.ParseFloat(os.Getenv("CDCFLOW_DAEMONTEST_SCALE"), 64); err == nil && v > 0 {
		return v
	}
	return 1
}

// streamSpec describes a stream to generate.
type streamSpec struct {
	topic     string
	format    testgen.Format
	schema    string // source schema; also the merged tables' prefix
	seed      int64
	records   int     // produce at least this many records (poison excluded)
	dbzSchema bool    // Debezium: the schema envelope
	poison    int     // poison records injected at random places
	scatter   float64 // share of records moved to another partition
	byKey     bool    // every change of a key on one partition (a hash of table and key), like Kafka's key partitioner
	updateOp  string  // DSQL: op of updates, "c" (default) or "u"
	snapshot  int     // rows read by an initial snapshot (Debezium op "r")
	keys      int     // distinct keys; 0 for testgen's default (a fifth of the changes)
}

// newStream generates a history big enough for spec.records records,
// encodes it with duplicates (15%) and in-partition reordering, moves a
// share of the records (spec.scatter; DSQL records are spread at random
// anyway) to another partition, so changes of one key arrive on several
// partitions in no particular order, and inserts poison records.
func newStream(t *testing.T, spec streamSpec) *stream {
	t.Helper()
	s, err := genStream(spec)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// genStream is newStream without a testing.T, for use from goroutines.
func genStream(spec streamSpec) (*stream, error) {
	const dup = 0.15
	tombs := 0.0
	if spec.format == testgen.FormatDebezium {
		tombs = 0.1 // about a tenth of the changes are deletes
	}
	changes := int(float64(spec.records)/(1+dup+tombs)*1.03) + 50
	hist := testgen.Generate(spec.seed, testgen.Options{Changes: changes, Keys: spec.keys, WideColumns: 8, SnapshotRows: spec.snapshot})
	for _, tbl := range hist.Tables {
		tbl.Schema = spec.schema
	}
	s := &stream{topic: spec.topic, format: spec.format, schema: spec.schema, hist: hist}
	s.enc = testgen.EncodeOptions{
		Seed:           spec.seed + 1,
		Shards:         partitions,
		DupRatio:       dup,
		ReorderWindow:  8,
		DebeziumSchema: spec.dbzSchema,
		UpdateOp:       spec.updateOp,
		Tombstones:     spec.format == testgen.FormatDebezium,
	}
	recs, err := testgen.Encode(hist, spec.format, s.enc)
	if err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	s.final = hist.FinalFor(spec.format, s.enc)
	events := hist.Events()
	rng := rand.New(rand.NewPCG(uint64(spec.seed), 0xda3))
	dups := 0
	for _, r := range recs {
		o := outRecord{partition: int32(r.Shard), key: r.Key, value: r.Data, kind: good, offset: -1}
		if spec.scatter > 0 && rng.Float64() < spec.scatter {
			o.partition = int32((r.Shard + 1 + rng.IntN(partitions-1)) % partitions)
		}
		e := &events[r.Seq-1]
		if e.Seq != r.Seq {
			return nil, fmt.Errorf("testgen: event %d has Seq %d", r.Seq-1, e.Seq)
		}
		o.table, o.recordID, o.del = e.Table.Name, e.RecordID, e.After == nil
		switch r.Kind {
		case testgen.RecordChange:
		case testgen.RecordTombstone:
			o.kind, o.value = tombstone, nil
		default:
			return nil, fmt.Errorf("testgen: unexpected record kind %s", r.Kind)
		}
		if spec.byKey {
			h := fnv.New32a()
			h.Write([]byte(o.table + "\x00" + o.recordID))
			o.partition = int32(h.Sum32() % partitions)
		}
		if r.Duplicate {
			dups++
		}
		s.recs = append(s.recs, o)
	}
	if len(s.recs) < spec.records {
		return nil, fmt.Errorf("generated %d records for %s, want at least %d", len(s.recs), spec.topic, spec.records)
	}
	if float64(dups) < 0.10*float64(len(s.recs)) {
		return nil, fmt.Errorf("only %d duplicates in %d records of %s", dups, len(s.recs), spec.topic)
	}
	for range spec.poison {
		at := rng.IntN(len(s.recs) + 1)
		p := outRecord{partition: int32(rng.IntN(partitions)), value: []byte(poisonValues[rng.IntN(len(poisonValues))]), kind: poison, offset: -1}
		if spec.format == testgen.FormatDebezium {
			p.key = []byte(`{"id":"poison"}`)
		}
		s.recs = append(s.recs[:at], append([]outRecord{p}, s.recs[at:]...)...)
	}
	return s, nil
}

// newStreams generates the streams concurrently.
func newStreams(t *testing.T, specs ...streamSpec) []*stream {
	t.Helper()
	out := make([]*stream, len(specs))
	errs := make([]error, len(specs))
	var wg sync.WaitGroup
	for i, spec := range specs {
		wg.Go(func() { out[i], errs[i] = genStream(spec) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// counts returns how many records of each kind the stream holds.
func (s *stream) counts() (goods, poisons, tombstones int) {
	for i := range s.recs {
		switch s.recs[i].kind {
		case good:
			goods++
		case poison:
			poisons++
		case tombstone:
			tombstones++
		}
	}
	return
}

// produce sends s.recs[from:to] with franz-go, each to its partition, and
// stores the offsets the broker assigned.
func produce(t *testing.T, b *broker, s *stream, from, to int) {
	t.Helper()
	cl := b.producer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var mu sync.Mutex
	var firstErr error
	for i := from; i < to; i++ {
		r := &s.recs[i]
		cl.Produce(ctx, &kgo.Record{Topic: s.topic, Partition: r.partition, Key: r.key, Value: r.value}, func(kr *kgo.Record, err error) {
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
				return
			}
			r.offset = kr.Offset
		})
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatalf("produce to %s: flush: %v", s.topic, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if firstErr != nil {
		t.Fatalf("produce to %s: %v", s.topic, firstErr)
	}
}

// produceAll produces every record of s.
func produceAll(t *testing.T, b *broker, s *stream) { produce(t, b, s, 0, len(s.recs)) }

// describe summarises a stream for the test log.
func (s *stream) describe() string {
	g, p, tb := s.counts()
	return fmt.Sprintf("%s (%s): %d records: %d good, %d poison, %d tombstones; %d source changes, %d live rows",
		s.topic, s.format, len(s.recs), g, p, tb, len(s.hist.Events()), s.final.Rows())
}
