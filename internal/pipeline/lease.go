package pipeline

import (
	"slices"
	"time"

	"github.com/cdcflow/cdcflow/internal/change"
	"github.com/cdcflow/cdcflow/internal/source"
)

// LeasedSource is a source whose partitions are shared with other
// processes through a lease table (kinesis.Source with Options.Leases).
// The pipeline marks each checkpoint with the lease its records were read
// under (change.Checkpoint.LeaseOwner, LeaseEpoch), so the sink stores
// nothing of a partition whose lease was lost meanwhile, and it drops,
// before Apply, what it read of a partition the source no longer holds at
// that epoch: the partition's new owner reads those records again from the
// stored checkpoint.
type LeasedSource interface {
	source.Source
	// LeaseOwner names this reader in the lease table; "" when the source
	// shares nothing (then the other methods are not used).
	LeaseOwner() string
	// ReadEpochs returns the lease epoch each partition of the last batch
	// Read returned was read under. It is called from the goroutine that
	// calls Read, after Read returned and before it is called again.
	ReadEpochs() map[string]int64
	// LeaseEpoch returns the epoch of the partition's lease held now; 0
	// when none is held.
	LeaseEpoch(partition string) int64
}

// leaseState is the runner's view of a LeasedSource.
type leaseState struct {
	src   LeasedSource // nil when the source shares nothing
	owner string
	epoch map[partKey]int64 // the epoch consumed[k] was read under
}

func newLeaseState(src source.Source) leaseState {
	ls, ok := src.(LeasedSource)
	if !ok || ls.LeaseOwner() == "" {
		return leaseState{}
	}
	return leaseState{src: ls, owner: ls.LeaseOwner(), epoch: map[partKey]int64{}}
}

// readEpochs returns the epochs of the batch the reader goroutine just read
// (nil without leases, or after a failed Read).
func (l *leaseState) readEpochs(err error) map[string]int64 {
	if l.src == nil || err != nil {
		return nil
	}
	return l.src.ReadEpochs()
}

// leaseTurn is called before a record at p, read under the lease epochs of
// its batch, is decoded. When p's partition was last read under another
// epoch, the partition changed hands in between (lost, and taken again from
// the stored checkpoint): the pending batch, which holds records read under
// the old epoch, is applied first (and its part of that partition dropped
// by dropUnowned or fenced by the sink), and the highest consumed position
// of the partition starts again, since the new lease reads from an earlier
// position than the old one reached.
func (r *runner) leaseTurn(p change.Position, epochs map[string]int64, wait *time.Timer) error {
	l := &r.lease
	if l.src == nil {
		return nil
	}
	k, e := keyOf(p), epochs[p.Partition]
	prev, seen := l.epoch[k]
	if seen && prev == e {
		return nil
	}
	if seen && r.touched[k] {
		wait.Stop()
		r.waiting = false
		if err := r.flush(); err != nil {
			return err
		}
	}
	delete(r.consumed, k)
	l.epoch[k] = e
	return nil
}

// markLeases sets the lease of every checkpoint of a leased partition.
func (r *runner) markLeases(cps []change.Checkpoint) {
	if r.lease.src == nil {
		return
	}
	for i := range cps {
		if e := r.lease.epoch[partKey{cps[i].Source, cps[i].Partition}]; e > 0 {
			cps[i].LeaseOwner, cps[i].LeaseEpoch = r.lease.owner, e
		}
	}
}

// dropUnowned removes from the pending batch the events, dead letters and
// checkpoints of every partition the source no longer holds at the epoch
// they were read under, and forgets what was consumed of it: its new owner
// reads those records again. Output of a partition forgotten earlier (dead
// letters of pieces held when its lease was lost) is dropped too. It
// returns the checkpoints kept.
func (r *runner) dropUnowned(cps []change.Checkpoint) []change.Checkpoint {
	if r.lease.src == nil {
		return cps
	}
	lost := map[partKey]bool{}
	kept := cps[:0]
	for _, cp := range cps {
		k := partKey{cp.Source, cp.Partition}
		if cp.LeaseEpoch > 0 && r.lease.src.LeaseEpoch(cp.Partition) != cp.LeaseEpoch {
			lost[k] = true
			continue
		}
		kept = append(kept, cp)
	}
	isLost := func(p change.Position) bool {
		k := keyOf(p)
		if _, read := r.lease.epoch[k]; !read {
			lost[k] = true
		}
		return lost[k]
	}
	ne, nd := len(r.out.Events), len(r.out.Dead)
	r.out.Events = slices.DeleteFunc(r.out.Events, func(e change.Event) bool { return !e.Parked && isLost(e.Position) })
	r.out.Dead = slices.DeleteFunc(r.out.Dead, func(d change.DeadLetter) bool { return isLost(d.Position) })
	if len(lost) == 0 {
		return kept
	}
	var names []string
	for k := range lost {
		names = append(names, k.source+"/"+k.partition)
		delete(r.consumed, k)
		delete(r.lease.epoch, k)
		delete(r.lastHeld, k)
	}
	slices.Sort(names)
	r.fenced(names, "pipeline", ne-len(r.out.Events), nd-len(r.out.Dead))
	return kept
}

// fenced counts and logs partitions whose part of a batch was not stored
// because their lease was lost: dropped by the pipeline (by "pipeline") or
// fenced by the sink (by "sink").
func (r *runner) fenced(partitions []string, by string, events, dead int) {
	if len(partitions) == 0 {
		return
	}
	r.sum.Fenced += int64(len(partitions))
	args := []any{"partitions", partitions, "by", by, "owner", r.lease.owner}
	if by == "pipeline" {
		args = append(args, "events", events, "dead_letters", dead)
	}
	r.log.Info("lease lost: not storing what was read of these partitions; their new owner reads it again", args...)
}
