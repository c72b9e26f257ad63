package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cdcflow/cdcflow/internal/change"
	"github.com/cdcflow/cdcflow/internal/sqlgen"
)

// recordKey is a stored record position (sqlgen.RecordPosition).
type recordKey struct{ source, position string }

// recordKeyOf returns the stored key of p, cleaned as it is stored; ok is
// false when p has no offset.
func recordKeyOf(p change.Position) (recordKey, bool) {
	src, pos, ok := sqlgen.RecordPosition(p)
	return recordKey{cleanText(src), cleanText(pos)}, ok
}

// dropRecorded implements change.Batch.DedupePositions (when dedupe is
// set): in tx it claims the record positions of the batch's events and dead
// letters in _cdc_record_positions, in one statement, and returns them
// without those whose position an earlier transaction stored (a
// redelivered record). Items of one record in one batch are kept together;
// items without an offset are always kept. In the same round trip it
// prunes positions older than sqlgen.RecordPositionsRetention, at most
// twice as many as the batch adds plus 1000, so the table stays about two
// days of records.
//
// A concurrent writer claiming the same position makes the statement wait
// for it: if it commits, the record is dropped here; if it rolls back, the
// record is claimed here.
func (s *Sink) dropRecorded(ctx context.Context, tx pgx.Tx, dedupe bool, events []*change.Event, dead []change.DeadLetter, now time.Time) ([]*change.Event, []change.DeadLetter, error) {
	if !dedupe {
		return events, dead, nil
	}
	seen := map[recordKey]bool{}
	var sources, positions []string
	add := func(p change.Position) {
		k, ok := recordKeyOf(p)
		if !ok || seen[k] {
			return
		}
		seen[k] = true
		sources, positions = append(sources, k.source), append(positions, k.position)
	}
	for _, e := range events {
		add(e.Position)
	}
	for i := range dead {
		add(dead[i].Position)
	}
	if len(sources) == 0 {
		return events, dead, nil
	}
	q := &pgx.Batch{}
	q.Queue(sqlgen.ClaimRecordPositions(dialect), sources, positions, now)
	q.Queue(sqlgen.PostgresPruneRecordPositions(), now.Add(-sqlgen.RecordPositionsRetention), int64(2*len(sources)+1000))
	br := tx.SendBatch(ctx, q)
	fresh, err := scanRecordKeys(br)
	if err == nil {
		if _, err = br.Exec(); err != nil {
			err = fmt.Errorf("prune %s: %w", sqlgen.RecordPositionsTable, err)
		}
	}
	if cerr := br.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("store record positions: %w", cerr)
	}
	if err != nil {
		return nil, nil, err
	}
	if len(fresh) == len(sources) {
		return events, dead, nil
	}
	keep := func(p change.Position) bool {
		k, ok := recordKeyOf(p)
		return !ok || fresh[k]
	}
	outEvents := make([]*change.Event, 0, len(events))
	for _, e := range events {
		if keep(e.Position) {
			outEvents = append(outEvents, e)
		}
	}
	outDead := make([]change.DeadLetter, 0, len(dead))
	for _, d := range dead {
		if keep(d.Position) {
			outDead = append(outDead, d)
		}
	}
	s.opts.Logger.Debug("dropped redelivered events and dead letters whose record positions are stored",
		"records", len(sources)-len(fresh), "events", len(events)-len(outEvents), "dead_letters", len(dead)-len(outDead))
	return outEvents, outDead, nil
}

// scanRecordKeys reads the pairs ClaimRecordPositions stored.
func scanRecordKeys(br pgx.BatchResults) (map[recordKey]bool, error) {
	rows, err := br.Query()
	if err != nil {
		return nil, fmt.Errorf("store record positions: %w", err)
	}
	defer rows.Close()
	fresh := map[recordKey]bool{}
	for rows.Next() {
		var k recordKey
		if err := rows.Scan(&k.source, &k.position); err != nil {
			return nil, fmt.Errorf("store record positions: %w", err)
		}
		fresh[k] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store record positions: %w", err)
	}
	return fresh, nil
}
