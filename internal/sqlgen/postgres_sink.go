package sqlgen

import (
	"strconv"
	"strings"
)

// Statements only the PostgreSQL sink uses: staging relations filled by
// binary COPY, merges guarded by commit order and tombstones, locked
// checkpoint reads, multi-row upserts chunked under the protocol's parameter
// cap. Like everything in this package they hold no row values: names are
// quoted, values are parameters or staged rows.

// MaxParams is the most bind parameters one PostgreSQL statement may carry
// (the protocol counts them in 16 bits).
const MaxParams = 65535

// EventIDSequence is the sequence that numbers cdc_events.event_id in
// PostgreSQL: concurrent writers never share an id.
const EventIDSequence = "_cdc_event_ids"

// PostgresEventIDDefault makes cdc_events.event_id default to the next value
// of EventIDSequence, which must exist.
func PostgresEventIDDefault() string {
	return "ALTER TABLE " + QuoteIdent(EventsTable) + " ALTER COLUMN event_id SET DEFAULT nextval(" +
		QuoteLiteral(QuoteIdent(EventIDSequence)) + "::regclass)"
}

// PostgresLogColumns are the event log's columns a PostgreSQL sink COPYs:
// EventColumns without event_id, which the sequence fills.
func PostgresLogColumns() []string { return append([]string(nil), EventColumns[1:]...) }

// AddColumnIfNotExists adds column c to table unless a column of that name
// exists (another writer may have added it).
func AddColumnIfNotExists(d Dialect, table string, c Column) string {
	return "ALTER TABLE " + QuoteIdent(table) + " ADD COLUMN IF NOT EXISTS " + QuoteIdent(c.Name) + " " + d.TypeName(c.Type)
}

// SetFillfactor leaves pct percent of each new page of table filled, the
// rest free for updated row versions: PostgreSQL then updates a merged row
// in place on its page (a HOT update) without touching the primary key index.
func SetFillfactor(table string, pct int) string {
	return "ALTER TABLE " + QuoteIdent(table) + " SET (fillfactor = " + strconv.Itoa(pct) + ")"
}

// DropView drops table's current-state view if it exists. PostgreSQL cannot
// CREATE OR REPLACE a view whose column types change.
func DropView(table string) string {
	return "DROP VIEW IF EXISTS " + QuoteIdent(ViewName(table))
}

// CreateStaging creates (if absent) the session-local staging table name
// with cols, emptied at every commit.
func CreateStaging(d Dialect, name string, cols []Column) string {
	defs := make([]string, len(cols))
	for i, c := range cols {
		t := d.TypeName(c.Type)
		if c.Name == ColCommitOrder || c.Name == "commit_order" {
			t = d.OrderType()
		}
		defs[i] = QuoteIdent(c.Name) + " " + t
	}
	return "CREATE TEMP TABLE IF NOT EXISTS " + QuoteIdent(name) + " (" + strings.Join(defs, ", ") + ") ON COMMIT DELETE ROWS"
}

// Staged names a staging table in the session's temporary schema.
func Staged(name string) string { return "pg_temp." + QuoteIdent(name) }

// DeleteStagingColumns are the columns of the staging table of deletes: one
// row per delete that wins in a batch, for every table. Merge says whether
// the delete also removes (or, soft-deleting, marks) the merged row; every
// row becomes a tombstone.
var DeleteStagingColumns = []Column{
	{Name: "table_name", Type: TVarchar},
	{Name: "record_id", Type: TVarchar},
	{Name: "commit_order", Type: TVarchar},
	{Name: "commit_timestamp", Type: Type{Kind: TimestampTZ}},
	{Name: "merge", Type: TBoolean},
}

// tombGuard is true unless the key keyExpr has a tombstone at least as new
// as orderExpr; the table name is parameter 1. The tombstones are probed
// only when the table has any (an uncorrelated EXISTS, evaluated once per
// statement), and then with a scalar subquery rather than NOT EXISTS, so
// that PostgreSQL probes the tombstones' primary key once per staged row
// instead of hashing every tombstone of the table (which it prefers for
// large batches, at a cost that grows with the tombstones, never pruned).
func tombGuard(d Dialect, keyExpr, orderExpr string) string {
	tb := QuoteIdent(TombstonesTable)
	return "(NOT EXISTS (SELECT 1 FROM " + tb + " WHERE table_name = " + d.Param(1) + ") OR COALESCE((SELECT tb.commit_order FROM " + tb +
		" tb WHERE tb.table_name = " + d.Param(1) + " AND tb.record_id = " + keyExpr + ") < " + orderExpr + ", true))"
}

// UpsertStaged merges the rows staged in stage (columns cols, starting with
// the bookkeeping columns) into table: a new key is inserted and a stored
// row is overwritten only by a strictly newer commit order. It returns, for
// every row it inserted or overwrote, the record id and, for an inserted
// row, its commit order (NULL for an overwritten one).
//
// It does not look at tombstones: a stored row is never older than its
// key's tombstone (the sink keeps it so), so only an inserted row can have
// one at least as new; Tombstoned finds those and UndoTombstoned removes
// them, in the same transaction. Probing the tombstones of the inserted rows
// only costs much less than a guard probing them for every staged row.
// Inserted rows are told by xmax = 0: a row version this statement inserted
// has no xmax, while the new version of a row it overwrote carries the lock
// ON CONFLICT took on the old one. Were that ever 0, the row would only be
// probed for nothing.
//
// Rows are not sorted first: merges of one table are serialized by the
// table's advisory lock (internal/sink/postgres), so no two writers take
// row locks of one table at the same time.
func UpsertStaged(d Dialect, table string, cols []string, stage string) string {
	return d.Upsert(table, []string{ColRecordID}, ColCommitOrder, cols, cols[1:], Staged(stage)) +
		"\nRETURNING " + QuoteIdent(ColRecordID) + ", CASE WHEN xmax = 0 THEN " + QuoteIdent(ColCommitOrder) + " END"
}

// Tombstoned returns the keys, among the record ids and commit orders bound
// as two text arrays to parameters 2 and 3, that have a tombstone at least
// as new as their order; parameter 1 is the table's name as recorded in the
// tombstones. One primary-key probe per key, none when the table has no
// tombstone.
func Tombstoned(d Dialect) string {
	tb := QuoteIdent(TombstonesTable)
	return "SELECT k.id FROM unnest(CAST(" + d.Param(2) + " AS TEXT[]), CAST(" + d.Param(3) + " AS TEXT[])) AS k(id, ord)" +
		" WHERE EXISTS (SELECT 1 FROM " + tb + " WHERE table_name = " + d.Param(1) + ")" +
		" AND (SELECT tb.commit_order FROM " + tb + " tb WHERE tb.table_name = " + d.Param(1) + " AND tb.record_id = k.id) >= k.ord"
}

// UndoTombstoned deletes, among the rows of table whose keys are in the text
// array bound to parameter 2, those whose key has a tombstone at least as
// new as the row, and returns their record ids. Parameter 1 is table's name
// as recorded in the tombstones.
func UndoTombstoned(d Dialect, table string) string {
	t, k, o := QuoteIdent(table), QuoteIdent(ColRecordID), QuoteIdent(ColCommitOrder)
	return "DELETE FROM " + t + " m WHERE m." + k + " = ANY(CAST(" + d.Param(2) + " AS TEXT[])) AND (SELECT tb.commit_order FROM " +
		QuoteIdent(TombstonesTable) + " tb WHERE tb.table_name = " + d.Param(1) + " AND tb.record_id = m." + k + ") >= m." + o +
		" RETURNING m." + k
}

// DeleteStaged applies the staged deletes (DeleteStagingColumns,
// table_name = parameter 1) of a table without soft deletes, in one
// statement: a tombstone is stored (or moved forward) for each delete newer
// than both the key's stored row and its tombstone, the row it deletes, if
// older, is removed, and the record ids whose delete applied are returned.
func DeleteStaged(d Dialect, table, stage string) string {
	t, k, o := QuoteIdent(table), QuoteIdent(ColRecordID), QuoteIdent(ColCommitOrder)
	rowNewer := "COALESCE((SELECT m." + o + " FROM " + t + " m WHERE m." + k + " = s.record_id) < s.commit_order, true)"
	tombs := d.Upsert(TombstonesTable, TombstoneColumns[:2], "commit_order", TombstoneColumns, TombstoneColumns[2:],
		"(SELECT s.table_name, s.record_id, s.commit_order, s.commit_timestamp FROM "+Staged(stage)+" s WHERE s.table_name = "+
			d.Param(1)+" AND "+rowNewer+") AS _cdc_src")
	return "WITH tomb AS (\n" + tombs + "\nRETURNING record_id, commit_order\n), gone AS (\nDELETE FROM " + t +
		" m USING tomb WHERE m." + k + " = tomb.record_id AND m." + o + " < tomb.commit_order\n)\nSELECT record_id FROM tomb"
}

// SoftDeleteStaged marks deleted, in table, the keys with a staged delete
// (merge true, table_name = parameter 1): bookkeeping columns only, values
// kept; unknown keys get a bookkeeping-only row. Newer stored rows and newer
// tombstones win.
func SoftDeleteStaged(d Dialect, table, stage string) string {
	cols := BookkeepingColumns(true)
	src := "(SELECT s.record_id AS " + QuoteIdent(ColRecordID) + ", s.commit_order AS " + QuoteIdent(ColCommitOrder) +
		", s.commit_timestamp AS " + QuoteIdent(ColCommitTimestamp) + ", 'd' AS " + QuoteIdent(ColOp) +
		", true AS " + QuoteIdent(ColDeleted) + " FROM " + Staged(stage) + " s WHERE s.table_name = " + d.Param(1) +
		" AND s.merge AND " + tombGuard(d, "s.record_id", "s.commit_order") + ") AS _cdc_src"
	return d.Upsert(table, []string{ColRecordID}, ColCommitOrder, cols, cols[1:], src)
}

// UpsertTombstonesStaged records a tombstone for every staged delete of the
// table bound to parameter 1, keeping the newest per key.
func UpsertTombstonesStaged(d Dialect, stage string) string {
	src := "(SELECT table_name, record_id, commit_order, commit_timestamp FROM " + Staged(stage) +
		" WHERE table_name = " + d.Param(1) + ") AS _cdc_src"
	return d.Upsert(TombstonesTable, TombstoneColumns[:2], "commit_order", TombstoneColumns, TombstoneColumns[2:], src)
}

// StoredOrdersOf reads, for each key in the text array bound to parameter
// 1, (record_id, the merged row's commit order or NULL, the tombstone's
// commit order or NULL). Parameter 2 is table's name as recorded in the
// tombstones. With merged false the table has no merged table and only
// tombstones are read. Each order is a scalar subquery: one primary-key
// probe per key, whatever the planner thinks of the tables' sizes.
func StoredOrdersOf(d Dialect, table string, merged bool) string {
	row := "NULL::text"
	if merged {
		row = "(SELECT m." + QuoteIdent(ColCommitOrder) + " FROM " + QuoteIdent(table) + " m WHERE m." + QuoteIdent(ColRecordID) + " = k.id)"
	}
	return "SELECT k.id, " + row + ", (SELECT tb.commit_order FROM " + QuoteIdent(TombstonesTable) + " tb WHERE tb.table_name = " +
		d.Param(2) + " AND tb.record_id = k.id) FROM unnest(CAST(" + d.Param(1) + " AS TEXT[])) AS k(id)"
}

// LockCheckpoints reads CheckpointColumns (without updated_at) of the
// partitions whose (source, partition) pairs are bound as two text arrays
// (parameters 1 and 2), locking the rows until the transaction ends.
func LockCheckpoints(d Dialect) string {
	return "SELECT " + strings.Join(CheckpointColumns[:len(CheckpointColumns)-1], ", ") + " FROM " + QuoteIdent(CheckpointsTable) +
		" WHERE (source, partition) IN (SELECT * FROM unnest(CAST(" + d.Param(1) + " AS TEXT[]), CAST(" + d.Param(2) + " AS TEXT[])))" +
		" ORDER BY source, partition FOR UPDATE"
}

// AdvisoryLocks takes a transaction-scoped advisory lock on every key of the
// bigint array bound to parameter 1, in array order (callers sort it, so two
// writers never wait on each other in a cycle).
func AdvisoryLocks(d Dialect) string {
	return "SELECT pg_advisory_xact_lock(l.k) FROM unnest(CAST(" + d.Param(1) + " AS BIGINT[])) AS l(k)"
}

// UpsertValuesRows is a multi-row upsert of rows rows of cols into table:
// INSERT ... VALUES (...), (...) ON CONFLICT (the first nkeys columns) DO
// UPDATE SET the others. Parameters are the rows' values in order;
// rows*len(cols) must not exceed MaxParams (see ChunkRows).
func UpsertValuesRows(d Dialect, table string, cols []string, nkeys, rows int) string {
	var b strings.Builder
	b.WriteString("INSERT INTO " + QuoteIdent(table) + " (" + quoteList(cols) + ") VALUES ")
	n := 0
	for r := 0; r < rows; r++ {
		if r > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('(')
		for c := range cols {
			if c > 0 {
				b.WriteString(", ")
			}
			n++
			b.WriteString(d.Param(n))
		}
		b.WriteByte(')')
	}
	b.WriteString(" ON CONFLICT (" + quoteList(cols[:nkeys]) + ") DO UPDATE SET ")
	for i, c := range cols[nkeys:] {
		if i > 0 {
			b.WriteString(", ")
		}
		q := QuoteIdent(c)
		b.WriteString(q + " = excluded." + q)
	}
	return b.String()
}

// ChunkRows returns how many rows of width columns fit in one statement
// under MaxParams (at least 1).
func ChunkRows(width int) int {
	if width <= 0 {
		return MaxParams
	}
	return max(1, MaxParams/width)
}

// SelectColumnsOf reads the column registry rows of the table bound to
// parameter 1 (column, type, pinned, ordinal), in ordinal order.
func SelectColumnsOf(d Dialect) string {
	return "SELECT column_name, column_type, pinned, ordinal FROM " + QuoteIdent(ColumnsTable) +
		" WHERE table_name = " + d.Param(1) + " ORDER BY ordinal, column_name"
}

// StagingName names the staging table of a merged table's rows: the columns'
// names and types are hashed in, so a table whose columns change gets a new
// staging table (a cached COPY description never meets changed types).
func StagingName(table string, cols []Column) string {
	h := uint64(14695981039346656037)
	mix := func(s string) {
		for i := 0; i < len(s); i++ {
			h ^= uint64(s[i])
			h *= 1099511628211
		}
		h ^= 0xff
		h *= 1099511628211
	}
	mix(table)
	for _, c := range cols {
		mix(c.Name)
		mix(c.Type.String())
	}
	return ReservedPrefix + "stage_" + strconv.FormatUint(h, 16)
}
