// Command appendlimit measures the limit the DuckDB sink's event log is
// compared with: DuckDB's own appender inserting the same, already decoded
// rows into an identical cdc_events table, one transaction per batch.
//
//	appendlimit -db /tmp/limit.duckdb -batch 10000 shard-*.ndjson
//
// It prints one line: "limit events=N seconds=S events_per_sec=R".
package main

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/duckdb/duckdb-go/v2"

	"github.com/cdcflow/cdcflow/internal/change"
	"github.com/cdcflow/cdcflow/internal/decode"
	"github.com/cdcflow/cdcflow/internal/source"
	"github.com/cdcflow/cdcflow/internal/source/file"
	"github.com/cdcflow/cdcflow/internal/sqlgen"
)

func main() {
	dbPath := flag.String("db", "", "DuckDB file to create (must not exist)")
	batch := flag.Int("batch", 10000, "rows per transaction")
	flag.Parse()
	if *dbPath == "" || flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: appendlimit -db FILE [-batch N] FILE...")
		os.Exit(2)
	}
	if err := run(*dbPath, *batch, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "appendlimit:", err)
		os.Exit(1)
	}
}

func run(dbPath string, batch int, paths []string) error {
	ctx := context.Background()
	rows, err := decodeAll(ctx, paths)
	if err != nil {
		return err
	}
	db, err := sql.Open("duckdb", dbPath)
	if err != nil {
		return err
	}
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, sqlgen.BaseDDL(sqlgen.DuckDB)[0]); err != nil {
		return err
	}
	start := time.Now()
	for lo := 0; lo < len(rows); lo += batch {
		hi := min(lo+batch, len(rows))
		if _, err := conn.ExecContext(ctx, "BEGIN TRANSACTION"); err != nil {
			return err
		}
		err := conn.Raw(func(dc any) error {
			a, err := duckdb.NewAppender(dc.(driver.Conn), "", "", sqlgen.EventsTable)
			if err != nil {
				return err
			}
			for _, r := range rows[lo:hi] {
				if err := a.AppendRow(r...); err != nil {
					return err
				}
			}
			return a.Close()
		})
		if err != nil {
			return err
		}
		if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
			return err
		}
	}
	secs := time.Since(start).Seconds()
	fmt.Printf("limit events=%d seconds=%.3f events_per_sec=%.0f\n", len(rows), secs, float64(len(rows))/secs)
	return nil
}

// decodeAll decodes every record into the log's row shape, untimed.
func decodeAll(ctx context.Context, paths []string) ([][]driver.Value, error) {
	src, err := file.Open(paths, file.Options{})
	if err != nil {
		return nil, err
	}
	defer src.Close(ctx)
	dec, err := decode.New(decode.Options{Format: decode.FormatDSQL,
		Keys: &change.Keys{Tables: map[string][]string{"orders": {"order_id"}, "order_items": {"order_id", "line_no"}, "customers": {"id"}}}})
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	var rows [][]driver.Value
	var out decode.Output
	for {
		raws, ack, err := src.Read(ctx)
		if errors.Is(err, source.ErrEndOfInput) {
			break
		}
		if err != nil {
			return nil, err
		}
		out.Reset()
		for _, r := range raws {
			dec.Decode(r, now, &out)
		}
		for i := range out.Events {
			e := out.Events[i].Clone()
			var seq any
			if e.Order.Seq != "" {
				seq = e.Order.Seq
			}
			rows = append(rows, []driver.Value{int64(len(rows) + 1), e.Table, string(e.Op), e.Key, e.Image(),
				time.Unix(0, e.Order.CommitNS).UTC(), now, e.Schema, e.Order.CommitNS, seq, e.TxID,
				e.Position.String(), e.Order.Key(), e.Position.Source + "\x01" + e.Position.Partition + "\x01" + e.Position.Sortable()})
		}
		if err := ack(ctx, nil); err != nil {
			return nil, err
		}
	}
	return rows, nil
}
