package kafka

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/cdcflow/cdcflow/internal/change"
)

// Origins of a partition's start position, as logged.
const (
	originCheckpoint = "checkpoint"      // just after the sink's Applied
	originHeld       = "checkpoint_held" // the sink's Resume: pieces were held
	originPartial    = "checkpoint_partial"
	originGroup      = "group_commit"
)

// start is where an assigned partition begins.
type start struct {
	offset    kgo.Offset
	at        int64  // numeric start; -1 when the broker resolves it (earliest/latest)
	origin    string // one of the origin constants or the Start policy
	committed int64  // the group's committed offset; -1 none
}

// startFor decides where a partition starts: the sink's checkpoint first
// (Resume when pieces were held, else just after Applied), else the group's
// committed offset (fetched by the client; negative when none), else the
// Start policy.
func startFor(cp *change.Checkpoint, fetched kgo.Offset, policy string) (start, error) {
	committed := fetched.EpochOffset().Offset
	if committed < 0 {
		committed = -1
	}
	st := start{committed: committed}
	switch {
	case cp != nil && cp.Held:
		at, err := parseOffset(cp.Resume.Offset)
		if err != nil {
			return st, fmt.Errorf("checkpoint %s[%s]: resume offset: %w", cp.Source, cp.Partition, err)
		}
		st.at, st.origin = at, originHeld
	case cp != nil:
		at, err := parseOffset(cp.Applied.Offset)
		if err != nil {
			return st, fmt.Errorf("checkpoint %s[%s]: applied offset: %w", cp.Source, cp.Partition, err)
		}
		if cp.Applied.Indexed {
			// Part of the record's envelope was applied: read it again;
			// the pipeline drops what was stored.
			st.at, st.origin = at, originPartial
		} else {
			st.at, st.origin = at+1, originCheckpoint
		}
	case committed >= 0:
		st.offset, st.at, st.origin = fetched, committed, originGroup
		return st, nil
	case policy == StartLatest:
		st.offset, st.at, st.origin = kgo.NewOffset().AtEnd(), -1, StartLatest
		return st, nil
	default:
		st.offset, st.at, st.origin = kgo.NewOffset().AtStart(), -1, StartEarliest
		return st, nil
	}
	st.offset = kgo.NewOffset().At(st.at)
	return st, nil
}

func parseOffset(s string) (int64, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a Kafka offset", s)
	}
	return n, nil
}

// checkpoints returns the sink's checkpoints of topic, by partition.
func (s *Source) checkpoints(ctx context.Context, topic string) (map[string]change.Checkpoint, error) {
	var cps []change.Checkpoint
	if s.opts.Checkpoints != nil {
		var err error
		if cps, err = s.opts.Checkpoints(ctx, topic); err != nil {
			return nil, fmt.Errorf("load checkpoints of topic %s: %w", topic, err)
		}
	} else {
		s.mu.Lock()
		cps = s.resumed[topic]
		s.mu.Unlock()
	}
	byPart := make(map[string]change.Checkpoint, len(cps))
	for _, cp := range cps {
		if cp.Source == topic {
			byPart[cp.Partition] = cp
		}
	}
	return byPart, nil
}

// adjust is the client's AdjustFetchOffsetsFn: it runs once partitions are
// assigned and their group offsets fetched, before any fetch of them. The
// offsets it returns are where consumption starts, so this is where the
// source's state of each partition begins (a new epoch). An error makes the
// client leave this group session and rejoin, retrying.
func (s *Source) adjust(ctx context.Context, offsets map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	type planned struct {
		key tp
		st  start
	}
	var plan []planned
	for topic, parts := range offsets {
		cps, err := s.checkpoints(ctx, topic)
		if err != nil {
			return nil, err
		}
		for partition, fetched := range parts {
			var cp *change.Checkpoint
			if c, ok := cps[strconv.Itoa(int(partition))]; ok {
				cp = &c
			}
			st, err := startFor(cp, fetched, s.opts.Start)
			if err != nil {
				return nil, err
			}
			parts[partition] = st.offset
			plan = append(plan, planned{tp{topic, partition}, st})
		}
	}
	slices.SortFunc(plan, func(a, b planned) int {
		if c := strings.Compare(a.key.topic, b.key.topic); c != 0 {
			return c
		}
		return int(a.key.partition - b.key.partition)
	})

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return offsets, nil // leaving the group: nothing will be read
	}
	var desc []string
	for _, pl := range plan {
		if old := s.parts[pl.key]; old != nil {
			s.abandonLocked([]*partition{old})
		}
		s.epoch++
		s.parts[pl.key] = &partition{
			tp:        pl.key,
			name:      strconv.Itoa(int(pl.key.partition)),
			epoch:     s.epoch,
			next:      pl.st.at,
			acked:     pl.st.at,
			ackedLE:   -1,
			committed: pl.st.committed,
			hw:        -1,
		}
		at := pl.st.origin
		if pl.st.at >= 0 {
			at = strconv.FormatInt(pl.st.at, 10) + " (" + pl.st.origin + ")"
		}
		desc = append(desc, fmt.Sprintf("%s[%d]@%s", pl.key.topic, pl.key.partition, at))
	}
	s.notifyLocked()
	s.mu.Unlock()
	if len(desc) > 0 {
		s.log.Info("kafka partitions assigned", "partitions", strings.Join(desc, " "))
	}
	return offsets, nil
}

// onRevoked is the client's OnPartitionsRevoked: the partitions move to
// another member. Their in-flight batches get RevokeWait to be
// acknowledged (and committed); what is still unacknowledged then is
// abandoned.
func (s *Source) onRevoked(ctx context.Context, cl *kgo.Client, revoked map[string][]int32) {
	s.release(ctx, cl, revoked, true)
}

// onLost is the client's OnPartitionsLost: the member was expelled, commits
// would fail, and another member may already own the partitions, so their
// in-flight batches are abandoned at once.
func (s *Source) onLost(ctx context.Context, cl *kgo.Client, lost map[string][]int32) {
	s.release(ctx, cl, lost, false)
}

func (s *Source) release(ctx context.Context, cl *kgo.Client, m map[string][]int32, graceful bool) {
	s.mu.Lock()
	var ps []*partition
	for topic, parts := range m {
		for _, n := range parts {
			if p := s.parts[tp{topic, n}]; p != nil {
				ps = append(ps, p)
			}
		}
	}
	s.mu.Unlock()
	if len(ps) == 0 {
		return
	}
	if graceful {
		s.awaitAcks(ctx, ps)
	}

	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	if graceful {
		s.mu.Lock()
		offs, committed := s.uncommittedLocked(ps)
		s.mu.Unlock()
		if len(offs) > 0 {
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := commitSync(cctx, cl, offs)
			cancel()
			if err != nil {
				s.log.Warn("commit offsets of revoked partitions", "error", err)
			} else {
				s.markCommitted(committed)
			}
		}
	}
	s.mu.Lock()
	abandoned := s.abandonLocked(ps)
	s.mu.Unlock()
	how := "revoked"
	if !graceful {
		how = "lost"
	}
	s.log.Info("kafka partitions "+how, "partitions", mtps(m), "abandoned_spans", abandoned)
}

// awaitAcks waits, at most RevokeWait, until no span of ps is in flight.
func (s *Source) awaitAcks(ctx context.Context, ps []*partition) {
	timer := time.NewTimer(s.opts.RevokeWait)
	defer timer.Stop()
	for {
		s.mu.Lock()
		pending := 0
		for _, p := range ps {
			if s.parts[p.tp] == p {
				pending += len(p.spans)
			}
		}
		ch, closed := s.changed, s.closed
		s.mu.Unlock()
		if pending == 0 || closed {
			return
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return
		case <-timer.C:
			s.log.Warn("revoked partitions still have unacknowledged batches; abandoning them, the new owner reads them again",
				"spans", pending, "waited", s.opts.RevokeWait)
			return
		}
	}
}

func mtps(m map[string][]int32) string {
	var parts []string
	for topic, ps := range m {
		ps = slices.Clone(ps)
		slices.Sort(ps)
		for _, p := range ps {
			parts = append(parts, fmt.Sprintf("%s[%d]", topic, p))
		}
	}
	slices.Sort(parts)
	return strings.Join(parts, " ")
}
