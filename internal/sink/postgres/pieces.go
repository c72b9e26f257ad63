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

// Parked pieces of oversized DSQL records (sink.PieceStore), in
// _cdc_pieces. A piece is parked by the process that read it, in the
// transaction whose checkpoint passes it; any process completes a set once
// all its pieces are parked, claiming it through the unique chunk id.

var _ sink.PieceStore = (*Sink)(nil)

var pieces = sqlgen.QuoteIdent(sqlgen.PiecesTable)

// park stores pieces in tx, except those of sets already stored.
func (s *Sink) park(ctx context.Context, tx pgx.Tx, ps []change.Piece, now time.Time) error {
	for _, p := range ps {
		pos := p.Raw.Position
		_, err := tx.Exec(ctx, `INSERT INTO `+pieces+` (chunk_id, idx, fragments, stream_source, stream_partition, stream_offset, stream_index, stream_indexed, raw, created_at)
SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10
WHERE NOT EXISTS (SELECT 1 FROM `+sqlgen.QuoteIdent(sqlgen.ChunksTable)+` WHERE chunk_id = $1)
ON CONFLICT (chunk_id, idx) DO NOTHING`,
			cleanText(p.ChunkID), p.Index, p.Fragments, cleanText(pos.Source), cleanText(pos.Partition), cleanText(pos.Offset),
			int64(pos.Index), pos.Indexed, p.Raw.Data, now)
		if err != nil {
			return fmt.Errorf("park a piece of chunk_id %s at %s: %w", cleanText(p.ChunkID), pos, err)
		}
	}
	return nil
}

// unpark deletes, in tx, the parked pieces of the sets stored now.
func (s *Sink) unpark(ctx context.Context, tx pgx.Tx, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	if _, err := tx.Exec(ctx, `DELETE FROM `+pieces+` WHERE chunk_id = ANY($1::text[])`, ids); err != nil {
		return fmt.Errorf("delete parked pieces of %d stored sets: %w", len(ids), err)
	}
	return nil
}

// CompleteParked implements sink.PieceStore.
func (s *Sink) CompleteParked(ctx context.Context, limit int) ([]string, error) {
	var ids []string
	err := s.query(ctx, "find complete parked sets", func(conn *pgx.Conn) error {
		rows, err := conn.Query(ctx, `SELECT chunk_id FROM `+pieces+` GROUP BY chunk_id
HAVING bool_or(idx = -1) AND count(*) FILTER (WHERE idx >= 0) >= max(fragments)
ORDER BY min(created_at) LIMIT $1`, limit)
		if err != nil {
			return err
		}
		ids, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	return ids, err
}

// ParkedPieces implements sink.PieceStore.
func (s *Sink) ParkedPieces(ctx context.Context, ids []string) ([]change.Piece, error) {
	var out []change.Piece
	err := s.query(ctx, "read parked pieces", func(conn *pgx.Conn) error {
		rows, err := conn.Query(ctx, `SELECT chunk_id, idx, fragments, stream_source, stream_partition, stream_offset, stream_index, stream_indexed, raw
FROM `+pieces+` WHERE chunk_id = ANY($1::text[]) ORDER BY chunk_id, idx`, ids)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, scanPiece)
		return err
	})
	return out, err
}

func scanPiece(row pgx.CollectableRow) (change.Piece, error) {
	var p change.Piece
	var idx int64
	pos := &p.Raw.Position
	err := row.Scan(&p.ChunkID, &p.Index, &p.Fragments, &pos.Source, &pos.Partition, &pos.Offset, &idx, &pos.Indexed, &p.Raw.Data)
	pos.Index = int(idx)
	return p, err
}

// ExpireParked implements sink.PieceStore.
func (s *Sink) ExpireParked(ctx context.Context, timeout time.Duration) ([]change.DeadLetter, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("postgres sink: expire parked pieces after close")
	}
	var dead []change.DeadLetter
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `DELETE FROM `+pieces+` WHERE chunk_id IN (
  SELECT chunk_id FROM `+pieces+` GROUP BY chunk_id HAVING min(created_at) < now() - make_interval(secs => $1))
RETURNING chunk_id, idx, fragments, stream_source, stream_partition, stream_offset, stream_index, stream_indexed, raw`, timeout.Seconds())
		if err != nil {
			return err
		}
		ps, err := pgx.CollectRows(rows, scanPiece)
		if err != nil {
			return err
		}
		dead = dead[:0]
		for _, p := range ps {
			dead = append(dead, change.DeadLetter{Reason: change.ReasonFragmentTimeout, Format: "dsql",
				Detail:   fmt.Sprintf("chunk_id %s: parked set incomplete after %s", p.ChunkID, timeout),
				Position: p.Raw.Position, Raw: p.Raw.Data})
		}
		return s.writeDeadLetters(ctx, tx, dead, nil, time.Now().UTC())
	})
	if err != nil {
		return nil, s.red.err(fmt.Errorf("expire parked pieces in %s: %w", s.target, err))
	}
	return dead, nil
}

// query runs fn on the sink's connection, dropping it when it was lost.
func (s *Sink) query(ctx context.Context, what string, fn func(*pgx.Conn) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("postgres sink: %s after close", what)
	}
	conn, err := s.connect(ctx)
	if err == nil {
		err = fn(conn)
	}
	if err != nil {
		if connectionLost(err) {
			s.disconnect()
		}
		return s.red.err(fmt.Errorf("%s from %s: %w", what, s.target, err))
	}
	return nil
}
