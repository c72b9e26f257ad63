package pipeline

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"testing"

	"github.com/cdcflow/cdcflow/internal/change"
	"github.com/cdcflow/cdcflow/internal/decode"
	"github.com/cdcflow/cdcflow/internal/source"
)

// leasedBatch is one batch a leasedSource delivers: records and the lease
// epoch each partition was read under.
type leasedBatch struct {
	raws   []change.Raw
	epochs map[string]int64
}

// leasedSource is a source fed by the test whose partitions are leased:
// the test says under which epoch each batch was read and which epoch the
// source holds now (LeaseEpoch), as kinesis.Source reports them.
type leasedSource struct {
	in   chan leasedBatch
	mu   sync.Mutex
	last map[string]int64 // ReadEpochs
	now  map[string]int64 // LeaseEpoch
}

var _ LeasedSource = (*leasedSource)(nil)

func newLeasedSource() *leasedSource {
	return &leasedSource{in: make(chan leasedBatch), now: map[string]int64{}}
}

func (s *leasedSource) Read(ctx context.Context) ([]change.Raw, source.AckFunc, error) {
	select {
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	case b, ok := <-s.in:
		if !ok {
			return nil, nil, source.ErrEndOfInput
		}
		s.mu.Lock()
		s.last = b.epochs
		s.mu.Unlock()
		return b.raws, func(context.Context, error) error { return nil }, nil
	}
}

func (s *leasedSource) Close(context.Context) error { return nil }
func (s *leasedSource) LeaseOwner() string          { return "me" }

func (s *leasedSource) ReadEpochs() map[string]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

func (s *leasedSource) LeaseEpoch(p string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.now[p]
}

func (s *leasedSource) hold(p string, epoch int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.now[p] = epoch
}

// shardRaws returns DSQL records of rows first..last on a partition; the
// record of row i is at offset i.
func shardRaws(partition string, first, last int) []change.Raw {
	var out []change.Raw
	for i := first; i <= last; i++ {
		out = append(out, change.Raw{Data: []byte(full("orders", i, "")),
			Position: change.Position{Source: "st", Partition: partition, Offset: strconv.Itoa(i)}})
	}
	return out
}

// fencingSink is a memSink that fences like a sink with a lease table:
// a partition whose checkpoint names a lease other than the one in held is
// not stored, and reported in ApplyResult.Fenced.
type fencingSink struct {
	*memSink
	held map[string]int64 // partition -> epoch the lease table has for "me"
}

func (s *fencingSink) Apply(ctx context.Context, b *change.Batch) (change.ApplyResult, error) {
	lost := map[string]bool{}
	for _, c := range b.Checkpoints {
		if c.LeaseEpoch > 0 && (c.LeaseOwner != "me" || s.held[c.Partition] != c.LeaseEpoch) {
			lost[c.Partition] = true
		}
	}
	kept := &change.Batch{}
	for _, e := range b.Events {
		if !lost[e.Position.Partition] {
			kept.Events = append(kept.Events, e)
		}
	}
	for _, c := range b.Checkpoints {
		if !lost[c.Partition] {
			kept.Checkpoints = append(kept.Checkpoints, c)
		}
	}
	res, err := s.memSink.Apply(ctx, kept)
	for p := range lost {
		res.Fenced = append(res.Fenced, "st/"+p)
	}
	return res, err
}

// runLeased runs the pipeline over the batches and returns the summary.
func runLeased(t *testing.T, src *leasedSource, snk interface {
	Apply(context.Context, *change.Batch) (change.ApplyResult, error)
	Close(context.Context) error
}, steps ...func()) Summary {
	t.Helper()
	cfg := baseConfig(src, newDecoder(t, decode.Options{}), snk)
	done := make(chan Summary, 1)
	errc := make(chan error, 1)
	go func() {
		sum, err := Run(context.Background(), cfg)
		errc <- err
		done <- sum
	}()
	for _, step := range steps {
		step()
	}
	close(src.in)
	if err := guard(t, errc, "Run to return"); err != nil {
		t.Fatal(err)
	}
	return <-done
}

func storedOffsets(st *memState, partition string) []string {
	var out []string
	for _, e := range st.events {
		if e.Position.Partition == partition {
			out = append(out, e.Position.Offset)
		}
	}
	return out
}

func offsets(first, last int) []string {
	var out []string
	for i := first; i <= last; i++ {
		out = append(out, strconv.Itoa(i))
	}
	return out
}

func TestLeasedCheckpoints(t *testing.T) {
	t.Run("checkpoints carry the lease they were read under", func(t *testing.T) {
		src, st := newLeasedSource(), newState()
		src.hold("s0", 4)
		sum := runLeased(t, src, &memSink{st: st}, func() {
			src.in <- leasedBatch{shardRaws("s0", 1, 3), map[string]int64{"s0": 4}}
		})
		cp := st.cps[partKey{"st", "s0"}]
		if cp.LeaseOwner != "me" || cp.LeaseEpoch != 4 || cp.Applied.Offset != "3" || sum.Fenced != 0 {
			t.Fatalf("checkpoint %+v, fenced %d; want applied at 3 under me/4", cp, sum.Fenced)
		}
	})

	t.Run("a partition no longer held is dropped before Apply", func(t *testing.T) {
		src, st := newLeasedSource(), newState()
		src.hold("s1", 1) // s0 was lost after its records were read
		sum := runLeased(t, src, &memSink{st: st}, func() {
			src.in <- leasedBatch{append(shardRaws("s0", 1, 3), shardRaws("s1", 1, 2)...), map[string]int64{"s0": 1, "s1": 1}}
		})
		if got := storedOffsets(st, "s0"); len(got) != 0 {
			t.Errorf("stored %v of the lost partition", got)
		}
		if _, ok := st.cps[partKey{"st", "s0"}]; ok {
			t.Errorf("stored a checkpoint of the lost partition")
		}
		if got := storedOffsets(st, "s1"); !slices.Equal(got, offsets(1, 2)) {
			t.Errorf("stored %v of the held partition, want 1..2", got)
		}
		if sum.Fenced != 1 {
			t.Errorf("Summary.Fenced = %d, want 1", sum.Fenced)
		}
	})

	t.Run("a partition taken again resumes its checkpoint from the new lease's records", func(t *testing.T) {
		// Records 1..5 read under epoch 1; the lease is lost, another owner
		// stores up to 2, and this source takes it again (epoch 3) and reads
		// from 3: the checkpoint must be 4 after 3..4, not 5.
		src, st := newLeasedSource(), newState()
		src.hold("s0", 1)
		sum := runLeased(t, src, &memSink{st: st}, func() {
			src.in <- leasedBatch{shardRaws("s0", 1, 5), map[string]int64{"s0": 1}}
			src.hold("s0", 3)
			src.in <- leasedBatch{shardRaws("s0", 3, 4), map[string]int64{"s0": 3}}
		})
		if got := storedOffsets(st, "s0"); !slices.Equal(got, offsets(3, 4)) {
			t.Errorf("stored %v, want 3..4 (1..5 read under the lost lease dropped)", got)
		}
		cp := st.cps[partKey{"st", "s0"}]
		if cp.Applied.Offset != "4" || cp.LeaseEpoch != 3 {
			t.Errorf("checkpoint %+v, want applied at 4 under epoch 3", cp)
		}
		if sum.Fenced != 1 {
			t.Errorf("Summary.Fenced = %d, want 1", sum.Fenced)
		}
	})

	t.Run("partitions the sink fences are counted", func(t *testing.T) {
		src, st := newLeasedSource(), newState()
		src.hold("s0", 1) // the source has not noticed yet that s0 moved to epoch 2
		src.hold("s1", 1)
		snk := &fencingSink{memSink: &memSink{st: st}, held: map[string]int64{"s0": 2, "s1": 1}}
		sum := runLeased(t, src, snk, func() {
			src.in <- leasedBatch{append(shardRaws("s0", 1, 2), shardRaws("s1", 1, 2)...), map[string]int64{"s0": 1, "s1": 1}}
		})
		if got := storedOffsets(st, "s0"); len(got) != 0 {
			t.Errorf("stored %v of the fenced partition", got)
		}
		if sum.Fenced != 1 || sum.Logged != 2 {
			t.Errorf("Summary fenced %d logged %d, want 1 and 2", sum.Fenced, sum.Logged)
		}
	})

	t.Run("held pieces of a lost partition are not dead-lettered here", func(t *testing.T) {
		// Row 1's set is held (one of two fragments read) when s0 is lost;
		// at the end of input the drained pieces are s0's new owner's to
		// store or dead-letter, not this process's.
		src, st := newLeasedSource(), newState()
		src.hold("s0", 1)
		src.hold("s1", 1)
		at := func(p string, off int, data string) change.Raw {
			return change.Raw{Data: []byte(data), Position: change.Position{Source: "st", Partition: p, Offset: strconv.Itoa(off)}}
		}
		cfg := baseConfig(src, newDecoder(t, decode.Options{}), &memSink{st: st})
		cfg.BatchMaxEvents = 1
		errc := make(chan error, 1)
		var sum Summary
		go func() {
			var err error
			sum, err = Run(context.Background(), cfg)
			errc <- err
		}()
		src.in <- leasedBatch{[]change.Raw{at("s0", 1, chunkedMain("orders", 1, "ck1", 2)), at("s0", 2, fragment(1, "ck1", 0))}, map[string]int64{"s0": 1}}
		src.hold("s0", 0)
		src.in <- leasedBatch{shardRaws("s1", 5, 5), map[string]int64{"s1": 1}}
		close(src.in)
		if err := guard(t, errc, "Run to return"); err != nil {
			t.Fatal(err)
		}
		for _, d := range st.dead {
			if d.Position.Partition == "s0" {
				t.Errorf("stored dead letter %s (%s) of the lost partition", d.Position, d.Reason)
			}
		}
		if got := storedOffsets(st, "s1"); !slices.Equal(got, offsets(5, 5)) {
			t.Errorf("stored %v of s1, want 5", got)
		}
		if sum.Fenced != 2 {
			t.Errorf("Summary.Fenced = %d, want 2 (the checkpoint, then the drained pieces)", sum.Fenced)
		}
	})

	t.Run("a source without leases adds none", func(t *testing.T) {
		src, st := newChanSource(), newState()
		cfg := baseConfig(src, newDecoder(t, decode.Options{}), &memSink{st: st})
		errc := make(chan error, 1)
		go func() { _, err := Run(context.Background(), cfg); errc <- err }()
		src.in <- shardRaws("s0", 1, 2)
		close(src.in)
		if err := guard(t, errc, "Run to return"); err != nil {
			t.Fatal(err)
		}
		if cp := st.cps[partKey{"st", "s0"}]; cp.LeaseEpoch != 0 || cp.LeaseOwner != "" || cp.Applied.Offset != "2" {
			t.Errorf("checkpoint %+v, want no lease", cp)
		}
	})
}
