package main

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cdcflow/cdcflow/internal/sink/postgres"
	"github.com/cdcflow/cdcflow/internal/sqlgen"
)

// copyLimit is the ceiling the event log is compared with: pgx's CopyFrom
// inserting the already decoded rows into an identical cdc_events table
// (created by opening the sink itself in log-only mode), batch rows per
// transaction, fsync on. It returns the time of the COPYs and commits.
func copyLimit(ctx context.Context, url string, rows [][]any, batch int) (time.Duration, error) {
	s, err := postgres.Open(ctx, postgres.Options{URL: url, LogOnly: true})
	if err != nil {
		return 0, err
	}
	if err := s.Close(ctx); err != nil {
		return 0, err
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return 0, err
	}
	defer conn.Close(ctx)
	cols := sqlgen.PostgresLogColumns()
	start := time.Now()
	for lo := 0; lo < len(rows); lo += batch {
		hi := min(lo+batch, len(rows))
		tx, err := conn.Begin(ctx)
		if err != nil {
			return 0, err
		}
		n, err := tx.CopyFrom(ctx, pgx.Identifier{sqlgen.EventsTable}, cols, pgx.CopyFromRows(rows[lo:hi]))
		if err != nil {
			tx.Rollback(ctx)
			return 0, fmt.Errorf("copy rows %d-%d: %w", lo, hi, err)
		}
		if n != int64(hi-lo) {
			tx.Rollback(ctx)
			return 0, fmt.Errorf("copy rows %d-%d: copied %d", lo, hi, n)
		}
		if err := tx.Commit(ctx); err != nil {
			return 0, err
		}
	}
	return time.Since(start), nil
}
