package kafka

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/cdcflow/cdcflow/internal/change"
	"github.com/cdcflow/cdcflow/internal/source"
)

// Start policies for partitions without any stored position.
const (
	StartEarliest = "earliest" // the oldest retained record
	StartLatest   = "latest"   // only records produced after the partition is assigned
)

// Defaults used when an Options field is zero.
const (
	DefaultMaxInFlight     = 64
	DefaultMaxBatchRecords = 10000
	DefaultRevokeWait      = 10 * time.Second
)

// Options configures a Source. Brokers, Group and exactly one of Topics and
// TopicRegex are required; zero numbers take the Default values.
type Options struct {
	Brokers    []string // host:port seeds
	Topics     []string // topics to consume; or
	TopicRegex string   // a Go regular expression matched against topic names (new topics join while running)
	Group      string   // consumer group id

	// Start is where a partition begins when neither the sink (Checkpoints)
	// nor the group has a position for it: StartEarliest (the default when
	// empty) or StartLatest.
	Start string

	MaxInFlight     int           // batches read but not acknowledged; Read blocks at this many
	MaxBatchRecords int           // records per Read at most
	RevokeWait      time.Duration // how long a revoke waits for the acks of in-flight batches before abandoning them

	TLS  *tls.Config // nil: plaintext (MSK IAM always uses TLS)
	SASL SASL        // empty Mechanism: no SASL

	// Checkpoints returns the positions the sink stored for a topic; the
	// sink is the source of truth for where assigned partitions start. When
	// nil, the checkpoints given to Resume are used instead (a snapshot taken
	// at start: never ahead of the sink, so never skipping).
	Checkpoints func(ctx context.Context, topic string) ([]change.Checkpoint, error)

	Logger *slog.Logger // nil means slog.Default()

	extra []kgo.Opt // tests: faster heartbeats
}

var errClosed = errors.New("kafka source is closed")

func (o *Options) setDefaults() error {
	switch {
	case len(o.Brokers) == 0:
		return errors.New("kafka options: brokers: at least one broker is required")
	case len(o.Topics) > 0 && o.TopicRegex != "":
		return errors.New("kafka options: exactly one of topics, topic_regex must be set (found both)")
	case len(o.Topics) == 0 && o.TopicRegex == "":
		return errors.New("kafka options: exactly one of topics, topic_regex must be set")
	case o.Group == "":
		return errors.New("kafka options: group: must be set")
	case o.MaxInFlight < 0:
		return fmt.Errorf("kafka options: max_in_flight: must not be negative, got %d", o.MaxInFlight)
	case o.MaxBatchRecords < 0:
		return fmt.Errorf("kafka options: max_batch_records: must not be negative, got %d", o.MaxBatchRecords)
	case o.RevokeWait < 0:
		return fmt.Errorf("kafka options: revoke_wait: must not be negative, got %s", o.RevokeWait)
	}
	for i, b := range o.Brokers {
		if strings.TrimSpace(b) == "" {
			return fmt.Errorf("kafka options: brokers[%d]: empty", i)
		}
	}
	for i, t := range o.Topics {
		if t == "" {
			return fmt.Errorf("kafka options: topics[%d]: empty", i)
		}
	}
	if o.TopicRegex != "" {
		if _, err := regexp.Compile(o.TopicRegex); err != nil {
			return fmt.Errorf("kafka options: topic_regex: %w", err)
		}
	}
	switch o.Start {
	case "":
		o.Start = StartEarliest
	case StartEarliest, StartLatest:
	default:
		return fmt.Errorf("kafka options: start: %q is not %s or %s", o.Start, StartEarliest, StartLatest)
	}
	if err := o.SASL.validate(); err != nil {
		return fmt.Errorf("kafka options: %w", err)
	}
	if o.MaxInFlight == 0 {
		o.MaxInFlight = DefaultMaxInFlight
	}
	if o.MaxBatchRecords == 0 {
		o.MaxBatchRecords = DefaultMaxBatchRecords
	}
	if o.RevokeWait == 0 {
		o.RevokeWait = DefaultRevokeWait
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return nil
}

// Source consumes Kafka topics as a member of a consumer group. See the
// package documentation for the offset, ack and rebalance contracts.
type Source struct {
	opts  Options
	log   *slog.Logger
	kopts []kgo.Opt

	// commitMu serializes group commits with each other and with abandoning
	// partitions, so no commit is issued for a partition after it is
	// released. Lock order: commitMu, then mu.
	commitMu sync.Mutex

	mu         sync.Mutex
	cl         *kgo.Client // created by the first Read
	parts      map[tp]*partition
	epoch      uint64
	inflight   int                // batches returned by Read and not yet acknowledged
	changed    chan struct{}      // closed and replaced whenever an ack or release happens
	polling    chan struct{}      // non-nil while a poll runs; closed when it ends
	pollCancel context.CancelFunc // interrupts the running poll
	ready      *polled            // what the last poll produced, for the next Read
	rewinds    bool               // some partition waits for its rewind (SetOffsets)
	pendingErr error              // a fetch error to return after the records polled with it
	closed     bool
	resumed    map[string][]change.Checkpoint // from Resume, by topic
}

var (
	_ source.Source  = (*Source)(nil)
	_ source.Resumer = (*Source)(nil)
)

type tp struct {
	topic     string
	partition int32
}

// partition is the state of one assigned partition during one assignment
// (epoch). A new assignment replaces it with a fresh value, so a span that
// points to a replaced value is stale.
type partition struct {
	tp
	name      string // partition number as text, for positions
	epoch     uint64
	next      int64   // records below are never delivered (again); -1 until known
	acked     int64   // every record below is acknowledged; -1 until known
	ackedLE   int32   // leader epoch of the record just below acked
	committed int64   // last offset committed to the group; -1 none
	spans     []*span // in-flight record ranges, in read order
	hw        int64   // high watermark of the last fetch; -1 unknown
	rewind    bool    // records are dropped until SetOffsets(next) is applied
}

// position returns the offset the partition would resume from: the first
// record not acknowledged.
func (p *partition) position() int64 {
	switch {
	case p.acked >= 0:
		return p.acked
	case len(p.spans) > 0:
		return p.spans[0].from
	}
	return p.next
}

// span is the records of one partition in one batch.
type span struct {
	part     *partition
	from, to int64 // first and last offset delivered
	lastLE   int32 // leader epoch of the last record
	acked    bool
	dropped  bool // rewound or abandoned: its ack changes nothing
}

// batch is what one Read returned.
type batch struct {
	s     *Source
	spans []*span
	done  atomic.Bool
}

// New validates opts and checks that the brokers are reachable with the
// configured TLS and SASL settings. It does not join the group: the first
// Read does.
func New(ctx context.Context, opts Options) (*Source, error) {
	opts.Brokers = append([]string(nil), opts.Brokers...)
	opts.Topics = append([]string(nil), opts.Topics...)
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	conn, err := opts.connOpts(ctx)
	if err != nil {
		return nil, fmt.Errorf("kafka options: %w", err)
	}
	probe, err := kgo.NewClient(conn...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	err = probe.Ping(ctx)
	probe.Close()
	if err != nil {
		auth := ""
		if opts.SASL.Mechanism != "" {
			// A broker that rejects the credentials may just close the
			// connection (EOF): say which identity was tried, never the secret.
			who := fmt.Sprintf("%q", opts.SASL.Username)
			if opts.SASL.Username == "" {
				who = "the AWS default credentials"
			}
			auth = fmt.Sprintf(" with sasl %s as %s", opts.SASL.Mechanism, who)
		}
		return nil, fmt.Errorf("connect to kafka brokers %s%s: %w", strings.Join(opts.Brokers, ","), auth, err)
	}

	s := &Source{
		opts:    opts,
		log:     opts.Logger.With("source", "kafka", "group", opts.Group),
		parts:   map[tp]*partition{},
		changed: make(chan struct{}),
	}
	s.kopts = append(conn,
		kgo.ConsumerGroup(opts.Group),
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		// Where the sink and the group know nothing, adjust picks Start;
		// an out-of-range position (deleted by retention) resets to the
		// oldest record still there, losing as little as possible.
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.AdjustFetchOffsetsFn(s.adjust),
		kgo.OnPartitionsRevoked(s.onRevoked),
		kgo.OnPartitionsLost(s.onLost),
		kgo.WithLogger(kgoLogger{s.log}),
	)
	if opts.TopicRegex != "" {
		s.kopts = append(s.kopts, kgo.ConsumeTopics(opts.TopicRegex), kgo.ConsumeRegex())
	} else {
		s.kopts = append(s.kopts, kgo.ConsumeTopics(opts.Topics...))
	}
	s.kopts = append(s.kopts, opts.extra...)
	return s, nil
}

// Resume records the sink's checkpoints for use when Options.Checkpoints is
// nil; with Options.Checkpoints set, positions are loaded at every
// assignment and cps is ignored. Implementing source.Resumer tells the
// pipeline that this source restarts from the sink's checkpoints.
func (s *Source) Resume(_ context.Context, cps []change.Checkpoint) error {
	byTopic := map[string][]change.Checkpoint{}
	for _, cp := range cps {
		byTopic[cp.Source] = append(byTopic[cp.Source], cp)
	}
	s.mu.Lock()
	s.resumed = byTopic
	s.mu.Unlock()
	return nil
}

// Read returns the next records of the assigned partitions, in offset order
// per partition, with the AckFunc of the batch. The first Read joins the
// group. Read blocks while MaxInFlight batches are unacknowledged, and until
// records arrive or ctx is done; it always returns when ctx is done. It must
// not be called concurrently with itself.
func (s *Source) Read(ctx context.Context) ([]change.Raw, source.AckFunc, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	cl, err := s.client()
	if err != nil {
		return nil, nil, err
	}
	if err := s.acquire(ctx); err != nil {
		return nil, nil, err
	}
	for {
		s.mu.Lock()
		if s.ready == nil && s.pendingErr != nil {
			s.ready, s.pendingErr = &polled{err: s.pendingErr}, nil
		}
		switch r := s.ready; {
		case s.closed:
			s.mu.Unlock()
			s.releaseSlot()
			return nil, nil, errClosed
		case r != nil:
			s.ready = nil
			if r.err != nil {
				s.mu.Unlock()
				s.releaseSlot()
				return nil, nil, r.err
			}
			if r.b.liveLocked(&r.raws) {
				s.mu.Unlock()
				return r.raws, r.b.ack, nil
			}
			// Everything it held was rewound or abandoned while it waited.
			s.mu.Unlock()
			continue
		case s.polling == nil:
			s.startPollLocked(cl)
		}
		polling := s.polling
		s.mu.Unlock()
		select {
		case <-polling:
		case <-ctx.Done():
			// The poll goes on; what it returns waits for the next Read.
			s.releaseSlot()
			return nil, nil, ctx.Err()
		}
	}
}

// liveLocked drops from raws the records of spans that were rewound or
// abandoned after the poll (they are read again, or by the new owner), and
// reports whether any record is left.
func (b *batch) liveLocked(raws *[]change.Raw) bool {
	var dead map[tp]bool
	live := b.spans[:0]
	for _, sp := range b.spans {
		if sp.dropped {
			if dead == nil {
				dead = map[tp]bool{}
			}
			dead[sp.part.tp] = true
			continue
		}
		live = append(live, sp)
	}
	if dead == nil {
		return len(*raws) > 0
	}
	b.spans = live
	kept := (*raws)[:0]
	for _, r := range *raws {
		n, _ := strconv.ParseInt(r.Position.Partition, 10, 32)
		if !dead[tp{r.Position.Source, int32(n)}] {
			kept = append(kept, r)
		}
	}
	clear((*raws)[len(kept):])
	*raws = kept
	return len(kept) > 0
}

// polled is what a poll produced for Read: a batch or an error.
type polled struct {
	raws []change.Raw
	b    *batch
	err  error
}

// startPollLocked runs one poll in the background. Polls run apart from
// Read because, with BlockRebalanceOnPoll, a poll waits (ignoring its
// context) while a rebalance callback runs, and Read must honour its ctx.
func (s *Source) startPollLocked(cl *kgo.Client) {
	pctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	s.polling, s.pollCancel = done, cancel
	if s.rewinds {
		cancel() // return at once so the rewind is applied under the rebalance block
	}
	go func() {
		defer cancel()
		res := s.poll(pctx, cl)
		s.mu.Lock()
		defer s.mu.Unlock()
		if res != nil {
			s.ready = res
		}
		s.polling, s.pollCancel = nil, nil
		close(done)
	}()
}

func (s *Source) client() (*kgo.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errClosed
	}
	if s.cl == nil {
		cl, err := kgo.NewClient(s.kopts...)
		if err != nil {
			return nil, fmt.Errorf("kafka client: %w", err)
		}
		s.cl = cl
		s.log.Info("joining kafka consumer group", "topics", s.opts.Topics, "topic_regex", s.opts.TopicRegex, "start", s.opts.Start)
	}
	return s.cl, nil
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

func (s *Source) releaseSlot() {
	s.mu.Lock()
	s.inflight--
	s.notifyLocked()
	s.mu.Unlock()
}

func (s *Source) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// poll runs one PollRecords and turns what it returns into a batch; nil
// when it returned nothing to deliver.
//
// With BlockRebalanceOnPoll, no partition is assigned or revoked between a
// poll that returned something and AllowRebalance: that is when records are
// matched to partition state and rewinds are applied.
func (s *Source) poll(ctx context.Context, cl *kgo.Client) *polled {
	fetches := cl.PollRecords(ctx, s.opts.MaxBatchRecords)
	raws, b, err := s.take(fetches)
	if len(fetches) > 0 {
		s.applyRewinds(cl)
	}
	cl.AllowRebalance()
	switch {
	case len(raws) > 0:
		if err != nil {
			s.mu.Lock()
			s.pendingErr = err // deliver the good records first
			s.mu.Unlock()
		}
		return &polled{raws: raws, b: b}
	case err != nil:
		return &polled{err: err}
	}
	return nil
}

// take matches polled records to the assigned partitions and registers the
// batch. Records of partitions not assigned in this source's view, waiting
// for a rewind, or below the partition's next offset are dropped: they were
// fetched before a seek or a rebalance and are delivered again (or by the
// new owner) from the right position.
func (s *Source) take(fetches kgo.Fetches) ([]change.Raw, *batch, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var (
		raws  []change.Raw
		fatal error
		b     = &batch{s: s}
	)
	fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
		key := tp{fp.Topic, fp.Partition}
		if fp.Err != nil {
			if err := s.fetchErrorLocked(key, fp.Err); err != nil && fatal == nil {
				fatal = err
			}
			return
		}
		p := s.parts[key]
		if p == nil {
			if len(fp.Records) > 0 {
				s.log.Debug("dropping records of a partition not assigned", "topic", fp.Topic, "partition", fp.Partition, "records", len(fp.Records))
			}
			return
		}
		p.hw = fp.HighWatermark
		if p.rewind {
			return
		}
		var sp *span
		for _, r := range fp.Records {
			if p.next >= 0 && r.Offset < p.next {
				continue
			}
			raws = append(raws, change.Raw{
				Data: r.Value,
				Key:  r.Key,
				Position: change.Position{
					Source:    r.Topic,
					Partition: p.name,
					Offset:    strconv.FormatInt(r.Offset, 10),
				},
			})
			if sp == nil {
				sp = &span{part: p, from: r.Offset}
			}
			sp.to, sp.lastLE = r.Offset, r.LeaderEpoch
			p.next = r.Offset + 1
		}
		if sp != nil {
			p.spans = append(p.spans, sp)
			b.spans = append(b.spans, sp)
		}
	})
	return raws, b, fatal
}

var authErrors = []error{
	kerr.SaslAuthenticationFailed, kerr.TopicAuthorizationFailed,
	kerr.GroupAuthorizationFailed, kerr.ClusterAuthorizationFailed,
}

// fetchErrorLocked classifies an error returned by a poll: nil when the
// client recovers by itself (it is logged), else the error Read returns.
func (s *Source) fetchErrorLocked(key tp, err error) error {
	var (
		loss    *kgo.ErrDataLoss
		session *kgo.ErrGroupSession
	)
	for _, a := range authErrors {
		if errors.Is(err, a) {
			if key.topic == "" {
				return fmt.Errorf("kafka group %s: %w", s.opts.Group, err)
			}
			return fmt.Errorf("kafka %s[%d]: %w", key.topic, key.partition, err)
		}
	}
	switch {
	case errors.Is(err, kgo.ErrClientClosed):
		return errClosed
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return nil // Read's own interruption; Read checks its ctx
	case errors.As(err, &loss):
		// Not silent: the broker lost or replaced records (unclean leader
		// election, truncation). The client resumes at ResetTo.
		s.log.Error("kafka data loss detected", "topic", loss.Topic, "partition", loss.Partition,
			"consumed_to", loss.ConsumedTo, "reset_to", loss.ResetTo, "error", err)
		if p := s.parts[key]; p != nil && p.next > loss.ResetTo {
			p.next = loss.ResetTo
		}
		return nil
	case errors.As(err, &session):
		s.log.Warn("kafka consumer group session lost; rejoining", "error", err)
		return nil
	case errors.Is(err, kerr.UnknownTopicOrPartition), errors.Is(err, kerr.UnknownTopicID):
		s.log.Warn("kafka topic or partition unknown (deleted?)", "topic", key.topic, "partition", key.partition, "error", err)
		return nil
	}
	return fmt.Errorf("fetch %s[%d]: %w", key.topic, key.partition, err)
}

// applyRewinds seeks every partition waiting for a rewind. Called with the
// rebalance blocked, so the partitions are still assigned.
func (s *Source) applyRewinds(cl *kgo.Client) {
	s.mu.Lock()
	if !s.rewinds {
		s.mu.Unlock()
		return
	}
	s.rewinds = false
	set := map[string]map[int32]kgo.EpochOffset{}
	var ps []*partition
	for _, p := range s.parts {
		if !p.rewind {
			continue
		}
		if set[p.topic] == nil {
			set[p.topic] = map[int32]kgo.EpochOffset{}
		}
		set[p.topic][p.partition] = kgo.EpochOffset{Epoch: -1, Offset: p.next}
		ps = append(ps, p)
	}
	s.mu.Unlock()
	cl.SetOffsets(set)
	s.mu.Lock()
	for _, p := range ps {
		p.rewind = false
		s.log.Info("kafka partition rewound after a negative ack", "topic", p.topic, "partition", p.partition, "offset", p.next)
	}
	s.mu.Unlock()
}

// ack is the AckFunc of a batch.
func (b *batch) ack(ctx context.Context, err error) error {
	if !b.done.CompareAndSwap(false, true) {
		return errors.New("kafka: batch acknowledged twice")
	}
	if err != nil {
		b.s.nack(b)
		return nil
	}
	return b.s.commit(ctx, b)
}

// nack rewinds every partition of b to its first unacknowledged offset and
// drops that partition's later in-flight spans: their records are delivered
// again.
func (s *Source) nack(b *batch) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sp := range b.spans {
		p := sp.part
		if sp.dropped || s.parts[p.tp] != p {
			continue
		}
		target := p.position()
		for _, o := range p.spans {
			o.dropped = true
		}
		p.spans = nil
		p.next = target
		p.rewind = true
		s.rewinds = true
	}
	s.inflight--
	s.notifyLocked()
	if s.rewinds && s.pollCancel != nil {
		s.pollCancel()
	}
}

// commit marks b's spans acknowledged, advances each partition through its
// contiguous acknowledged spans, and commits the new positions to the group.
func (s *Source) commit(ctx context.Context, b *batch) error {
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	s.mu.Lock()
	for _, sp := range b.spans {
		p := sp.part
		if sp.dropped || s.parts[p.tp] != p {
			continue
		}
		sp.acked = true
		for len(p.spans) > 0 && p.spans[0].acked {
			first := p.spans[0]
			p.acked, p.ackedLE = first.to+1, first.lastLE
			p.spans[0] = nil
			p.spans = p.spans[1:]
		}
	}
	s.inflight--
	s.notifyLocked()
	offs, ps := s.uncommittedLocked(nil)
	cl := s.cl
	s.mu.Unlock()
	if len(offs) == 0 {
		return nil
	}
	if err := commitSync(ctx, cl, offs); err != nil {
		return fmt.Errorf("commit offsets of group %s: %w", s.opts.Group, err)
	}
	s.markCommitted(ps)
	return nil
}

// uncommittedLocked returns the acknowledged positions not yet committed,
// of the given partitions (nil: every assigned partition).
func (s *Source) uncommittedLocked(only []*partition) (map[string]map[int32]kgo.EpochOffset, map[*partition]int64) {
	var offs map[string]map[int32]kgo.EpochOffset
	ps := map[*partition]int64{}
	add := func(p *partition) {
		if s.parts[p.tp] != p || p.acked < 0 || p.acked <= p.committed {
			return
		}
		if offs == nil {
			offs = map[string]map[int32]kgo.EpochOffset{}
		}
		if offs[p.topic] == nil {
			offs[p.topic] = map[int32]kgo.EpochOffset{}
		}
		offs[p.topic][p.partition] = kgo.EpochOffset{Epoch: p.ackedLE, Offset: p.acked}
		ps[p] = p.acked
	}
	if only != nil {
		for _, p := range only {
			add(p)
		}
	} else {
		for _, p := range s.parts {
			add(p)
		}
	}
	return offs, ps
}

func (s *Source) markCommitted(ps map[*partition]int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for p, off := range ps {
		if off > p.committed {
			p.committed = off
		}
	}
}

// commitSync commits offs and returns the first error, including
// per-partition errors of the response.
func commitSync(ctx context.Context, cl *kgo.Client, offs map[string]map[int32]kgo.EpochOffset) error {
	var rerr error
	cl.CommitOffsetsSync(ctx, offs, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err != nil {
			rerr = err
			return
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if err := kerr.ErrorForCode(p.ErrorCode); err != nil && rerr == nil {
					rerr = fmt.Errorf("%s[%d]: %w", t.Topic, p.Partition, err)
				}
			}
		}
	})
	return rerr
}

// Lag returns, per topic and assigned partition, how many records the
// broker holds beyond the first unacknowledged one: the high watermark of
// the last fetch minus the position the group would resume from. A
// partition appears once a fetch returned records for it.
func (s *Source) Lag() map[string]map[int32]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	lag := map[string]map[int32]int64{}
	for k, p := range s.parts {
		pos := p.position()
		if p.hw < 0 || pos < 0 {
			continue
		}
		if lag[k.topic] == nil {
			lag[k.topic] = map[int32]int64{}
		}
		lag[k.topic][k.partition] = max(p.hw-pos, 0)
	}
	return lag
}

// Assigned reports whether the partition is assigned to this source. It
// turns false once a revoke released the partition (after its in-flight
// batches were acknowledged or abandoned): from then on acks of its records
// commit nothing, and the pipeline should not store checkpoints for it,
// since another member owns it and may have stored newer ones.
func (s *Source) Assigned(topic string, partition int32) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.parts[tp{topic, partition}] != nil
}

// Epoch returns the assignment epoch of the partition: a number that
// changes every time the partition is (re)assigned to this source, or 0
// when it is not assigned. Work read under one epoch and applied under
// another belongs to an earlier assignment.
func (s *Source) Epoch(topic string, partition int32) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.parts[tp{topic, partition}]; p != nil {
		return p.epoch
	}
	return 0
}

// Close commits what was acknowledged, abandons unacknowledged batches
// (their acks commit nothing; the records are redelivered to whoever owns
// the partitions next) and leaves the group. A concurrent Read returns.
func (s *Source) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	if s.pollCancel != nil {
		s.pollCancel()
	}
	s.notifyLocked()
	cl, polling := s.cl, s.polling
	s.mu.Unlock()
	if cl == nil {
		return nil
	}
	if polling != nil {
		// The poll ends once interrupted (after any rebalance callback).
		select {
		case <-polling:
		case <-ctx.Done():
		}
	}

	var err error
	s.commitMu.Lock()
	s.mu.Lock()
	offs, ps := s.uncommittedLocked(nil)
	s.mu.Unlock()
	if len(offs) > 0 {
		if cerr := commitSync(ctx, cl, offs); cerr != nil {
			err = fmt.Errorf("commit offsets of group %s: %w", s.opts.Group, cerr)
		} else {
			s.markCommitted(ps)
		}
	}
	s.mu.Lock()
	abandoned := s.abandonLocked(nil)
	s.mu.Unlock()
	s.commitMu.Unlock()
	if abandoned > 0 {
		s.log.Info("closing with unacknowledged batches; they are redelivered", "spans", abandoned)
	}

	if lerr := cl.LeaveGroupContext(ctx); lerr != nil && err == nil {
		err = fmt.Errorf("leave group %s: %w", s.opts.Group, lerr)
	}
	cl.CloseAllowingRebalance()
	return err
}

// abandonLocked forgets the given partitions (nil: all), dropping their
// in-flight spans, and returns how many spans were dropped.
func (s *Source) abandonLocked(ps []*partition) int {
	n := 0
	drop := func(p *partition) {
		if s.parts[p.tp] != p {
			return
		}
		for _, sp := range p.spans {
			sp.dropped = true
			n++
		}
		p.spans = nil
		delete(s.parts, p.tp)
	}
	if ps == nil {
		for _, p := range s.parts {
			drop(p)
		}
	} else {
		for _, p := range ps {
			drop(p)
		}
	}
	s.notifyLocked()
	return n
}

// MaxInFlight implements source.Bounded: Read blocks while this many
// batches are unacknowledged.
func (s *Source) MaxInFlight() int { return s.opts.MaxInFlight }

var _ source.Bounded = (*Source)(nil)
