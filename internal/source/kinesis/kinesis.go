package kinesis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/cdcflow/cdcflow/internal/change"
	"github.com/cdcflow/cdcflow/internal/source"
)

var errClosed = errors.New("kinesis source is closed")

// Source reads every shard of one Kinesis data stream. See the package
// documentation for the position, ack and resharding contracts.
type Source struct {
	opts   Options
	name   string // stream name, for positions
	log    *slog.Logger
	client *kinesis.Client

	bg        context.Context // cancelled by Close; every background call uses it
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	kick      chan struct{} // asks the discovery loop to list shards now
	leaseKick chan struct{} // asks the lease loop for a round now

	mu       sync.Mutex
	started  bool
	shards   map[string]*shard
	order    []string // shard ids, sorted: Read's round-robin order
	next     int      // where Read's next round starts in order
	inflight int
	changed  chan struct{} // closed and replaced whenever state changes
	fatal    error         // a permanent error, returned by Read
	closed   bool
	resumed  []change.Checkpoint

	doneElsewhere map[string]bool  // shards the lease table says are finished
	readEpochs    map[string]int64 // lease epoch per shard of the last batch Read returned (lease.go)
}

var (
	_ source.Source  = (*Source)(nil)
	_ source.Resumer = (*Source)(nil)
)

// iterSpec is where a shard iterator starts.
type iterSpec struct {
	typ types.ShardIteratorType
	seq string    // AT_ / AFTER_SEQUENCE_NUMBER
	ts  time.Time // AT_TIMESTAMP
}

func (p iterSpec) String() string {
	switch p.typ {
	case types.ShardIteratorTypeAtSequenceNumber, types.ShardIteratorTypeAfterSequenceNumber:
		return string(p.typ) + " " + p.seq
	case types.ShardIteratorTypeAtTimestamp:
		return string(p.typ) + " " + p.ts.Format(time.RFC3339Nano)
	}
	return string(p.typ)
}

func after(seq string) iterSpec {
	return iterSpec{typ: types.ShardIteratorTypeAfterSequenceNumber, seq: seq}
}

// shard is the state of one shard. gen changes at every rewind, so a span
// or a fetch of an older generation is stale.
type shard struct {
	id       string
	parents  []string
	gen      uint64
	start    iterSpec  // where the shard began this run: the rewind target while nothing is acknowledged
	from     iterSpec  // where the reader acquires its next iterator
	fetched  string    // sequence number of the last record fetched in this generation; "" none
	acked    string    // every record up to this sequence number is acknowledged; "" none
	pending  *chunk    // fetched, not yet taken by Read
	spans    []*span   // in-flight chunks, in read order
	ended    bool      // the reader reached the end of this closed shard (in this generation)
	finished bool      // ended and everything delivered is acknowledged
	running  bool      // a reader goroutine reads the shard
	owned    bool      // this source may read the shard: always without leases, else while it holds the lease
	lease    Lease     // the lease held, when Options.Leases is set
	reported bool      // finished is recorded in the lease table
	renewed  time.Time // last successful take or renewal of the lease
	initial  bool      // listed when the source started (Start applies)
	closed   bool      // the shard had an ending sequence number when listed
	behind   int64     // MillisBehindLatest of the last GetRecords; -1 unknown
}

// chunk is the records of one GetRecords response.
type chunk struct {
	raws []change.Raw
	last string // sequence number of the last Kinesis record
}

// span is the records of one shard in one batch.
type span struct {
	sh      *shard
	gen     uint64
	last    string
	acked   bool
	dropped bool
}

// batch is what one Read returned.
type batch struct {
	s     *Source
	spans []*span
	done  atomic.Bool
}

// New validates opts, builds the client and checks that the stream exists.
// It reads nothing: the first Read loads the checkpoints and starts the
// shard readers.
func New(ctx context.Context, opts Options) (*Source, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	cl, err := opts.newClient(ctx)
	if err != nil {
		return nil, err
	}
	s := &Source{
		opts:      opts,
		name:      streamName(opts.Stream),
		client:    cl,
		kick:      make(chan struct{}, 1),
		leaseKick: make(chan struct{}, 1),
		shards:    map[string]*shard{},
		changed:   make(chan struct{}),
	}
	s.log = opts.Logger.With("source", "kinesis", "stream", s.name)
	in := &kinesis.DescribeStreamSummaryInput{}
	s.streamIn(&in.StreamName, &in.StreamARN)
	cctx, cancel := context.WithTimeout(ctx, opts.CallTimeout)
	_, err = cl.DescribeStreamSummary(cctx, in)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("describe kinesis stream %s: %w", opts.Stream, err)
	}
	s.bg, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// streamIn sets the stream name or ARN field of a request.
func (s *Source) streamIn(name, arn **string) {
	if s.opts.Stream != s.name {
		*arn = aws.String(s.opts.Stream)
		return
	}
	*name = aws.String(s.name)
}

// Resume records the sink's checkpoints for use when Options.Checkpoints is
// nil. Implementing source.Resumer tells the pipeline that this source
// restarts from the sink's checkpoints.
func (s *Source) Resume(_ context.Context, cps []change.Checkpoint) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resumed = append([]change.Checkpoint(nil), cps...)
	return nil
}

// checkpoints returns the sink's checkpoints of this stream by shard id.
func (s *Source) checkpoints(ctx context.Context) (map[string]change.Checkpoint, error) {
	var cps []change.Checkpoint
	if s.opts.Checkpoints != nil {
		var err error
		if cps, err = s.opts.Checkpoints(ctx, s.name); err != nil {
			return nil, fmt.Errorf("load checkpoints of kinesis stream %s: %w", s.name, err)
		}
	} else {
		s.mu.Lock()
		cps = s.resumed
		s.mu.Unlock()
	}
	m := map[string]change.Checkpoint{}
	for _, cp := range cps {
		if cp.Source == s.name && cp.Partition != "" {
			m[cp.Partition] = cp
		}
	}
	return m, nil
}

// resumeSpec is where a shard with a checkpoint resumes: at the oldest held
// record; at the record of the last applied one when that was a sub-record
// of a KPL aggregate (the rest of the aggregate is not stored yet; the
// pipeline drops the stored sub-records); else just after it.
func resumeSpec(cp change.Checkpoint) (iterSpec, bool) {
	switch {
	case cp.Held && cp.Resume.Offset != "":
		return iterSpec{typ: types.ShardIteratorTypeAtSequenceNumber, seq: cp.Resume.Offset}, true
	case cp.Applied.Offset != "" && cp.Applied.Indexed:
		return iterSpec{typ: types.ShardIteratorTypeAtSequenceNumber, seq: cp.Applied.Offset}, true
	case cp.Applied.Offset != "":
		return after(cp.Applied.Offset), true
	}
	return iterSpec{}, false
}

// Read returns the next records, in sequence order per shard, with the
// AckFunc of the batch. The first Read loads the checkpoints and lists the
// shards. Read blocks while MaxInFlight batches are unacknowledged and until
// records arrive or ctx is done. It must not be called concurrently with
// itself.
func (s *Source) Read(ctx context.Context) ([]change.Raw, source.AckFunc, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	if err := s.startOnce(ctx); err != nil {
		return nil, nil, err
	}
	if err := s.acquire(ctx); err != nil {
		return nil, nil, err
	}
	for {
		s.mu.Lock()
		switch {
		case s.closed:
			s.inflight--
			s.mu.Unlock()
			return nil, nil, errClosed
		case s.fatal != nil:
			err := s.fatal
			s.inflight--
			s.mu.Unlock()
			return nil, nil, err
		}
		if raws, b := s.takeLocked(); b != nil {
			s.noteEpochsLocked(b)
			s.notifyLocked()
			s.mu.Unlock()
			return raws, b.ack, nil
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			s.mu.Lock()
			s.inflight--
			s.notifyLocked()
			s.mu.Unlock()
			return nil, nil, ctx.Err()
		}
	}
}

// takeLocked moves pending chunks into a new batch, round-robin over the
// shards so none starves, up to MaxBatchRecords (at least one chunk).
func (s *Source) takeLocked() ([]change.Raw, *batch) {
	var (
		raws []change.Raw
		b    *batch
	)
	n := len(s.order)
	for i := 0; i < n; i++ {
		sh := s.shards[s.order[(s.next+i)%n]]
		c := sh.pending
		if c == nil || (b != nil && len(raws)+len(c.raws) > s.opts.MaxBatchRecords) {
			continue
		}
		if b == nil {
			b = &batch{s: s}
			s.next = (s.next + i + 1) % n
		}
		sh.pending = nil
		raws = append(raws, c.raws...)
		sp := &span{sh: sh, gen: sh.gen, last: c.last}
		sh.spans = append(sh.spans, sp)
		b.spans = append(b.spans, sp)
	}
	return raws, b
}

// acquire takes an in-flight slot, waiting while all MaxInFlight are taken.
func (s *Source) acquire(ctx context.Context) error {
	s.mu.Lock()
	for {
		if s.closed {
			s.mu.Unlock()
			return errClosed
		}
		if s.inflight < s.opts.MaxInFlight {
			s.inflight++
			s.mu.Unlock()
			return nil
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
		s.mu.Lock()
	}
}

func (s *Source) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// failLocked records a permanent error for Read to return.
func (s *Source) failLocked(err error) {
	if s.fatal == nil {
		s.fatal = err
		s.notifyLocked()
	}
}

// ack is the AckFunc of a batch.
func (b *batch) ack(_ context.Context, err error) error {
	if !b.done.CompareAndSwap(false, true) {
		return errors.New("kinesis: batch acknowledged twice")
	}
	s := b.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.nackLocked(b)
	} else {
		s.commitLocked(b)
	}
	s.inflight--
	s.notifyLocked()
	return nil
}

// commitLocked marks b's spans acknowledged and advances each shard through
// its contiguous acknowledged spans.
func (s *Source) commitLocked(b *batch) {
	for _, sp := range b.spans {
		sh := sp.sh
		if sp.dropped || sp.gen != sh.gen {
			continue
		}
		sp.acked = true
		for len(sh.spans) > 0 && sh.spans[0].acked {
			sh.acked = sh.spans[0].last
			sh.spans[0] = nil
			sh.spans = sh.spans[1:]
		}
		s.finishIfDoneLocked(sh)
	}
}

// nackLocked rewinds every shard of b to its first unacknowledged record and
// drops the shard's later in-flight spans and pending chunk: their records
// are read again.
func (s *Source) nackLocked(b *batch) {
	for _, sp := range b.spans {
		sh := sp.sh
		if sp.dropped || sp.gen != sh.gen {
			continue
		}
		for _, o := range sh.spans {
			o.dropped = true
		}
		sh.spans, sh.pending, sh.ended = nil, nil, false
		sh.gen++
		sh.fetched = sh.acked
		if sh.acked != "" {
			sh.from = after(sh.acked)
		} else {
			sh.from = sh.start
		}
		s.log.Info("kinesis shard rewound after a negative ack", "shard", sh.id, "from", sh.from.String())
	}
}

// finishIfDoneLocked marks a shard finished once its end was reached and
// everything delivered is acknowledged, and starts the children it unblocks.
func (s *Source) finishIfDoneLocked(sh *shard) {
	if sh.finished || !sh.ended || sh.pending != nil || len(sh.spans) > 0 {
		return
	}
	sh.finished = true
	s.log.Info("kinesis shard finished", "shard", sh.id)
	s.startReadableLocked()
	for _, k := range []chan struct{}{s.kick, s.leaseKick} {
		select { // children may not be listed yet; the lease table must know
		case k <- struct{}{}:
		default:
		}
	}
}

// MillisBehind returns, per shard being read, how far its reader is behind
// the tip of the shard in milliseconds, as reported by the last GetRecords
// (MillisBehindLatest). A shard appears once one GetRecords answered for it
// and disappears once it is finished or its lease is gone (lost or given
// back). The daemon exports it as cdcflow_source_millis_behind_latest. Safe
// for concurrent use; it only copies state.
func (s *Source) MillisBehind() map[string]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := map[string]int64{}
	for id, sh := range s.shards {
		if sh.behind >= 0 && sh.owned && !sh.finished {
			m[id] = sh.behind
		}
	}
	return m
}

// Stream returns the stream name used in positions and checkpoints (the
// name part when Options.Stream is an ARN).
func (s *Source) Stream() string { return s.name }

// Shards returns the ids of the shards known to the source and whether each
// is finished (read to its end and acknowledged): for tests and diagnostics.
func (s *Source) Shards() map[string]bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := make(map[string]bool, len(s.shards))
	for id, sh := range s.shards {
		m[id] = sh.finished
	}
	return m
}

// Close stops the shard readers and abandons unacknowledged batches: their
// acks change nothing, and their records are read again by the next run
// from the sink's checkpoints. A concurrent Read returns.
func (s *Source) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.cancel()
	n := 0
	for _, sh := range s.shards {
		for _, sp := range sh.spans {
			sp.dropped = true
			n++
		}
		sh.spans, sh.pending = nil, nil
	}
	s.notifyLocked()
	s.mu.Unlock()
	if n > 0 {
		s.log.Info("closing with unacknowledged batches; they are read again on restart", "spans", n)
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("close kinesis source %s: readers still running: %w", s.name, ctx.Err())
	}
	if s.opts.Leases != nil {
		// Finished shards whose end was not recorded yet are read again
		// (to their end, quickly) by the next owner: nothing is lost.
		return s.releaseAll(ctx)
	}
	return nil
}

// sortedKeys returns the keys of m in order.
func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
