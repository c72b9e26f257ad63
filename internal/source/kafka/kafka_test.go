package kafka

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/cdcflow/cdcflow/internal/change"
)

// TestDeliversEveryRecordOnceInOrder reads three partitions to the end and
// checks each record arrives once, in offset order per partition, with its
// key, value (nil for tombstones) and position; then that the group commit
// and the lag reflect the acks.
func TestDeliversEveryRecordOnceInOrder(t *testing.T) {
	const topic, parts, n = "orders", 3, 100
	k := newCluster(t, nil, kfake.SeedTopics(parts, topic))
	for p := range int32(parts) {
		k.produce(t, topic, p, 0, n, 10)
	}
	s := open(t, k.options("g-order", topic))

	all := readAll(t, s, parts*n)
	next := map[int32]int64{}
	for _, r := range all {
		p, off := partOf(t, r), offsetOf(t, r)
		if r.Position.Source != topic {
			t.Fatalf("position %v: source is not the topic", r.Position)
		}
		if off != next[p] {
			t.Fatalf("partition %d: got offset %d, want %d (every record once, in order)", p, off, next[p])
		}
		next[p]++
		if want := "k" + strconv.FormatInt(off, 10); string(r.Key) != want {
			t.Errorf("%v: key %q, want %q", r.Position, r.Key, want)
		}
		if off%10 == 0 {
			if r.Data != nil {
				t.Errorf("%v: tombstone data %q, want nil", r.Position, r.Data)
			}
		} else if want := value(topic, p, int(off)); string(r.Data) != want {
			t.Errorf("%v: data %q, want %q", r.Position, r.Data, want)
		}
	}
	for p := range int32(parts) {
		if got := k.committed(t, "g-order", topic, p); got != n {
			t.Errorf("partition %d: group committed %d, want %d", p, got, n)
		}
		if !s.Assigned(topic, p) || s.Epoch(topic, p) == 0 {
			t.Errorf("partition %d: not reported assigned", p)
		}
	}
	lag := s.Lag()
	for p := range int32(parts) {
		if l, ok := lag[topic][p]; !ok || l != 0 {
			t.Errorf("lag of partition %d = %d (known %v), want 0", p, l, ok)
		}
	}
}

// TestStartsFromSinkCheckpoints checks where each partition starts: after
// Applied, at Resume when pieces were held, at the group commit without a
// checkpoint, and at Start without either, whether checkpoints come from
// Options.Checkpoints or from Resume.
func TestStartsFromSinkCheckpoints(t *testing.T) {
	const topic, n = "cdc", 20
	cps := []change.Checkpoint{
		{Source: topic, Partition: "0", Applied: change.Position{Source: topic, Partition: "0", Offset: "9"}},
		{Source: topic, Partition: "1", Applied: change.Position{Source: topic, Partition: "1", Offset: "15"},
			Held: true, Resume: change.Position{Source: topic, Partition: "1", Offset: "5"}},
		{Source: "other", Partition: "2", Applied: change.Position{Source: "other", Partition: "2", Offset: "18"}},
	}
	// Partition 2 has a group commit at 7 and no checkpoint of this topic;
	// partition 3 has nothing.
	want := map[int32]int64{0: 10, 1: 5, 2: 7, 3: 0}

	for _, mode := range []string{"checkpoints func", "resume"} {
		t.Run(mode, func(t *testing.T) {
			k := newCluster(t, nil, kfake.SeedTopics(4, topic))
			for p := range int32(4) {
				k.produce(t, topic, p, 0, n, 0)
			}
			group := "g-restart"
			var os kadm.Offsets
			os.AddOffset(topic, 2, 7, -1)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if _, err := k.adm.CommitOffsets(ctx, group, os); err != nil {
				t.Fatal(err)
			}
			opts := k.options(group, topic)
			if mode == "checkpoints func" {
				opts.Checkpoints = func(context.Context, string) ([]change.Checkpoint, error) { return cps, nil }
			}
			s := open(t, opts)
			if mode == "resume" {
				if err := s.Resume(ctx, cps); err != nil {
					t.Fatal(err)
				}
			}
			total := 0
			for _, first := range want {
				total += n - int(first)
			}
			next := map[int32]int64{}
			for p, first := range want {
				next[p] = first
			}
			for _, r := range readAll(t, s, total) {
				p, off := partOf(t, r), offsetOf(t, r)
				if off != next[p] {
					t.Fatalf("partition %d: got offset %d, want %d", p, off, next[p])
				}
				next[p]++
			}
		})
	}
}

// TestStartPolicy checks earliest and latest for partitions without any
// stored position.
func TestStartPolicy(t *testing.T) {
	const topic, old = "events", 10
	for _, start := range []string{StartEarliest, StartLatest} {
		t.Run(start, func(t *testing.T) {
			k := newCluster(t, nil, kfake.SeedTopics(1, topic))
			k.produce(t, topic, 0, 0, old, 0)
			opts := k.options("g-"+start, topic)
			opts.Start = start
			s := open(t, opts)

			if start == StartEarliest {
				if first := offsetOf(t, mustRead(t, s).raws[0]); first != 0 {
					t.Fatalf("earliest: first offset %d, want 0", first)
				}
				return
			}
			// Latest: the position is resolved once the partition is
			// assigned; keep producing until a record arrives, then every
			// record delivered must be new and none skipped after it.
			type result struct {
				raws []change.Raw
				err  error
			}
			got := make(chan result, 1)
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
				defer cancel()
				raws, ack, err := s.Read(ctx)
				if err == nil {
					err = ack(ctx, nil)
				}
				got <- result{raws, err}
			}()
			produced := old
			var res result
		wait:
			for {
				select {
				case res = <-got:
					break wait
				case <-time.After(100 * time.Millisecond):
					k.produce(t, topic, 0, produced, produced+1, 0)
					produced++
				}
			}
			if res.err != nil {
				t.Fatal(res.err)
			}
			first := offsetOf(t, res.raws[0])
			if first < old {
				t.Fatalf("latest: delivered old offset %d (records before %d existed at start)", first, old)
			}
			for i, r := range res.raws {
				if offsetOf(t, r) != first+int64(i) {
					t.Fatalf("latest: offsets not contiguous: %v", res.raws)
				}
			}
		})
	}
}

// TestNegativeAckRewinds checks that ack(err) redelivers from the first
// unacknowledged offset, that later in-flight batches are redelivered too
// (their acks then commit nothing), and that nothing is skipped.
func TestNegativeAckRewinds(t *testing.T) {
	const topic, n = "rewind", 40
	tests := []struct {
		name string
		// run gets three in-flight batches a, b, c and returns the offset
		// the next Read must start at.
		run func(t *testing.T, k *cluster, a, b, c read) int64
	}{
		{"nack the middle batch after acking the first and last", func(t *testing.T, k *cluster, a, b, c read) int64 {
			ackOK(t, a)
			_, aEnd := rangeOf(t, a)
			if got := k.committed(t, "g-"+t.Name(), topic, 0); got != aEnd+1 {
				t.Fatalf("after ack of the first batch: committed %d, want %d", got, aEnd+1)
			}
			ackOK(t, c) // out of order: b is not acknowledged, nothing to commit
			if err := b.ack(context.Background(), errors.New("sink down")); err != nil {
				t.Fatal(err)
			}
			if got := k.committed(t, "g-"+t.Name(), topic, 0); got != aEnd+1 {
				t.Fatalf("after nack: committed %d, want %d", got, aEnd+1)
			}
			from, _ := rangeOf(t, b)
			return from
		}},
		{"nack the first batch, then ack the later ones", func(t *testing.T, k *cluster, a, b, c read) int64 {
			if err := a.ack(context.Background(), errors.New("sink down")); err != nil {
				t.Fatal(err)
			}
			ackOK(t, b) // dropped by the rewind: commits nothing
			ackOK(t, c)
			if got := k.committed(t, "g-"+t.Name(), topic, 0); got != -1 {
				t.Fatalf("acks of batches dropped by a rewind committed %d", got)
			}
			return 0
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := newCluster(t, nil, kfake.SeedTopics(1, topic))
			k.produce(t, topic, 0, 0, n, 0)
			opts := k.options("g-"+t.Name(), topic)
			opts.MaxBatchRecords = 5
			s := open(t, opts)
			a, b, c := mustRead(t, s), mustRead(t, s), mustRead(t, s)
			_, aEnd := rangeOf(t, a)
			bFrom, bEnd := rangeOf(t, b)
			cFrom, _ := rangeOf(t, c)
			if bFrom != aEnd+1 || cFrom != bEnd+1 {
				t.Fatalf("batches not contiguous: %v %v %v", a.raws, b.raws, c.raws)
			}
			want := tt.run(t, k, a, b, c)
			for want < n {
				r := mustRead(t, s)
				for _, raw := range r.raws {
					if off := offsetOf(t, raw); off != want {
						t.Fatalf("after rewind: got offset %d, want %d", off, want)
					}
					want++
				}
				ackOK(t, r)
			}
			if got := k.committed(t, "g-"+t.Name(), topic, 0); got != n {
				t.Fatalf("final commit %d, want %d", got, n)
			}
		})
	}
}

// TestOutOfOrderAcksCommitContiguousRanges acknowledges later batches first:
// nothing is committed until the first batch is acknowledged, then
// everything up to the last contiguous one. Lag follows the commit.
func TestOutOfOrderAcksCommitContiguousRanges(t *testing.T) {
	const topic, group, n = "ooo", "g-ooo", 30
	k := newCluster(t, nil, kfake.SeedTopics(1, topic))
	k.produce(t, topic, 0, 0, n, 0)
	opts := k.options(group, topic)
	opts.MaxBatchRecords = 5
	s := open(t, opts)
	a, b, c := mustRead(t, s), mustRead(t, s), mustRead(t, s)
	ackOK(t, c)
	ackOK(t, b)
	if got := k.committed(t, group, topic, 0); got != -1 {
		t.Fatalf("committed %d before the first batch was acknowledged", got)
	}
	if l := s.Lag()[topic][0]; l != n {
		t.Fatalf("lag %d before any contiguous ack, want %d", l, n)
	}
	ackOK(t, a)
	_, cEnd := rangeOf(t, c)
	if got := k.committed(t, group, topic, 0); got != cEnd+1 {
		t.Fatalf("committed %d, want %d (through the last contiguous batch)", got, cEnd+1)
	}
	if l := s.Lag()[topic][0]; l != n-(cEnd+1) {
		t.Fatalf("lag %d, want %d", l, n-(cEnd+1))
	}
	if err := a.ack(context.Background(), nil); err == nil {
		t.Fatal("a second ack of the same batch must fail")
	}
}

// TestMaxInFlightBlocks checks that Read waits while MaxInFlight batches are
// unacknowledged and continues once one is acknowledged.
func TestMaxInFlightBlocks(t *testing.T) {
	const topic, n = "cap", 30
	k := newCluster(t, nil, kfake.SeedTopics(1, topic))
	k.produce(t, topic, 0, 0, n, 0)
	opts := k.options("g-cap", topic)
	opts.MaxBatchRecords, opts.MaxInFlight = 5, 2
	s := open(t, opts)
	a, b := mustRead(t, s), mustRead(t, s)

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	_, _, err := s.Read(ctx)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Read at the cap returned %v, want the context's deadline", err)
	}

	got := make(chan read, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		raws, ack, err := s.Read(ctx)
		if err != nil {
			t.Errorf("Read: %v", err)
		}
		got <- read{raws, ack}
	}()
	select {
	case r := <-got:
		t.Fatalf("Read returned %d records while the cap was reached", len(r.raws))
	case <-time.After(200 * time.Millisecond):
	}
	ackOK(t, a)
	r := <-got
	_, bEnd := rangeOf(t, b)
	if first := offsetOf(t, r.raws[0]); first != bEnd+1 {
		t.Fatalf("Read after the ack starts at %d, want %d", first, bEnd+1)
	}
}

// TestAckAfterCloseCommitsNothing checks that an ack arriving after Close
// (its partitions abandoned) commits nothing and is not an error.
func TestAckAfterCloseCommitsNothing(t *testing.T) {
	const topic, group = "late", "g-late"
	k := newCluster(t, nil, kfake.SeedTopics(1, topic))
	k.produce(t, topic, 0, 0, 10, 0)
	s := open(t, k.options(group, topic))
	r := mustRead(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.ack(ctx, nil); err != nil {
		t.Fatalf("late ack: %v", err)
	}
	if got := k.committed(t, group, topic, 0); got != -1 {
		t.Fatalf("late ack committed %d", got)
	}
	if _, _, err := s.Read(ctx); err == nil {
		t.Fatal("Read after Close must fail")
	}
}

// TestRevokeAbandonsUnackedBatches lets a revoke time out on an
// unacknowledged batch: its later ack commits nothing for the partition that
// moved, and the new owner reads that partition from the start.
func TestRevokeAbandonsUnackedBatches(t *testing.T) {
	const topic, group, n = "moving", "g-moving", 10
	k := newCluster(t, nil, kfake.SeedTopics(2, topic))
	for p := range int32(2) {
		k.produce(t, topic, p, 0, n, 0)
	}
	opts := k.options(group, topic)
	opts.RevokeWait = 200 * time.Millisecond
	s1 := open(t, opts)
	var held []read
	seen := map[int32]bool{}
	for len(seen) < 2 {
		r := mustRead(t, s1)
		held = append(held, r)
		for _, raw := range r.raws {
			seen[partOf(t, raw)] = true
		}
	}

	s2 := open(t, opts)
	got := make(chan read, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		raws, ack, err := s2.Read(ctx)
		if err != nil {
			t.Errorf("second member Read: %v", err)
		}
		got <- read{raws, ack}
	}()
	var moved int32 = -1
	eventually(t, "a partition to move to the second member", func() bool {
		for p := range int32(2) {
			if !s1.Assigned(topic, p) {
				moved = p
				return true
			}
		}
		return false
	})
	for _, r := range held {
		ackOK(t, r)
	}
	if got := k.committed(t, group, topic, moved); got != -1 {
		t.Fatalf("ack of an abandoned batch committed %d for the moved partition %d", got, moved)
	}
	if got := k.committed(t, group, topic, 1-moved); got != n {
		t.Fatalf("kept partition %d committed %d, want %d", 1-moved, got, n)
	}
	r := <-got
	if p, off := partOf(t, r.raws[0]), offsetOf(t, r.raws[0]); p != moved || off != 0 {
		t.Fatalf("new owner starts at %d[%d], want %d[0]", p, off, moved)
	}
}

// TestTwoMembersShareAndTakeOver runs two members of one group with a
// shared sink: they split the partitions; when one leaves, the other takes
// its partitions over from the sink's checkpoints. No record is lost, and no
// stored record is delivered again.
func TestTwoMembersShareAndTakeOver(t *testing.T) {
	const topic, group, parts, step = "shared", "g-shared", 4, 50
	k := newCluster(t, nil, kfake.SeedTopics(parts, topic))
	produced := 0
	produceStep := func() {
		for p := range int32(parts) {
			k.produce(t, topic, p, produced, produced+step, 0)
		}
		produced += step
	}
	produceStep()
	st := newSinkStore()
	opts := k.options(group, topic)
	opts.Checkpoints = st.checkpoints

	ctx1, stop1 := context.WithCancel(context.Background())
	defer stop1()
	s1 := open(t, opts)
	done1 := consume(ctx1, t, "one", s1, st)
	eventually(t, "the first member to own every partition", func() bool {
		for p := range int32(parts) {
			if !s1.Assigned(topic, p) {
				return false
			}
		}
		return true
	})
	produceStep()

	ctx2, stop2 := context.WithCancel(context.Background())
	defer stop2()
	s2 := open(t, opts)
	done2 := consume(ctx2, t, "two", s2, st)
	owned := func(s *Source) []int32 {
		var ps []int32
		for p := range int32(parts) {
			if s.Assigned(topic, p) {
				ps = append(ps, p)
			}
		}
		return ps
	}
	eventually(t, "the members to split the partitions", func() bool {
		return len(owned(s1)) == parts/2 && len(owned(s2)) == parts/2
	})
	movedToTwo := owned(s2)
	produceStep()
	eventually(t, "the records so far to be stored", func() bool { return st.complete(topic, parts, produced) })

	// The second member leaves; the first takes its partitions over.
	stop2()
	<-done2
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s2.Close(ctx); err != nil {
		t.Fatalf("close second member: %v", err)
	}
	eventually(t, "the first member to own every partition again", func() bool { return len(owned(s1)) == parts })
	produceStep()
	eventually(t, "every record to be stored", func() bool { return st.complete(topic, parts, produced) })
	stop1()
	<-done1

	st.mu.Lock()
	defer st.mu.Unlock()
	for _, v := range st.violations {
		t.Error(v)
	}
	for _, p := range movedToTwo {
		if st.by[tp{topic, p}]["two"] == 0 {
			t.Errorf("partition %d moved to the second member but it stored none of its records", p)
		}
	}
	for p := range int32(parts) {
		if got := st.applied(tp{topic, p}); got != int64(produced-1) {
			t.Errorf("partition %d checkpoint %d, want %d", p, got, produced-1)
		}
		dups := 0
		for _, times := range st.stored[tp{topic, p}] {
			dups += times - 1
		}
		// The consumers acknowledge promptly, well within RevokeWait: a
		// revoke waits for their in-flight batches instead of abandoning
		// them, so nothing is read twice.
		if dups > 0 {
			t.Errorf("partition %d: %d records stored twice", p, dups)
		}
	}
}

// TestTopicRegex consumes every topic matching the expression, including
// one created while running, and none other.
func TestTopicRegex(t *testing.T) {
	k := newCluster(t, nil, kfake.SeedTopics(2, "cdc.orders"), kfake.SeedTopics(1, "cdc.items", "other"))
	for _, tp := range []struct {
		topic string
		parts int32
	}{{"cdc.orders", 2}, {"cdc.items", 1}, {"other", 1}} {
		for p := range tp.parts {
			k.produce(t, tp.topic, p, 0, 5, 0)
		}
	}
	opts := k.options("g-regex")
	opts.Topics, opts.TopicRegex = nil, `^cdc\.`
	s := open(t, opts)
	count := map[string]int{}
	for _, r := range readAll(t, s, 15) {
		count[r.Position.Source]++
	}
	if count["cdc.orders"] != 10 || count["cdc.items"] != 5 || count["other"] != 0 {
		t.Fatalf("records per topic: %v", count)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := k.adm.CreateTopic(ctx, 1, 1, nil, "cdc.new"); err != nil {
		t.Fatal(err)
	}
	k.produce(t, "cdc.new", 0, 0, 3, 0)
	r := readAll(t, s, 3)
	for _, raw := range r {
		if raw.Position.Source != "cdc.new" {
			t.Fatalf("unexpected record %v", raw.Position)
		}
	}
	if !slices.Contains(topicsOf(s.Lag()), "cdc.new") {
		t.Errorf("lag does not list the new topic: %v", s.Lag())
	}
}

func topicsOf(lag map[string]map[int32]int64) []string {
	var ts []string
	for t := range lag {
		ts = append(ts, t)
	}
	return ts
}

// TestCheckpointErrorRetries checks that a failing Checkpoints call does
// not start the partition anywhere: once it succeeds, consumption starts
// from the checkpoint.
func TestCheckpointErrorRetries(t *testing.T) {
	const topic = "flaky"
	k := newCluster(t, nil, kfake.SeedTopics(1, topic))
	k.produce(t, topic, 0, 0, 10, 0)
	opts := k.options("g-flaky", topic)
	calls := 0
	opts.Checkpoints = func(context.Context, string) ([]change.Checkpoint, error) {
		calls++
		if calls == 1 {
			return nil, fmt.Errorf("sink unavailable")
		}
		return []change.Checkpoint{{Source: topic, Partition: "0", Applied: change.Position{Source: topic, Partition: "0", Offset: "4"}}}, nil
	}
	s := open(t, opts)
	if first := offsetOf(t, mustRead(t, s).raws[0]); first != 5 {
		t.Fatalf("first offset %d, want 5", first)
	}
	if calls < 2 {
		t.Fatalf("Checkpoints called %d times, want a retry", calls)
	}
}

// TestPolledBeforeRewindNotDelivered polls a batch in the background (as a
// Read whose ctx ended would leave it), then rewinds its partition: the
// next Read must restart at the rewind point, not deliver the stale batch.
func TestPolledBeforeRewindNotDelivered(t *testing.T) {
	const topic, n = "stale", 20
	k := newCluster(t, nil, kfake.SeedTopics(1, topic))
	k.produce(t, topic, 0, 0, n, 0)
	opts := k.options("g-stale", topic)
	opts.MaxBatchRecords = 5
	s := open(t, opts)
	a := mustRead(t, s)

	s.mu.Lock()
	s.startPollLocked(s.cl)
	polling := s.polling
	s.mu.Unlock()
	<-polling
	s.mu.Lock()
	stashed := s.ready != nil && len(s.ready.raws) > 0
	s.mu.Unlock()
	if !stashed {
		t.Fatal("the background poll stashed nothing")
	}

	if err := a.ack(context.Background(), errors.New("sink down")); err != nil {
		t.Fatal(err)
	}
	want := int64(0)
	for want < n {
		r := mustRead(t, s)
		for _, raw := range r.raws {
			if off := offsetOf(t, raw); off != want {
				t.Fatalf("got offset %d, want %d", off, want)
			}
			want++
		}
		ackOK(t, r)
	}
}
