package kinesis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/smithy-go"

	"github.com/cdcflow/cdcflow/internal/change"
)

// startOnce lists the shards, loads the checkpoints and starts the readers
// and the discovery loop, the first time it succeeds.
func (s *Source) startOnce(ctx context.Context) error {
	s.mu.Lock()
	started, closed := s.started, s.closed
	s.mu.Unlock()
	switch {
	case closed:
		return errClosed
	case started:
		return nil
	}
	list, err := s.listShards(ctx)
	if err != nil {
		return err
	}
	cps, err := s.checkpoints(ctx)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed
	}
	s.addShardsLocked(list, cps, true)
	s.started = true
	s.log.Info("reading kinesis stream", "shards", len(list), "start", s.opts.Start, "checkpoints", len(cps))
	s.startReadableLocked()
	s.wg.Add(1)
	go s.discover()
	if s.opts.Leases != nil {
		s.wg.Add(1)
		go s.leases()
	}
	return nil
}

// listShards returns every shard of the stream (open, and closed ones still
// within the retention period), following pagination.
func (s *Source) listShards(ctx context.Context) ([]types.Shard, error) {
	var (
		all   []types.Shard
		token *string
	)
	for {
		in := &kinesis.ListShardsInput{}
		if token != nil {
			in.NextToken = token // must be the only stream argument
		} else {
			s.streamIn(&in.StreamName, &in.StreamARN)
		}
		cctx, cancel := context.WithTimeout(ctx, s.opts.CallTimeout)
		out, err := s.client.ListShards(cctx, in)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("list shards of kinesis stream %s: %w", s.name, err)
		}
		all = append(all, out.Shards...)
		if out.NextToken == nil || *out.NextToken == "" {
			return all, nil
		}
		token = out.NextToken
	}
}

// addShardsLocked adds the shards not known yet and sets where each
// starts (see startSpec). With leases, a shard is read only once its lease
// is taken.
func (s *Source) addShardsLocked(list []types.Shard, cps map[string]change.Checkpoint, initial bool) {
	added := false
	for _, l := range list {
		id := aws.ToString(l.ShardId)
		if id == "" || s.shards[id] != nil {
			continue
		}
		sh := &shard{id: id, behind: -1, initial: initial, owned: s.opts.Leases == nil}
		for _, p := range []*string{l.ParentShardId, l.AdjacentParentShardId} {
			if aws.ToString(p) != "" {
				sh.parents = append(sh.parents, *p)
			}
		}
		sh.closed = l.SequenceNumberRange != nil && l.SequenceNumberRange.EndingSequenceNumber != nil
		s.setStartLocked(sh, cps)
		s.shards[id] = sh
		added = true
		if !initial {
			s.log.Info("new kinesis shard", "shard", id, "parents", sh.parents, "from", sh.from.String())
		}
	}
	if added {
		s.order = sortedKeys(s.shards)
		s.notifyLocked()
	}
}

// setStartLocked sets where a shard starts: at the sink's checkpoint; else,
// for shards found when the source started, the Start policy; else (shards
// created by a reshard while running) at their first record.
func (s *Source) setStartLocked(sh *shard, cps map[string]change.Checkpoint) {
	spec, ok := resumeSpec(cps[sh.id])
	switch {
	case ok:
	case !sh.initial:
		spec = iterSpec{typ: types.ShardIteratorTypeTrimHorizon}
	case s.opts.Start == StartLatest && sh.closed:
		// Nothing will ever be put after "now" in a closed shard.
		sh.ended, sh.finished = true, true
	case s.opts.Start == StartLatest:
		spec = iterSpec{typ: types.ShardIteratorTypeLatest}
	case s.opts.Start == StartAtTimestamp:
		spec = iterSpec{typ: types.ShardIteratorTypeAtTimestamp, ts: s.opts.Timestamp}
	default:
		spec = iterSpec{typ: types.ShardIteratorTypeTrimHorizon}
	}
	sh.start, sh.from = spec, spec
}

// startReadableLocked starts a reader for every shard that is not finished
// and whose parents are finished (or expired: no longer listed), so a
// key's records from before a reshard are delivered before those after it.
func (s *Source) startReadableLocked() {
	if s.closed {
		return
	}
	for _, id := range s.order {
		sh := s.shards[id]
		if sh.running || sh.finished || !sh.owned || !s.parentsDoneLocked(sh) {
			continue
		}
		sh.running = true
		s.wg.Add(1)
		go s.readShard(sh)
	}
}

func (s *Source) parentsDoneLocked(sh *shard) bool {
	for _, p := range sh.parents {
		if ps := s.shards[p]; ps != nil && !ps.finished && !s.doneElsewhere[p] {
			return false
		}
	}
	return true
}

// discover lists the shards every DiscoverInterval, or at once when a shard
// finished, and starts readers for the new ones.
func (s *Source) discover() {
	defer s.wg.Done()
	t := time.NewTicker(s.opts.DiscoverInterval)
	defer t.Stop()
	for {
		select {
		case <-s.bg.Done():
			return
		case <-t.C:
		case <-s.kick:
		}
		list, err := s.listShards(s.bg)
		if err != nil {
			if s.bg.Err() != nil {
				return
			}
			if !retryable(err) {
				s.mu.Lock()
				s.failLocked(err)
				s.mu.Unlock()
				return
			}
			s.log.Warn("kinesis shard discovery failed; retrying", "error", err)
			continue
		}
		s.mu.Lock()
		fresh := false
		for _, l := range list {
			if s.shards[aws.ToString(l.ShardId)] == nil {
				fresh = true
			}
		}
		s.mu.Unlock()
		if !fresh {
			continue
		}
		cps, err := s.checkpoints(s.bg)
		if err != nil {
			s.log.Warn("loading checkpoints for new kinesis shards failed; retrying", "error", err)
			continue
		}
		s.mu.Lock()
		s.addShardsLocked(list, cps, false)
		s.startReadableLocked()
		s.mu.Unlock()
	}
}

// readShard is the reader of one shard: it fetches records into the shard's
// pending chunk, one chunk at a time, until the shard is finished or the
// source closes.
func (s *Source) readShard(sh *shard) {
	defer s.wg.Done()
	var (
		iter    *string
		gen     = ^uint64(0)
		attempt int // consecutive retryable failures
		from    iterSpec
	)
	for {
		s.mu.Lock()
		for !s.closed && !sh.finished && sh.owned && sh.gen == gen && (sh.pending != nil || sh.ended) {
			ch := s.changed
			s.mu.Unlock()
			select {
			case <-ch:
			case <-s.bg.Done():
			}
			s.mu.Lock()
		}
		if s.closed || sh.finished || !sh.owned {
			sh.running = false
			s.mu.Unlock()
			return
		}
		if sh.gen != gen {
			gen, iter = sh.gen, nil
		}
		if iter == nil {
			from = sh.from
		}
		s.mu.Unlock()

		if iter == nil {
			it, err := s.shardIterator(sh.id, from)
			switch {
			case err == nil:
				iter = it
			case s.bg.Err() != nil:
				continue // closed: the loop returns
			case isCode(err, "ResourceNotFoundException"):
				s.expired(sh, gen, err)
				continue
			case retryable(err):
				attempt++
				s.log.Warn("kinesis get shard iterator failed; retrying", "shard", sh.id, "from", from.String(), "error", err)
				s.sleep(s.backoff(attempt))
				continue
			default:
				s.mu.Lock()
				s.failLocked(fmt.Errorf("get shard iterator of kinesis %s[%s] %s: %w", s.name, sh.id, from, err))
				sh.running = false
				s.mu.Unlock()
				return
			}
		}

		cctx, cancel := context.WithTimeout(s.bg, s.opts.CallTimeout)
		out, err := s.client.GetRecords(cctx, &kinesis.GetRecordsInput{
			ShardIterator: iter,
			Limit:         aws.Int32(int32(min(s.opts.MaxBatchRecords, DefaultMaxBatchRecords))),
		})
		cancel()
		switch {
		case err == nil:
			attempt = 0
		case s.bg.Err() != nil:
			continue
		case isCode(err, "ExpiredIteratorException"):
			// Re-acquire from the last record delivered in this generation.
			s.mu.Lock()
			if sh.gen == gen && sh.fetched != "" {
				sh.from = after(sh.fetched)
			}
			s.mu.Unlock()
			s.log.Info("kinesis shard iterator expired; acquiring a new one", "shard", sh.id)
			iter = nil
			continue
		case isCode(err, "ResourceNotFoundException"):
			s.expired(sh, gen, err)
			continue
		case retryable(err):
			attempt++
			// Throttling is routine (5 reads/s per shard, shared with other
			// consumers): said at debug level until it persists.
			lvl := slog.LevelWarn
			if isCode(err, "ProvisionedThroughputExceededException") && attempt%10 != 0 {
				lvl = slog.LevelDebug
			}
			s.log.Log(s.bg, lvl, "kinesis get records failed; backing off", "shard", sh.id, "attempt", attempt, "error", err)
			s.sleep(s.backoff(attempt))
			continue
		default:
			s.mu.Lock()
			s.failLocked(fmt.Errorf("get records of kinesis %s[%s]: %w", s.name, sh.id, err))
			sh.running = false
			s.mu.Unlock()
			return
		}

		raws, first, last := s.toRaws(sh.id, out.Records)
		s.mu.Lock()
		if sh.gen != gen {
			s.mu.Unlock() // rewound while fetching: fetch again from the rewind target
			continue
		}
		if out.MillisBehindLatest != nil {
			sh.behind = *out.MillisBehindLatest
		}
		if last != "" {
			if sh.acked == "" && len(sh.spans) == 0 && sh.fetched == "" && sh.start.seq == "" {
				// Pin a LATEST, AT_TIMESTAMP or TRIM_HORIZON start to the first
				// record, so a rewind before any ack reads exactly it again.
				sh.start = iterSpec{typ: types.ShardIteratorTypeAtSequenceNumber, seq: first}
			}
			sh.fetched = last
			sh.pending = &chunk{raws: raws, last: last} // every record yields at least one raw
		}
		iter = out.NextShardIterator
		if iter == nil {
			sh.ended = true
			s.log.Info("kinesis shard reached its end", "shard", sh.id)
			s.finishIfDoneLocked(sh)
		}
		s.notifyLocked()
		s.mu.Unlock()
		if len(out.Records) == 0 && iter != nil {
			s.sleep(s.opts.PollInterval)
		}
	}
}

// toRaws turns Kinesis records into raw records, de-aggregating KPL
// aggregates into their sub-records (Position.Index). It returns the
// sequence numbers of the first and last Kinesis record.
func (s *Source) toRaws(shardID string, recs []types.Record) (raws []change.Raw, first, last string) {
	for _, r := range recs {
		seq := aws.ToString(r.SequenceNumber)
		if first == "" {
			first = seq
		}
		last = seq
		pos := change.Position{Source: s.name, Partition: shardID, Offset: seq}
		subs, ok, why := deaggregate(r.Data)
		if why != nil {
			s.log.Warn("record starts like a KPL aggregate but is not one; delivering it whole", "position", pos.String(), "error", why)
		}
		if !ok {
			raws = append(raws, change.Raw{Data: r.Data, Position: pos})
			continue
		}
		for i, sub := range subs {
			p := pos
			p.Index, p.Indexed = i, true
			raws = append(raws, change.Raw{Data: sub.Data, Position: p})
		}
	}
	return raws, first, last
}

// shardIterator acquires an iterator at spec.
func (s *Source) shardIterator(id string, spec iterSpec) (*string, error) {
	in := &kinesis.GetShardIteratorInput{ShardId: aws.String(id), ShardIteratorType: spec.typ}
	s.streamIn(&in.StreamName, &in.StreamARN)
	switch spec.typ {
	case types.ShardIteratorTypeAtSequenceNumber, types.ShardIteratorTypeAfterSequenceNumber:
		in.StartingSequenceNumber = aws.String(spec.seq)
	case types.ShardIteratorTypeAtTimestamp:
		in.Timestamp = aws.Time(spec.ts)
	}
	cctx, cancel := context.WithTimeout(s.bg, s.opts.CallTimeout)
	defer cancel()
	out, err := s.client.GetShardIterator(cctx, in)
	if err != nil {
		return nil, err
	}
	return out.ShardIterator, nil
}

// expired handles a shard the service no longer knows (trimmed after its
// retention period): it is treated as ended, loudly.
func (s *Source) expired(sh *shard, gen uint64, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sh.gen != gen {
		return
	}
	s.log.Error("kinesis shard no longer exists (expired past the retention period?); treating it as ended", "shard", sh.id, "error", err)
	sh.ended = true
	s.finishIfDoneLocked(sh)
	s.notifyLocked()
}

// backoff is the delay before retry number attempt (from 1): capped
// exponential with full jitter.
func (s *Source) backoff(attempt int) time.Duration {
	d := s.opts.BackoffBase << min(attempt-1, 20)
	if d <= 0 || d > s.opts.BackoffMax {
		d = s.opts.BackoffMax
	}
	return time.Duration(rand.Int64N(int64(d) + 1))
}

// sleep waits d or until the source closes.
func (s *Source) sleep(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-s.bg.Done():
	}
}

func isCode(err error, code string) bool {
	var ae smithy.APIError
	return errors.As(err, &ae) && ae.ErrorCode() == code
}

// retryable reports whether err may go away by itself: throttling, server
// faults and transport errors. Permanent ones (access denied, invalid
// argument, stream deleted) stop the source with a clear error.
func retryable(err error) bool {
	var re *awshttp.ResponseError
	if errors.As(err, &re) && re.HTTPStatusCode() >= 500 {
		return true
	}
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		return true // transport: refused, reset, timeout
	}
	switch ae.ErrorCode() {
	case "ProvisionedThroughputExceededException", "LimitExceededException", "ThrottlingException",
		"KMSThrottlingException", "ResourceInUseException", "InternalFailure", "ServiceUnavailable":
		return true
	}
	return ae.ErrorFault() == smithy.FaultServer
}
