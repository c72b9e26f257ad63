package daemontest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cdcflow/cdcflow/internal/change"
	"github.com/cdcflow/cdcflow/internal/decode"
	"github.com/cdcflow/cdcflow/internal/pgtest"
	"github.com/cdcflow/cdcflow/internal/sink/postgres"
	"github.com/cdcflow/cdcflow/internal/sqlgen"
)

// TestConcurrentWritersNeverResurrect reproduces, deterministically,
// a lost delete that TestScaleOut showed with DSQL records spread over
// partitions (a key's changes on partitions owned by two daemons): two
// PostgreSQL sinks on one schema, as two daemons of one group are, merge
// changes of the same key from different partitions at the same time, and
// an older update brings back a row a newer delete removed.
//
// Order of events: order 1 is inserted (commit t0) and stored. Then sink A
// applies its delete (t2, partition 2) and sink B an update (t1, partition
// 1), t0 < t1 < t2, in overlapping transactions. Commit order decides, so
// the row must stay deleted. The test holds sink A's transaction open after
// its DELETE and tombstone (an uncommitted row in _cdc_checkpoints makes
// A's checkpoint upsert wait) while B runs: B read the row at t0 and no
// tombstone (A has not committed), decides to apply, and its INSERT ... ON
// CONFLICT waits on the row A deleted. When A commits, the conflicting row
// is gone, PostgreSQL retries the insertion, and the update's values are
// inserted under t1 although the tombstone says t2. The same write skew
// happens without any wait when the key has no row: A's tombstone and B's
// insert each check a snapshot without the other.
//
// The advisory locks of the sink are per partition, so they do not order
// these two transactions. Fix (internal/sink/postgres/apply.go applyOnce),
// checked against this test, TestTwoDaemonsKeysOnEveryPartition and
// TestScaleOut: right after writeLog, unless LogOnly, take
// pg_advisory_xact_lock(s.lockKey("table", name)) for every table of
// p.order in one global order (sorted by name), held to commit. Writers
// merging the same table then serialize, and the second one's storedOrders
// (READ COMMITTED: each statement sees what committed before it) reads the
// first one's rows and tombstones. evolve's later lock of the same key is
// re-entrant, so it cannot deadlock. Per-key locks would exhaust the lock
// table (max_locks_per_transaction) with 10k-event batches; buckets of keys
// (hash(record_id) % 1024, sorted) would keep writers of disjoint keys
// concurrent. SERIALIZABLE with retries of 40001 would also close it, at the
// cost of aborts under load.
func TestConcurrentWritersNeverResurrect(t *testing.T) {
	url := pgtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	open := func() *postgres.Sink {
		s, err := postgres.Open(ctx, postgres.Options{URL: url, Schema: sinkSchema, DeadLetterTable: true})
		if err != nil {
			t.Fatalf("open sink: %v", err)
		}
		t.Cleanup(func() { s.Close(context.Background()) })
		return s
	}
	a, b := open(), open()
	dec, err := decode.New(decode.Options{Format: decode.FormatDSQL, Keys: &change.Keys{Tables: map[string][]string{"orders": {"order_id"}}}})
	if err != nil {
		t.Fatal(err)
	}
	const topic = "dsql.cdc"
	const t0 = int64(1_704_067_200_000_000_000)
	// batch decodes one DSQL record at topic[partition]@0 into a batch
	// carrying that partition's checkpoint.
	batch := func(op string, commitNS int64, partition string, status string) *change.Batch {
		before, after := "null", fmt.Sprintf(`{"order_id":1,"status":%q}`, status)
		if op == "d" {
			before, after = `{"order_id":1}`, "null"
		}
		raw := fmt.Sprintf(`{"type":"full","op":%q,"before":%s,"after":%s,"source":{"ts_ns":%d,"txId":"t%d","schema":"public","table":"orders","cluster":"c"},"ts_ns":%d}`,
			op, before, after, commitNS, commitNS, commitNS+1000)
		pos := change.Position{Source: topic, Partition: partition, Offset: "0"}
		var out decode.Output
		dec.Decode(change.Raw{Data: []byte(raw), Position: pos}, time.Now(), &out)
		if len(out.Events) != 1 || len(out.Dead) != 0 {
			t.Fatalf("decode %s: %d events, dead letters %v", raw, len(out.Events), out.Dead)
		}
		return &change.Batch{Events: out.Events, Checkpoints: []change.Checkpoint{{Source: topic, Partition: partition, Applied: pos}}}
	}
	if _, err := a.Apply(ctx, batch("c", t0, "0", "new")); err != nil {
		t.Fatalf("apply the insert: %v", err)
	}

	conn := func() *pgx.Conn {
		c, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(context.Background()) })
		return c
	}
	holder, monitor := conn(), conn()
	// Hold A's transaction open after its merge: an uncommitted row with
	// the key of A's checkpoint makes A's checkpoint upsert wait.
	hold, err := holder.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	args := []any{topic, "2", topic, "2", "-1", int64(0), false, false, topic, "2", "-1", int64(0), false, time.Now()}
	if _, err := hold.Exec(ctx, sqlgen.UpsertValuesRows(sqlgen.Postgres, sqlgen.CheckpointsTable, sqlgen.CheckpointColumns, 2, 1), args...); err != nil {
		t.Fatalf("hold the checkpoint row: %v", err)
	}
	waiting := func() int {
		var n int
		if err := monitor.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	waitWaiting := func(want int, who string) bool {
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if waiting() >= want {
				return true
			}
		}
		t.Logf("%s never waited on a lock: the interleaving this test forces did not happen", who)
		return false
	}

	errA, errB := make(chan error, 1), make(chan error, 1)
	go func() { _, err := a.Apply(ctx, batch("d", t0+2_000_000, "2", "")); errA <- err }()
	heldA := waitWaiting(1, "sink A (delete)")
	go func() { _, err := b.Apply(ctx, batch("c", t0+1_000_000, "1", "updated")); errB <- err }()
	if heldA {
		waitWaiting(2, "sink B (older update)")
	}
	if err := hold.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-errA; err != nil {
		t.Fatalf("apply the delete: %v", err)
	}
	if err := <-errB; err != nil {
		t.Fatalf("apply the older update: %v", err)
	}

	var status, order string
	var tomb string
	err = monitor.QueryRow(ctx, "SELECT status, "+sqlgen.QuoteIdent(sqlgen.ColCommitOrder)+" FROM "+qualified("orders")+" WHERE "+sqlgen.QuoteIdent(sqlgen.ColRecordID)+" = '1'").Scan(&status, &order)
	_ = monitor.QueryRow(ctx, "SELECT commit_order FROM "+qualified(sqlgen.TombstonesTable)+" WHERE record_id = '1'").Scan(&tomb)
	switch {
	case err == pgx.ErrNoRows:
		// Correct: the delete (t2) is the newest change of order 1.
	case err != nil:
		t.Fatal(err)
	default:
		t.Errorf("orders[1] = {status %q, commit order %s} after a delete at t2 and an update at t1 < t2 applied concurrently by two sinks; "+
			"want no row (tombstone order %s): the older update resurrected a deleted row", status, order, tomb)
	}
}
