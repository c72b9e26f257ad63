package duckdb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"fmt"
	"math/rand"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	duckdb "github.com/duckdb/duckdb-go/v2"

	"github.com/cdcflow/cdcflow/internal/change"
	"github.com/cdcflow/cdcflow/internal/sqlgen"
)

const (
	benchKeys    = 100_000
	benchBatch   = 10_000
	benchBatches = 10
)

// benchEvents builds DSQL-like events: ~10 columns, keys drawn from
// benchKeys, 5% deletes, in benchBatches batches of benchBatch.
func benchEvents() [][]change.Event {
	rng := rand.New(rand.NewSource(1))
	statuses := []string{"new", "paid", "shipped", "cancelled"}
	out := make([][]change.Event, benchBatches)
	n := 0
	for b := range out {
		evs := make([]change.Event, benchBatch)
		for i := range evs {
			n++
			id := rng.Intn(benchKeys)
			key := strconv.Itoa(id)
			pos := change.Position{Source: "orders-stream", Partition: "shardId-000000000000", Offset: strconv.Itoa(49000000 + n)}
			e := change.Event{Schema: "public", Table: "orders", KeyColumns: []string{"id"}, Key: key,
				TxID: fmt.Sprintf("tx%07d", n), Position: pos, Order: change.Order{CommitNS: int64(n) * 1000}}
			if rng.Intn(20) == 0 {
				e.Op = change.Delete
				e.Before = json.RawMessage(`{"id":` + key + `}`)
			} else {
				e.Op = change.Insert
				e.After = json.RawMessage(fmt.Sprintf(
					`{"id":%d,"customer_id":"c-%08x","status":%q,"total_cents":%d,"price":%d.%02d,"qty":%d,"is_active":%t,"created_at":"2025-06-%02dT10:%02d:%02d.123456Z","note":"order note %d","region":"eu-west-%d"}`,
					id, rng.Uint32(), statuses[rng.Intn(4)], rng.Intn(1_000_000), rng.Intn(1000), rng.Intn(100), rng.Intn(50),
					rng.Intn(2) == 0, 1+rng.Intn(28), rng.Intn(60), rng.Intn(60), rng.Intn(1000), rng.Intn(3)))
			}
			e.Raw = e.Image()
			evs[i] = e
		}
		out[b] = evs
	}
	return out
}

// renumber gives the events of round r fresh, increasing commit orders so
// every round merges (as a live stream does) instead of going stale.
func renumber(evs []change.Event, r int) {
	for i := range evs {
		evs[i].Order.CommitNS = int64(r*benchBatch+i+1) * 1000
	}
}

func benchApply(b *testing.B, logOnly bool) {
	batches := benchEvents()
	s, err := Open(context.Background(), Options{Path: filepath.Join(b.TempDir(), "bench.duckdb"), LogOnly: logOnly, DeadLetterTable: true})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close(context.Background())
	ctx := context.Background()
	// Warm up: the table exists and holds rows before timing.
	renumber(batches[0], 0)
	if _, err := s.Apply(ctx, &change.Batch{Events: batches[0]}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	var merged int
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		evs := batches[(i+1)%benchBatches]
		renumber(evs, i+1)
		b.StartTimer()
		res, err := s.Apply(ctx, &change.Batch{Events: evs})
		if err != nil {
			b.Fatal(err)
		}
		merged += res.Applied
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N*benchBatch)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkApplyLog measures Apply in LogOnly mode: event log (with type
// inference for the views), checkpoints, one transaction per batch.
func BenchmarkApplyLog(b *testing.B) { benchApply(b, true) }

// BenchmarkApplyMerged measures Apply with merged tables: event log, stored
// order reads, upserts, deletes and tombstones.
func BenchmarkApplyMerged(b *testing.B) { benchApply(b, false) }

// BenchmarkAppenderLimit is the ceiling for BenchmarkApplyLog: DuckDB's own
// appender inserting the same, already converted rows into an identical
// cdc_events table, one transaction per batch.
func BenchmarkAppenderLimit(b *testing.B) {
	batches := benchEvents()
	db, err := sql.Open("duckdb", filepath.Join(b.TempDir(), "limit.duckdb"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, sqlgen.BaseDDL(dialect)[0]); err != nil {
		b.Fatal(err)
	}
	now := time.Now().UTC()
	rows := make([][][]driver.Value, len(batches))
	id := int64(0)
	for bi, evs := range batches {
		rows[bi] = make([][]driver.Value, len(evs))
		for i := range evs {
			e := &evs[i]
			id++
			rows[bi][i] = []driver.Value{id, e.Table, string(e.Op), e.Key, e.Image(),
				time.Unix(0, e.Order.CommitNS).UTC(), now, e.Schema, e.Order.CommitNS, nil, e.TxID,
				e.Position.String(), e.Order.Key(), streamOrder(e.Position)}
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := conn.ExecContext(ctx, "BEGIN TRANSACTION"); err != nil {
			b.Fatal(err)
		}
		err := conn.Raw(func(dc any) error {
			a, err := duckdb.NewAppender(dc.(driver.Conn), "", "", sqlgen.EventsTable)
			if err != nil {
				return err
			}
			for _, r := range rows[i%benchBatches] {
				if err := a.AppendRow(r...); err != nil {
					return err
				}
			}
			return a.Close()
		})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N*benchBatch)/b.Elapsed().Seconds(), "events/s")
}
