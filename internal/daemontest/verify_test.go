package daemontest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cdcflow/cdcflow/internal/change"
	"github.com/cdcflow/cdcflow/internal/sqlgen"
)

// sinkSchema is the PostgreSQL schema the daemons write.
const sinkSchema = "public"

// qualified quotes schema.name.
func qualified(name string) string {
	return sqlgen.QuoteIdent(sinkSchema) + "." + sqlgen.QuoteIdent(name)
}

// progress returns the rows of cdc_events and cdc_dead_letters; zeros
// before the daemon created them or while the server is down.
func progress(url string) (events, dead int64) {
	ctx, cancel := ctxTimeout()
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return 0, 0
	}
	defer conn.Close(ctx)
	_ = conn.QueryRow(ctx, "SELECT count(*) FROM "+qualified(sqlgen.EventsTable)).Scan(&events)
	_ = conn.QueryRow(ctx, "SELECT count(*) FROM "+qualified(sqlgen.DeadLettersTable)).Scan(&dead)
	return events, dead
}

// want returns the cdc_events and cdc_dead_letters rows the streams must
// leave.
func want(streams ...*stream) (events, dead int64) {
	for _, s := range streams {
		g, p, _ := s.counts()
		events += int64(g)
		dead += int64(p)
	}
	return events, dead
}

// waitStored waits until the log and dead letters together hold as many
// rows as the streams must leave; which rows is for verify to say.
func waitStored(t *testing.T, url string, timeout time.Duration, streams []*stream, daemons ...*daemon) {
	t.Helper()
	we, wd := want(streams...)
	start := time.Now()
	waitFor(t, timeout, "every record stored", func() (bool, string) {
		e, d := progress(url)
		return e+d >= we+wd, fmt.Sprintf("cdc_events %d of %d, dead letters %d of %d", e, we, d, wd)
	}, daemons...)
	t.Logf("every record stored after waiting %s", time.Since(start).Round(time.Millisecond))
}

// maxDiffs bounds the differences one check reports.
const maxDiffs = 15

// diffs collects the differences one check finds.
type diffs struct {
	check string
	lines []string
	more  int
}

func (d *diffs) add(format string, args ...any) {
	if len(d.lines) >= maxDiffs {
		d.more++
		return
	}
	d.lines = append(d.lines, fmt.Sprintf(format, args...))
}

func (d *diffs) String() string {
	s := d.check + ":\n    " + strings.Join(d.lines, "\n    ")
	if d.more > 0 {
		s += fmt.Sprintf("\n    ... and %d more", d.more)
	}
	return s
}

// verify checks the database against the streams: merged tables, the event
// log and the dead letters, as the package documentation describes.
func verify(t *testing.T, url string, streams ...*stream) {
	t.Helper()
	start := time.Now()
	defer func() { t.Logf("verified in %s", time.Since(start).Round(time.Millisecond)) }()
	ctx, cancel := ctxTimeout()
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("verify: connect: %v", err)
	}
	defer conn.Close(ctx)
	var bad []*diffs
	for _, d := range []*diffs{checkLog(conn, streams), checkDead(conn, streams)} {
		if len(d.lines) > 0 {
			bad = append(bad, d)
		}
	}
	for _, s := range streams {
		if d := checkTables(conn, s); len(d.lines) > 0 {
			bad = append(bad, d)
		}
	}
	if len(bad) > 0 {
		var b strings.Builder
		for _, d := range bad {
			b.WriteString("\n  " + d.String())
		}
		t.Errorf("the database does not hold what was produced:%s", b.String())
	}
}

// checkLog checks that cdc_events holds one row per good record, at its
// position, naming its change, and nothing else.
func checkLog(conn *pgx.Conn, streams []*stream) *diffs {
	d := &diffs{check: "cdc_events: exactly one row per delivered good record"}
	type wantRow struct {
		s *stream
		r *outRecord
	}
	wantAt := map[string]wantRow{}
	for _, s := range streams {
		for i := range s.recs {
			if r := &s.recs[i]; r.kind == good {
				if r.offset < 0 {
					d.add("%s: record %d was never produced (test bug)", s.topic, i)
					return d
				}
				wantAt[r.position(s.topic)] = wantRow{s, r}
			}
		}
	}
	ctx, cancel := ctxTimeout()
	defer cancel()
	rows, err := conn.Query(ctx, "SELECT coalesce(stream_position, ''), coalesce(source_schema, ''), source_table, record_id, operation FROM "+qualified(sqlgen.EventsTable))
	if err != nil {
		d.add("query: %v", err)
		return d
	}
	defer rows.Close()
	seen := map[string]int{}
	var n int
	for rows.Next() {
		var pos, schema, table, id, op string
		if err := rows.Scan(&pos, &schema, &table, &id, &op); err != nil {
			d.add("scan: %v", err)
			return d
		}
		n++
		seen[pos]++
		if seen[pos] == 2 {
			d.add("%s: logged more than once (%s.%s %s %s)", pos, schema, table, op, id)
		}
		w, ok := wantAt[pos]
		switch {
		case !ok:
			d.add("%s: logged (%s.%s %s %s), but no good record was produced there", pos, schema, table, op, id)
		case schema != w.s.schema || table != w.r.table || id != w.r.recordID || (change.Op(op) == change.Delete) != w.r.del:
			d.add("%s: logged %s.%s %s %s, the record carries %s.%s %s (delete %t)", pos, schema, table, op, id, w.s.schema, w.r.table, w.r.recordID, w.r.del)
		}
	}
	if err := rows.Err(); err != nil {
		d.add("rows: %v", err)
	}
	missing := 0
	var firstMissing []string
	for pos := range wantAt {
		if seen[pos] == 0 {
			missing++
			if len(firstMissing) < 5 {
				firstMissing = append(firstMissing, pos)
			}
		}
	}
	if missing > 0 {
		sort.Strings(firstMissing)
		d.add("%d good records not logged, e.g. %s", missing, strings.Join(firstMissing, ", "))
	}
	if n != len(wantAt) {
		d.add("count(*) = %d, want %d", n, len(wantAt))
	}
	return d
}

// checkDead checks that cdc_dead_letters holds exactly the poison records,
// once each, with their bytes.
func checkDead(conn *pgx.Conn, streams []*stream) *diffs {
	d := &diffs{check: "cdc_dead_letters: exactly the injected poison records"}
	wantAt := map[string][]byte{}
	for _, s := range streams {
		for i := range s.recs {
			if r := &s.recs[i]; r.kind == poison {
				wantAt[r.position(s.topic)] = r.value
			}
		}
	}
	ctx, cancel := ctxTimeout()
	defer cancel()
	rows, err := conn.Query(ctx, "SELECT coalesce(position, ''), reason, coalesce(detail, ''), raw FROM "+qualified(sqlgen.DeadLettersTable))
	if err != nil {
		d.add("query: %v", err)
		return d
	}
	defer rows.Close()
	seen := map[string]int{}
	for rows.Next() {
		var pos, reason, detail string
		var raw []byte
		if err := rows.Scan(&pos, &reason, &detail, &raw); err != nil {
			d.add("scan: %v", err)
			return d
		}
		seen[pos]++
		w, ok := wantAt[pos]
		switch {
		case seen[pos] == 2:
			d.add("%s: stored more than once", pos)
		case !ok:
			d.add("%s: dead letter %s (%.200s) for a good record %.120q", pos, reason, detail, raw)
		case !bytes.Equal(raw, w):
			d.add("%s: raw %q, want %q", pos, raw, w)
		case reason == "":
			d.add("%s: empty reason", pos)
		}
	}
	if err := rows.Err(); err != nil {
		d.add("rows: %v", err)
	}
	for pos := range wantAt {
		if seen[pos] == 0 {
			d.add("%s: poison record not dead-lettered", pos)
		}
	}
	return d
}

// checkTables compares every merged table of s's source schema with s's
// final state.
func checkTables(conn *pgx.Conn, s *stream) *diffs {
	d := &diffs{check: "merged tables of " + s.topic + " (source schema " + s.schema + ")"}
	ctx, cancel := ctxTimeout()
	defer cancel()
	names := map[string]string{} // source table -> merged table
	rows, err := conn.Query(ctx, "SELECT table_name, source_table FROM "+qualified(sqlgen.TablesTable)+" WHERE source_schema = $1", s.schema)
	if err != nil {
		d.add("read %s: %v", sqlgen.TablesTable, err)
		return d
	}
	for rows.Next() {
		var name, src string
		if err := rows.Scan(&name, &src); err != nil {
			d.add("scan: %v", err)
			rows.Close()
			return d
		}
		names[src] = name
	}
	rows.Close()
	bookkeeping := map[string]bool{}
	for _, c := range sqlgen.BookkeepingColumns(false) {
		bookkeeping[c] = true
	}
	for _, tbl := range s.hist.Tables {
		want := s.final[tbl.Name]
		name, ok := names[tbl.Name]
		if !ok {
			if len(want) > 0 {
				d.add("%s.%s: no merged table, want %d rows", s.schema, tbl.Name, len(want))
			}
			continue
		}
		if wantName := s.schema + "_" + tbl.Name; name != wantName {
			d.add("%s.%s: merged table %q, want %q (table_naming: schema_table)", s.schema, tbl.Name, name, wantName)
		}
		types, err := columnTypes(conn, name)
		if err != nil {
			d.add("%s: columns: %v", name, err)
			continue
		}
		for col, typ := range types {
			if !bookkeeping[col] && tbl.Index(col) < 0 {
				d.add("%s: unexpected column %s (%s)", name, col, typ)
			}
		}
		got, err := readRows(conn, name)
		if err != nil {
			d.add("%s: %v", name, err)
			continue
		}
		for _, id := range sortedKeys(want) {
			row, ok := got[id]
			if !ok {
				d.add("%s[%s]: missing, want %s%s", name, id, canonical(map[string]any(want[id])), history(conn, s.schema, tbl.Name, name, id))
				continue
			}
			for _, c := range tbl.Columns {
				w := want[id][c.Name]
				typ, ok := types[c.Name]
				if !ok {
					// Columns that only ever held NULL do not exist (docs/sinks.md).
					if w != nil {
						d.add("%s[%s]: column %s missing, want %s", name, id, c.Name, canonical(w))
					}
					continue
				}
				if msg := compareValue(typ, w, row[c.Name]); msg != "" {
					d.add("%s[%s].%s: %s", name, id, c.Name, msg)
				}
			}
		}
		for _, id := range sortedKeys(got) {
			if _, ok := want[id]; !ok {
				d.add("%s[%s]: present, want absent (%s)%s", name, id, canonical(map[string]any(got[id])), history(conn, s.schema, tbl.Name, name, id))
			}
		}
	}
	return d
}

// history describes what the database knows of one key, for a difference
// in a merged table: its event log rows in commit order and its tombstone.
func history(conn *pgx.Conn, schema, table, merged, id string) string {
	ctx, cancel := ctxTimeout()
	defer cancel()
	var b strings.Builder
	rows, err := conn.Query(ctx, "SELECT event_id, operation, commit_order, coalesce(stream_position, ''), ingested_at FROM "+qualified(sqlgen.EventsTable)+
		" WHERE source_schema = $1 AND source_table = $2 AND record_id = $3 ORDER BY commit_order, event_id", schema, table, id)
	if err != nil {
		return "\n      log: " + err.Error()
	}
	for rows.Next() {
		var eventID int64
		var op, order, pos string
		var ingested time.Time
		if err := rows.Scan(&eventID, &op, &order, &pos, &ingested); err != nil {
			rows.Close()
			return "\n      log: " + err.Error()
		}
		fmt.Fprintf(&b, "\n      log: event_id %d %s order %s at %s ingested %s", eventID, op, order, pos, ingested.UTC().Format("15:04:05.000000"))
	}
	rows.Close()
	var order string
	err = conn.QueryRow(ctx, "SELECT commit_order FROM "+qualified(sqlgen.TombstonesTable)+" WHERE table_name = $1 AND record_id = $2", merged, id).Scan(&order)
	switch {
	case err == nil:
		fmt.Fprintf(&b, "\n      tombstone: order %s", order)
	case errors.Is(err, pgx.ErrNoRows):
		b.WriteString("\n      tombstone: none")
	default:
		b.WriteString("\n      tombstone: " + err.Error())
	}
	return b.String()
}

// columnTypes returns the data_type of every column of a merged table.
func columnTypes(conn *pgx.Conn, table string) (map[string]string, error) {
	ctx, cancel := ctxTimeout()
	defer cancel()
	rows, err := conn.Query(ctx, "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2", sinkSchema, table)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var name, typ string
		if err := rows.Scan(&name, &typ); err != nil {
			return nil, err
		}
		out[name] = typ
	}
	return out, rows.Err()
}

// readRows reads a merged table as record_id -> column -> value, each row
// rendered by PostgreSQL's to_jsonb.
func readRows(conn *pgx.Conn, table string) (map[string]map[string]any, error) {
	ctx, cancel := ctxTimeout()
	defer cancel()
	rows, err := conn.Query(ctx, "SELECT "+sqlgen.QuoteIdent(sqlgen.ColRecordID)+", to_jsonb(t)::text FROM "+qualified(table)+" t")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]map[string]any{}
	for rows.Next() {
		var id, text string
		if err := rows.Scan(&id, &text); err != nil {
			return nil, err
		}
		v, err := parseJSON([]byte(text))
		if err != nil {
			return nil, fmt.Errorf("row %s: %w", id, err)
		}
		m, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("row %s: to_jsonb gave %s", id, text)
		}
		if _, dup := out[id]; dup {
			return nil, fmt.Errorf("record_id %q appears twice", id)
		}
		out[id] = m
	}
	return out, rows.Err()
}

// compareValue compares want, a value of the expected state, with got, the
// to_jsonb rendering of a column of PostgreSQL type typ. It returns "" when
// they agree: numbers as exact decimals, timestamps as instants, JSON
// semantically, text exactly.
func compareValue(typ string, want, got any) string {
	if want == nil || got == nil {
		if want == nil && got == nil {
			return ""
		}
		return fmt.Sprintf("want %s, got %s", canonical(want), canonical(got))
	}
	mismatch := func() string { return fmt.Sprintf("want %s, got %s %s", canonical(want), typ, canonical(got)) }
	switch typ {
	case "bigint", "integer", "smallint", "numeric":
		w, ok1 := want.(json.Number)
		g, ok2 := got.(json.Number)
		if !ok1 || !ok2 {
			return mismatch()
		}
		wr, ok1 := new(big.Rat).SetString(string(w))
		gr, ok2 := new(big.Rat).SetString(string(g))
		if !ok1 || !ok2 || wr.Cmp(gr) != 0 {
			return mismatch()
		}
	case "boolean":
		if w, ok := want.(bool); !ok || got != w {
			return mismatch()
		}
	case "timestamp with time zone", "timestamp without time zone":
		w, ok1 := want.(string)
		g, ok2 := got.(string)
		if !ok1 || !ok2 {
			return mismatch()
		}
		wt, err1 := time.Parse(time.RFC3339Nano, w)
		gt, err2 := time.Parse(time.RFC3339Nano, g)
		if typ == "timestamp without time zone" {
			gt, err2 = time.Parse("2006-01-02T15:04:05.999999999", g)
		}
		if err1 != nil || err2 != nil || !wt.Equal(gt) {
			return mismatch()
		}
	case "jsonb", "json":
		if canonical(want) != canonical(got) {
			return mismatch()
		}
	case "text", "character varying":
		if w, ok := want.(string); !ok || got != w {
			return mismatch()
		}
	default:
		// DOUBLE PRECISION and the rest cannot be compared exactly: these
		// histories must never produce them.
		return fmt.Sprintf("column type %s is not expected here (value %s, want %s)", typ, canonical(got), canonical(want))
	}
	return ""
}

// canonical renders a JSON value (decoded with UseNumber) so that
// semantically equal values render equal: members sorted, numbers as exact
// fractions (12.50 and 12.5 agree; a number never equals a string).
func canonical(v any) string {
	var b strings.Builder
	writeCanonical(&b, v)
	return b.String()
}

func writeCanonical(b *strings.Builder, v any) {
	switch x := v.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		b.WriteString(strconv.FormatBool(x))
	case json.Number:
		if r, ok := new(big.Rat).SetString(string(x)); ok {
			b.WriteString("#" + r.RatString())
		} else {
			b.WriteString("#?" + string(x))
		}
	case string:
		b.WriteString(strconv.Quote(x))
	case map[string]any:
		b.WriteByte('{')
		for i, k := range sortedKeys(x) {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.Quote(k) + ":")
			writeCanonical(b, x[k])
		}
		b.WriteByte('}')
	case []any:
		b.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				b.WriteByte(',')
			}
			writeCanonical(b, e)
		}
		b.WriteByte(']')
	default:
		fmt.Fprintf(b, "<%T %v>", v, v)
	}
}

// parseJSON decodes one JSON document with UseNumber.
func parseJSON(text []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(text))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	if d.More() {
		return nil, fmt.Errorf("trailing data after JSON value")
	}
	return v, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
