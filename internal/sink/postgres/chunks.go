package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cdcflow/cdcflow/internal/change"
	"github.com/cdcflow/cdcflow/internal/sink"
	"github.com/cdcflow/cdcflow/internal/sqlgen"
)

var _ sink.ChunkStore = (*Sink)(nil)

// claimChunks stores, in tx, the chunk ids of the reassembled DSQL events
// (sink.ChunkStore) and returns events without those whose chunk id was
// already stored (another process, or an earlier apply, stored the set:
// sink.PieceStore), and the ids stored now. It first takes the chunk
// table's advisory lock, so chunk rows commit in seq order across writers
// and an incremental reader never skips one; the unique index on chunk_id
// makes a concurrent claim of the same id wait for this transaction.
func (s *Sink) claimChunks(ctx context.Context, tx pgx.Tx, events []*change.Event, now time.Time) ([]*change.Event, []string, error) {
	locked := false
	var claimed []string
	kept := events[:0:0]
	for _, e := range events {
		if e.ChunkID == "" {
			kept = append(kept, e)
			continue
		}
		if !locked {
			if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", s.lockKey("chunks")); err != nil {
				return nil, nil, fmt.Errorf("lock %s: %w", sqlgen.ChunksTable, err)
			}
			locked = true
		}
		id := cleanText(e.ChunkID)
		tag, err := tx.Exec(ctx, sqlgen.InsertChunk(dialect)+" ON CONFLICT (chunk_id) DO NOTHING", id, cleanText(e.Position.String()), now)
		if err != nil {
			return nil, nil, fmt.Errorf("store chunk id %s: %w", id, err)
		}
		if tag.RowsAffected() == 0 {
			continue // stored before: this event is a duplicate
		}
		claimed = append(claimed, id)
		kept = append(kept, e)
	}
	return kept, claimed, nil
}

// CompletedChunks implements sink.ChunkStore.
func (s *Sink) CompletedChunks(ctx context.Context, after int64, limit int) ([]string, int64, error) {
	var ids []string
	next := after
	err := s.query(ctx, "read chunk ids", func(conn *pgx.Conn) error {
		rows, err := conn.Query(ctx, sqlgen.SelectChunks(dialect), after, limit)
		if err != nil {
			return err
		}
		var seq int64
		var id string
		_, err = pgx.ForEachRow(rows, []any{&seq, &id}, func() error {
			next = max(next, seq)
			ids = append(ids, id)
			return nil
		})
		return err
	})
	if err != nil {
		return nil, after, err
	}
	return ids, next, nil
}
