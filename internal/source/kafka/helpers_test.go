package kafka

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/cdcflow/cdcflow/internal/change"
	"github.com/cdcflow/cdcflow/internal/source"
)

// cluster is a real in-process Kafka broker (kfake).
type cluster struct {
	addrs []string
	conn  []kgo.Opt // client options to reach it (SASL when enabled)
	cl    *kgo.Client
	adm   *kadm.Client
}

func newCluster(t *testing.T, conn []kgo.Opt, opts ...kfake.Opt) *cluster {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	k := &cluster{addrs: c.ListenAddrs(), conn: conn}
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(k.addrs...),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.AllowAutoTopicCreation(),
	}, conn...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	k.cl, k.adm = cl, kadm.NewClient(cl)
	return k
}

// value is the payload of record i of a partition.
func value(topic string, partition int32, i int) string {
	return fmt.Sprintf("%s/%d/%d", topic, partition, i)
}

// produce writes records from..to-1 to one partition; every tombstone-th
// record (when > 0) has a nil value. Offsets equal the index when a
// partition is only written by produce in order.
func (k *cluster) produce(t *testing.T, topic string, partition int32, from, to, tombstone int) {
	t.Helper()
	rs := make([]*kgo.Record, 0, to-from)
	for i := from; i < to; i++ {
		r := &kgo.Record{Topic: topic, Partition: partition, Key: []byte("k" + strconv.Itoa(i))}
		if tombstone <= 0 || i%tombstone != 0 {
			r.Value = []byte(value(topic, partition, i))
		}
		rs = append(rs, r)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := k.cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
		t.Fatalf("produce %s[%d]: %v", topic, partition, err)
	}
}

// committed returns the group's committed offset of a partition, -1 when
// there is none.
func (k *cluster) committed(t *testing.T, group, topic string, partition int32) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resps, err := k.adm.FetchOffsets(ctx, group)
	if err != nil {
		t.Fatalf("fetch offsets of %s: %v", group, err)
	}
	o, ok := resps.Lookup(topic, partition)
	if !ok || o.Err != nil {
		return -1
	}
	return o.At
}

// testOptions returns Options for the cluster with fast group heartbeats.
func (k *cluster) options(group string, topics ...string) Options {
	return Options{
		Brokers: k.addrs,
		Topics:  topics,
		Group:   group,
		extra: []kgo.Opt{kgo.HeartbeatInterval(100 * time.Millisecond), kgo.MetadataMinAge(100 * time.Millisecond), kgo.MetadataMaxAge(time.Second),
			kgo.FetchMaxWait(200 * time.Millisecond)},
	}
}

func open(t *testing.T, opts Options) *Source {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := New(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = s.Close(ctx)
	})
	return s
}

// read is one Read with a deadline; it fails the test on error.
type read struct {
	raws []change.Raw
	ack  source.AckFunc
}

func mustRead(t *testing.T, s *Source) read {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	raws, ack, err := s.Read(ctx)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	if len(raws) == 0 || ack == nil {
		t.Fatalf("Read returned %d records, ack %v", len(raws), ack != nil)
	}
	return read{raws, ack}
}

func ackOK(t *testing.T, r read) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.ack(ctx, nil); err != nil {
		t.Fatalf("ack: %v", err)
	}
}

func offsetOf(t *testing.T, r change.Raw) int64 {
	t.Helper()
	n, err := strconv.ParseInt(r.Position.Offset, 10, 64)
	if err != nil {
		t.Fatalf("position %v: %v", r.Position, err)
	}
	return n
}

func partOf(t *testing.T, r change.Raw) int32 {
	t.Helper()
	n, err := strconv.Atoi(r.Position.Partition)
	if err != nil {
		t.Fatalf("position %v: %v", r.Position, err)
	}
	return int32(n)
}

// rangeOf returns the first and last offset of a single-partition batch.
func rangeOf(t *testing.T, r read) (int64, int64) {
	t.Helper()
	return offsetOf(t, r.raws[0]), offsetOf(t, r.raws[len(r.raws)-1])
}

// readAll reads and acknowledges until want records arrived.
func readAll(t *testing.T, s *Source, want int) []change.Raw {
	t.Helper()
	var all []change.Raw
	for len(all) < want {
		r := mustRead(t, s)
		all = append(all, r.raws...)
		ackOK(t, r)
	}
	if len(all) != want {
		t.Fatalf("read %d records, want %d", len(all), want)
	}
	return all
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sinkStore plays the sink: it stores records and, in the same step, the
// checkpoint of each partition, and serves Checkpoints.
type sinkStore struct {
	mu         sync.Mutex
	cps        map[tp]change.Checkpoint
	stored     map[tp]map[int64]int // offset -> times stored
	by         map[tp]map[string]int
	violations []string
}

func newSinkStore() *sinkStore {
	return &sinkStore{cps: map[tp]change.Checkpoint{}, stored: map[tp]map[int64]int{}, by: map[tp]map[string]int{}}
}

func (st *sinkStore) checkpoints(_ context.Context, topic string) ([]change.Checkpoint, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	var out []change.Checkpoint
	for k, cp := range st.cps {
		if k.topic == topic {
			out = append(out, cp)
		}
	}
	return out, nil
}

func (st *sinkStore) applied(k tp) int64 {
	cp, ok := st.cps[k]
	if !ok {
		return -1
	}
	n, _ := strconv.ParseInt(cp.Applied.Offset, 10, 64)
	return n
}

// delivered checks that no record delivered is at or before the stored
// checkpoint of its partition: such a record was stored already, and only
// an unacknowledged (rewound or abandoned) batch may be delivered again.
func (st *sinkStore) delivered(who string, raws []change.Raw) {
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, r := range raws {
		p, _ := strconv.Atoi(r.Position.Partition)
		off, _ := strconv.ParseInt(r.Position.Offset, 10, 64)
		k := tp{r.Position.Source, int32(p)}
		if off <= st.applied(k) {
			st.violations = append(st.violations, fmt.Sprintf("%s got %v, already stored up to %d", who, r.Position, st.applied(k)))
		}
	}
}

// apply stores a batch: its records, and the checkpoints of the partitions
// the source still owns (as the pipeline must).
func (st *sinkStore) apply(who string, s *Source, raws []change.Raw) {
	st.mu.Lock()
	defer st.mu.Unlock()
	last := map[tp]change.Position{}
	for _, r := range raws {
		p, _ := strconv.Atoi(r.Position.Partition)
		off, _ := strconv.ParseInt(r.Position.Offset, 10, 64)
		k := tp{r.Position.Source, int32(p)}
		if st.stored[k] == nil {
			st.stored[k] = map[int64]int{}
			st.by[k] = map[string]int{}
		}
		st.stored[k][off]++
		st.by[k][who]++
		last[k] = r.Position
	}
	for k, pos := range last {
		if !s.Assigned(k.topic, k.partition) {
			continue
		}
		if old, ok := st.cps[k]; ok && change.ComparePosition(old.Applied, pos) >= 0 {
			continue
		}
		st.cps[k] = change.Checkpoint{Source: k.topic, Partition: pos.Partition, Applied: pos}
	}
}

func (st *sinkStore) complete(topic string, partitions int32, n int) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	for p := range partitions {
		for off := range int64(n) {
			if st.stored[tp{topic, p}][off] == 0 {
				return false
			}
		}
	}
	return true
}

// consume runs a pipeline-like loop until ctx is done: it reads, keeps up
// to two batches in flight, applies them to st in read order and acks; when
// no record arrives for a while it applies what it holds. On stop it
// negatively acknowledges what it did not apply, as the pipeline does.
func consume(ctx context.Context, t *testing.T, who string, s *Source, st *sinkStore) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		var held []read
		flush := func(keep int) {
			for len(held) > keep {
				r := held[0]
				held = held[1:]
				st.apply(who, s, r.raws)
				if err := r.ack(context.Background(), nil); err != nil {
					t.Errorf("%s ack: %v", who, err)
				}
			}
		}
		for ctx.Err() == nil {
			rctx, cancel := context.WithTimeout(ctx, 150*time.Millisecond)
			raws, ack, err := s.Read(rctx)
			cancel()
			if err != nil {
				if ctx.Err() == nil && rctx.Err() == nil {
					t.Errorf("%s Read: %v", who, err)
					return
				}
				flush(0)
				continue
			}
			st.delivered(who, raws)
			held = append(held, read{raws, ack})
			flush(2)
		}
		for _, r := range held {
			_ = r.ack(context.Background(), context.Canceled)
		}
	}()
	return done
}
