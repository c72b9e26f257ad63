package duckdb

import (
	"context"
	"fmt"
	"time"

	"github.com/cdcflow/cdcflow/internal/change"
	"github.com/cdcflow/cdcflow/internal/sink"
	"github.com/cdcflow/cdcflow/internal/sqlgen"
)

var _ sink.ChunkStore = (*Sink)(nil)

// writeChunks stores the chunk ids of the batch's reassembled DSQL events
// (sink.ChunkStore), in the batch's transaction.
func (s *Sink) writeChunks(ctx context.Context, events []change.Event, now time.Time) error {
	for i := range events {
		e := &events[i]
		if e.ChunkID == "" {
			continue
		}
		if _, err := s.conn.ExecContext(ctx, sqlgen.InsertChunk(dialect), e.ChunkID, e.Position.String(), now); err != nil {
			return fmt.Errorf("store chunk id %s: %w", e.ChunkID, err)
		}
	}
	return nil
}

// pruneChunks keeps the newest sqlgen.ChunksKept chunk ids; run at open.
func (s *Sink) pruneChunks(ctx context.Context) error {
	if _, err := s.conn.ExecContext(ctx, sqlgen.PruneChunks(dialect)); err != nil {
		return fmt.Errorf("prune %s: %w", sqlgen.ChunksTable, err)
	}
	return nil
}

// CompletedChunks implements sink.ChunkStore.
func (s *Sink) CompletedChunks(ctx context.Context, after int64, limit int) ([]string, int64, error) {
	rows, err := s.db.Load().QueryContext(ctx, sqlgen.SelectChunks(dialect), after, limit)
	if err != nil {
		return nil, after, fmt.Errorf("read chunk ids: %w", err)
	}
	var ids []string
	next := after
	for rows.Next() {
		var seq int64
		var id string
		if err := rows.Scan(&seq, &id); err != nil {
			rows.Close()
			return nil, after, fmt.Errorf("read chunk ids: %w", err)
		}
		next = max(next, seq)
		ids = append(ids, id)
	}
	if err := closeRows(rows); err != nil {
		return nil, after, fmt.Errorf("read chunk ids: %w", err)
	}
	return ids, next, nil
}
