package duckdb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	duckdb "github.com/duckdb/duckdb-go/v2"

	"github.com/cdcflow/cdcflow/internal/change"
	"github.com/cdcflow/cdcflow/internal/sink"
	"github.com/cdcflow/cdcflow/internal/sink/sinktest"
	"github.com/cdcflow/cdcflow/internal/sqlgen"
)

func harness() sinktest.Harness {
	return sinktest.Harness{
		Dialect: "duckdb",
		NewStore: func(t *testing.T) string {
			return filepath.Join(t.TempDir(), "warehouse.duckdb")
		},
		Open: func(t *testing.T, store string, cfg sinktest.Config) sink.Sink {
			t.Helper()
			opts := Options{Path: store, DeadLetterTable: true, SoftDelete: cfg.SoftDelete}
			for table, cols := range cfg.Columns {
				if opts.Tables == nil {
					opts.Tables = map[string]TableOptions{}
				}
				opts.Tables[table] = TableOptions{Columns: cols}
			}
			s, err := Open(context.Background(), opts)
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			return s
		},
		DB: func(t *testing.T, s sink.Sink) *sql.DB { return s.(*Sink).DB() },
	}
}

func TestConformance(t *testing.T) {
	sinktest.Run(t, harness())
}

func openTest(t *testing.T, opts Options) *Sink {
	t.Helper()
	if opts.Path == "" {
		opts.Path = filepath.Join(t.TempDir(), "w.duckdb")
	}
	s, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

func scalar[T any](t *testing.T, db *sql.DB, query string, args ...any) T {
	t.Helper()
	var v T
	if err := db.QueryRowContext(context.Background(), query, args...).Scan(&v); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return v
}

// TestAppenderInTransaction pins down the driver behaviour the sink relies
// on: rows appended through the appender on a connection inside BEGIN are
// part of that transaction, visible to it, and gone after ROLLBACK.
func TestAppenderInTransaction(t *testing.T) {
	ctx := context.Background()
	db, err := sql.Open("duckdb", filepath.Join(t.TempDir(), "a.duckdb"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, q := range []string{"CREATE TABLE t (id BIGINT, j JSON)", "BEGIN TRANSACTION"} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	err = conn.Raw(func(dc any) error {
		a, err := duckdb.NewAppender(dc.(driver.Conn), "", "", "t")
		if err != nil {
			return err
		}
		for i := range 3000 { // more than one data chunk
			if err := a.AppendRow(int64(i), json.RawMessage(`{"a":1}`)); err != nil {
				return err
			}
		}
		return a.Close()
	})
	if err != nil {
		t.Fatal(err)
	}
	var inTx int
	if err := conn.QueryRowContext(ctx, "SELECT count(*) FROM t WHERE json_type(j) = 'OBJECT'").Scan(&inTx); err != nil {
		t.Fatal(err)
	}
	if inTx != 3000 {
		t.Fatalf("inside the transaction %d appended JSON objects are visible, want 3000", inTx)
	}
	if n := scalar[int](t, db, "SELECT count(*) FROM t"); n != 0 {
		t.Fatalf("another connection sees %d uncommitted rows, want 0", n)
	}
	if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	if n := scalar[int](t, db, "SELECT count(*) FROM t"); n != 0 {
		t.Fatalf("after ROLLBACK %d appended rows remain, want 0", n)
	}
}

// TestApplyAtomic makes Apply fail after all its writes and checks that
// nothing of the batch is visible and the sink's schema knowledge was rolled
// back with the transaction.
func TestApplyAtomic(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, Options{DeadLetterTable: true})
	st := sinktest.NewStream("topic", "0")
	if _, err := s.Apply(ctx, st.Batch(st.Put("t", "1", 100, `{"id":1,"a":"x"}`))); err != nil {
		t.Fatal(err)
	}
	injected := errors.New("injected failure")
	s.beforeCommit = func() error { return injected }
	failing := st.Batch(
		st.Put("t", "2", 200, `{"id":2,"a":5,"b":true}`), // widens a, adds b
		st.Put("u", "1", 200, `{"id":1}`),                // new table
		st.Delete("t", "1", 200),
	)
	failing.Dead = []change.DeadLetter{{Reason: "invalid_json", Position: st.Checkpoint().Applied, Raw: []byte("{")}}
	if _, err := s.Apply(ctx, failing); !errors.Is(err, injected) {
		t.Fatalf("apply error = %v, want the injected failure", err)
	}
	db := s.DB()
	checks := map[string]int{
		"SELECT count(*) FROM cdc_events":                                                1,
		"SELECT count(*) FROM cdc_dead_letters":                                          0,
		"SELECT count(*) FROM _cdc_checkpoints":                                          1,
		"SELECT count(*) FROM _cdc_tombstones":                                           0,
		"SELECT count(*) FROM t":                                                         1,
		"SELECT count(*) FROM _cdc_tables":                                               1,
		"SELECT count(*) FROM _cdc_columns WHERE table_name = 't'":                       2,
		"SELECT count(*) FROM information_schema.tables WHERE table_name LIKE 'u%'":      0,
		"SELECT count(*) FROM information_schema.columns WHERE table_name = 't'":         6,
		"SELECT count(*) FROM _cdc_columns WHERE column_type = 'VARCHAR'":                1,
		"SELECT count(*) FROM _cdc_checkpoints WHERE applied_offset = '1'":               1,
		"SELECT count(*) FROM information_schema.columns WHERE column_name = 'b'":        0,
		"SELECT count(*) FROM information_schema.columns WHERE table_name = 't_current'": 5,
	}
	for q, want := range checks {
		if got := scalar[int](t, db, q); got != want {
			t.Errorf("after failed apply: %s = %d, want %d", q, got, want)
		}
	}
	// The same batch applies cleanly once the failure is gone.
	s.beforeCommit = nil
	res, err := s.Apply(ctx, failing)
	if err != nil {
		t.Fatal(err)
	}
	if res.Logged != 3 || res.Dead["invalid_json"] != 1 {
		t.Errorf("result = %+v", res)
	}
	if got := scalar[string](t, db, "SELECT data_type FROM information_schema.columns WHERE table_name = 't' AND column_name = 'b'"); got != "BOOLEAN" {
		t.Errorf("column b = %q, want BOOLEAN", got)
	}
	if got := scalar[int](t, db, "SELECT count(*) FROM u"); got != 1 {
		t.Errorf("table u has %d rows, want 1", got)
	}
	if got := scalar[int](t, db, "SELECT max(event_id) FROM cdc_events"); got != 4 {
		t.Errorf("max event_id = %d, want 4 (ids of the failed attempt are reused)", got)
	}
}

func TestEventLogRow(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, Options{})
	e := change.Event{Schema: "public", Table: "orders", Op: change.Update, KeyColumns: []string{"id"}, Key: "7",
		After: json.RawMessage(`{"id":7,"s":"x"}`), TxID: "tx-1",
		Order:    change.Order{CommitNS: 1_705_318_200_123_456_789, Seq: "0242"},
		Position: change.Position{Source: "stream", Partition: "shardId-1", Offset: "4959", Index: 2, Indexed: true}}
	d := e
	d.Op, d.After, d.Before, d.Order.CommitNS = change.Delete, nil, json.RawMessage(`{"id":7}`), e.Order.CommitNS+1
	d.TxID, d.Order.Seq = "", ""
	if _, err := s.Apply(ctx, &change.Batch{Events: []change.Event{e, d}}); err != nil {
		t.Fatal(err)
	}
	var (
		id, ns                                    int64
		table, op, rid, data, schema, pos, co, so string
		seq, tx                                   sql.NullString
		commitTS                                  time.Time
	)
	err := s.DB().QueryRowContext(ctx, `SELECT event_id, source_table, operation, record_id, CAST(event_data AS VARCHAR), commit_timestamp,
		source_schema, commit_ts_ns, seq, tx_id, stream_position, commit_order, stream_order FROM cdc_events ORDER BY event_id LIMIT 1`).
		Scan(&id, &table, &op, &rid, &data, &commitTS, &schema, &ns, &seq, &tx, &pos, &co, &so)
	if err != nil {
		t.Fatal(err)
	}
	want := []any{int64(1), "orders", "u", "7", `{"id":7,"s":"x"}`, "public", e.Order.CommitNS, "0242", "tx-1", "stream[shardId-1]@4959#2", e.Order.Key(), streamOrder(e.Position)}
	got := []any{id, table, op, rid, data, schema, ns, seq.String, tx.String, pos, co, so}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("column %d = %v, want %v", i, got[i], want[i])
		}
	}
	if wantTS := time.Unix(0, e.Order.CommitNS).Truncate(time.Microsecond); !commitTS.Equal(wantTS) {
		t.Errorf("commit_timestamp = %v, want %v (µs precision)", commitTS, wantTS)
	}
	var delData string
	var delSeq, delTx sql.NullString
	if err := s.DB().QueryRowContext(ctx, `SELECT CAST(event_data AS VARCHAR), seq, tx_id FROM cdc_events WHERE operation = 'd'`).Scan(&delData, &delSeq, &delTx); err != nil {
		t.Fatal(err)
	}
	if delData != `{"id":7}` || delSeq.Valid || delTx.Valid {
		t.Errorf("delete row: event_data %s seq %v tx %v; want the before image and NULLs", delData, delSeq, delTx)
	}
}

func TestStreamOrderSortsLikeComparePosition(t *testing.T) {
	ps := []change.Position{
		{Source: "a", Partition: "0", Offset: "9"},
		{Source: "a", Partition: "0", Offset: "10"},
		{Source: "a", Partition: "0", Offset: "10", Index: 0, Indexed: true},
		{Source: "a", Partition: "0", Offset: "10", Index: 11, Indexed: true},
		{Source: "a", Partition: "0", Offset: "10", Index: 2, Indexed: true},
		{Source: "a", Partition: "1", Offset: "1"},
		{Source: "a b", Partition: "", Offset: "3"},
		{Source: "ab", Partition: "", Offset: "1"},
		{Source: "a", Partition: "0", Offset: "49590338271490256608559692538361571095921575989136588898"},
		{Source: "a", Partition: "0", Offset: "0"},
	}
	for i, p := range ps {
		for j, q := range ps {
			want := change.ComparePosition(p, q)
			if got := strings.Compare(streamOrder(p), streamOrder(q)); got != want {
				t.Errorf("positions %d vs %d: stream_order compares %d, ComparePosition %d", i, j, got, want)
			}
		}
	}
}

func TestLogOnly(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "w.duckdb")
	s := openTest(t, Options{Path: path, LogOnly: true})
	st := sinktest.NewStream("f", "")
	res, err := s.Apply(ctx, st.Batch(st.Put("t", "1", 100, `{"id":1,"v":2.5}`), st.Put("t", "2", 100, `{"id":2,"v":1}`), st.Delete("t", "2", 200)))
	if err != nil {
		t.Fatal(err)
	}
	if res.Logged != 3 || res.Applied != 0 {
		t.Errorf("log-only result = %+v, want logged 3, applied 0", res)
	}
	db := s.DB()
	if n := scalar[int](t, db, "SELECT count(*) FROM information_schema.tables WHERE table_name = 't'"); n != 0 {
		t.Errorf("log-only created merged table t")
	}
	if v := scalar[string](t, db, "SELECT CAST(v AS VARCHAR) FROM t_current"); v != "2.5" {
		t.Errorf("view value = %s, want 2.5 (typed DECIMAL)", v)
	}
	if typ := scalar[string](t, db, "SELECT data_type FROM information_schema.columns WHERE table_name = 't_current' AND column_name = 'v'"); !strings.HasPrefix(typ, "DECIMAL") {
		t.Errorf("view column v is %s, want DECIMAL", typ)
	}
	// Turning merged tables on later creates them for new events.
	s.Close(ctx)
	s2 := openTest(t, Options{Path: path})
	if _, err := s2.Apply(ctx, st.Batch(st.Put("t", "3", 300, `{"id":3,"v":4}`))); err != nil {
		t.Fatal(err)
	}
	if n := scalar[int](t, s2.DB(), "SELECT count(*) FROM t WHERE v = 4"); n != 1 {
		t.Errorf("merged table after leaving log-only has %d rows with v = 4, want 1", n)
	}
}

func TestWithoutDeadLetterTable(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, Options{})
	st := sinktest.NewStream("f", "")
	_, err := s.Apply(ctx, st.Batch(st.Put("ok", "1", 100, `{"id":1}`), st.Put("_cdc_bad", "1", 100, `{"id":1}`)))
	if !errors.Is(err, sink.ErrPermanent) || !strings.Contains(err.Error(), "invalid_identifier") || !strings.Contains(err.Error(), "f:2") {
		t.Fatalf("error = %v, want ErrPermanent naming the reason and position f:2", err)
	}
	if n := scalar[int](t, s.DB(), "SELECT count(*) FROM cdc_events"); n != 0 {
		t.Errorf("%d events logged by a failed apply", n)
	}
}

func TestSchemaTableNaming(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, Options{TableNaming: NamingSchemaTable, DeadLetterTable: true})
	a := sinktest.NewStream("f", "")
	b := sinktest.NewStream("f", "")
	b.Schema = "sales"
	c := sinktest.NewStream("f", "")
	c.Schema = "public_orders" // with table "x" would also be public_orders_x
	res, err := s.Apply(ctx, &change.Batch{Events: []change.Event{
		a.Put("orders", "1", 100, `{"id":1,"who":"public"}`),
		b.Put("orders", "1", 100, `{"id":1,"who":"sales"}`),
		a.Put("orders_x", "1", 100, `{"id":1}`),
		c.Put("x", "1", 100, `{"id":1}`),
	}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Tables["public_orders"] != 1 || res.Tables["sales_orders"] != 1 || res.Dead[ReasonInvalidIdentifier] != 1 {
		t.Errorf("result = %+v, want one event each in public_orders and sales_orders, one collision dead letter", res)
	}
	for table, who := range map[string]string{"public_orders": "public", "sales_orders": "sales"} {
		if got := scalar[string](t, s.DB(), "SELECT who FROM "+table+"_current"); got != who {
			t.Errorf("%s_current.who = %q, want %q (views filter by schema)", table, got, who)
		}
	}
}

func TestCaseInsensitiveNames(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, Options{DeadLetterTable: true})
	st := sinktest.NewStream("f", "")
	res, err := s.Apply(ctx, st.Batch(
		st.Put("T", "1", 100, `{"id":1,"Name":"a"}`),
		st.Put("T", "2", 100, `{"id":2,"name":"b"}`),
		st.Put("T", "3", 100, `{"id":3,"name":"c","NAME":"d"}`),
		st.Put("t", "4", 100, `{"id":4}`),
		st.Put("orders", "1", 100, `{"id":1}`),
		st.Put("orders_current", "1", 100, `{"id":1}`),
	))
	if err != nil {
		t.Fatal(err)
	}
	if res.Applied != 3 || res.Dead[ReasonInvalidIdentifier] != 3 {
		t.Errorf("result = %+v, want 3 applied, 3 invalid_identifier (duplicate column, table case clash, view clash)", res)
	}
	if got := scalar[string](t, s.DB(), `SELECT string_agg("Name", ',' ORDER BY id) FROM "T"`); got != "a,b" {
		t.Errorf("Name/name values = %q, want a,b (one column)", got)
	}
}

func TestPinnedTypesAppliedOnReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "w.duckdb")
	s := openTest(t, Options{Path: path})
	st := sinktest.NewStream("f", "")
	if _, err := s.Apply(ctx, st.Batch(st.Put("t", "1", 100, `{"id":1,"code":42}`))); err != nil {
		t.Fatal(err)
	}
	s.Close(ctx)
	s = openTest(t, Options{Path: path, DeadLetterTable: true, Tables: map[string]TableOptions{"t": {Columns: map[string]string{"code": "text", "extra": "DATE"}}}})
	db := s.DB()
	if typ := scalar[string](t, db, "SELECT data_type FROM information_schema.columns WHERE table_name = 't' AND column_name = 'code'"); typ != "VARCHAR" {
		t.Errorf("code = %s after pinning to text, want VARCHAR", typ)
	}
	if typ := scalar[string](t, db, "SELECT data_type FROM information_schema.columns WHERE table_name = 't' AND column_name = 'extra'"); typ != "DATE" {
		t.Errorf("pinned column extra = %q, want DATE created up front", typ)
	}
	if n := scalar[int](t, db, "SELECT count(*) FROM _cdc_columns WHERE pinned"); n != 2 {
		t.Errorf("%d pinned columns registered, want 2", n)
	}
	if _, err := s.Apply(ctx, st.Batch(st.Put("t", "2", 200, `{"id":2,"code":"A-7","extra":"2024-02-29"}`))); err != nil {
		t.Fatal(err)
	}
	if got := scalar[string](t, db, "SELECT code || ' ' || CAST(extra AS VARCHAR) FROM t WHERE id = 2"); got != "A-7 2024-02-29" {
		t.Errorf("row 2 = %q", got)
	}
}

func TestOptionsErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
		want string
	}{
		{"naming", Options{TableNaming: "db_table"}, "table_naming"},
		{"type", Options{Tables: map[string]TableOptions{"t": {Columns: map[string]string{"c": "MONEY"}}}}, "tables.t.columns.c: unknown column type"},
		{"column", Options{Tables: map[string]TableOptions{"t": {Columns: map[string]string{"_cdc_x": "TEXT"}}}}, "reserved prefix"},
		{"table", Options{Tables: map[string]TableOptions{"cdc_events": {}}}, "reserved"},
		{"deleted", Options{SoftDelete: true, Tables: map[string]TableOptions{"t": {Columns: map[string]string{"_deleted": "BOOLEAN"}}}}, "soft deletes"},
		{"memory", Options{MemoryLimit: "lots"}, `memory_limit: "lots" is not a size`},
		{"memory zero", Options{MemoryLimit: "0MB"}, "memory_limit"},
		{"threshold", Options{CheckpointThreshold: "64 furlongs"}, "checkpoint_threshold"},
		{"threshold vs memory", Options{MemoryLimit: "96MB", CheckpointThreshold: "65MB"}, "more than 2/3 of memory_limit 96MB"},
		{"threads", Options{Threads: -1}, "threads: -1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Path = filepath.Join(t.TempDir(), "w.duckdb")
			_, err := Open(context.Background(), tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestQueryReadOnly(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "w.duckdb")
	s := openTest(t, Options{Path: path})
	st := sinktest.NewStream("f", "")
	if _, err := s.Apply(ctx, st.Batch(st.Put("t", "1", 100, `{"id":1,"v":"x"}`))); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	cols, rows, err := Query(ctx, path, "SELECT record_id, v FROM t_current")
	if err != nil {
		t.Fatal(err)
	}
	if len(cols) != 2 || cols[1] != "v" || len(rows) != 1 || rows[0][1] != "x" {
		t.Errorf("query = %v %v", cols, rows)
	}
	if _, _, err := Query(ctx, path, "DELETE FROM cdc_events"); err == nil || !strings.Contains(strings.ToLower(err.Error()), "read-only") {
		t.Errorf("write through Query: err = %v, want a read-only error", err)
	}
	if _, _, err := Query(ctx, "", "SELECT 1"); err == nil {
		t.Error("Query with empty path succeeded")
	}
}

func TestClassify(t *testing.T) {
	db, err := sql.Open("duckdb", "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_, convErr := db.Exec("SELECT CAST('x' AS INTEGER)")
	_, catErr := db.Exec("SELECT * FROM missing_table")
	if !errors.Is(classify(convErr), sink.ErrPermanent) {
		t.Errorf("conversion error %v not permanent", convErr)
	}
	if errors.Is(classify(catErr), sink.ErrPermanent) {
		t.Errorf("catalog error %v classified permanent", catErr)
	}
}

func TestApplyAfterCloseAndCanceled(t *testing.T) {
	s := openTest(t, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Apply(ctx, &change.Batch{}); !errors.Is(err, context.Canceled) {
		t.Errorf("apply with canceled ctx: %v", err)
	}
	s.Close(context.Background())
	if _, err := s.Apply(context.Background(), &change.Batch{}); err == nil {
		t.Error("apply after close succeeded")
	}
}

// TestAdoptsPrecreatedDDL runs the DDL that `cdcflow ddl` prints, then opens
// the sink on that database: it adopts the tables instead of recreating them.
func TestAdoptsPrecreatedDDL(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "w.duckdb")
	cols := map[string]string{"id": "BIGINT", "status": "VARCHAR", "total": "DECIMAL(12,2)"}
	ddl, err := sqlgen.DDL("duckdb", []sqlgen.TableSpec{{Name: "orders", Key: []string{"id"}, Columns: cols, SoftDelete: true}})
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("duckdb", path)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // idempotent
		if _, err := db.ExecContext(ctx, ddl); err != nil {
			t.Fatalf("run DDL: %v", err)
		}
	}
	db.Close()
	soft := true
	s := openTest(t, Options{Path: path, DeadLetterTable: true, Tables: map[string]TableOptions{"orders": {SoftDelete: &soft, Columns: cols}}})
	st := sinktest.NewStream("f", "")
	res, err := s.Apply(ctx, st.Batch(
		st.Put("orders", "1", 100, `{"id":1,"status":"new","total":"12.5","note":"x"}`),
		st.Put("orders", "2", 100, `{"id":2,"status":"new","total":3}`),
		st.Delete("orders", "2", 200),
	))
	if err != nil {
		t.Fatal(err)
	}
	if res.Applied != 2 || len(res.Dead) != 0 {
		t.Errorf("result = %+v", res)
	}
	got := scalar[string](t, s.DB(), `SELECT string_agg(CAST(id AS VARCHAR) || ':' || status || ':' || CAST(total AS VARCHAR) || ':' || CAST(_deleted AS VARCHAR) || ':' || COALESCE(note, '-'), ' ' ORDER BY id) FROM orders`)
	if got != "1:new:12.50:false:x 2:new:3.00:true:-" {
		t.Errorf("orders = %q", got)
	}
	if got := scalar[string](t, s.DB(), "SELECT string_agg(record_id || ':' || CAST(total AS VARCHAR), ' ') FROM orders_current"); got != "1:12.50" {
		t.Errorf("orders_current = %q", got)
	}
}
