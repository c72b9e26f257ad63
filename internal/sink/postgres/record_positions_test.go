package postgres

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/cdcflow/cdcflow/internal/change"
	"github.com/cdcflow/cdcflow/internal/sink/sinktest"
)

// TestDedupePositions: records of batches with DedupePositions are stored
// once, however the redeliveries are split, and a failed Apply stores no
// position; positions older than the retention are pruned.
func TestDedupePositions(t *testing.T) {
	// CanResume as the Lambda function sets it: DynamoDB streams have no
	// checkpoints to filter by.
	s := openTest(t, Options{DeadLetterTable: true, CanResume: func(string) bool { return false }})
	db := s.testDB(t)
	count := func(q string) int { t.Helper(); return scalar[int](t, db, q) }
	noOffset := change.DeadLetter{Reason: change.ReasonInvalidEnvelope, Position: change.Position{Source: "lambda-event", Index: 3, Indexed: true}, Raw: []byte("x")}

	// A failed transaction stores no position: the retry stores everything.
	s.beforeCommit = func(context.Context, pgx.Tx) error { return errors.New("injected") }
	if _, err := s.Apply(ctxb(), sinktest.DynamoDBBatch(1, 2, 3, 4, 5, -6)); err == nil {
		t.Fatal("apply with a failing commit succeeded")
	}
	s.beforeCommit = nil
	if n := count("SELECT count(*) FROM _cdc_record_positions"); n != 0 {
		t.Fatalf("a failed apply left %d record positions", n)
	}

	steps := []struct {
		name        string
		batch       *change.Batch
		logged      int
		dead        int
		log, stored int // rows in cdc_events and _cdc_record_positions afterwards
	}{
		{"first", sinktest.DynamoDBBatch(1, 2, 3, 4, 5, -6), 5, 1, 5, 6},
		{"same_batch", sinktest.DynamoDBBatch(1, 2, 3, 4, 5, -6), 0, 0, 5, 6},
		{"other_split", sinktest.DynamoDBBatch(4, 5, -6, 7, 8, -9), 2, 1, 7, 9},
		{"subset", sinktest.DynamoDBBatch(2, 7), 0, 0, 7, 9},
		{"no_offset_kept", &change.Batch{DedupePositions: true, Events: []change.Event{sinktest.DynamoDBEvent(1)}, Dead: []change.DeadLetter{noOffset}}, 0, 1, 7, 9},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			res := apply(t, s, st.batch)
			dead := 0
			for _, n := range res.Dead {
				dead += n
			}
			if res.Logged != st.logged || dead != st.dead {
				t.Errorf("logged %d, dead letters %d; want %d and %d", res.Logged, dead, st.logged, st.dead)
			}
			if n := count("SELECT count(*) FROM cdc_events"); n != st.log {
				t.Errorf("cdc_events holds %d rows, want %d", n, st.log)
			}
			if n := count("SELECT count(DISTINCT stream_position) FROM cdc_events"); n != st.log {
				t.Errorf("cdc_events holds %d distinct positions, want %d (one row per record)", n, st.log)
			}
			if n := count("SELECT count(*) FROM _cdc_record_positions"); n != st.stored {
				t.Errorf("_cdc_record_positions holds %d rows, want %d", n, st.stored)
			}
		})
	}
	if n := scalar[int](t, db, "SELECT count(*) FROM cdc_dead_letters WHERE stream_source = $1", sinktest.DynamoDBStream); n != 2 {
		t.Errorf("dead letters of the stream = %d, want 2 (records 6 and 9, once each)", n)
	}
	if n := count("SELECT count(*) FROM orders"); n != 7 {
		t.Errorf("merged table holds %d rows, want 7", n)
	}

	// Without the flag, nothing is deduplicated (other sources keep
	// checkpoints instead).
	plain := sinktest.DynamoDBBatch(1)
	plain.DedupePositions = false
	if res := apply(t, s, plain); res.Logged != 1 {
		t.Errorf("a batch without DedupePositions logged %d, want 1", res.Logged)
	}

	t.Run("prune", func(t *testing.T) {
		if _, err := db.ExecContext(ctxb(), "UPDATE _cdc_record_positions SET created_at = created_at - INTERVAL '49 hours' WHERE position <= $1", sinktest.DynamoDBPosition(3).Offset); err != nil {
			t.Fatal(err)
		}
		if res := apply(t, s, sinktest.DynamoDBBatch(10)); res.Logged != 1 {
			t.Fatalf("new record logged %d, want 1", res.Logged)
		}
		if n := count("SELECT count(*) FROM _cdc_record_positions"); n != 9-3+1 {
			t.Errorf("after pruning _cdc_record_positions holds %d rows, want 7", n)
		}
		// A record redelivered after the retention (DynamoDB keeps 24 h)
		// cannot be recognised any more.
		if res := apply(t, s, sinktest.DynamoDBBatch(2, 4)); res.Logged != 1 {
			t.Errorf("records 2 (pruned) and 4 (kept): logged %d, want 1", res.Logged)
		}
	})
}

// TestDedupePositionsConcurrent: two writers (two Lambda containers of one
// stream) applying overlapping redeliveries at once store each record once.
func TestDedupePositionsConcurrent(t *testing.T) {
	opts := Options{DeadLetterTable: true, CanResume: func(string) bool { return false }}
	s1 := openTest(t, opts)
	opts.Schema = s1.opts.Schema
	s2 := openTest(t, opts)
	const records, rounds = 40, 5
	var wg sync.WaitGroup
	errs := make(chan error, 2*rounds)
	for w, s := range []*Sink{s1, s2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				// Writer 0 takes records in runs of 10 from the start,
				// writer 1 the same records split differently.
				from := (r * 7) % records
				var nums []int
				for i := range 10 + 3*w {
					nums = append(nums, 1+(from+i)%records)
				}
				if _, err := s.Apply(ctxb(), sinktest.DynamoDBBatch(nums...)); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	db := s1.testDB(t)
	n := scalar[int](t, db, "SELECT count(*) FROM cdc_events")
	d := scalar[int](t, db, "SELECT count(DISTINCT stream_position) FROM cdc_events")
	p := scalar[int](t, db, "SELECT count(*) FROM _cdc_record_positions")
	if n != d || n != p || n == 0 {
		t.Errorf("cdc_events holds %d rows of %d distinct records, %d positions stored; want one row per stored position", n, d, p)
	}
}
