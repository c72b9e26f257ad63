package kinesis

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"

	"github.com/cdcflow/cdcflow/internal/change"
)

// memLeaser is an in-memory lease table that keeps the Leaser contract: the
// reference a sink's implementation should behave like.
type memLeaser struct {
	mu     sync.Mutex
	rows   map[string]*memLease
	owners map[string]time.Time
}

type memLease struct {
	Lease
	until time.Time
}

func newMemLeaser() *memLeaser {
	return &memLeaser{rows: map[string]*memLease{}, owners: map[string]time.Time{}}
}

func (m *memLeaser) row(stream, shard string) *memLease {
	k := stream + "/" + shard
	r := m.rows[k]
	if r == nil {
		r = &memLease{Lease: Lease{Stream: stream, Shard: shard}}
		m.rows[k] = r
	}
	return r
}

func (m *memLeaser) AcquireLease(_ context.Context, stream, shard, owner string, ttl time.Duration) (Lease, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, now := m.row(stream, shard), time.Now()
	live := r.Owner != "" && now.Before(r.until)
	switch {
	case r.Finished, live && r.Owner != owner:
		return r.Lease, false, nil
	case !live:
		r.Epoch++
	}
	r.Owner, r.until = owner, now.Add(ttl)
	return r.Lease, true, nil
}

func (m *memLeaser) holds(l Lease) *memLease {
	r := m.row(l.Stream, l.Shard)
	if r.Finished || r.Owner != l.Owner || r.Epoch != l.Epoch {
		return nil
	}
	return r
}

func (m *memLeaser) RenewLease(_ context.Context, l Lease, ttl time.Duration) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.holds(l)
	if r == nil {
		return false, nil
	}
	r.until = time.Now().Add(ttl)
	return true, nil
}

func (m *memLeaser) ReleaseLease(_ context.Context, l Lease) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r := m.holds(l); r != nil {
		r.Owner = ""
	}
	return nil
}

func (m *memLeaser) FinishLease(_ context.Context, l Lease) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r := m.holds(l); r != nil {
		r.Owner, r.Finished = "", true
	}
	return nil
}

func (m *memLeaser) Leases(_ context.Context, stream string) ([]Lease, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Lease
	now := time.Now()
	for _, r := range m.rows {
		if r.Stream == stream {
			l := r.Lease
			l.Expired = r.Owner != "" && !now.Before(r.until)
			out = append(out, l)
		}
	}
	return out, nil
}

func (m *memLeaser) Heartbeat(_ context.Context, stream, owner string, ttl time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.owners[stream+"/"+owner] = time.Now().Add(ttl)
	return nil
}

func (m *memLeaser) Owners(_ context.Context, stream string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	now := time.Now()
	for k, until := range m.owners {
		if now.Before(until) && len(k) > len(stream) && k[:len(stream)+1] == stream+"/" {
			out = append(out, k[len(stream)+1:])
		}
	}
	return out, nil
}

// memSink stores what the consumers apply: every record, and per shard the
// checkpoint, fenced like a sink would with the lease epoch.
type memSink struct {
	mu    sync.Mutex
	got   map[string][]delivered // by owner
	all   []delivered            // every record applied, in apply order
	cps   map[string]change.Checkpoint
	lease *memLeaser
}

func (k *memSink) checkpoints(_ context.Context, stream string) ([]change.Checkpoint, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []change.Checkpoint
	for _, cp := range k.cps {
		if cp.Source == stream {
			out = append(out, cp)
		}
	}
	return out, nil
}

// apply stores raws read by owner s unless its lease epoch is stale; it
// reports whether it stored them.
func (k *memSink) apply(owner string, s *Source, raws []change.Raw) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.lease.mu.Lock()
	defer k.lease.mu.Unlock()
	for _, r := range raws { // fencing: every shard's lease still held at the epoch read
		l := Lease{Stream: r.Position.Source, Shard: r.Position.Partition, Owner: owner, Epoch: s.LeaseEpoch(r.Position.Partition)}
		if l.Epoch == 0 || k.lease.holds(l) == nil {
			return false
		}
	}
	for _, r := range raws {
		k.got[owner] = append(k.got[owner], delivered{Raw: r})
		k.all = append(k.all, delivered{Raw: r})
		k.cps[r.Position.Partition] = change.Checkpoint{Source: r.Position.Source, Partition: r.Position.Partition, Applied: r.Position}
	}
	return true
}

// consume reads s until ctx ends, applying every batch to k.
func (k *memSink) consume(ctx context.Context, t *testing.T, owner string, s *Source) {
	for {
		raws, ack, err := s.Read(ctx)
		if err != nil {
			if ctx.Err() == nil {
				t.Errorf("%s: Read: %v", owner, err)
			}
			return
		}
		var aerr error
		if !k.apply(owner, s, raws) {
			aerr = errFenced
		}
		_ = ack(ctx, aerr)
	}
}

var errFenced = fencedError{}

type fencedError struct{}

func (fencedError) Error() string { return "lease lost: checkpoint fenced" }

func owned(s *Source) int {
	n := 0
	for id := range s.Shards() {
		if s.Owns(id) {
			n++
		}
	}
	return n
}

// waitFor polls cond until it holds or a minute passed (then fails).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestLeases runs two sources with one lease table on a 4-shard stream:
// they split the shards, the second takes over all of them when the first
// closes, and together they apply every record, resuming from the fenced
// checkpoints.
func TestLeases(t *testing.T) {
	srv := env(t)
	const stream = "leased"
	srv.CreateStream(t, stream, 4)
	cl := srv.Client()
	want := putRecords(t, cl, stream, shortData("l", 400), keyN)

	leaser := newMemLeaser()
	sink := &memSink{got: map[string][]delivered{}, cps: map[string]change.Checkpoint{}, lease: leaser}
	opts := func(owner string) Options {
		o := testOptions(srv.Endpoint, stream)
		o.Leases, o.Owner, o.LeaseTTL = leaser, owner, 600*time.Millisecond
		o.Checkpoints = sink.checkpoints
		o.MaxBatchRecords = 20
		return o
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()

	a := newSource(t, opts("a"))
	actx, acancel := context.WithCancel(ctx)
	wg.Add(1)
	go func() { defer wg.Done(); sink.consume(actx, t, "a", a) }()
	waitFor(t, "a to own 4 shards", func() bool { return owned(a) == 4 })

	b := newSource(t, opts("b"))
	wg.Add(1)
	go func() { defer wg.Done(); sink.consume(ctx, t, "b", b) }()
	during := putRecords(t, cl, stream, shortData("d", 300), keyN) // read while the shards move
	waitFor(t, "a and b to own 2 shards each", func() bool { return owned(a) == 2 && owned(b) == 2 })
	for id := range a.Shards() {
		if a.Owns(id) && b.Owns(id) {
			t.Fatalf("shard %s owned by both", id)
		}
	}

	acancel()
	closeCtx, ccancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer ccancel()
	if err := a.Close(closeCtx); err != nil {
		t.Fatalf("close a: %v", err)
	}
	waitFor(t, "b to own 4 shards", func() bool { return owned(b) == 4 })
	more := putRecords(t, cl, stream, shortData("m", 200), keyN)
	all := append(append(want, during...), more...)
	last := map[string]string{}
	for _, p := range all {
		last[p.Shard] = p.Seq
	}
	waitFor(t, "every shard's last record applied", func() bool {
		sink.mu.Lock()
		defer sink.mu.Unlock()
		for shard, seq := range last {
			if sink.cps[shard].Applied.Offset != seq {
				return false
			}
		}
		return true
	})
	cancel()
	wg.Wait()

	// Every record applied; each owner applied each shard in order; a
	// record is applied twice only when ownership moved.
	sink.mu.Lock()
	defer sink.mu.Unlock()
	seen := map[string]int{}
	for owner, ds := range sink.got {
		prev := map[string]change.Position{}
		for _, d := range ds {
			seen[d.Position.String()]++
			if p, ok := prev[d.Position.Partition]; ok && change.ComparePosition(d.Position, p) <= 0 {
				t.Errorf("%s applied %s after %s", owner, d.Position, p)
			}
			prev[d.Position.Partition] = d.Position
		}
	}
	for _, p := range all {
		if seen[stream+"["+p.Shard+"]@"+p.Seq] == 0 {
			t.Fatalf("record %s[%s]@%s never applied", stream, p.Shard, p.Seq)
		}
	}
	dups := 0
	for _, n := range seen {
		dups += n - 1
	}
	if dups != 0 { // fencing: a batch read under a lease given back is never stored
		t.Errorf("%d records applied twice", dups)
	}
	if len(sink.got["a"]) == 0 || len(sink.got["b"]) == 0 {
		t.Errorf("a applied %d, b %d: both should have read", len(sink.got["a"]), len(sink.got["b"]))
	}
}

// TestLeasesSplit checks that with leases a child shard is taken only once
// its parent is finished in the lease table, by whichever owner read it.
func TestLeasesSplit(t *testing.T) {
	srv := env(t)
	const stream = "leased-split"
	srv.CreateStream(t, stream, 1)
	cl := srv.Client()
	before := putRecords(t, cl, stream, shortData("p", 300), keyN)
	parent := before[0].Shard
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := cl.SplitShard(ctx, &kinesis.SplitShardInput{
		StreamName: aws.String(stream), ShardToSplit: aws.String(parent),
		NewStartingHashKey: aws.String("170141183460469231731687303715884105728"),
	}); err != nil {
		t.Fatalf("split shard: %v", err)
	}
	if err := srv.WaitActive(ctx, stream); err != nil {
		t.Fatal(err)
	}
	after := putRecords(t, cl, stream, shortData("c", 300), keyN)
	all := append(before, after...)

	leaser := newMemLeaser()
	sink := &memSink{got: map[string][]delivered{}, cps: map[string]change.Checkpoint{}, lease: leaser}
	var wg sync.WaitGroup
	rctx, rcancel := context.WithCancel(context.Background())
	defer func() { rcancel(); wg.Wait() }()
	for _, owner := range []string{"a", "b"} {
		o := testOptions(srv.Endpoint, stream)
		o.Leases, o.Owner, o.LeaseTTL = leaser, owner, 600*time.Millisecond
		o.Checkpoints = sink.checkpoints
		o.MaxBatchRecords = 25
		s := newSource(t, o)
		wg.Add(1)
		go func() { defer wg.Done(); sink.consume(rctx, t, owner, s) }()
	}
	waitFor(t, "every record applied", func() bool {
		sink.mu.Lock()
		defer sink.mu.Unlock()
		return len(sink.all) >= len(all)
	})
	rcancel()
	wg.Wait()
	sink.mu.Lock()
	defer sink.mu.Unlock()
	checkExactlyOnce(t, stream, all, sink.all)
	checkParentFirst(t, sink.all, parent)
	leases, _ := leaser.Leases(context.Background(), stream)
	for _, l := range leases {
		if l.Shard == parent && !l.Finished {
			t.Errorf("parent lease %+v not finished", l)
		}
	}
}

// TestReadEpochs checks that ReadEpochs names the lease each batch was
// read under: a batch read after the lease was stolen still carries the old
// epoch (so a sink fences it), and once the source takes the shard again
// its batches carry the new epoch and start right after the checkpoint the
// fenced sink stored.
func TestReadEpochs(t *testing.T) {
	srv := env(t)
	const stream = "epochs"
	srv.CreateStream(t, stream, 1)
	puts := putRecords(t, srv.Client(), stream, shortData("e", 200), keyN)
	index := map[string]int{}
	for i, p := range puts {
		index[p.Seq] = i
	}
	shard := puts[0].Shard

	leaser := newMemLeaser()
	var mu sync.Mutex
	var stored []change.Checkpoint
	o := testOptions(srv.Endpoint, stream)
	o.Leases, o.Owner, o.LeaseTTL = leaser, "a", 600*time.Millisecond
	o.MaxBatchRecords = 20
	o.Checkpoints = func(context.Context, string) ([]change.Checkpoint, error) {
		mu.Lock()
		defer mu.Unlock()
		return append([]change.Checkpoint(nil), stored...), nil
	}
	s := newSource(t, o)
	if s.LeaseOwner() != "a" {
		t.Fatalf("LeaseOwner = %q", s.LeaseOwner())
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// read reads one batch; it stores the batch's checkpoint when the
	// batch's lease is still held, like a fencing sink.
	read := func() (epoch int64, first, last int) {
		t.Helper()
		raws, ack, err := s.Read(ctx)
		if err != nil {
			t.Fatalf("Read: %v", err)
		}
		eps := s.ReadEpochs()
		if len(eps) != 1 || eps[shard] == 0 {
			t.Fatalf("ReadEpochs = %v, want one epoch for %s", eps, shard)
		}
		epoch = eps[shard]
		first, last = index[raws[0].Position.Offset], index[raws[len(raws)-1].Position.Offset]
		leaser.mu.Lock()
		held := leaser.holds(Lease{Stream: stream, Shard: shard, Owner: "a", Epoch: epoch}) != nil
		leaser.mu.Unlock()
		if held {
			mu.Lock()
			stored = []change.Checkpoint{{Source: stream, Partition: shard, Applied: raws[len(raws)-1].Position}}
			mu.Unlock()
		}
		if err := ack(ctx, nil); err != nil {
			t.Fatal(err)
		}
		return epoch, first, last
	}
	epoch, _, storedLast := read()
	if epoch != 1 || s.LeaseEpoch(shard) != 1 {
		t.Fatalf("first batch under epoch %d, LeaseEpoch %d; want 1", epoch, s.LeaseEpoch(shard))
	}

	// A thief takes the lease (as if a's had expired) for a moment.
	leaser.mu.Lock()
	r := leaser.row(stream, shard)
	r.Owner, r.Epoch, r.until = "thief", r.Epoch+1, time.Now().Add(300*time.Millisecond)
	leaser.mu.Unlock()

	for {
		epoch, first, _ := read()
		switch epoch {
		case 1: // read ahead under the stolen lease: not stored
			continue
		case 3:
			if first != storedLast+1 {
				t.Errorf("first batch under the new lease starts at record %d, want %d (after the stored checkpoint)", first, storedLast+1)
			}
			if got := s.LeaseEpoch(shard); got != 3 {
				t.Errorf("LeaseEpoch = %d, want 3", got)
			}
			return
		default:
			t.Fatalf("batch under epoch %d, want 1 or 3", epoch)
		}
	}
}
