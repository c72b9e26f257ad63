package e2e

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/cdcflow/cdcflow/internal/change"
	"github.com/cdcflow/cdcflow/internal/sink/duckdb"
	"github.com/cdcflow/cdcflow/internal/sqlgen"
	"github.com/cdcflow/cdcflow/internal/testgen"
)

// maxDiffs bounds the differences a check reports.
const maxDiffs = 12

// diffs collects differences found by the checks, bounded per check.
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
	if len(d.lines) == 0 {
		return ""
	}
	s := d.check + ":\n    " + strings.Join(d.lines, "\n    ")
	if d.more > 0 {
		s += fmt.Sprintf("\n    ... and %d more", d.more)
	}
	return s
}

// column is a column of a DuckDB table or view.
type column struct{ name, typ string }

func columnsOf(db *sql.DB, table string) ([]column, error) {
	rows, err := db.Query(`SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ? ORDER BY ordinal_position`, table)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var cols []column
	for rows.Next() {
		var c column
		if err := rows.Scan(&c.name, &c.typ); err != nil {
			return nil, err
		}
		cols = append(cols, c)
	}
	return cols, rows.Err()
}

// typedRow is one row read with every column cast to VARCHAR.
type typedRow struct {
	deleted bool
	data    sql.NullString // event_data of a view row
	vals    map[string]sql.NullString
}

// readTyped reads id plus the source columns of a merged table or view,
// each cast to VARCHAR, keyed by id; columns in skip (bookkeeping) are left out.
func readTyped(db *sql.DB, table, idCol string, skip map[string]bool, withDeleted, withData bool) (map[string]typedRow, []column, error) {
	all, err := columnsOf(db, table)
	if err != nil {
		return nil, nil, err
	}
	if len(all) == 0 {
		return nil, nil, nil
	}
	var cols []column
	exprs := []string{sqlgen.QuoteIdent(idCol)}
	if withDeleted {
		exprs = append(exprs, sqlgen.QuoteIdent(sqlgen.ColDeleted))
	}
	if withData {
		exprs = append(exprs, "CAST(event_data AS VARCHAR)")
	}
	for _, c := range all {
		if skip[c.name] {
			continue
		}
		cols = append(cols, c)
		exprs = append(exprs, "CAST("+sqlgen.QuoteIdent(c.name)+" AS VARCHAR)")
	}
	rows, err := db.Query("SELECT " + strings.Join(exprs, ", ") + " FROM " + sqlgen.QuoteIdent(table))
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	out := map[string]typedRow{}
	for rows.Next() {
		var id string
		var r typedRow
		dst := []any{&id}
		if withDeleted {
			dst = append(dst, &r.deleted)
		}
		if withData {
			dst = append(dst, &r.data)
		}
		vals := make([]sql.NullString, len(cols))
		for i := range vals {
			dst = append(dst, &vals[i])
		}
		if err := rows.Scan(dst...); err != nil {
			return nil, nil, err
		}
		r.vals = make(map[string]sql.NullString, len(cols))
		for i, c := range cols {
			r.vals[c.name] = vals[i]
		}
		if _, dup := out[id]; dup {
			return nil, nil, fmt.Errorf("%s: record_id %q appears twice", table, id)
		}
		out[id] = r
	}
	return out, cols, rows.Err()
}

// compareRow compares one stored row with the expected row image.
func compareRow(d *diffs, where string, tbl *testgen.Table, want map[string]any, got typedRow, cols []column) {
	types := map[string]string{}
	for _, c := range cols {
		types[c.name] = c.typ
	}
	for _, c := range tbl.Columns {
		w := want[c.Name]
		typ, ok := types[c.Name]
		if !ok {
			// Columns that only ever held NULL do not exist (docs/sinks.md).
			if w != nil {
				d.add("%s: column %s missing, want %s", where, c.Name, canonical(w))
			}
			continue
		}
		if msg := columnValue(typ, w, got.vals[c.Name]); msg != "" {
			d.add("%s.%s: %s", where, c.Name, msg)
		}
	}
	for _, c := range cols {
		if tbl.Index(c.name) < 0 {
			d.add("%s: unexpected column %s (%s)", where, c.name, c.typ)
		}
	}
}

// mergedNames maps each source table to the merged table the sink made for
// it, from the sink's registry.
func mergedNames(db *sql.DB) (map[string]string, error) {
	rows, err := db.Query(`SELECT table_name, source_table FROM ` + sqlgen.QuoteIdent(sqlgen.TablesTable))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var name, src string
		if err := rows.Scan(&name, &src); err != nil {
			return nil, err
		}
		if old, dup := out[src]; dup {
			return nil, fmt.Errorf("source table %s has two merged tables, %s and %s", src, old, name)
		}
		out[src] = name
	}
	return out, rows.Err()
}

// checkState compares every merged table and current-state view with the
// expected final state.
func (s *scenario) checkState(db *sql.DB) []*diffs {
	merged := &diffs{check: "merged tables"}
	views := &diffs{check: "current views"}
	names, err := mergedNames(db)
	if err != nil {
		merged.add("read registry: %v", err)
		return []*diffs{merged}
	}
	bookkeeping := map[string]bool{}
	for _, c := range sqlgen.BookkeepingColumns(true) {
		bookkeeping[c] = true
	}
	viewFixed := map[string]bool{"record_id": true, "event_data": true, "commit_timestamp": true}
	for _, tbl := range s.hist.Tables {
		want := s.final[tbl.Name]
		name, ok := names[tbl.Name]
		if !ok {
			if len(want) > 0 {
				merged.add("%s: no merged table, want %d rows", tbl.Name, len(want))
			}
			continue
		}
		if wantName := s.mergedName(tbl); name != wantName {
			merged.add("%s: merged table is %q, want %q", tbl.Name, name, wantName)
		}
		rows, cols, err := readTyped(db, name, sqlgen.ColRecordID, bookkeeping, s.soft, false)
		if err != nil {
			merged.add("%s: %v", name, err)
			continue
		}
		live := map[string]typedRow{}
		for id, r := range rows {
			if r.deleted {
				if _, ok := want[id]; ok {
					merged.add("%s[%s]: marked deleted, want live", name, id)
				}
				continue
			}
			live[id] = r
		}
		compareRows(merged, name, tbl, want, live, cols)

		vrows, vcols, err := readTyped(db, sqlgen.ViewName(name), "record_id", viewFixed, false, true)
		if err != nil {
			views.add("%s: %v", sqlgen.ViewName(name), err)
			continue
		}
		compareRows(views, sqlgen.ViewName(name), tbl, want, vrows, vcols)
		for id, r := range vrows {
			w, ok := want[id]
			if !ok {
				continue
			}
			got, err := parseJSON([]byte(r.data.String))
			if err != nil || canonical(got) != canonical(map[string]any(w)) {
				views.add("%s[%s].event_data:\n      want %s\n      got  %s", sqlgen.ViewName(name), id, canonical(map[string]any(w)), r.data.String)
			}
		}
	}
	return []*diffs{merged, views}
}

// mergedName is the merged table the sink must create for tbl.
func (s *scenario) mergedName(tbl *testgen.Table) string {
	if s.naming == duckdb.NamingSchemaTable && s.v.format != testgen.FormatDynamoDB {
		return tbl.Schema + "_" + tbl.Name
	}
	return tbl.Name
}

func compareRows(d *diffs, name string, tbl *testgen.Table, want map[string]map[string]any, got map[string]typedRow, cols []column) {
	for _, id := range sortedKeys(want) {
		r, ok := got[id]
		if !ok {
			d.add("%s[%s]: missing, want %s", name, id, canonical(map[string]any(want[id])))
			continue
		}
		compareRow(d, name+"["+id+"]", tbl, want[id], r, cols)
	}
	for _, id := range sortedKeys(got) {
		if _, ok := want[id]; !ok {
			d.add("%s[%s]: present, want absent", name, id)
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// logRow is one row of cdc_events.
type logRow struct {
	table, op, id, data, pos string
	commitNS                 int64
}

// checkLog checks the event log: one row per record that decodes to an
// event (ref, from an uninterrupted decode), none repeated, and every change
// of the history logged at least once with its image and commit time.
func (s *scenario) checkLog(db *sql.DB, ref map[string]change.Event, crashed bool) []*diffs {
	once := &diffs{check: "cdc_events: one row per delivered record"}
	changes := &diffs{check: "cdc_events: every source change"}
	rows, err := db.Query(`SELECT source_table, operation, record_id, CAST(event_data AS VARCHAR), commit_ts_ns, stream_position FROM ` + sqlgen.QuoteIdent(sqlgen.EventsTable))
	if err != nil {
		once.add("query: %v", err)
		return []*diffs{once}
	}
	defer rows.Close()
	byPos := map[string]logRow{}
	logged := map[string]int{}
	sigAt := map[string]string{} // position -> signature
	for rows.Next() {
		var r logRow
		var data sql.NullString
		if err := rows.Scan(&r.table, &r.op, &r.id, &data, &r.commitNS, &r.pos); err != nil {
			once.add("scan: %v", err)
			return []*diffs{once}
		}
		r.data = data.String
		if _, dup := byPos[r.pos]; dup {
			once.add("%s: logged twice (%s %s %s)", r.pos, r.table, r.op, r.id)
			continue
		}
		byPos[r.pos] = r
		img, err := parseJSON([]byte(r.data))
		if err != nil {
			changes.add("%s: event_data %q: %v", r.pos, r.data, err)
			continue
		}
		sig := signature(r.table, change.Op(r.op) == change.Delete, r.id, r.commitNS, canonical(img))
		logged[sig]++
		sigAt[r.pos] = sig
	}
	if err := rows.Err(); err != nil {
		once.add("rows: %v", err)
	}
	for _, p := range sortedKeys(ref) {
		e := ref[p]
		r, ok := byPos[p]
		switch {
		case !ok:
			once.add("%s: not logged (%s %s %s)", p, e.Table, e.Op, e.Key)
		case r.table != e.Table || r.id != e.Key || r.op != string(e.Op):
			once.add("%s: logged %s %s %s, decoded %s %s %s", p, r.table, r.op, r.id, e.Table, e.Op, e.Key)
		}
	}
	refSigs := map[string]bool{}
	for p := range ref {
		if _, ok := byPos[p]; ok {
			refSigs[sigAt[p]] = true
		}
	}
	for _, p := range sortedKeys(byPos) {
		if _, ok := ref[p]; !ok {
			r := byPos[p]
			once.add("%s: logged %s %s %s, but the record decodes to no event", p, r.table, r.op, r.id)
		}
	}

	want := map[string]int{}
	for i := range s.hist.Events() {
		e := &s.hist.Events()[i]
		want[s.expectedSignature(e)]++
	}
	for sig, n := range want {
		if logged[sig] < n {
			changes.add("change logged %d times, want at least %d: %s", logged[sig], n, showSig(sig))
		}
	}
	for sig := range logged {
		if want[sig] == 0 {
			changes.add("logged event matches no source change: %s", showSig(sig))
		}
	}
	return []*diffs{once, changes}
}

func signature(table string, del bool, id string, commitNS int64, img string) string {
	kind := "put"
	if del {
		kind = "delete"
	}
	return strings.Join([]string{table, kind, id, strconv.FormatInt(commitNS, 10), img}, "\x00")
}

func showSig(sig string) string { return strings.ReplaceAll(sig, "\x00", " | ") }

// expectedSignature is how e must appear in the log: its image as the
// format carries it (DSQL deletes carry only the key; Debezium with the
// schema envelope converts logical types as testgen.ExpectedState says) and
// its commit time at the format's resolution.
func (s *scenario) expectedSignature(e *testgen.Event) string {
	var img map[string]any
	if e.After != nil {
		img = e.AfterMap()
	} else {
		img = e.BeforeMap()
		if s.v.format == testgen.FormatDSQL {
			keyOnly := map[string]any{}
			for _, k := range e.Table.Key {
				keyOnly[k] = img[k]
			}
			img = keyOnly
		}
	}
	conv := testgen.ExpectedState(testgen.State{e.Table.Name: {e.RecordID: img}}, s.hist.Tables, s.v.format, s.enc)
	img = conv[e.Table.Name][e.RecordID]
	return signature(e.Table.Name, e.After == nil, e.RecordID, s.commitNS(e), canonical(img))
}

// commitNS is the commit time the format carries for e: DSQL and Debezium
// the exact nanoseconds, DMS a microsecond per change of the transaction,
// DynamoDB whole seconds.
func (s *scenario) commitNS(e *testgen.Event) int64 {
	switch s.v.format {
	case testgen.FormatDMS:
		return (e.CommitNS/1000 + int64(e.TxIndex)) * 1000
	case testgen.FormatDynamoDB:
		return e.CommitNS / 1e9 * 1e9
	}
	return e.CommitNS
}

// checkDead checks that the dead letters are exactly the injected poison
// lines, once each, with their bytes.
func (s *scenario) checkDead(db *sql.DB, ref map[string]change.DeadLetter, crashed bool) []*diffs {
	d := &diffs{check: "cdc_dead_letters"}
	for p := range ref {
		if _, ok := s.poison[p]; !ok {
			d.add("reference decode dead-letters %s (%s: %s), which is not poison", p, ref[p].Reason, ref[p].Detail)
		}
	}
	for p := range s.poison {
		if _, ok := ref[p]; !ok {
			d.add("reference decode accepts poison line %s", p)
		}
	}
	rows, err := db.Query(`SELECT position, reason, detail, raw FROM ` + sqlgen.QuoteIdent(sqlgen.DeadLettersTable))
	if err != nil {
		d.add("query: %v", err)
		return []*diffs{d}
	}
	defer rows.Close()
	seen := map[string]int{}
	for rows.Next() {
		var pos, reason string
		var detail sql.NullString
		var raw []byte
		if err := rows.Scan(&pos, &reason, &detail, &raw); err != nil {
			d.add("scan: %v", err)
			return []*diffs{d}
		}
		want, ok := s.poison[pos]
		seen[pos]++
		switch {
		case !ok:
			d.add("%s: dead letter %s (%s) for a good record %.120q", pos, reason, detail.String, raw)
		case string(raw) != want:
			d.add("%s: raw %q, want %q", pos, raw, want)
		case reason == "":
			d.add("%s: empty reason", pos)
		}
	}
	if err := rows.Err(); err != nil {
		d.add("rows: %v", err)
	}
	for _, p := range sortedKeys(seen) {
		if seen[p] > 1 {
			d.add("%s: stored %d times", p, seen[p])
		}
	}
	for _, p := range sortedKeys(s.poison) {
		if seen[p] == 0 {
			d.add("%s: poison line not dead-lettered", p)
		}
	}
	return []*diffs{d}
}

// checkCheckpoints checks that every file's checkpoint covers its last line
// and holds nothing.
func (s *scenario) checkCheckpoints(cps []change.Checkpoint) []*diffs {
	d := &diffs{check: "_cdc_checkpoints"}
	by := map[string]change.Checkpoint{}
	for _, cp := range cps {
		by[cp.Source] = cp
		if cp.Partition != "" {
			d.add("%s: partition %q, want none", cp.Source, cp.Partition)
		}
	}
	for i, f := range s.files {
		cp, ok := by[f]
		last := strconv.Itoa(s.units[i][len(s.units[i])-1].line)
		switch {
		case !ok:
			d.add("%s: no checkpoint", f)
		case cp.Applied.Source != f || cp.Applied.Offset != last || cp.Applied.Indexed:
			d.add("%s: applied %s, want line %s", f, cp.Applied, last)
		case cp.Held:
			d.add("%s: still held from %s", f, cp.Resume)
		}
		delete(by, f)
	}
	for src := range by {
		d.add("%s: checkpoint of an unknown source", src)
	}
	return []*diffs{d}
}

// verify runs every check against the scenario's database.
func (s *scenario) verify(t *testing.T, ref map[string]change.Event, refDead map[string]change.DeadLetter, crashed bool) []*diffs {
	t.Helper()
	snk := s.openSink(t)
	defer snk.Close(context.Background())
	cps, err := snk.Checkpoints(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	var all []*diffs
	all = append(all, s.checkState(snk.DB())...)
	all = append(all, s.checkLog(snk.DB(), ref, crashed)...)
	all = append(all, s.checkDead(snk.DB(), refDead, crashed)...)
	all = append(all, s.checkCheckpoints(cps)...)
	var bad []*diffs
	for _, d := range all {
		if len(d.lines) > 0 {
			bad = append(bad, d)
		}
	}
	return bad
}
