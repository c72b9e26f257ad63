package lambda

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/lambdacontext"

	"github.com/cdcflow/cdcflow/internal/change"
	"github.com/cdcflow/cdcflow/internal/decode"
	"github.com/cdcflow/cdcflow/internal/sink"
)

// Defaults for Options.
const (
	DefaultRetryInitial = 100 * time.Millisecond
	DefaultRetryMax     = 2 * time.Second
	DefaultMargin       = time.Second
)

// Options configure a Handler. Zero values take the defaults.
type Options struct {
	Decode       decode.Options // format and keys; a fresh Decoder is made per invocation
	MaxAttempts  int            // Apply attempts per invocation; DefaultAttempts when 0
	RetryInitial time.Duration  // first backoff between attempts; doubles per attempt
	RetryMax     time.Duration  // backoff cap
	// Margin is kept free before the invocation deadline: Apply is cut off
	// that long before it so the function can still report the batch failed.
	Margin time.Duration
	Logger *slog.Logger // nil discards
}

// Response is the partial batch response of Kinesis, DynamoDB Streams and
// Kafka event source mappings (FunctionResponseTypes: ReportBatchItemFailures).
// An empty list means every record was stored.
type Response struct {
	BatchItemFailures []ItemFailure `json:"batchItemFailures"`
}

// ItemFailure names one record from which the event source mapping must
// retry: a sequence number string (Kinesis, DynamoDB) or a
// KafkaItemIdentifier (MSK, self-managed Kafka).
type ItemFailure struct {
	ItemIdentifier any `json:"itemIdentifier"`
}

// Handler applies Lambda events to a sink. Handle may be called from
// several goroutines; invocations are serialized, as a sink requires.
type Handler struct {
	mu   sync.Mutex
	sink sink.Sink
	opts Options
	log  *slog.Logger
}

// New returns a Handler that applies to s. The caller keeps ownership of s
// (Close closes it).
func New(s sink.Sink, o Options) (*Handler, error) {
	if s == nil {
		return nil, errors.New("lambda handler: sink is nil")
	}
	if _, err := decode.New(o.Decode); err != nil {
		return nil, err
	}
	if o.MaxAttempts < 0 || o.RetryInitial < 0 || o.RetryMax < 0 || o.Margin < 0 {
		return nil, errors.New("lambda handler: attempts, backoff and margin must not be negative")
	}
	if o.MaxAttempts == 0 {
		o.MaxAttempts = DefaultAttempts
	}
	if o.RetryInitial == 0 {
		o.RetryInitial = DefaultRetryInitial
	}
	if o.RetryMax == 0 {
		o.RetryMax = DefaultRetryMax
	}
	if o.RetryMax < o.RetryInitial {
		o.RetryMax = o.RetryInitial
	}
	if o.Margin == 0 {
		o.Margin = DefaultMargin
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Handler{sink: s, opts: o, log: o.Logger}, nil
}

// Close closes the sink.
func (h *Handler) Close(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.sink.Close(ctx)
}

type partKey struct{ source, partition string }

func keyOf(p change.Position) partKey { return partKey{p.Source, p.Partition} }

// Handle applies one Lambda event: every record is decoded (poison records
// become dead letters), and events, dead letters and checkpoints are applied
// in one sink transaction. See the package doc for what the response and
// the error mean.
func (h *Handler) Handle(ctx context.Context, payload json.RawMessage) (Response, error) {
	start := time.Now()
	log := h.log
	if lc, ok := lambdacontext.FromContext(ctx); ok {
		log = log.With("request_id", lc.AwsRequestID)
	}
	ev, err := parseEvent(payload)
	if err != nil {
		log.Error("event rejected; the event source mapping retries it", "error", err)
		return Response{}, err
	}
	ok := Response{BatchItemFailures: []ItemFailure{}}
	if len(ev.records) == 0 {
		return ok, nil
	}
	log = log.With("event_source", ev.source, "records", len(ev.records), "first", ev.records[0].raw.Position.String())

	h.mu.Lock()
	defer h.mu.Unlock()
	actx, cancel := h.applyContext(ctx)
	defer cancel()

	stored, err := h.checkpoints(actx, ev)
	if err != nil {
		log.Error("cannot read stored checkpoints; the batch is retried", "error", err)
		return h.failFirst(ev)
	}

	dec, err := decode.New(h.opts.Decode)
	if err != nil {
		return Response{}, err
	}
	var out decode.Output
	now := time.Now()
	for i := range ev.records {
		r := &ev.records[i]
		if r.poison != nil {
			out.Dead = append(out.Dead, change.DeadLetter{Reason: r.poison.Reason, Detail: r.poison.Error(),
				Position: r.raw.Position, Raw: r.raw.Data})
			continue
		}
		dec.Decode(r.raw, now, &out)
	}

	b, already := h.batch(ev, &out, stored)
	var held []ItemFailure
	for _, k := range partitions(ev) {
		pos, ok := dec.OldestHeld(k.source, k.partition)
		if !ok {
			continue
		}
		id := idAt(ev, pos)
		if id == nil {
			return Response{}, fmt.Errorf("DSQL pieces held at %s, which has no item identifier", pos)
		}
		held = append(held, ItemFailure{ItemIdentifier: id})
		for i := range b.Checkpoints {
			if keyOf(pos) == (partKey{b.Checkpoints[i].Source, b.Checkpoints[i].Partition}) {
				b.Checkpoints[i].Held, b.Checkpoints[i].Resume = true, pos
			}
		}
	}

	var res change.ApplyResult
	if b.Len() > 0 || len(b.Checkpoints) > 0 {
		res, err = h.apply(actx, b, log)
		if err != nil {
			if errors.Is(err, sink.ErrPermanent) {
				// Sinks store rejected rows as dead letters themselves; an
				// error left permanent fails the invocation so the event
				// source mapping bisects the batch (BisectBatchOnFunctionError).
				log.Error("sink rejects the batch; failing the invocation", "error", err)
				return Response{}, fmt.Errorf("apply batch from %s: %w", ev.records[0].raw.Position, err)
			}
			log.Error("apply failed; reporting the batch from its first record", "attempts", h.opts.MaxAttempts, "error", err)
			return h.failFirst(ev)
		}
	}
	ok.BatchItemFailures = append(ok.BatchItemFailures, held...)
	dead := 0
	for _, n := range res.Dead {
		dead += n
	}
	if b.DedupePositions {
		// The sink dropped the records whose positions it had stored; the
		// rest were logged, rejected or stored as dead letters.
		already += max(b.Len()-res.Logged-dead, 0)
	}
	log.Info("batch applied", "events", len(b.Events), "dead_letters", dead, "already_stored", already,
		"logged", res.Logged, "applied", res.Applied, "duplicates", res.Duplicates, "stale", res.Stale,
		"held_partitions", len(held), "elapsed", time.Since(start).Round(time.Millisecond))
	if len(held) > 0 {
		log.Warn("DSQL record pieces are incomplete; reporting them so the rest is redelivered", "failures", len(held))
	}
	return ok, nil
}

// applyContext bounds Apply to Margin before the invocation deadline.
func (h *Handler) applyContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if dl, ok := ctx.Deadline(); ok {
		return context.WithDeadline(ctx, dl.Add(-h.opts.Margin))
	}
	return context.WithCancel(ctx)
}

// checkpoints loads the stored checkpoints of the event's partitions when
// its positions are ordered and the sink stores positions.
func (h *Handler) checkpoints(ctx context.Context, ev *event) (map[partKey]change.Checkpoint, error) {
	ps, isStore := h.sink.(sink.PositionStore)
	if !ev.ordered || !isStore {
		return nil, nil
	}
	stored := map[partKey]change.Checkpoint{}
	seen := map[string]bool{}
	for _, k := range partitions(ev) {
		if seen[k.source] {
			continue
		}
		seen[k.source] = true
		cps, err := ps.Checkpoints(ctx, k.source)
		if err != nil {
			return nil, err
		}
		for _, cp := range cps {
			stored[partKey{cp.Source, cp.Partition}] = cp
		}
	}
	return stored, nil
}

// batch builds the sink batch: events and dead letters not already stored,
// and one checkpoint per partition (ordered events only) at the highest
// position this batch or an earlier one reached. DynamoDB Streams records
// have no checkpoint (the event does not name their shard): the sink
// deduplicates them by sequence number instead (DedupePositions).
func (h *Handler) batch(ev *event, out *decode.Output, stored map[partKey]change.Checkpoint) (*change.Batch, int) {
	b := &change.Batch{DedupePositions: ev.source == SourceDynamoDB}
	already := 0
	for _, e := range out.Events {
		if covered(stored, e.Position, "") {
			already++
			continue
		}
		b.Events = append(b.Events, e)
	}
	for _, d := range out.Dead {
		if covered(stored, d.Position, d.Reason) {
			already++
			continue
		}
		b.Dead = append(b.Dead, d)
	}
	if !ev.ordered {
		return b, already
	}
	last := map[partKey]change.Position{}
	bump := func(p change.Position) {
		if p.Offset == "" {
			return
		}
		k := keyOf(p)
		if cur, ok := last[k]; !ok || change.ComparePosition(p, cur) > 0 {
			last[k] = p
		}
	}
	for i := range ev.records {
		if ev.records[i].id != nil {
			bump(ev.records[i].raw.Position)
		}
	}
	for i := range out.Events {
		bump(out.Events[i].Position)
	}
	for i := range out.Dead {
		bump(out.Dead[i].Position)
	}
	for _, k := range partitions(ev) {
		applied, ok := last[k]
		if !ok {
			continue
		}
		if cp, ok := stored[k]; ok && change.ComparePosition(cp.Applied, applied) > 0 {
			applied = cp.Applied // a checkpoint never moves back
		}
		b.Checkpoints = append(b.Checkpoints, change.Checkpoint{Source: k.source, Partition: k.partition, Applied: applied})
	}
	return b, already
}

// covered reports whether an item at pos was stored by an earlier
// invocation: at or before the partition's Applied position, except
// fragment dead letters at or after a held checkpoint's Resume position
// (those pieces were held, not stored).
func covered(stored map[partKey]change.Checkpoint, pos change.Position, reason string) bool {
	cp, ok := stored[keyOf(pos)]
	if !ok || pos.Offset == "" {
		return false
	}
	if cp.Held && strings.HasPrefix(reason, "fragment_") && change.ComparePosition(pos, cp.Resume) >= 0 {
		return false
	}
	return change.ComparePosition(pos, cp.Applied) <= 0
}

// apply calls Apply up to MaxAttempts times with capped, jittered backoff,
// giving up early when the next attempt would pass the deadline.
func (h *Handler) apply(ctx context.Context, b *change.Batch, log *slog.Logger) (change.ApplyResult, error) {
	for attempt := 1; ; attempt++ {
		res, err := h.sink.Apply(ctx, b)
		if err == nil {
			return res, nil
		}
		if errors.Is(err, sink.ErrPermanent) || attempt >= h.opts.MaxAttempts || ctx.Err() != nil {
			return res, err
		}
		wait := backoff(h.opts.RetryInitial, h.opts.RetryMax, attempt)
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			return res, fmt.Errorf("%w (no time left for another attempt)", err)
		}
		log.Warn("apply failed; retrying", "attempt", attempt, "max_attempts", h.opts.MaxAttempts, "error", err)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return res, fmt.Errorf("%w (deadline while waiting to retry)", err)
		}
	}
}

// backoff returns a random duration up to initial * 2^(attempt-1), capped
// at limit.
func backoff(initial, limit time.Duration, attempt int) time.Duration {
	d := initial
	for i := 1; i < attempt && d < limit; i++ {
		d *= 2
	}
	if d > limit {
		d = limit
	}
	return d/2 + rand.N(d/2+1)
}

// failFirst reports every partition of the event from its first record: the
// event source mapping redelivers all of it. An event with a partition none
// of whose records can be identified fails the invocation instead.
func (h *Handler) failFirst(ev *event) (Response, error) {
	resp := Response{BatchItemFailures: []ItemFailure{}}
	first := map[partKey]any{}
	var order []partKey
	for i := range ev.records {
		r := &ev.records[i]
		k := keyOf(r.raw.Position)
		if _, seen := first[k]; !seen {
			first[k] = nil
			order = append(order, k)
		}
		if first[k] == nil && r.id != nil {
			first[k] = r.id
		}
	}
	for _, k := range order {
		if first[k] == nil {
			return Response{}, fmt.Errorf("batch not applied and records of %s[%s] carry no item identifier: failing the invocation", k.source, k.partition)
		}
		resp.BatchItemFailures = append(resp.BatchItemFailures, ItemFailure{ItemIdentifier: first[k]})
	}
	return resp, nil
}

// partitions lists the event's partitions in order of first appearance.
func partitions(ev *event) []partKey {
	seen := map[partKey]bool{}
	var out []partKey
	for i := range ev.records {
		k := keyOf(ev.records[i].raw.Position)
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	return out
}

// idAt returns the item identifier of the record at pos (ignoring an
// envelope index), or nil.
func idAt(ev *event, pos change.Position) any {
	for i := range ev.records {
		p := ev.records[i].raw.Position
		if p.Source == pos.Source && p.Partition == pos.Partition && p.Offset == pos.Offset {
			return ev.records[i].id
		}
	}
	return nil
}
