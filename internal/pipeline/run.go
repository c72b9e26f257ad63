package pipeline

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/cdcflow/cdcflow/internal/change"
	"github.com/cdcflow/cdcflow/internal/decode"
	"github.com/cdcflow/cdcflow/internal/sink"
	"github.com/cdcflow/cdcflow/internal/source"
)

// errStopped is the negative ack of source batches left unapplied by a stop.
var errStopped = errors.New("pipeline stopped before the batch was applied")

// partKey names one stream partition.
type partKey struct{ source, partition string }

func keyOf(p change.Position) partKey { return partKey{p.Source, p.Partition} }

// readResult is one Read.
type readResult struct {
	raws   []change.Raw
	ack    source.AckFunc
	err    error
	epochs map[string]int64 // lease epoch per partition of raws (LeasedSource); nil without leases
}

// pendingAck is a source batch waiting to be acknowledged.
type pendingAck struct {
	ack     source.AckFunc
	decoded bool                        // every record was given to the decoder
	last    map[partKey]change.Position // highest record position per partition
}

type runner struct {
	cfg Config
	log *slog.Logger
	dec *decode.Decoder

	resumable bool                          // resume comes from sink checkpoints, not source acks
	stored    map[partKey]change.Checkpoint // loaded at start; drives the already-stored filter
	consumed  map[partKey]change.Position   // highest record position decoded in this run
	lastHeld  map[partKey]bool              // the partition's last stored checkpoint was Held
	lease     leaseState                    // shard leases of the source (lease.go)
	park      parkState                     // DSQL pieces parked in the sink (park.go)
	chunks    sink.ChunkStore               // nil when the sink stores no DSQL chunk ids
	chunkSeq  int64                         // chunks read up to this sequence number

	// The pending batch.
	out      decode.Output
	touched  map[partKey]bool
	raws     int   // records decoded into it
	bytes    int64 // estimated size of its items
	waiting  bool  // the max-wait timer runs
	lastPos  change.Position
	acks     []*pendingAck
	applyCtx context.Context // never cancelled by the run's ctx; bounded after it is

	sum     Summary
	skipped map[string]int64 // decoder skips already reported to cfg.Metrics
	start   time.Time
}

func newRunner(cfg Config) *runner {
	r := &runner{
		cfg:      cfg,
		log:      cfg.Logger,
		dec:      cfg.Decoder,
		stored:   map[partKey]change.Checkpoint{},
		consumed: map[partKey]change.Position{},
		lastHeld: map[partKey]bool{},
		lease:    newLeaseState(cfg.Source),
		touched:  map[partKey]bool{},
		sum:      Summary{Dead: map[string]int64{}, Tables: map[string]int64{}},
		skipped:  map[string]int64{},
	}
	r.park = newParkState(cfg, r.lease)
	return r
}

// shutdownContext returns a context that is not cancelled with ctx but
// timeout after it.
func shutdownContext(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	actx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(timeout, cancel) })
	return actx, func() { stop(); cancel() }
}

func (r *runner) run(ctx context.Context) (Summary, error) {
	r.start = time.Now()
	var cancelApply context.CancelFunc
	r.applyCtx, cancelApply = shutdownContext(ctx, r.cfg.ShutdownTimeout)
	defer cancelApply()

	if err := r.resume(ctx); err != nil {
		r.closeSource()
		return r.finish(), err
	}

	readCtx, cancelRead := context.WithCancel(ctx)
	defer cancelRead()
	reads := make(chan readResult) // unbuffered: a batch received is a batch the loop owns
	stop := make(chan struct{})
	done := make(chan struct{})
	var leftover readResult
	go func() {
		defer close(done)
		for {
			raws, ack, err := r.cfg.Source.Read(readCtx)
			res := readResult{raws: raws, ack: ack, err: err, epochs: r.lease.readEpochs(err)}
			select {
			case reads <- res:
			case <-stop:
				leftover = res
				return
			}
			if err != nil {
				return
			}
		}
	}()

	err := r.loop(ctx, reads)

	// Stop the reader, then negatively acknowledge, in read order, every
	// source batch that was not applied, and close the source.
	cancelRead()
	close(stop)
	closeCtx, cancelClose := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.ShutdownTimeout)
	defer cancelClose()
	readerDone := false
	select {
	case <-done:
		readerDone = true
	case <-closeCtx.Done():
		r.log.Warn("source Read did not return after cancellation; closing the source anyway")
	}
	for _, a := range r.acks {
		r.nack(closeCtx, a.ack)
	}
	r.acks = nil
	for more := true; more; {
		select {
		case res := <-reads:
			r.nack(closeCtx, res.ack)
		default:
			more = false
		}
	}
	if readerDone {
		r.nack(closeCtx, leftover.ack)
	}
	if cerr := r.cfg.Source.Close(closeCtx); cerr != nil {
		r.log.Warn("close source", "error", cerr)
	}
	sum := r.finish()
	if err == nil {
		r.log.Info("pipeline stopped", "records", sum.Records, "events", sum.Events, "dead_letters", sum.DeadTotal(),
			"batches", sum.Batches, "retries", sum.Retries, "interrupted", sum.Interrupted, "elapsed", sum.Elapsed.Round(time.Millisecond))
	}
	return sum, err
}

func (r *runner) nack(ctx context.Context, ack source.AckFunc) {
	if ack == nil {
		return
	}
	if err := ack(ctx, errStopped); err != nil {
		r.log.Warn("negative ack", "error", err)
	}
}

func (r *runner) closeSource() {
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.ShutdownTimeout)
	defer cancel()
	if err := r.cfg.Source.Close(ctx); err != nil {
		r.log.Warn("close source", "error", err)
	}
}

// resume loads the sink's checkpoints and hands them to the source.
func (r *runner) resume(ctx context.Context) error {
	ps, isStore := r.cfg.Sink.(sink.PositionStore)
	res, isResumer := r.cfg.Source.(source.Resumer)
	if !isStore {
		r.log.Info("sink stores no checkpoints: the source decides where to start")
		return nil
	}
	cps, err := ps.Checkpoints(ctx, "")
	if err != nil {
		return fmt.Errorf("load checkpoints: %w", err)
	}
	// A source may have streams that cannot resume (stdin): their stored
	// checkpoints describe a different stream and must not filter this one.
	canResume := func(string) bool { return true }
	if cr, ok := r.cfg.Source.(interface{ CanResume(source string) bool }); ok {
		canResume = cr.CanResume
	}
	kept := cps[:0:0]
	for _, cp := range cps {
		if !canResume(cp.Source) {
			r.log.Info("ignoring checkpoint of a stream that cannot resume", "source", cp.Source)
			continue
		}
		kept = append(kept, cp)
		r.stored[partKey{cp.Source, cp.Partition}] = cp
	}
	if isResumer {
		if err := res.Resume(ctx, kept); err != nil {
			return fmt.Errorf("resume source: %w", err)
		}
		r.resumable = true
	}
	if len(kept) > 0 {
		r.log.Info("loaded checkpoints", "partitions", len(kept), "source_resumes", isResumer)
	}
	if cs, ok := r.cfg.Sink.(sink.ChunkStore); ok {
		r.chunks = cs
		if err := r.loadChunks(ctx); err != nil {
			return err
		}
	}
	return nil
}

// chunksRemembered is how many stored DSQL chunk ids a load hands the
// decoder at most: as many as the decoder remembers itself.
const chunksRemembered = 100_000

// loadChunks hands the decoder the DSQL chunk ids stored since the last
// load (sink.ChunkStore): at start, and again whenever a partition is first
// read in this run, since another process (a previous owner of the
// partition) may have completed sets whose pieces this run now reads again.
func (r *runner) loadChunks(ctx context.Context) error {
	ids, next, err := r.chunks.CompletedChunks(ctx, r.chunkSeq, chunksRemembered)
	if err != nil {
		return fmt.Errorf("load stored DSQL chunk ids: %w", err)
	}
	slices.Reverse(ids) // oldest first, so the newest are remembered longest
	r.dec.RememberCompleted(ids)
	r.chunkSeq = next
	return nil
}

// loop reads, decodes and applies until the input ends, ctx is cancelled or
// a fatal error occurs. On return every applied source batch is acknowledged;
// r.acks holds the rest.
func (r *runner) loop(ctx context.Context, reads <-chan readResult) error {
	wait := time.NewTimer(time.Hour)
	wait.Stop()
	defer wait.Stop()
	expire := time.NewTicker(r.cfg.ExpireEvery)
	defer expire.Stop()

	for {
		if ctx.Err() != nil {
			return r.stopGracefully()
		}
		select {
		case <-ctx.Done():
			return r.stopGracefully()
		case res := <-reads:
			switch {
			case errors.Is(res.err, source.ErrEndOfInput):
				r.takeHeldOutput(func(out *decode.Output) { r.dec.Drain(out) }, wait)
				if err := r.flush(); err != nil {
					return err
				}
				r.releaseAcks()
				return nil
			case res.err != nil && ctx.Err() != nil:
				return r.stopGracefully()
			case res.err != nil:
				if err := r.flush(); err != nil {
					return err
				}
				r.releaseAcks()
				return fmt.Errorf("read source: %w", res.err)
			}
			if err := r.consume(res, wait); err != nil {
				return err
			}
			if r.atSourceCap() {
				// The source reads no more until acks arrive: waiting
				// for the timer would only delay these records.
				wait.Stop()
				r.waiting = false
				if err := r.flush(); err != nil {
					return err
				}
			}
		case <-wait.C:
			r.waiting = false
			if err := r.flush(); err != nil {
				return err
			}
		case now := <-expire.C:
			r.takeHeldOutput(func(out *decode.Output) { r.dec.Expire(now, out) }, wait)
			if r.park.store != nil {
				r.takeParkable(now)
				if r.sweepParked(now) || len(r.park.held) > 0 {
					wait.Stop()
					r.waiting = false
					if err := r.flush(); err != nil {
						return err
					}
				}
			}
			r.releaseAcks()
			r.observeDecoder(r.dec.Stats())
		}
	}
}

// atSourceCap reports whether the pending batch holds records and the
// source (a source.Bounded) has delivered as many batches as it lets be
// unacknowledged.
func (r *runner) atSourceCap() bool {
	b, ok := r.cfg.Source.(source.Bounded)
	return ok && r.raws > 0 && len(r.acks) >= b.MaxInFlight()
}

// stopGracefully applies what is pending after ctx was cancelled.
func (r *runner) stopGracefully() error {
	r.sum.Interrupted = true
	r.log.Info("stopping: applying the in-flight batch", "records", r.raws, "events", len(r.out.Events), "dead_letters", len(r.out.Dead))
	if err := r.flush(); err != nil {
		return err
	}
	r.releaseAcks()
	return nil
}

// takeHeldOutput adds to the pending batch the dead letters of held pieces
// that f (Expire or Drain) gives up on.
func (r *runner) takeHeldOutput(f func(*decode.Output), wait *time.Timer) {
	ne, nd := len(r.out.Events), len(r.out.Dead)
	f(&r.out)
	r.filterTail(ne, nd)
	for _, d := range r.out.Dead[nd:] {
		r.bytes += int64(len(d.Raw))
		r.touched[keyOf(d.Position)] = true
	}
	if len(r.out.Dead) > nd || len(r.out.Events) > ne {
		r.startWait(wait)
	}
}

func (r *runner) startWait(wait *time.Timer) {
	if !r.waiting {
		r.waiting = true
		wait.Reset(r.cfg.BatchMaxWait)
	}
}

// consume decodes one source batch record by record, applying the pending
// batch whenever it is full.
func (r *runner) consume(res readResult, wait *time.Timer) error {
	pa := &pendingAck{ack: res.ack, last: map[partKey]change.Position{}}
	r.acks = append(r.acks, pa)
	if len(res.raws) == 0 {
		pa.decoded = true
		return nil
	}
	now := time.Now()
	for i, raw := range res.raws {
		if err := r.leaseTurn(raw.Position, res.epochs, wait); err != nil {
			return err
		}
		if _, seen := r.consumed[keyOf(raw.Position)]; !seen && r.chunks != nil && r.sum.Records > 0 {
			if err := r.loadChunks(r.applyCtx); err != nil {
				// Not fatal: at worst pieces of a set stored by another
				// process are held again and dead-lettered.
				r.log.Warn("reload DSQL chunk ids for a new partition", "partition", raw.Position.Partition, "error", err)
			}
		}
		ne, nd := len(r.out.Events), len(r.out.Dead)
		r.dec.Decode(raw, now, &r.out)
		r.filterTail(ne, nd)
		for _, e := range r.out.Events[ne:] {
			r.bytes += int64(len(e.Raw) + len(e.Before) + len(e.After))
		}
		for _, d := range r.out.Dead[nd:] {
			r.bytes += int64(len(d.Raw))
			r.touched[keyOf(d.Position)] = true
		}
		k := keyOf(raw.Position)
		if old, ok := r.consumed[k]; !ok || change.ComparePosition(old, raw.Position) < 0 {
			r.consumed[k] = raw.Position
		}
		if old, ok := pa.last[k]; !ok || change.ComparePosition(old, raw.Position) < 0 {
			pa.last[k] = raw.Position
		}
		r.touched[k] = true
		r.raws++
		r.sum.Records++
		r.lastPos = raw.Position
		if i == len(res.raws)-1 {
			pa.decoded = true
		}
		r.startWait(wait)
		if len(r.out.Events)+len(r.out.Dead) >= r.cfg.BatchMaxEvents || r.bytes >= r.cfg.BatchMaxBytes {
			wait.Stop()
			r.waiting = false
			if err := r.flush(); err != nil {
				return err
			}
		}
	}
	return nil
}

// filterTail drops, from the events after ne and the dead letters after nd,
// those already stored before this run, and counts what it keeps.
func (r *runner) filterTail(ne, nd int) {
	if len(r.stored) == 0 {
		r.sum.Events += int64(len(r.out.Events) - ne)
		r.cfg.Metrics.Decoded(r.out.Events[ne:])
		return
	}
	kept := r.out.Events[:ne]
	for _, e := range r.out.Events[ne:] {
		// A sink.PieceStore stores a reassembled DSQL event at most once by
		// its chunk id; its position may lie before a checkpoint another
		// process stored while it held the set's other pieces.
		if (e.ChunkID == "" || r.park.store == nil) && r.alreadyStored(e.Position, "") {
			r.sum.AlreadyStored++
			continue
		}
		kept = append(kept, e)
	}
	clear(r.out.Events[len(kept):])
	r.sum.Events += int64(len(kept) - ne)
	r.out.Events = kept
	r.cfg.Metrics.Decoded(kept[ne:])

	keptD := r.out.Dead[:nd]
	for _, d := range r.out.Dead[nd:] {
		if r.alreadyStored(d.Position, d.Reason) {
			r.sum.AlreadyStored++
			continue
		}
		keptD = append(keptD, d)
	}
	clear(r.out.Dead[len(keptD):])
	r.out.Dead = keptD
}

// alreadyStored reports whether an event (reason "") or a dead letter at p
// was stored by an earlier run, according to the checkpoints loaded at start.
func (r *runner) alreadyStored(p change.Position, reason string) bool {
	cp, ok := r.stored[keyOf(p)]
	if !ok || !covered(p, cp.Applied) {
		return false
	}
	// Pieces held when the checkpoint was written were not stored: their
	// fragment dead letters (which depend on time and memory, not just on the
	// record) must be kept.
	if cp.Held && (reason == change.ReasonFragmentTimeout || reason == change.ReasonFragmentLimit) &&
		change.ComparePosition(p, cp.Resume) >= 0 {
		return false
	}
	return true
}

// covered reports whether position p is at or before applied. An applied
// position without an envelope index covers every index of its record.
func covered(p, applied change.Position) bool {
	if !applied.Indexed {
		p.Index, p.Indexed = 0, false
	}
	return change.ComparePosition(p, applied) <= 0
}

// checkpoints returns the checkpoints of the pending batch.
func (r *runner) checkpoints() []change.Checkpoint {
	keys := maps.Clone(r.touched)
	for k, held := range r.lastHeld {
		if held {
			keys[k] = true
		}
	}
	cps := make([]change.Checkpoint, 0, len(keys))
	for k := range keys {
		applied, ok := r.consumed[k]
		if !ok {
			continue // nothing of this partition was read in this run
		}
		cp := change.Checkpoint{Source: k.source, Partition: k.partition, Applied: applied}
		if pos, held := r.dec.OldestHeld(k.source, k.partition); held {
			cp.Held, cp.Resume = true, pos
		}
		cps = append(cps, cp)
	}
	r.markLeases(cps)
	slices.SortFunc(cps, func(a, b change.Checkpoint) int {
		return cmp.Or(cmp.Compare(a.Source, b.Source), cmp.Compare(a.Partition, b.Partition))
	})
	return cps
}

// flush applies the pending batch, if any, and acknowledges the source
// batches it completes.
func (r *runner) flush() error {
	r.takeParkable(time.Now()) // before checkpoints: parked pieces are no longer held
	if r.raws == 0 && len(r.out.Events) == 0 && len(r.out.Dead) == 0 && len(r.park.held) == 0 {
		return nil
	}
	cps := r.dropUnowned(r.checkpoints())
	if len(r.out.Dead) > 0 && r.cfg.DeadLetters != nil {
		if err := r.writeDead(r.out.Dead); err != nil {
			return err
		}
	}
	if err := r.bisect(r.out.Events, r.out.Dead, cps, r.park.held); err != nil {
		return err
	}
	r.park.held = nil
	for _, cp := range cps {
		r.lastHeld[partKey{cp.Source, cp.Partition}] = cp.Held
	}
	r.out.Reset()
	clear(r.touched)
	r.raws, r.bytes = 0, 0
	r.releaseAcks()
	st := r.dec.Stats()
	r.observeDecoder(st)
	r.progress(st)
	return nil
}

func (r *runner) writeDead(dl []change.DeadLetter) error {
	if err := r.cfg.DeadLetters.Write(dl); err != nil {
		return fmt.Errorf("write dead letters: %w", err)
	}
	if err := r.cfg.DeadLetters.Flush(); err != nil {
		return fmt.Errorf("write dead letters: %w", err)
	}
	return nil
}

// releaseAcks acknowledges, in order, the source batches whose records are
// all applied. When the source does not resume from sink checkpoints, a
// batch holding a DSQL piece still held is kept back: acknowledging it would
// let the source commit past a record that is not stored anywhere.
func (r *runner) releaseAcks() {
	n := 0
	for _, a := range r.acks {
		if !a.decoded || (!r.resumable && r.holds(a)) {
			break
		}
		if err := a.ack(r.applyCtx, nil); err != nil {
			r.log.Warn("ack source batch", "error", err)
		}
		n++
	}
	r.acks = slices.Delete(r.acks, 0, n)
}

// holds reports whether a source batch contains a record still held.
func (r *runner) holds(a *pendingAck) bool {
	for k, last := range a.last {
		if pos, held := r.dec.OldestHeld(k.source, k.partition); held && change.ComparePosition(pos, last) <= 0 {
			return true
		}
	}
	return false
}

// observeDecoder reports the decoder's held pieces and the records it
// skipped since the last call.
func (r *runner) observeDecoder(st decode.Stats) {
	r.cfg.Metrics.Held(st.Held)
	for reason, n := range st.Skipped {
		if d := n - r.skipped[reason]; d > 0 {
			r.cfg.Metrics.Skipped(reason, int(d))
			r.skipped[reason] = n
		}
	}
}

func (r *runner) progress(st decode.Stats) {
	if r.cfg.Progress == nil {
		return
	}
	r.cfg.Progress(Progress{
		Records: r.sum.Records, Events: r.sum.Events, Dead: r.sum.DeadTotal(), Applied: r.sum.Applied,
		Batches: r.sum.Batches, Held: st.Held, Elapsed: time.Since(r.start), Position: r.lastPos,
	})
}

func (r *runner) finish() Summary {
	s := r.sum
	st := r.dec.Stats()
	r.observeDecoder(st)
	s.Skipped = st.Skipped
	if s.Skipped == nil {
		s.Skipped = map[string]int64{}
	}
	s.Elapsed = time.Since(r.start)
	if secs := s.Elapsed.Seconds(); secs > 0 {
		s.EventsPerSec = float64(s.Events) / secs
	}
	return s
}
