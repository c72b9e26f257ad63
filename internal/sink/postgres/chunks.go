package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cdcflow/cdcflow/internal/change"
	"github.com/cdcflow/cdcflow/internal/sink"
	"github.com/cdcflow/cdcflow/internal/sqlgen"
)

var _ sink.ChunkStore = (*Sink)(nil)

// writeChunks stores the chunk ids of the batch's reassembled DSQL events
// (sink.ChunkStore) in tx. It first takes the chunk table's advisory lock,
// so that chunk rows commit in seq order across writers and an incremental
// reader never skips one.
func (s *Sink) writeChunks(ctx context.Context, tx pgx.Tx, events []*change.Event, now time.Time) error {
	locked := false
	for _, e := range events {
		if e.ChunkID == "" {
			continue
		}
		if !locked {
			if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", s.lockKey("chunks")); err != nil {
				return fmt.Errorf("lock %s: %w", sqlgen.ChunksTable, err)
			}
			locked = true
		}
		if _, err := tx.Exec(ctx, sqlgen.InsertChunk(dialect), cleanText(e.ChunkID), cleanText(e.Position.String()), now); err != nil {
			return fmt.Errorf("store chunk id %s: %w", cleanText(e.ChunkID), err)
		}
	}
	return nil
}

// CompletedChunks implements sink.ChunkStore.
func (s *Sink) CompletedChunks(ctx context.Context, after int64, limit int) ([]string, int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, after, errors.New("postgres sink: chunk ids after close")
	}
	conn, err := s.connect(ctx)
	if err != nil {
		return nil, after, s.red.err(fmt.Errorf("read chunk ids from %s: %w", s.target, err))
	}
	rows, err := conn.Query(ctx, sqlgen.SelectChunks(dialect), after, limit)
	if err != nil {
		if connectionLost(err) {
			s.disconnect()
		}
		return nil, after, s.red.err(fmt.Errorf("read chunk ids from %s: %w", s.target, err))
	}
	defer rows.Close()
	var ids []string
	next := after
	for rows.Next() {
		var seq int64
		var id string
		if err := rows.Scan(&seq, &id); err != nil {
			return nil, after, fmt.Errorf("read chunk ids: %w", err)
		}
		next = max(next, seq)
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		if connectionLost(err) {
			s.disconnect()
		}
		return nil, after, s.red.err(fmt.Errorf("read chunk ids from %s: %w", s.target, err))
	}
	return ids, next, nil
}
