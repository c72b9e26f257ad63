package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cdcflow/cdcflow/internal/change"
	"github.com/cdcflow/cdcflow/internal/sqlgen"
)

// The benchmarks use the DuckDB sink's workload: DSQL-like events with ~10
// columns, keys drawn from 100k, 5% deletes, 10k events per batch, one
// transaction per batch, on the test server (fsync on).
const (
	benchKeys    = 100_000
	benchBatch   = 10_000
	benchBatches = 10
)

// benchEvents builds benchBatches batches of benchBatch pre-decoded events.
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

// renumber gives the events of round r fresh, increasing commit orders and
// stream offsets, so every round merges and none is dropped as stored.
func renumber(evs []change.Event, r int) *change.Batch {
	for i := range evs {
		n := r*benchBatch + i + 1
		evs[i].Order.CommitNS = int64(n) * 1000
		evs[i].Position.Offset = strconv.Itoa(49000000 + n)
	}
	last := evs[len(evs)-1].Position
	return &change.Batch{Events: evs, Checkpoints: []change.Checkpoint{{Source: last.Source, Partition: last.Partition, Applied: last}}}
}

// serverCPU returns the CPU time the server process of a connection has
// used so far (Linux /proc; 0 when unreadable). On a shared machine, server
// CPU per batch is steadier than wall time.
func serverCPU(pid uint32) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(data)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(fields) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(fields[11], 10, 64)   // utime, field 14
	st, _ := strconv.ParseInt(fields[12], 10, 64)   // stime, field 15
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

func reportServerCPU(b *testing.B, pid uint32, start time.Duration) {
	if used := serverCPU(pid) - start; used > 0 {
		b.ReportMetric(float64(used.Milliseconds())/float64(b.N), "srv_cpu_ms/batch")
	}
}

func benchApply(b *testing.B, logOnly bool) {
	batches := benchEvents()
	s := openTest(b, Options{LogOnly: logOnly, DeadLetterTable: true})
	ctx := context.Background()
	// Warm up: the table exists and holds rows before timing.
	if _, err := s.Apply(ctx, renumber(batches[0], 0)); err != nil {
		b.Fatal(err)
	}
	pid := s.conn.PgConn().PID()
	cpu0 := serverCPU(pid)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		batch := renumber(batches[(i+1)%benchBatches], i+1)
		b.StartTimer()
		res, err := s.Apply(ctx, batch)
		if err != nil {
			b.Fatal(err)
		}
		if res.Logged != benchBatch {
			b.Fatalf("logged %d of %d", res.Logged, benchBatch)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N*benchBatch)/b.Elapsed().Seconds(), "events/s")
	reportServerCPU(b, pid, cpu0)
}

// BenchmarkApplyLog measures Apply in LogOnly mode: partition lock and
// checkpoint read, validation and type inference (for the views), the event
// log by binary COPY, the checkpoint, one transaction per batch.
func BenchmarkApplyLog(b *testing.B) { benchApply(b, true) }

// BenchmarkApplyMerged measures Apply with merged tables: the above plus
// stored-order reads, staged upserts, deletes and tombstones.
func BenchmarkApplyMerged(b *testing.B) { benchApply(b, false) }

// limitRows pre-converts the events to the Go values pgx's CopyFrom takes
// for the log columns (sqlgen.PostgresLogColumns).
func limitRows(batches [][]change.Event) [][][]any {
	now := time.Now().UTC()
	rows := make([][][]any, len(batches))
	for bi, evs := range batches {
		rows[bi] = make([][]any, len(evs))
		for i := range evs {
			e := &evs[i]
			var data any
			if img := e.Image(); img != nil {
				data = []byte(img)
			}
			rows[bi][i] = []any{e.Table, string(e.Op), e.Key, data,
				time.Unix(0, e.Order.CommitNS).UTC(), now, e.Schema, e.Order.CommitNS, nil, e.TxID,
				e.Position.String(), e.Order.Key(), string(appendStreamOrder(nil, e.Position))}
		}
	}
	return rows
}

// copyLimit COPYs one batch of pre-converted rows in its own transaction.
func copyLimit(b *testing.B, conn *pgx.Conn, rows [][]any) {
	ctx := context.Background()
	tx, err := conn.Begin(ctx)
	if err != nil {
		b.Fatal(err)
	}
	n, err := tx.CopyFrom(ctx, pgx.Identifier{sqlgen.EventsTable}, sqlgen.PostgresLogColumns(), pgx.CopyFromRows(rows))
	if err != nil || n != int64(len(rows)) {
		b.Fatalf("copy: %d rows, %v", n, err)
	}
	if err := tx.Commit(ctx); err != nil {
		b.Fatal(err)
	}
}

// limitConn opens a sink on a fresh schema (creating an identical
// cdc_events) and a plain pgx connection to it.
func limitConn(b *testing.B) *pgx.Conn {
	s := openTest(b, Options{LogOnly: true})
	conn, err := pgx.ConnectConfig(context.Background(), s.config.Copy())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// BenchmarkCopyFromLimit is the ceiling for BenchmarkApplyLog: pgx's
// CopyFrom inserting the same events, already converted to Go values, into
// an identical cdc_events table, one transaction per batch.
func BenchmarkCopyFromLimit(b *testing.B) {
	rows := limitRows(benchEvents())
	conn := limitConn(b)
	pid := conn.PgConn().PID()
	cpu0 := serverCPU(pid)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		copyLimit(b, conn, rows[i%benchBatches])
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N*benchBatch)/b.Elapsed().Seconds(), "events/s")
	reportServerCPU(b, pid, cpu0)
}

// BenchmarkLogVsLimit alternates one BenchmarkApplyLog batch and one
// BenchmarkCopyFromLimit batch, so both see the same load on a shared
// machine, and reports their ratio.
func BenchmarkLogVsLimit(b *testing.B) {
	batches := benchEvents()
	rows := limitRows(batches)
	conn := limitConn(b)
	s := openTest(b, Options{LogOnly: true, DeadLetterTable: true})
	ctx := context.Background()
	if _, err := s.Apply(ctx, renumber(batches[0], 0)); err != nil {
		b.Fatal(err)
	}
	var logT, limT time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		batch := renumber(batches[(i+1)%benchBatches], i+1)
		b.StartTimer()
		start := time.Now()
		if _, err := s.Apply(ctx, batch); err != nil {
			b.Fatal(err)
		}
		mid := time.Now()
		copyLimit(b, conn, rows[i%benchBatches])
		logT += mid.Sub(start)
		limT += time.Since(mid)
	}
	b.StopTimer()
	n := float64(b.N * benchBatch)
	b.ReportMetric(n/logT.Seconds(), "log_events/s")
	b.ReportMetric(n/limT.Seconds(), "limit_events/s")
	b.ReportMetric(limT.Seconds()/logT.Seconds(), "log/limit")
}
