package pipeline

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/cdcflow/cdcflow/internal/change"
	"github.com/cdcflow/cdcflow/internal/sink"
)

// fatalError is an apply failure that ends the run: the shutdown deadline
// passed, or the dead-letter writer failed.
type fatalError struct{ err error }

func (e *fatalError) Error() string { return e.err.Error() }
func (e *fatalError) Unwrap() error { return e.err }

// split cuts the items (events first, then dead letters) after the first at.
func split(evs []change.Event, dead []change.DeadLetter, at int) (le []change.Event, ld []change.DeadLetter, re []change.Event, rd []change.DeadLetter) {
	if at <= len(evs) {
		return evs[:at:at], nil, evs[at:], dead
	}
	at -= len(evs)
	return evs, dead[:at:at], nil, dead[at:]
}

// bisect applies one batch; if the sink keeps rejecting it, it applies the
// halves separately, down to the single event at fault, which becomes a
// dead letter. Only the last piece carries the checkpoints (and the parked
// DSQL pieces they pass), so they are stored only once everything before
// them is.
func (r *runner) bisect(evs []change.Event, dead []change.DeadLetter, cps []change.Checkpoint, park []change.Piece) error {
	return r.bisectFenced(evs, dead, cps, nil, park)
}

// bisectFenced is bisect with fences: the leases the first parts of a split
// batch are checked against (change.Batch.Fences), since they carry no
// checkpoints.
func (r *runner) bisectFenced(evs []change.Event, dead []change.DeadLetter, cps, fences []change.Checkpoint, park []change.Piece) error {
	b := &change.Batch{Events: evs, Dead: dead, Checkpoints: cps, Fences: fences, Park: park}
	if len(evs) == 0 {
		return r.applyForever(b)
	}
	err := r.applyRetry(b)
	if err == nil {
		return nil
	}
	var fatal *fatalError
	if errors.As(err, &fatal) {
		return err
	}
	if len(evs) == 1 && len(dead) == 0 {
		return r.culprit(evs[0], err, cps, fences, park)
	}
	r.sum.Bisects++
	r.cfg.Metrics.Bisect()
	n := len(evs) + len(dead)
	r.log.Warn("sink rejects batch; bisecting", "items", n, "first", evs[0].Position.String(), "error", err)
	le, ld, re, rd := split(evs, dead, n/2)
	if fences == nil {
		fences = leased(cps)
	}
	if err := r.bisectFenced(le, ld, nil, fences, nil); err != nil {
		return err
	}
	return r.bisectFenced(re, rd, cps, fences, park)
}

// applyRetry applies b up to MaxAttempts times (once for a permanent
// error) and returns the last error.
func (r *runner) applyRetry(b *change.Batch) error {
	for attempt := 1; ; attempt++ {
		err := r.applyOnce(b)
		if err == nil {
			return nil
		}
		var fatal *fatalError
		if errors.As(err, &fatal) || errors.Is(err, sink.ErrPermanent) || attempt >= r.cfg.MaxAttempts {
			return err
		}
		r.sum.Retries++
		r.cfg.Metrics.Retry()
		r.log.Warn("apply failed; retrying", "attempt", attempt, "max_attempts", r.cfg.MaxAttempts,
			"events", len(b.Events), "dead_letters", len(b.Dead), "error", err)
		if err := r.sleep(attempt); err != nil {
			return err
		}
	}
}

// applyForever applies a batch that holds no events until the sink takes
// it: nothing in it can be dead-lettered, so a failure means the sink is down.
func (r *runner) applyForever(b *change.Batch) error {
	for attempt := 1; ; attempt++ {
		err := r.applyOnce(b)
		if err == nil {
			return nil
		}
		var fatal *fatalError
		if errors.As(err, &fatal) {
			return err
		}
		r.sum.Retries++
		r.cfg.Metrics.Retry()
		r.log.Error("sink cannot store dead letters and checkpoints; retrying until it can",
			"attempt", attempt, "dead_letters", len(b.Dead), "checkpoints", len(b.Checkpoints), "error", err)
		if err := r.sleep(attempt); err != nil {
			return err
		}
	}
}

// culprit handles one event the sink refused: it is dead-lettered when the
// sink says the event is at fault (a permanent error) or when the sink is up
// enough to store its dead letter; otherwise the sink is down and the event
// is retried.
func (r *runner) culprit(ev change.Event, err error, cps, fences []change.Checkpoint, park []change.Piece) error {
	for round := 1; ; round++ {
		dl := change.DeadLetter{Reason: change.ReasonSinkRejected, Detail: err.Error(), Position: ev.Position, Raw: ev.Raw}
		b := &change.Batch{Dead: []change.DeadLetter{dl}, Checkpoints: cps, Fences: fences, Park: park}
		var stored error
		if errors.Is(err, sink.ErrPermanent) {
			if stored = r.applyForever(b); stored != nil {
				return stored
			}
		} else {
			stored = r.applyOnce(b)
			var fatal *fatalError
			if errors.As(stored, &fatal) {
				return stored
			}
		}
		if stored == nil {
			r.log.Error("sink rejected an event; dead-lettered", "position", ev.Position.String(),
				"table", ev.QualifiedTable(), "key", ev.Key, "error", err)
			if r.cfg.DeadLetters != nil {
				if werr := r.writeDead(b.Dead); werr != nil {
					return &fatalError{werr}
				}
			}
			return nil
		}
		r.sum.Retries++
		r.cfg.Metrics.Retry()
		r.log.Error("sink is down: an event and its dead letter both failed; retrying",
			"position", ev.Position.String(), "round", round, "error", err, "dead_letter_error", stored)
		if serr := r.sleep(round); serr != nil {
			return serr
		}
		if err = r.applyRetry(&change.Batch{Events: []change.Event{ev}, Checkpoints: cps}); err == nil {
			return nil
		}
		var fatal *fatalError
		if errors.As(err, &fatal) {
			return err
		}
	}
}

// applyOnce calls Apply once and records what it did. After the shutdown
// deadline its error is fatal.
func (r *runner) applyOnce(b *change.Batch) error {
	start := time.Now()
	res, err := r.cfg.Sink.Apply(r.applyCtx, b)
	if err != nil {
		if r.applyCtx.Err() != nil {
			return &fatalError{fmt.Errorf("apply batch: shutdown deadline passed: %w", err)}
		}
		return err
	}
	r.sum.Batches++
	r.sum.Logged += int64(res.Logged)
	r.sum.Applied += int64(res.Applied)
	r.sum.Duplicates += int64(res.Duplicates)
	r.sum.Stale += int64(res.Stale)
	r.fenced(res.Fenced, "sink", 0, 0)
	for i := range b.Events {
		r.sum.Tables[b.Events[i].QualifiedTable()]++
	}
	for i := range b.Dead {
		r.sum.Dead[b.Dead[i].Reason]++
	}
	now := time.Now()
	r.cfg.Metrics.BatchApplied(b, res, now.Sub(start), now)
	return nil
}

// sleep waits the backoff before retry number attempt.
func (r *runner) sleep(attempt int) error {
	t := time.NewTimer(backoff(r.cfg.RetryInitial, r.cfg.RetryMax, attempt))
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-r.applyCtx.Done():
		return &fatalError{fmt.Errorf("apply batch: shutdown deadline passed while retrying: %w", context.Cause(r.applyCtx))}
	}
}

// backoff returns a random duration up to initial * 2^(attempt-1), capped
// at limit (full jitter: retries of many pipelines do not synchronise).
func backoff(initial, limit time.Duration, attempt int) time.Duration {
	d := initial
	for i := 1; i < attempt && d < limit; i++ {
		d *= 2
	}
	if d > limit || d <= 0 {
		d = limit
	}
	return rand.N(d + 1)
}

// leased returns the checkpoints of cps that carry a lease.
func leased(cps []change.Checkpoint) []change.Checkpoint {
	var out []change.Checkpoint
	for _, c := range cps {
		if c.LeaseEpoch > 0 {
			out = append(out, c)
		}
	}
	return out
}
