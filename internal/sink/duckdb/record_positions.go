package duckdb

import (
	"context"
	"fmt"
	"time"

	"github.com/cdcflow/cdcflow/internal/change"
	"github.com/cdcflow/cdcflow/internal/sqlgen"
)

// recordKey is a stored record position (sqlgen.RecordPosition).
type recordKey struct{ source, position string }

func recordKeyOf(p change.Position) (recordKey, bool) {
	src, pos, ok := sqlgen.RecordPosition(p)
	return recordKey{src, pos}, ok
}

// recordKeys returns the distinct record positions of b's events and dead
// letters that have an offset, as the two parallel lists the sqlgen
// statements take.
func recordKeys(b *change.Batch) (sources, positions []string) {
	seen := map[recordKey]bool{}
	add := func(p change.Position) {
		k, ok := recordKeyOf(p)
		if !ok || seen[k] {
			return
		}
		seen[k] = true
		sources, positions = append(sources, k.source), append(positions, k.position)
	}
	for i := range b.Events {
		add(b.Events[i].Position)
	}
	for i := range b.Dead {
		add(b.Dead[i].Position)
	}
	return sources, positions
}

// dropRecorded implements change.Batch.DedupePositions, before the batch
// is planned: it returns b itself, or a copy without the events and dead
// letters whose record position an earlier batch stored (a redelivered
// record). Items of one record in one batch are kept together; items
// without an offset are always kept. The read is exact because the sink is
// the only writer of its file and Apply holds the sink's mutex until the
// batch's positions are stored (writeRecordPositions).
func (s *Sink) dropRecorded(ctx context.Context, b *change.Batch) (*change.Batch, error) {
	if !b.DedupePositions {
		return b, nil
	}
	sources, positions := recordKeys(b)
	if len(sources) == 0 {
		return b, nil
	}
	stored := map[recordKey]bool{}
	err := s.thread.run(func() error {
		if s.broken {
			if err := s.reopen(ctx); err != nil {
				return err
			}
		}
		rows, err := s.conn.QueryContext(ctx, sqlgen.SelectRecordPositions(dialect), sources, positions)
		if err != nil {
			if fatal(err) {
				_ = s.reopen(ctx) // as Apply does: the retry finds a working database
			}
			return err
		}
		for rows.Next() {
			var k recordKey
			if err := rows.Scan(&k.source, &k.position); err != nil {
				rows.Close()
				return err
			}
			stored[k] = true
		}
		return closeRows(rows)
	})
	if err != nil {
		return nil, fmt.Errorf("read stored record positions from duckdb %q: %w", s.opts.Path, err)
	}
	if len(stored) == 0 {
		return b, nil
	}
	out := *b // keeps the checkpoints and every other field
	out.Events = make([]change.Event, 0, len(b.Events))
	for i := range b.Events {
		if k, ok := recordKeyOf(b.Events[i].Position); !ok || !stored[k] {
			out.Events = append(out.Events, b.Events[i])
		}
	}
	out.Dead = make([]change.DeadLetter, 0, len(b.Dead))
	for i := range b.Dead {
		if k, ok := recordKeyOf(b.Dead[i].Position); !ok || !stored[k] {
			out.Dead = append(out.Dead, b.Dead[i])
		}
	}
	return &out, nil
}

// writeRecordPositions stores, in the batch's transaction, the record
// positions of a batch with DedupePositions that dropRecorded filtered, and
// prunes positions older than sqlgen.RecordPositionsRetention (cheap: rows
// are appended in created_at order, so DuckDB's zone maps skip the rest).
func (s *Sink) writeRecordPositions(ctx context.Context, b *change.Batch, now time.Time) error {
	if !b.DedupePositions {
		return nil
	}
	sources, positions := recordKeys(b)
	if len(sources) == 0 {
		return nil
	}
	if _, err := s.conn.ExecContext(ctx, sqlgen.PruneRecordPositions(dialect), now.Add(-sqlgen.RecordPositionsRetention)); err != nil {
		return fmt.Errorf("prune %s: %w", sqlgen.RecordPositionsTable, err)
	}
	if _, err := s.conn.ExecContext(ctx, sqlgen.InsertRecordPositions(dialect), sources, positions, now); err != nil {
		return fmt.Errorf("store %d record positions: %w", len(sources), err)
	}
	return nil
}
