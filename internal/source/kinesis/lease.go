package kinesis

import (
	"context"
	"fmt"
	"sort"
	"time"
)

// DefaultLeaseTTL is how long a shard lease lasts without renewal when
// Options.LeaseTTL is zero. Leases are renewed every third of it.
const DefaultLeaseTTL = 30 * time.Second

// Lease is one shard's row in a lease table shared by the daemons reading a
// stream.
type Lease struct {
	Stream, Shard string
	Owner         string // "" when nobody holds it
	Epoch         int64  // incremented by every successful AcquireLease: the fencing token
	Expired       bool   // by the store's clock, when listed: the holder stopped renewing
	Finished      bool   // the shard was read to its end and all of it applied
}

// Leaser is a lease table, stored by the sink so it lives with the
// checkpoints it guards. Every method is safe for concurrent use, decides
// by the store's own clock, and is atomic in the store (a conditional
// update), so two daemons never both hold one shard.
type Leaser interface {
	// AcquireLease gives owner the shard's lease, until now+ttl, when it is
	// free, expired or already owner's, and not finished. A take from
	// someone else (or a first take) increments Epoch. ok is false when
	// another owner holds a live lease.
	AcquireLease(ctx context.Context, stream, shard, owner string, ttl time.Duration) (l Lease, ok bool, err error)
	// RenewLease extends l until now+ttl; false when l.Owner no longer holds
	// it at l.Epoch.
	RenewLease(ctx context.Context, l Lease, ttl time.Duration) (bool, error)
	// ReleaseLease frees l if l.Owner still holds it at l.Epoch.
	ReleaseLease(ctx context.Context, l Lease) error
	// FinishLease marks the shard finished (and frees it) if l.Owner still
	// holds it at l.Epoch; a finished lease is never acquired again.
	FinishLease(ctx context.Context, l Lease) error
	// Leases lists the stream's leases.
	Leases(ctx context.Context, stream string) ([]Lease, error)
	// Heartbeat records that owner reads the stream, until now+ttl.
	Heartbeat(ctx context.Context, stream, owner string, ttl time.Duration) error
	// Owners lists the owners whose heartbeat has not expired, so each can
	// take its fair share of the shards.
	Owners(ctx context.Context, stream string) ([]string, error)
}

// Owns reports whether this source reads the shard now: always for a known
// shard without leases; with leases, while it holds the shard's lease. A
// pipeline should not store checkpoints of a shard it does not own: its new
// owner may have stored newer ones.
func (s *Source) Owns(shard string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	sh := s.shards[shard]
	return sh != nil && sh.owned
}

// LeaseEpoch returns the epoch of the shard's lease held by this source, or
// 0 when it holds none: the fencing token a sink compares with its lease
// table before storing the shard's checkpoint. A shard this source read to
// its end and recorded as finished keeps its last epoch (a finished lease
// is never taken again), so late checkpoints and dead letters of the shard
// (pieces of a DSQL record held past its end) are still stored.
func (s *Source) LeaseEpoch(shard string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sh := s.shards[shard]; sh != nil && (sh.owned || sh.reported) {
		return sh.lease.Epoch
	}
	return 0
}

// LeaseOwner returns Options.Owner when the source shares its shards
// through leases, else "".
func (s *Source) LeaseOwner() string {
	if s.opts.Leases == nil {
		return ""
	}
	return s.opts.Owner
}

// ReadEpochs returns the lease epoch of each shard of the records the last
// Read returned, as held when Read took them (nil without leases). A
// pipeline calls it from the goroutine that calls Read, after Read returned
// and before it calls Read again; unlike LeaseEpoch called later, it
// cannot attribute records read under a lease since lost to a lease taken
// again afterwards.
func (s *Source) ReadEpochs() map[string]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.readEpochs
}

// noteEpochsLocked records the lease epochs of b's shards for ReadEpochs.
// A pending chunk always belongs to the shard's current lease: dropLocked
// discards it with the lease.
func (s *Source) noteEpochsLocked(b *batch) {
	if s.opts.Leases == nil {
		return
	}
	m := make(map[string]int64, len(b.spans))
	for _, sp := range b.spans {
		m[sp.sh.id] = sp.sh.lease.Epoch
	}
	s.readEpochs = m
}

// leases runs the lease loop: every LeaseTTL/3 it renews the leases held,
// records finished shards, takes free leases up to a fair share and gives
// back leases above it.
func (s *Source) leases() {
	defer s.wg.Done()
	t := time.NewTicker(s.opts.LeaseTTL / 3)
	defer t.Stop()
	for {
		if err := s.leaseRound(s.bg); err != nil && s.bg.Err() == nil {
			s.log.Warn("kinesis lease round failed; retrying", "error", err)
		}
		select {
		case <-s.bg.Done():
			return
		case <-t.C:
		case <-s.leaseKick:
		}
	}
}

// leaseRound is one pass of the lease loop.
func (s *Source) leaseRound(ctx context.Context) error {
	ttl, stream := s.opts.LeaseTTL, s.name
	if err := s.opts.Leases.Heartbeat(ctx, stream, s.opts.Owner, ttl); err != nil {
		return fmt.Errorf("heartbeat of %s on %s: %w", s.opts.Owner, stream, err)
	}

	// Renew what is held; record finished shards.
	s.mu.Lock()
	var held, done []*shard
	for _, id := range s.order {
		sh := s.shards[id]
		switch {
		case sh.owned && sh.finished && !sh.reported:
			done = append(done, sh)
		case sh.owned && !sh.finished:
			held = append(held, sh)
		}
	}
	s.mu.Unlock()
	for _, sh := range done {
		if err := s.opts.Leases.FinishLease(ctx, sh.lease); err != nil {
			return fmt.Errorf("finish lease of %s[%s]: %w", stream, sh.id, err)
		}
		s.mu.Lock()
		sh.reported, sh.owned = true, false
		s.mu.Unlock()
	}
	for _, sh := range held {
		ok, err := s.opts.Leases.RenewLease(ctx, sh.lease, ttl)
		s.mu.Lock()
		switch {
		case err != nil && time.Since(sh.renewed) < ttl*2/3:
			s.log.Warn("kinesis lease renewal failed; retrying", "shard", sh.id, "error", err)
		case err != nil || !ok:
			// Lost, or about to expire while the store is unreachable:
			// stop before another owner may start.
			s.log.Warn("kinesis lease lost; stopping the shard", "shard", sh.id, "epoch", sh.lease.Epoch, "error", err)
			s.dropLocked(sh)
		default:
			sh.renewed = time.Now()
		}
		s.mu.Unlock()
	}

	// Take a fair share.
	all, err := s.opts.Leases.Leases(ctx, stream)
	if err != nil {
		return fmt.Errorf("list leases of %s: %w", stream, err)
	}
	live, err := s.opts.Leases.Owners(ctx, stream)
	if err != nil {
		return fmt.Errorf("list owners of %s: %w", stream, err)
	}
	byShard := map[string]Lease{}
	owners := map[string]bool{s.opts.Owner: true}
	for _, o := range live {
		owners[o] = true
	}
	s.mu.Lock()
	if s.doneElsewhere == nil {
		s.doneElsewhere = map[string]bool{}
	}
	for _, l := range all {
		byShard[l.Shard] = l
		if l.Finished && !s.doneElsewhere[l.Shard] {
			s.doneElsewhere[l.Shard] = true
			if sh := s.shards[l.Shard]; sh != nil && !sh.finished {
				// Finished by another owner: its children may be new to this
				// source, which lists shards only every DiscoverInterval.
				select {
				case s.kick <- struct{}{}:
				default:
				}
			}
		}
	}
	var candidates, free []string
	owned := 0
	for _, id := range s.order {
		sh := s.shards[id]
		if sh.finished || s.doneElsewhere[id] || !s.parentsDoneLocked(sh) {
			continue
		}
		candidates = append(candidates, id)
		l := byShard[id]
		switch {
		case sh.owned:
			owned++
		case l.Owner == "" || l.Expired || l.Owner == s.opts.Owner:
			free = append(free, id)
		}
	}
	s.startReadableLocked() // children of shards finished elsewhere
	s.mu.Unlock()
	share := (len(candidates) + len(owners) - 1) / len(owners)

	taken := map[string]Lease{}
	for _, id := range free {
		if owned >= share {
			break
		}
		l, ok, err := s.opts.Leases.AcquireLease(ctx, stream, id, s.opts.Owner, ttl)
		if err != nil {
			s.releaseTaken(ctx, taken)
			return fmt.Errorf("acquire lease of %s[%s]: %w", stream, id, err)
		}
		if ok {
			owned++
			taken[id] = l
		}
	}
	if len(taken) > 0 {
		// The previous owner may have stored newer checkpoints.
		cps, err := s.checkpoints(ctx)
		if err != nil {
			s.releaseTaken(ctx, taken)
			return err
		}
		s.mu.Lock()
		for id, l := range taken {
			sh := s.shards[id]
			sh.lease, sh.renewed, sh.owned = l, time.Now(), true
			s.setStartLocked(sh, cps)
			s.log.Info("kinesis lease taken", "shard", id, "epoch", l.Epoch, "from", sh.from.String())
		}
		s.startReadableLocked()
		s.notifyLocked()
		s.mu.Unlock()
	}

	// Give back what is above the share, newest shard ids first.
	if owned > share {
		s.mu.Lock()
		var give []*shard
		for _, id := range candidates {
			if sh := s.shards[id]; sh.owned {
				give = append(give, sh)
			}
		}
		sort.Slice(give, func(i, j int) bool { return give[i].id > give[j].id })
		give = give[:owned-share]
		var ls []Lease
		for _, sh := range give {
			ls = append(ls, sh.lease)
			s.log.Info("kinesis lease given back for balance", "shard", sh.id, "epoch", sh.lease.Epoch)
			s.dropLocked(sh)
		}
		s.mu.Unlock()
		for _, l := range ls {
			if err := s.opts.Leases.ReleaseLease(ctx, l); err != nil {
				return fmt.Errorf("release lease of %s[%s]: %w", stream, l.Shard, err)
			}
		}
	}
	return nil
}

// releaseTaken gives back leases taken in a round that then failed.
func (s *Source) releaseTaken(ctx context.Context, taken map[string]Lease) {
	for _, l := range taken {
		if err := s.opts.Leases.ReleaseLease(ctx, l); err != nil {
			s.log.Warn("kinesis lease release failed; it expires", "shard", l.Shard, "error", err)
		}
	}
}

// dropLocked stops reading a shard whose lease is gone: its in-flight
// batches are abandoned (their acks change nothing) and its state is
// forgotten, so a later take starts from the sink's checkpoint.
func (s *Source) dropLocked(sh *shard) {
	for _, sp := range sh.spans {
		sp.dropped = true
	}
	sh.spans, sh.pending = nil, nil
	sh.owned, sh.ended = false, false
	sh.acked, sh.fetched = "", ""
	sh.behind = -1
	sh.gen++
	s.notifyLocked()
}

// releaseAll gives back every lease held, at Close, recording the
// finished shards as finished, then closes the Leaser if it has a
// Close(context.Context) error method.
func (s *Source) releaseAll(ctx context.Context) error {
	s.mu.Lock()
	var release, finish []Lease
	for _, id := range s.order {
		sh := s.shards[id]
		switch {
		case sh.owned && sh.finished && !sh.reported:
			finish = append(finish, sh.lease)
			sh.owned, sh.reported = false, true
		case sh.owned && !sh.finished:
			release = append(release, sh.lease)
			s.dropLocked(sh)
		}
	}
	s.mu.Unlock()
	var first error
	for _, l := range finish {
		if err := s.opts.Leases.FinishLease(ctx, l); err != nil && first == nil {
			first = fmt.Errorf("finish lease of %s[%s]: %w", l.Stream, l.Shard, err)
		}
	}
	for _, l := range release {
		if err := s.opts.Leases.ReleaseLease(ctx, l); err != nil && first == nil {
			first = fmt.Errorf("release lease of %s[%s]: %w", l.Stream, l.Shard, err)
		}
	}
	if c, ok := s.opts.Leases.(interface{ Close(context.Context) error }); ok {
		if err := c.Close(ctx); err != nil && first == nil {
			first = fmt.Errorf("close lease table: %w", err)
		}
	}
	return first
}
