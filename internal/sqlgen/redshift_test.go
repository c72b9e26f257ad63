package sqlgen

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cdcflow/cdcflow/internal/change"
	"github.com/cdcflow/cdcflow/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// rsShop is the three-table configuration of the Redshift goldens: a
// mixed-case key in a schema-qualified source with every other type, a
// single-key table with DECIMAL, and a soft-deleting composite-key table.
var rsShop = []TableSpec{
	{Name: "customers", Schema: "crm", Source: "customers", Key: []string{"customerId"}, Columns: map[string]string{
		"customerId": "VARCHAR", "Email": "TEXT", "created_at": "TIMESTAMPTZ", "profile": "JSON", "vip": "BOOLEAN", "birthday": "DATE"}},
	{Name: "orders", Key: []string{"id"}, Columns: map[string]string{
		"id": "BIGINT", "status": "TEXT", "total": "DECIMAL(12,2)", "placed_at": "TIMESTAMP", "score": "DOUBLE", "paid": "BOOLEAN"}},
	{Name: "order_lines", Key: []string{"order_id", "line"}, Columns: map[string]string{
		"order_id": "BIGINT", "line": "INTEGER", "sku": "VARCHAR", "qty": "INTEGER", "price": "NUMERIC(10,2)"}, SoftDelete: true},
}

// rsGoldenCases are the Redshift golden cases: rsShop, no tables, and the
// shared inputs of the other dialects' goldens.
func rsGoldenCases(t *testing.T) map[string][]TableSpec {
	cases := map[string][]TableSpec{"shop": rsShop, "base": nil}
	for _, in := range []string{"orders", "quoting"} {
		b, err := os.ReadFile(filepath.Join("testdata", in+".json"))
		if err != nil {
			t.Fatal(err)
		}
		var spec struct{ Tables []TableSpec }
		if err := json.Unmarshal(b, &spec); err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		cases[in] = spec.Tables
	}
	return cases
}

// TestRedshiftGolden compares DDL("redshift", ...) with
// testdata/redshift_<case>.golden.sql (-update rewrites them).
func TestRedshiftGolden(t *testing.T) {
	for name, tables := range rsGoldenCases(t) {
		t.Run(name, func(t *testing.T) {
			got, err := DDL("redshift", tables)
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", "redshift_"+name+".golden.sql")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("DDL differs from %s (run with -update after checking):\n%s", golden, got)
			}
		})
	}
}

// rsStatement returns the statement of ddl that starts with prefix
// (comments before it excluded), without its final ";". A procedure's body
// holds ";" and blank lines of its own, so a procedure ends after "\n$$ ".
func rsStatement(t *testing.T, ddl, prefix string) string {
	t.Helper()
	i := strings.Index(ddl, prefix)
	if i < 0 {
		t.Fatalf("no statement starting with %q", prefix)
	}
	rest := ddl[i:]
	from := 0
	if strings.HasPrefix(prefix, "CREATE OR REPLACE PROCEDURE") {
		from = strings.Index(rest, "\n$$ ")
		if from < 0 {
			t.Fatalf("procedure %q has no end of body", prefix)
		}
	}
	if j := strings.Index(rest[from:], ";\n"); j >= 0 {
		return rest[:from+j]
	}
	t.Fatalf("statement %q has no end", prefix)
	return ""
}

func TestRedshiftProcedureGuards(t *testing.T) {
	ddl, err := RedshiftDDL(rsShop)
	if err != nil {
		t.Fatal(err)
	}
	for _, table := range []string{"customers", "orders", "order_lines"} {
		t.Run(table, func(t *testing.T) {
			proc := rsStatement(t, ddl, `CREATE OR REPLACE PROCEDURE "incremental_sync_`+table+`"()`)
			tgt, stg := `"`+table+`"`, `"_cdc_stage_`+table+`"`
			sOrder := stg + `."_cdc_commit_order"`
			must := []struct{ what, text string }{
				{"serialized before the first read", "LOCK \"_cdc_sync_watermarks\";\n\n  SELECT INTO v_watermark"},
				{"watermark read per table", `FROM "_cdc_sync_watermarks" WHERE "table_name" = '` + table + `'`},
				{"new events are after the watermark", `"event_id" > v_watermark`},
				{"run bound never below the watermark", `COALESCE(MAX("event_id"), v_watermark)`},
				{"staging bounded by the run", `"event_id" <= v_high`},
				{"watermark advances to the run's high", `"last_event_id" = v_high`},
				{"total order, one winner", `ROW_NUMBER() OVER (PARTITION BY "record_id" ORDER BY "commit_order" DESC, "stream_order" DESC, "event_id" DESC)`},
				{"tombstone guard", `"_cdc_tombstones"."commit_order" >= ` + sOrder},
				{"stored-row guard", tgt + `."_cdc_commit_order" >= ` + sOrder},
				{"tombstone upsert keeps the newest", sOrder + ` > "_cdc_tombstones"."commit_order"`},
				{"new keys only", "NOT EXISTS (SELECT 1 FROM " + tgt + " WHERE " + tgt + `."_cdc_record_id" = ` + stg + `."_cdc_record_id")`},
				{"one transaction, settings of its own", "$$ LANGUAGE plpgsql\nSET enable_case_sensitive_identifier TO true"},
			}
			for _, m := range must {
				if !strings.Contains(proc, m.text) {
					t.Errorf("%s: procedure lacks %q", m.what, m.text)
				}
			}
			// Every statement that changes the target repeats the newer-than guard:
			// the put UPDATE and the delete (DELETE, or soft-delete UPDATE).
			if n := strings.Count(proc, sOrder+" > "+tgt+`."_cdc_commit_order"`); n != 2 {
				t.Errorf("newer-than guard on the target appears %d times, want 2 (put and delete)", n)
			}
			code := regexp.MustCompile(`--[^\n]*`).ReplaceAllString(proc, "")
			for _, banned := range []string{"TRUNCATE", "COMMIT", "RANK()", "EXECUTE", "refresh_time", "MAX(\"_cdc"} {
				if strings.Contains(code, banned) {
					t.Errorf("procedure contains %q", banned)
				}
			}
			// The watermark is written once, at the end, from v_high only.
			if n := strings.Count(proc, `"last_event_id" = `); n != 1 {
				t.Errorf("last_event_id assigned %d times, want 1", n)
			}
		})
	}
}

// rsKeywords are the bare words the Redshift DDL may contain: SQL and
// PL/pgSQL keywords, types, functions and the procedure's variables.
// Everything else must be a quoted identifier or a literal.
var rsKeywords = map[string]bool{}

func init() {
	for _, w := range strings.Fields(`
		SET TO true false SELECT INTO FROM WHERE AND OR NOT EXISTS IN AS ON
		CREATE OR REPLACE TABLE IF VIEW PROCEDURE TEMP DROP INSERT VALUES UPDATE DELETE USING
		GRANT PUBLIC LOCK NULL PRIMARY KEY DEFAULT COLLATE CASE_SENSITIVE
		DISTSTYLE DISTKEY SORTKEY ALL
		BIGINT INTEGER DECIMAL DOUBLE PRECISION VARCHAR MAX BOOLEAN TIMESTAMP TIMESTAMPTZ DATE SUPER IDENTITY
		AT TIME ZONE
		ROW_NUMBER OVER PARTITION BY ORDER DESC COALESCE COUNT GETDATE DATEADD second
		CASE WHEN END JSON_TYPEOF JSON_SERIALIZE
		DECLARE BEGIN END THEN FOUND GET DIAGNOSTICS ROW_COUNT RAISE INFO LANGUAGE plpgsql
		enable_case_sensitive_identifier`) {
		rsKeywords[w] = true
	}
	for _, v := range rsVars {
		rsKeywords[v] = true
	}
}

// rsBareWords lists the words of sql outside comments, string literals,
// quoted identifiers and numbers.
func rsBareWords(t *testing.T, sql string) []string {
	t.Helper()
	var words []string
	for i := 0; i < len(sql); {
		c := sql[i]
		switch {
		case strings.HasPrefix(sql[i:], "--"):
			j := strings.IndexByte(sql[i:], '\n')
			if j < 0 {
				return words
			}
			i += j
		case c == '\'' || c == '"':
			j := i + 1
			for {
				k := strings.IndexByte(sql[j:], c)
				if k < 0 {
					t.Fatalf("unterminated %c at %d", c, i)
				}
				j += k + 1
				if j < len(sql) && sql[j] == c { // doubled: escaped
					j++
					continue
				}
				break
			}
			i = j
		case c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
			j := i
			for j < len(sql) && (sql[j] == '_' || sql[j] >= 'a' && sql[j] <= 'z' || sql[j] >= 'A' && sql[j] <= 'Z' || sql[j] >= '0' && sql[j] <= '9') {
				j++
			}
			words = append(words, sql[i:j])
			i = j
		case c >= '0' && c <= '9':
			for i < len(sql) && sql[i] >= '0' && sql[i] <= '9' {
				i++
			}
		default:
			i++
		}
	}
	return words
}

// TestRedshiftIdentifiersQuoted fails when a name is written bare: every
// bare word of the DDL must be a keyword, a type, a function or a variable.
func TestRedshiftIdentifiersQuoted(t *testing.T) {
	for name, tables := range rsGoldenCases(t) {
		t.Run(name, func(t *testing.T) {
			ddl, err := RedshiftDDL(tables)
			if err != nil {
				t.Fatal(err)
			}
			bad := map[string]bool{}
			for _, w := range rsBareWords(t, ddl) {
				if !rsKeywords[w] {
					bad[w] = true
				}
			}
			if len(bad) > 0 {
				t.Errorf("unquoted words (identifiers must be quoted): %v", keys(bad))
			}
		})
	}
	// The checker itself: a bare name is caught, quoted ones and literals are not.
	if w := rsBareWords(t, `SELECT "a""b", 'it''s' -- orders`+"\nFROM orders"); !reflect.DeepEqual(w, []string{"SELECT", "FROM", "orders"}) {
		t.Errorf("rsBareWords = %v", w)
	}
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestRedshiftEventColumns: cdc_events has EventColumns in order, so the
// log's shape is the one every other sink and seed 000's queries use.
func TestRedshiftEventColumns(t *testing.T) {
	ddl, err := RedshiftDDL(nil)
	if err != nil {
		t.Fatal(err)
	}
	create := rsStatement(t, ddl, `CREATE TABLE IF NOT EXISTS "cdc_events"`)
	var got []string
	for _, m := range regexp.MustCompile(`(?m)^  "([a-z_]+)" `).FindAllStringSubmatch(create, -1) {
		got = append(got, m[1])
	}
	if !reflect.DeepEqual(got, EventColumns) {
		t.Errorf("cdc_events columns = %v, want %v", got, EventColumns)
	}
	for _, want := range []string{
		`"event_id" BIGINT IDENTITY(1,1) NOT NULL`,
		`"record_id" VARCHAR(512) NOT NULL`,
		`"event_data" SUPER`,
		`"ingested_at" TIMESTAMP NOT NULL DEFAULT GETDATE()`,
		`"commit_order" VARCHAR(512) COLLATE CASE_SENSITIVE NOT NULL`,
		"DISTSTYLE KEY\nDISTKEY (\"record_id\")\nSORTKEY (\"source_table\", \"commit_timestamp\")",
	} {
		if !strings.Contains(create, want) {
			t.Errorf("cdc_events lacks %q", want)
		}
	}
	grant := rsStatement(t, ddl, "GRANT ")
	if grant != `GRANT INSERT, SELECT ON "cdc_events" TO PUBLIC` || !strings.Contains(ddl, "IAMR:<lambda-role-name>") {
		t.Errorf("grant = %q, or its production comment is missing", grant)
	}
}

func TestRedshiftDDLErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tables []TableSpec
		want   string
	}{
		{"reserved table", []TableSpec{{Name: "_cdc_x"}}, "reserved prefix"},
		{"case twice", []TableSpec{{Name: "T"}, {Name: "t"}}, `table "t": listed twice`},
		{"view collision", []TableSpec{{Name: "a"}, {Name: "a_current"}}, "a_current collides with a_current"},
		{"dollars in name", []TableSpec{{Name: "a$$b"}}, `name "a$$b" contains "$$"`},
		{"dollars in schema", []TableSpec{{Name: "a", Schema: "s$$"}}, `schema "s$$" contains "$$"`},
		{"dollars in column", []TableSpec{{Name: "a", Columns: map[string]string{"c$$": "TEXT"}}}, `column "c$$": contains "$$"`},
		{"column case", []TableSpec{{Name: "t", Columns: map[string]string{"A": "TEXT", "a": "TEXT"}}}, "listed twice"},
		{"key twice", []TableSpec{{Name: "t", Key: []string{"k", "K"}}}, `key column "K": listed twice`},
		{"bad type", []TableSpec{{Name: "t", Columns: map[string]string{"c": "MONEY"}}}, `column "c": unknown column type`},
		{"reserved column", []TableSpec{{Name: "t", Key: []string{"_cdc_x"}}}, "reserved prefix"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DDL("redshift", tc.tables)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
	// An untyped key column is typed VARCHAR(MAX) and said so; it is the DISTKEY.
	out, err := DDL("REDSHIFT", []TableSpec{{Name: "t", Key: []string{"code"}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"-- Key column(s) code have no type under tables.t.columns: typed VARCHAR(MAX).", `"code" VARCHAR(MAX)`, "DISTKEY (\"code\")"} {
		if !strings.Contains(out, want) {
			t.Errorf("untyped key: output lacks %q", want)
		}
	}
	// No key at all: distribute on _cdc_record_id.
	out, err = DDL("redshift", []TableSpec{{Name: "t"}})
	if err != nil || !strings.Contains(out, "DISTKEY (\"_cdc_record_id\")") {
		t.Errorf("keyless table: %v\n%s", err, out)
	}
}

// pgFlavor is the test-only PostgreSQL translation of the Redshift DDL:
// JSONB for SUPER, COLLATE "C" for CASE_SENSITIVE, an identity column that
// accepts explicit values (to simulate late commits), no distribution
// clauses. The statements themselves are the Redshift ones.
type pgFlavor struct{}

func (pgFlavor) preamble() []string     { return nil }
func (pgFlavor) typeName(t Type) string { return Postgres.TypeName(t) }
func (pgFlavor) orderType(n int) string { return fmt.Sprintf(`VARCHAR(%d) COLLATE "C"`, n) }
func (pgFlavor) identity() string       { return "BIGINT GENERATED BY DEFAULT AS IDENTITY" }
func (pgFlavor) now() string            { return "(CURRENT_TIMESTAMP AT TIME ZONE 'UTC')" }
func (p pgFlavor) secondsBefore(secs string) string {
	return "(" + p.now() + " - make_interval(secs => " + secs + "))"
}
func (pgFlavor) tableOptions(rsTableOptions) string { return "" }
func (pgFlavor) procedureOptions() string           { return "" }
func (pgFlavor) field(row, key string, t Type) string {
	if t.Kind == JSON {
		return Postgres.JSONField(row, key, false)
	}
	return Postgres.CastText(Postgres.JSONField(row, key, true), t)
}

// rsDB is a PostgreSQL database holding the translated DDL of rsShop.
type rsDB struct {
	t      *testing.T
	ctx    context.Context
	conn   *pgx.Conn
	stream int // stream_order counter: arrival order
}

func newRSDB(t *testing.T) *rsDB {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pgtest.Start(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(ctx) })
	ddl, err := redshiftDDL(pgFlavor{}, rsShop)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, ddl); err != nil {
		t.Fatalf("translated DDL: %v", err)
	}
	// Running it twice changes nothing (IF NOT EXISTS, OR REPLACE).
	if _, err := conn.Exec(ctx, ddl); err != nil {
		t.Fatalf("translated DDL, second run: %v", err)
	}
	// No lookback: every event of these tests is recent, so the window would
	// re-stage the whole history on each run and mask the newer-than guards.
	// Each run sees only the events after the watermark, as in the seeds.
	if _, err := conn.Exec(ctx, `INSERT INTO "_cdc_sync_watermarks" ("table_name", "last_event_id", "lookback_seconds")
		VALUES ('customers', 0, 0), ('orders', 0, 0), ('order_lines', 0, 0)`); err != nil {
		t.Fatal(err)
	}
	return &rsDB{t: t, ctx: ctx, conn: conn}
}

func (db *rsDB) setLookback(table string, secs int) {
	db.t.Helper()
	if _, err := db.conn.Exec(db.ctx, `UPDATE "_cdc_sync_watermarks" SET "lookback_seconds" = $1 WHERE "table_name" = $2`, secs, table); err != nil {
		db.t.Fatal(err)
	}
}

// rsEvent is one logged change. ms is the commit time in milliseconds; seq
// the source's sequence (ties inside a millisecond); id, when not 0, forces
// event_id (an IDENTITY value handed out before a later one committed).
type rsEvent struct {
	table, schema, op, recordID, data string
	ms                                int64
	seq                               string
	id                                int64
}

func (db *rsDB) log(evs ...rsEvent) {
	db.t.Helper()
	for _, e := range evs {
		db.stream++
		ns := e.ms * 1_000_000
		order := change.Order{CommitNS: ns, Seq: e.seq}.Key()
		stream := "test\x01" + "0\x01" + change.SortableUint(uint64(db.stream))
		var schema any
		if e.schema != "" {
			schema = e.schema
		}
		cols := `"source_table", "source_schema", "operation", "record_id", "event_data", "commit_timestamp", "commit_ts_ns", "commit_order", "stream_order"`
		vals := `$1, $2, $3, $4, CAST($5 AS JSONB), to_timestamp($6::BIGINT / 1e9) AT TIME ZONE 'UTC', $6, $7, $8`
		args := []any{e.table, schema, e.op, e.recordID, e.data, ns, order, stream}
		if e.id != 0 {
			cols += `, "event_id"`
			vals += ", $9"
			args = append(args, e.id)
		}
		if _, err := db.conn.Exec(db.ctx, `INSERT INTO "cdc_events" (`+cols+`) VALUES (`+vals+`)`, args...); err != nil {
			db.t.Fatalf("log %+v: %v", e, err)
		}
	}
}

func (db *rsDB) sync(table string) {
	db.t.Helper()
	if _, err := db.conn.Exec(db.ctx, `CALL `+QuoteIdent(SyncProcedureName(table))+`()`); err != nil {
		db.t.Fatalf("CALL %s: %v", SyncProcedureName(table), err)
	}
}

// rows returns query's rows as strings "a|b|c", in order.
func (db *rsDB) rows(query string, args ...any) []string {
	db.t.Helper()
	rs, err := db.conn.Query(db.ctx, query, args...)
	if err != nil {
		db.t.Fatalf("%s: %v", query, err)
	}
	defer rs.Close()
	var out []string
	for rs.Next() {
		vals, err := rs.Values()
		if err != nil {
			db.t.Fatal(err)
		}
		cells := make([]string, len(vals))
		for i, v := range vals {
			switch x := v.(type) {
			case nil:
				cells[i] = "NULL"
			case time.Time:
				cells[i] = x.UTC().Format("2006-01-02 15:04:05")
			default:
				cells[i] = fmt.Sprint(x)
			}
		}
		out = append(out, strings.Join(cells, "|"))
	}
	if err := rs.Err(); err != nil {
		db.t.Fatal(err)
	}
	return out
}

func (db *rsDB) want(what string, got, want []string) {
	db.t.Helper()
	if !reflect.DeepEqual(got, want) && !(len(got) == 0 && len(want) == 0) {
		db.t.Errorf("%s:\n got %q\nwant %q", what, got, want)
	}
}

// orders is the orders target: id|status|total|_cdc_commit_order.
func (db *rsDB) orders() []string {
	return db.rows(`SELECT "id", "status", "total"::TEXT, "_cdc_commit_order" FROM "orders" ORDER BY "id"`)
}

// watermark is the table's sync state: last_event_id|last_run_events.
func (db *rsDB) watermark(table string) string {
	r := db.rows(`SELECT "last_event_id", "last_run_events" FROM "_cdc_sync_watermarks" WHERE "table_name" = $1`, table)
	if len(r) != 1 {
		db.t.Fatalf("watermark of %s: %q", table, r)
	}
	return r[0]
}

func (db *rsDB) maxEventID() string {
	return db.rows(`SELECT MAX("event_id") FROM "cdc_events"`)[0]
}

// viewMatchesTarget checks that the orders view and target agree.
func (db *rsDB) viewMatchesTarget() {
	db.t.Helper()
	view := db.rows(`SELECT "id", "status", "total"::TEXT FROM "orders_current" ORDER BY "id"`)
	tgt := db.rows(`SELECT "id", "status", "total"::TEXT FROM "orders" ORDER BY "id"`)
	db.want("orders_current vs orders", view, tgt)
}

func ord(ms int64, seq string) string { return change.Order{CommitNS: ms * 1_000_000, Seq: seq}.Key() }

func put(id string, ms int64, data string) rsEvent {
	return rsEvent{table: "orders", op: "u", recordID: id, data: data, ms: ms}
}

func del(id string, ms int64) rsEvent {
	return rsEvent{table: "orders", op: "d", recordID: id, data: `{"id":` + id + `}`, ms: ms}
}

// TestRedshiftSyncOnPostgres runs the sync procedure's statements, in the
// PostgreSQL translation, on a real server.
func TestRedshiftSyncOnPostgres(t *testing.T) {
	t.Run("late older event does not overwrite", func(t *testing.T) {
		db := newRSDB(t)
		db.log(put("1", 100, `{"id":1,"status":"new","total":"10.00"}`), put("1", 200, `{"id":1,"status":"paid","total":12.5}`))
		db.sync("orders")
		db.want("after batch 1", db.orders(), []string{"1|paid|12.50|" + ord(200, "")})
		db.log(put("1", 150, `{"id":1,"status":"stale","total":1}`)) // a later batch, an older change
		db.sync("orders")
		db.want("after the late event", db.orders(), []string{"1|paid|12.50|" + ord(200, "")})
		if got := db.watermark("orders"); got != db.maxEventID()+"|1" {
			t.Errorf("watermark = %s, want the late event's id %s and 1 new event", got, db.maxEventID())
		}
		db.viewMatchesTarget()
	})

	t.Run("delete-only batches advance the watermark", func(t *testing.T) {
		db := newRSDB(t)
		db.log(put("1", 100, `{"id":1,"status":"a"}`), put("2", 100, `{"id":2,"status":"b"}`))
		db.sync("orders")
		db.want("watermark after puts", []string{db.watermark("orders")}, []string{"2|2"})
		db.log(del("2", 300)) // delete-only batch
		db.sync("orders")
		db.want("rows", db.orders(), []string{"1|a|NULL|" + ord(100, "")})
		db.want("watermark after a delete-only batch", []string{db.watermark("orders")}, []string{"3|1"})
		db.log(del("1", 400)) // deletes the newest (and last) row: the seeds' MAX(refresh_time) of the target has nothing left
		db.sync("orders")
		db.want("rows", db.orders(), nil)
		db.want("watermark after deleting every row", []string{db.watermark("orders")}, []string{"4|1"})
		db.want("tombstones", db.rows(`SELECT "table_name", "record_id", "commit_order" FROM "_cdc_tombstones" ORDER BY 2`),
			[]string{"orders|1|" + ord(400, ""), "orders|2|" + ord(300, "")})
		db.sync("orders") // nothing new: the watermark stays, the run is counted
		db.want("watermark after an empty run", []string{db.watermark("orders")}, []string{"4|0"})
		db.viewMatchesTarget()
	})

	t.Run("no resurrection", func(t *testing.T) {
		db := newRSDB(t)
		db.log(put("1", 100, `{"id":1,"status":"a"}`))
		db.sync("orders")
		db.log(del("1", 300))
		db.sync("orders")
		db.log(put("1", 200, `{"id":1,"status":"ghost"}`)) // late insert, older than the delete
		db.sync("orders")
		db.want("after the late insert", db.orders(), nil)
		db.want("tombstone kept", db.rows(`SELECT "commit_order" FROM "_cdc_tombstones" WHERE "record_id" = '1'`), []string{ord(300, "")})
		db.log(del("1", 250)) // late delete, older than the tombstone: no change
		db.sync("orders")
		db.want("tombstone after an older delete", db.rows(`SELECT "commit_order" FROM "_cdc_tombstones" WHERE "record_id" = '1'`), []string{ord(300, "")})
		db.log(put("1", 400, `{"id":1,"status":"back"}`)) // newer than the delete: a real re-insert
		db.sync("orders")
		db.want("after a newer insert", db.orders(), []string{"1|back|NULL|" + ord(400, "")})
		db.log(del("1", 350)) // late delete older than the row: the row stays
		db.sync("orders")
		db.want("after a late older delete", db.orders(), []string{"1|back|NULL|" + ord(400, "")})
		db.viewMatchesTarget()
	})

	t.Run("ties within a millisecond have one winner", func(t *testing.T) {
		db := newRSDB(t)
		b := put("1", 100, `{"id":1,"status":"second"}`)
		b.seq = change.SortableUint(2)
		a := put("1", 100, `{"id":1,"status":"first"}`)
		a.seq = change.SortableUint(1)
		db.log(b, a) // arrival order is not commit order
		db.sync("orders")
		db.want("rows", db.orders(), []string{"1|second|NULL|" + ord(100, change.SortableUint(2))})
		db.viewMatchesTarget()
	})

	t.Run("re-running changes nothing", func(t *testing.T) {
		db := newRSDB(t)
		db.log(put("1", 100, `{"id":1,"status":"a"}`), put("2", 100, `{"id":2,"status":"b"}`), del("2", 200), put("3", 300, `{"id":3,"total":"7.25"}`))
		db.sync("orders")
		before := db.orders()
		db.sync("orders")
		db.sync("orders")
		db.want("rows after re-runs", db.orders(), before)
		db.want("watermark after re-runs", []string{db.watermark("orders")}, []string{"4|0"})
	})

	t.Run("the first run creates the watermark row", func(t *testing.T) {
		db := newRSDB(t)
		if _, err := db.conn.Exec(db.ctx, `DELETE FROM "_cdc_sync_watermarks" WHERE "table_name" = 'orders'`); err != nil {
			t.Fatal(err)
		}
		db.log(put("1", 100, `{"id":1,"status":"a"}`), del("1", 200))
		db.sync("orders")
		db.want("rows", db.orders(), nil)
		db.want("watermark row", db.rows(`SELECT "last_event_id", "lookback_seconds", "last_run_events", "last_run_at" IS NOT NULL FROM "_cdc_sync_watermarks" WHERE "table_name" = 'orders'`),
			[]string{fmt.Sprintf("2|%d|2|true", DefaultLookbackSeconds)})
	})

	t.Run("late commit below the watermark is caught by the lookback", func(t *testing.T) {
		db := newRSDB(t)
		// event_id 10 and 20 committed; the loader transaction holding 15 and
		// 16 commits only after the next sync run.
		e1, e2 := put("1", 100, `{"id":1,"status":"a"}`), put("2", 100, `{"id":2,"status":"b"}`)
		e1.id, e2.id = 10, 20
		db.setLookback("orders", DefaultLookbackSeconds)
		db.log(e1, e2)
		db.sync("orders")
		db.want("watermark", []string{db.watermark("orders")}, []string{"20|2"})
		late := put("3", 50, `{"id":3,"status":"late"}`)
		late.id = 15
		db.log(late)
		db.sync("orders")
		db.want("rows", db.orders(), []string{"1|a|NULL|" + ord(100, ""), "2|b|NULL|" + ord(100, ""), "3|late|NULL|" + ord(50, "")})
		db.want("watermark", []string{db.watermark("orders")}, []string{"20|0"})
		// Without the lookback the same late commit is skipped: the window is what catches it.
		db.setLookback("orders", 0)
		skipped := put("4", 50, `{"id":4,"status":"skipped"}`)
		skipped.id = 16
		db.log(skipped)
		db.sync("orders")
		if rows := db.orders(); len(rows) != 3 {
			t.Errorf("with lookback_seconds = 0 the late event was applied anyway: %q", rows)
		}
	})

	t.Run("typed columns, schema filter, mixed case", func(t *testing.T) {
		db := newRSDB(t)
		db.log(
			rsEvent{table: "customers", schema: "crm", op: "c", recordID: "c-1", ms: 100,
				data: `{"customerId":"c-1","Email":"a@x","created_at":"2024-01-02T03:04:05+02:00","profile":{"tier":"gold"},"vip":true,"birthday":"1990-05-06","extra":1}`},
			rsEvent{table: "customers", schema: "other", op: "c", recordID: "c-2", ms: 100, data: `{"customerId":"c-2"}`},
			rsEvent{table: "customers", op: "c", recordID: "c-3", ms: 100, data: `{"customerId":"c-3"}`},
			put("9", 100, `{"id":9,"status":"x","total":3,"placed_at":"2024-01-02T03:04:05+02:00","score":1.5e3,"paid":false}`),
		)
		db.sync("customers")
		db.want("customers", db.rows(`SELECT "customerId", "Email", "created_at", "profile"::TEXT, "vip", "birthday"::TEXT FROM "customers"`),
			[]string{`c-1|a@x|2024-01-02 01:04:05|{"tier": "gold"}|true|1990-05-06`})
		db.want("customers view", db.rows(`SELECT "customerId", "Email" FROM "customers_current"`), []string{"c-1|a@x"})
		db.want("orders untouched by the customers sync", db.orders(), nil)
		db.sync("orders")
		db.want("orders", db.rows(`SELECT "id", "total"::TEXT, "placed_at", "score", "paid" FROM "orders"`),
			[]string{"9|3.00|2024-01-02 01:04:05|1500|false"})
		db.want("watermarks are per table", db.rows(`SELECT "table_name", "last_event_id" FROM "_cdc_sync_watermarks" ORDER BY 1`),
			[]string{"customers|1", "order_lines|0", "orders|4"})
	})

	t.Run("soft delete with a composite key", func(t *testing.T) {
		db := newRSDB(t)
		line := func(op string, ms int64, data string) rsEvent {
			return rsEvent{table: "order_lines", op: op, recordID: "[7,1]", ms: ms, data: data}
		}
		lines := func() []string {
			return db.rows(`SELECT "_cdc_record_id", "_deleted", "_cdc_op", "sku", "qty", "price"::TEXT FROM "order_lines" ORDER BY 1`)
		}
		db.log(line("c", 100, `{"order_id":7,"line":1,"sku":"A","qty":2,"price":"9.99"}`))
		db.sync("order_lines")
		db.want("inserted", lines(), []string{"[7,1]|false|c|A|2|9.99"})
		db.log(line("d", 300, `{"order_id":7,"line":1}`))
		db.sync("order_lines")
		db.want("soft-deleted, values kept", lines(), []string{"[7,1]|true|d|A|2|9.99"})
		db.log(line("u", 200, `{"order_id":7,"line":1,"sku":"OLD","qty":1,"price":1}`))
		db.sync("order_lines")
		db.want("an older put does not undelete", lines(), []string{"[7,1]|true|d|A|2|9.99"})
		db.log(rsEvent{table: "order_lines", op: "d", recordID: "[8,1]", ms: 100, data: `{"order_id":8,"line":1}`})
		db.sync("order_lines")
		db.want("unknown key deleted", lines(), []string{"[7,1]|true|d|A|2|9.99", "[8,1]|true|d|NULL|NULL|NULL"})
		db.log(line("u", 400, `{"order_id":7,"line":1,"sku":"B","qty":3,"price":5}`))
		db.sync("order_lines")
		db.want("a newer put undeletes", lines(), []string{"[7,1]|false|u|B|3|5.00", "[8,1]|true|d|NULL|NULL|NULL"})
		db.want("view hides deletes", db.rows(`SELECT "record_id", "sku" FROM "order_lines_current" ORDER BY 1`), []string{"[7,1]|B"})
	})
}
