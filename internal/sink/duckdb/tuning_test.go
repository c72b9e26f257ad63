package duckdb

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cdcflow/cdcflow/internal/change"
	"github.com/cdcflow/cdcflow/internal/sqlgen"
)

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"112MB", 112e6, true},
		{"1GiB", 1 << 30, true},
		{"1.5 gb", 15e8, true},
		{"4096", 4096, true},
		{"64 KiB", 64 << 10, true},
		{"", 0, false},
		{"0", 0, false},
		{"-1MB", 0, false},
		{"MB", 0, false},
		{"12 parsecs", 0, false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, ok := parseSize(tc.in)
			if got != tc.want || ok != tc.ok {
				t.Fatalf("parseSize(%q) = %d, %v; want %d, %v", tc.in, got, ok, tc.want, tc.ok)
			}
		})
	}
}

// TestSettingsApplied checks that the Options (and their defaults) reach
// DuckDB at Open.
func TestSettingsApplied(t *testing.T) {
	for _, tc := range []struct {
		name       string
		opts       Options
		mem        string
		threads    int64
		checkpoint string
	}{
		{"defaults", Options{}, "106.8 MiB", DefaultThreads, "122.0 MiB"},
		{"set", Options{MemoryLimit: "1GiB", Threads: 2, CheckpointThreshold: "16MiB"}, "1.0 GiB", 2, "32.0 MiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Path = filepath.Join(t.TempDir(), "w.duckdb")
			s, err := Open(context.Background(), tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close(context.Background())
			var mem, ckpt string
			var threads int64
			err = s.DB().QueryRow("SELECT current_setting('memory_limit'), current_setting('threads'), current_setting('checkpoint_threshold')").Scan(&mem, &threads, &ckpt)
			if err != nil {
				t.Fatal(err)
			}
			if mem != tc.mem || threads != tc.threads || ckpt != tc.checkpoint {
				t.Fatalf("memory_limit, threads, checkpoint_threshold = %s, %d, %s; want %s, %d, %s (DuckDB's own threshold is twice the sink's)",
					mem, threads, ckpt, tc.mem, tc.threads, tc.checkpoint)
			}
		})
	}
}

// TestNoIndexes checks that the tables the sink creates carry no primary
// key or index (DuckDB maintains ART indexes at every checkpoint, at a cost
// growing with the table).
func TestNoIndexes(t *testing.T) {
	s, err := Open(context.Background(), Options{Path: filepath.Join(t.TempDir(), "w.duckdb"), DeadLetterTable: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	ctx := context.Background()
	if _, err := s.Apply(ctx, &change.Batch{Events: []change.Event{put("orders", "1", 1, `{"id":1}`)}}); err != nil {
		t.Fatal(err)
	}
	rows, err := s.DB().Query(`SELECT table_name, constraint_type FROM duckdb_constraints() WHERE constraint_type IN ('PRIMARY KEY', 'UNIQUE') AND table_name IN ('orders', ?)`, sqlgen.TombstonesTable)
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for rows.Next() {
		var table, kind string
		if err := rows.Scan(&table, &kind); err != nil {
			t.Fatal(err)
		}
		found = append(found, table+" "+kind)
	}
	if err := closeRows(rows); err != nil {
		t.Fatal(err)
	}
	if len(found) > 0 {
		t.Fatalf("constraints on sink tables: %v", found)
	}
}

func put(table, key string, ns int64, after string) change.Event {
	return change.Event{Table: table, Op: change.Update, Key: key, KeyColumns: []string{"id"},
		After: []byte(after), Order: change.Order{CommitNS: ns},
		Position: change.Position{Source: "s", Partition: "p", Offset: fmt.Sprint(ns)}}
}

// TestCheckpointPolicy checks that the sink checkpoints once the WAL
// reaches CheckpointThreshold: the WAL is emptied, and the rows are in the
// database file (read back after reopening).
func TestCheckpointPolicy(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "w.duckdb")
	s, err := Open(ctx, Options{Path: path, DeadLetterTable: true, CheckpointThreshold: "64KiB"})
	if err != nil {
		t.Fatal(err)
	}
	pad := strings.Repeat("x", 2000)
	walSize := func() int64 {
		fi, err := os.Stat(path + ".wal")
		if err != nil {
			return 0
		}
		return fi.Size()
	}
	var sawFull bool
	for b := 0; b < 10; b++ {
		var evs []change.Event
		for i := 0; i < 20; i++ {
			n := int64(b*20 + i + 1)
			evs = append(evs, put("orders", fmt.Sprint(n%30), n, fmt.Sprintf(`{"id":%d,"pad":%q}`, n%30, pad)))
		}
		if _, err := s.Apply(ctx, &change.Batch{Events: evs}); err != nil {
			t.Fatal(err)
		}
		if s.ckptError != nil {
			t.Fatalf("batch %d: %v", b, s.ckptError)
		}
		if w := walSize(); w >= 64<<10 {
			t.Fatalf("batch %d: WAL is %d bytes after Apply, want a checkpoint at 64 KiB", b, w)
		}
		if s.logRows < 20*(b+1) {
			sawFull = true // a checkpoint reset the count
		}
	}
	if !sawFull {
		t.Fatal("no checkpoint happened")
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("duckdb", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var logged, merged int
	if err := db.QueryRow(`SELECT (SELECT count(*) FROM cdc_events), (SELECT count(*) FROM orders)`).Scan(&logged, &merged); err != nil {
		t.Fatal(err)
	}
	if logged != 200 || merged != 30 {
		t.Fatalf("logged %d, merged %d; want 200, 30", logged, merged)
	}
}

// TestMergedReplacesRows checks that a newer put replaces the stored row
// (DELETE + append, no duplicate keys) and an older one does not.
func TestMergedReplacesRows(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, Options{Path: filepath.Join(t.TempDir(), "w.duckdb"), DeadLetterTable: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	batches := [][]change.Event{
		{put("orders", "1", 10, `{"id":1,"v":"a"}`), put("orders", "2", 11, `{"id":2,"v":"b"}`)},
		{put("orders", "1", 20, `{"id":1,"v":"c"}`), put("orders", "2", 5, `{"id":2,"v":"old"}`)},
		{put("orders", "1", 20, `{"id":1,"v":"c"}`)},
	}
	want := []change.ApplyResult{{Applied: 2}, {Applied: 1, Stale: 1}, {Duplicates: 1}}
	for i, b := range batches {
		res, err := s.Apply(ctx, &change.Batch{Events: b})
		if err != nil {
			t.Fatal(err)
		}
		if res.Applied != want[i].Applied || res.Stale != want[i].Stale || res.Duplicates != want[i].Duplicates {
			t.Fatalf("batch %d: %+v, want %+v", i, res, want[i])
		}
	}
	rows, err := s.DB().Query(`SELECT _cdc_record_id, v FROM orders ORDER BY ALL`)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			t.Fatal(err)
		}
		got = append(got, k+"="+v)
	}
	if err := closeRows(rows); err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, ",") != "1=c,2=b" {
		t.Fatalf("merged rows %v, want [1=c 2=b]", got)
	}
}

// TestReopenAfterFatal makes a checkpoint fail fatally (DuckDB's
// debug_checkpoint_abort), which invalidates the database, and checks
// that the sink reopens it: the batch committed before the failed
// checkpoint is kept (WAL replay) and later batches apply.
func TestReopenAfterFatal(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, Options{Path: filepath.Join(t.TempDir(), "w.duckdb"), DeadLetterTable: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	apply := func(evs ...change.Event) error {
		_, err := s.Apply(ctx, &change.Batch{Events: evs})
		return err
	}
	if err := apply(put("orders", "1", 1, `{"id":1,"v":"a"}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DB().Exec("SET debug_checkpoint_abort = 'before_header'"); err != nil {
		t.Fatal(err)
	}
	s.walLimit = 1 // checkpoint after the next batch
	if err := apply(put("orders", "2", 2, `{"id":2,"v":"b"}`)); err != nil {
		t.Fatalf("the batch committed before the checkpoint failed: %v", err)
	}
	if s.ckptError == nil || !fatal(s.ckptError) {
		t.Fatalf("checkpoint error = %v, want a fatal one", s.ckptError)
	}
	if s.broken {
		t.Fatal("the sink did not reopen the database")
	}
	s.walLimit = 64 << 20
	if err := apply(put("orders", "1", 3, `{"id":1,"v":"c"}`), put("orders", "3", 4, `{"id":3,"v":"d"}`)); err != nil {
		t.Fatal(err)
	}
	var got string
	if err := s.DB().QueryRow(`SELECT string_agg(_cdc_record_id || '=' || v, ',' ORDER BY _cdc_record_id) FROM orders`).Scan(&got); err != nil {
		t.Fatal(err)
	}
	var logged, maxID int
	if err := s.DB().QueryRow(`SELECT count(*), max(event_id) FROM cdc_events`).Scan(&logged, &maxID); err != nil {
		t.Fatal(err)
	}
	if got != "1=c,2=b,3=d" || logged != 4 || maxID != 4 {
		t.Fatalf("merged %q, %d logged, max event_id %d; want 1=c,2=b,3=d, 4, 4", got, logged, maxID)
	}
}
