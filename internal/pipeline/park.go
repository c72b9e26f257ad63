package pipeline

import (
	"time"

	"github.com/cdcflow/cdcflow/internal/change"
	"github.com/cdcflow/cdcflow/internal/sink"
)

// Parking DSQL pieces (sink.PieceStore).
//
// DSQL writes the pieces of an oversized record (the main record and its
// fragments) under random partition keys, so with Kinesis shards split
// between daemons by leases, one daemon may read the main record and
// another the fragments: neither completes the set. When the source is a
// LeasedSource and the sink a PieceStore, a set held for ParkAfter is
// parked: its pieces leave the decoder and travel in the next batch
// (change.Batch.Park), stored in the transaction whose checkpoints pass
// them. Every ExpireEvery the runner asks the sink for parked sets that
// are complete, reassembles them (decode.Decoder.Reassemble: events marked
// Parked) and applies them with the next batch; the sink stores each at
// most once by its chunk id and deletes its pieces. Parked sets still
// incomplete after ParkTimeout are dead-lettered by the sink itself, in
// one transaction, so exactly one daemon reports them.

// completeBatch is how many complete parked sets one sweep reassembles.
const completeBatch = 100

// parkState is the runner's parking; zero when parking is off.
type parkState struct {
	store sink.PieceStore
	held  []change.Piece // taken from the decoder, to park with the next batch
}

func newParkState(cfg Config, lease leaseState) parkState {
	ps, ok := cfg.Sink.(sink.PieceStore)
	if !ok || lease.src == nil {
		return parkState{}
	}
	return parkState{store: ps}
}

// takeParkable moves the sets held for ParkAfter out of the decoder, to be
// parked with the pending batch. Sets stored meanwhile by another process
// are dropped first (their chunk ids are reloaded).
func (r *runner) takeParkable(now time.Time) {
	if r.park.store == nil {
		return
	}
	since, held := r.dec.HeldSince()
	if !held || now.Sub(since) < r.cfg.ParkAfter {
		return
	}
	if r.chunks != nil {
		if err := r.loadChunks(r.applyCtx); err != nil {
			r.log.Warn("reload DSQL chunk ids before parking", "error", err)
		}
	}
	ps := r.dec.Park(now.Add(-r.cfg.ParkAfter))
	if len(ps) > 0 {
		r.log.Info("parking DSQL pieces held too long: another process may hold the rest of their sets", "pieces", len(ps))
		r.park.held = append(r.park.held, ps...)
	}
}

// sweepParked reassembles the complete parked sets into the pending batch
// and has the sink dead-letter the expired ones. It reports whether the
// pending batch gained events.
func (r *runner) sweepParked(now time.Time) bool {
	st := r.park.store
	if st == nil {
		return false
	}
	ctx := r.applyCtx
	dead, err := st.ExpireParked(ctx, r.cfg.ParkTimeout)
	if err != nil {
		r.log.Warn("expire parked DSQL pieces", "error", err)
	} else if len(dead) > 0 {
		r.log.Warn("parked DSQL sets incomplete after the fragment timeout: dead-lettered", "pieces", len(dead))
		for _, d := range dead {
			r.sum.Dead[d.Reason]++
		}
		if r.cfg.DeadLetters != nil {
			// Already stored by the sink; the file copy is best effort.
			if err := r.writeDead(dead); err != nil {
				r.log.Warn("write parked dead letters to the dead-letter file", "error", err)
			}
		}
	}
	ids, err := st.CompleteParked(ctx, completeBatch)
	if err != nil {
		r.log.Warn("find complete parked DSQL sets", "error", err)
		return false
	}
	if len(ids) == 0 {
		return false
	}
	pieces, err := st.ParkedPieces(ctx, ids)
	if err != nil {
		r.log.Warn("read parked DSQL pieces", "error", err)
		return false
	}
	ne := len(r.out.Events)
	r.dec.Reassemble(pieces, now, &r.out)
	for _, e := range r.out.Events[ne:] {
		r.bytes += int64(len(e.Raw) + len(e.Before) + len(e.After))
	}
	r.sum.Events += int64(len(r.out.Events) - ne)
	r.cfg.Metrics.Decoded(r.out.Events[ne:])
	return len(r.out.Events) > ne
}
