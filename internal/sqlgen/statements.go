package sqlgen

import (
	"fmt"
	"strings"
)

// Column is a merged-table column.
type Column struct {
	Name string
	Type Type
}

// EventColumns are the event log's columns in table order, the order in
// which sinks append or COPY rows.
var EventColumns = []string{
	"event_id", "source_table", "operation", "record_id", "event_data",
	"commit_timestamp", "ingested_at", "source_schema", "commit_ts_ns", "seq",
	"tx_id", "stream_position", "commit_order", "stream_order",
}

// DeadLetterColumns are the dead-letter table's columns in table order.
var DeadLetterColumns = []string{
	"reason", "detail", "format", "position", "stream_source",
	"stream_partition", "stream_offset", "source_table", "record_id", "raw", "created_at",
}

// CheckpointColumns are the checkpoint table's columns in table order; the
// first two are its key.
var CheckpointColumns = []string{
	"source", "partition",
	"applied_source", "applied_partition", "applied_offset", "applied_index", "applied_indexed",
	"held",
	"resume_source", "resume_partition", "resume_offset", "resume_index", "resume_indexed",
	"updated_at",
}

// TombstoneColumns are the tombstone table's columns; the first two are its key.
var TombstoneColumns = []string{"table_name", "record_id", "commit_order", "commit_timestamp"}

// BaseDDL returns the statements creating the tables every warehouse sink
// needs (if absent): the event log, dead letters, checkpoints, tombstones,
// the registries of merged tables and their columns, the chunk ids of
// reassembled DSQL records, and the positions of deduplicated records
// (RecordPositionsDDL).
func BaseDDL(d Dialect) []string {
	return append(append(baseTables(d), ChunksDDL(d)...), RecordPositionsDDL(d)...)
}

func baseTables(d Dialect) []string {
	text, ts, order := d.TypeName(TVarchar), d.TypeName(Type{Kind: TimestampTZ}), d.OrderType()
	bigint, boolean := d.TypeName(TBigInt), d.TypeName(TBoolean)
	return []string{
		createTable(d, EventsTable, []string{
			"event_id " + bigint + " NOT NULL",
			"source_table " + text + " NOT NULL",
			"operation " + text + " NOT NULL",
			"record_id " + text + " NOT NULL",
			"event_data " + d.TypeName(TJSON),
			"commit_timestamp " + ts + " NOT NULL",
			"ingested_at " + ts + " NOT NULL",
			"source_schema " + text,
			"commit_ts_ns " + bigint + " NOT NULL",
			"seq " + text,
			"tx_id " + text,
			"stream_position " + text,
			"commit_order " + order + " NOT NULL",
			"stream_order " + order + " NOT NULL",
		}),
		createTable(d, DeadLettersTable, []string{
			"reason " + text + " NOT NULL",
			"detail " + text,
			"format " + text,
			"position " + text,
			"stream_source " + text,
			"stream_partition " + text,
			"stream_offset " + text,
			"source_table " + text,
			"record_id " + text,
			"raw " + d.BlobType(),
			"created_at " + ts + " NOT NULL",
		}),
		createTable(d, CheckpointsTable, []string{
			"source " + text + " NOT NULL",
			"partition " + text + " NOT NULL",
			"applied_source " + text + " NOT NULL",
			"applied_partition " + text + " NOT NULL",
			"applied_offset " + text + " NOT NULL",
			"applied_index " + bigint + " NOT NULL",
			"applied_indexed " + boolean + " NOT NULL",
			"held " + boolean + " NOT NULL",
			"resume_source " + text + " NOT NULL",
			"resume_partition " + text + " NOT NULL",
			"resume_offset " + text + " NOT NULL",
			"resume_index " + bigint + " NOT NULL",
			"resume_indexed " + boolean + " NOT NULL",
			"updated_at " + ts + " NOT NULL",
			"PRIMARY KEY (source, partition)",
		}),
		createTable(d, TombstonesTable, []string{
			"table_name " + text + " NOT NULL",
			"record_id " + text + " NOT NULL",
			"commit_order " + order + " NOT NULL",
			"commit_timestamp " + ts,
			"PRIMARY KEY (table_name, record_id)",
		}[:keyedDefs(d, 5)]),
		createTable(d, TablesTable, []string{
			"table_name " + text + " PRIMARY KEY",
			"source_schema " + text,
			"source_table " + text + " NOT NULL",
			"match_schema " + boolean + " NOT NULL",
			"created_at " + ts + " NOT NULL",
		}),
		createTable(d, ColumnsTable, []string{
			"table_name " + text + " NOT NULL",
			"column_name " + text + " NOT NULL",
			"column_type " + text + " NOT NULL",
			"pinned " + boolean + " NOT NULL",
			"ordinal " + d.TypeName(Type{Kind: Integer}) + " NOT NULL",
			"updated_at " + ts + " NOT NULL",
			"PRIMARY KEY (table_name, column_name)",
		}),
	}
}

// keyedDefs returns n, or n-1 (dropping a trailing PRIMARY KEY clause) when
// d does not index keys.
func keyedDefs(d Dialect, n int) int {
	if d.KeyIndexes() {
		return n
	}
	return n - 1
}

func createTable(_ Dialect, name string, defs []string) string {
	return "CREATE TABLE IF NOT EXISTS " + QuoteIdent(name) + " (\n  " + strings.Join(defs, ",\n  ") + "\n)"
}

// BookkeepingColumns are the columns every merged table starts with, in
// order; soft-deleting tables add ColDeleted.
func BookkeepingColumns(soft bool) []string {
	c := []string{ColRecordID, ColCommitOrder, ColCommitTimestamp, ColOp}
	if soft {
		c = append(c, ColDeleted)
	}
	return c
}

// CreateMergedTable creates (if absent) merged table name with the
// bookkeeping columns followed by cols.
func CreateMergedTable(d Dialect, name string, cols []Column, soft bool) string {
	text := d.TypeName(TVarchar)
	defs := []string{
		QuoteIdent(ColRecordID) + " " + text + " PRIMARY KEY",
		QuoteIdent(ColCommitOrder) + " " + d.OrderType() + " NOT NULL",
		QuoteIdent(ColCommitTimestamp) + " " + d.TypeName(Type{Kind: TimestampTZ}),
		QuoteIdent(ColOp) + " " + text + " NOT NULL",
	}
	if !d.KeyIndexes() {
		defs[0] = QuoteIdent(ColRecordID) + " " + text + " NOT NULL"
	}
	if soft {
		defs = append(defs, QuoteIdent(ColDeleted)+" "+d.TypeName(TBoolean)+" NOT NULL DEFAULT false")
	}
	for _, c := range cols {
		defs = append(defs, QuoteIdent(c.Name)+" "+d.TypeName(c.Type))
	}
	return createTable(d, name, defs)
}

// AddColumn adds column c to table.
func AddColumn(d Dialect, table string, c Column) string {
	return "ALTER TABLE " + QuoteIdent(table) + " ADD COLUMN " + QuoteIdent(c.Name) + " " + d.TypeName(c.Type)
}

// AddDeletedColumn adds ColDeleted to a table that starts soft-deleting.
func AddDeletedColumn(d Dialect, table string) string {
	return "ALTER TABLE " + QuoteIdent(table) + " ADD COLUMN " + QuoteIdent(ColDeleted) + " " + d.TypeName(TBoolean) + " DEFAULT false"
}

// View describes a merged table's current-state view over the event log.
type View struct {
	Table        string // the merged table; the view is named Table + ViewSuffix
	SourceTable  string // events whose source_table equals this
	SourceSchema string // ... and whose source_schema equals this, when MatchSchema
	MatchSchema  bool
	Columns      []Column // typed columns, extracted from event_data
}

// viewFixed are the view's own columns; a source column with one of these
// names is only reachable through event_data.
var viewFixed = map[string]bool{"record_id": true, "event_data": true, "commit_timestamp": true}

// ViewName returns the name of table's current-state view.
func ViewName(table string) string { return table + ViewSuffix }

// CreateView (re)creates the current-state view: for each record_id of the
// table, its latest event by (commit_order, stream_order) unless that event
// is a delete, with one typed column per source column.
func CreateView(d Dialect, v View) string {
	var b strings.Builder
	fmt.Fprintf(&b, "CREATE OR REPLACE VIEW %s AS\nSELECT record_id, event_data, commit_timestamp", QuoteIdent(ViewName(v.Table)))
	for _, c := range v.Columns {
		if viewFixed[d.Fold(c.Name)] {
			continue
		}
		var expr string
		if c.Type.Kind == JSON {
			// JSON null reads as SQL NULL, as in the merged table.
			expr = "NULLIF(" + d.JSONField("event_data", c.Name, false) + ", CAST('null' AS " + d.TypeName(c.Type) + "))"
		} else {
			expr = d.CastText(d.JSONField("event_data", c.Name, true), c.Type)
		}
		fmt.Fprintf(&b, ",\n  %s AS %s", expr, QuoteIdent(c.Name))
	}
	fmt.Fprintf(&b, "\nFROM (\n  SELECT record_id, operation, event_data, commit_timestamp,\n    ROW_NUMBER() OVER (PARTITION BY record_id ORDER BY commit_order DESC, stream_order DESC, event_id DESC) AS rn\n  FROM %s\n  WHERE source_table = %s", QuoteIdent(EventsTable), QuoteLiteral(v.SourceTable))
	if v.MatchSchema {
		fmt.Fprintf(&b, " AND source_schema = %s", QuoteLiteral(v.SourceSchema))
	}
	b.WriteString("\n) latest\nWHERE rn = 1 AND operation <> 'd'")
	return b.String()
}

// UpsertRows merges staged rows (relation src with the columns cols, which
// start with the bookkeeping columns) into table: newer rows win.
func UpsertRows(d Dialect, table string, cols []string, src string) string {
	return d.Upsert(table, []string{ColRecordID}, ColCommitOrder, cols, cols[1:], src)
}

// SoftDeleteRows marks the staged keys of src (bookkeeping columns, with
// ColDeleted true) deleted in table, inserting a bookkeeping-only row for
// unknown keys, so older events cannot resurrect them. Column values are kept.
func SoftDeleteRows(d Dialect, table, src string) string {
	cols := BookkeepingColumns(true)
	return d.Upsert(table, []string{ColRecordID}, ColCommitOrder, cols, cols[1:], src)
}

// DeleteRows removes the rows of table whose key is staged in src
// (ColRecordID, ColCommitOrder) with an older commit order.
func DeleteRows(_ Dialect, table, src string) string {
	t, k, o := QuoteIdent(table), QuoteIdent(ColRecordID), QuoteIdent(ColCommitOrder)
	return fmt.Sprintf("DELETE FROM %s USING %s WHERE %s.%s = %s.%s AND %s.%s < %s.%s", t, src, t, k, src, k, t, o, src, o)
}

// UpsertTombstones records the staged tombstones of src (TombstoneColumns),
// keeping the newest per key.
func UpsertTombstones(d Dialect, src string) string {
	return d.Upsert(TombstonesTable, TombstoneColumns[:2], "commit_order", TombstoneColumns, TombstoneColumns[2:], src)
}

// SelectStoredOrders reads (record_id, commit_order) of table's rows whose
// key is in the list bound to parameter 1.
func SelectStoredOrders(d Dialect, table string) string {
	k := QuoteIdent(ColRecordID)
	return "SELECT " + k + ", " + QuoteIdent(ColCommitOrder) + " FROM " + QuoteIdent(table) + " WHERE " + d.InList(k, 1)
}

// SelectTombstones reads (record_id, commit_order) of the tombstones of the
// table bound to parameter 1 whose key is in the list bound to parameter 2.
func SelectTombstones(d Dialect) string {
	return "SELECT record_id, commit_order FROM " + QuoteIdent(TombstonesTable) + " WHERE table_name = " + d.Param(1) + " AND " + d.InList("record_id", 2)
}

// UpsertCheckpoint stores one checkpoint; parameters are CheckpointColumns in order.
func UpsertCheckpoint(d Dialect) string {
	return upsertValues(d, CheckpointsTable, CheckpointColumns, 2)
}

// SelectCheckpoints reads CheckpointColumns (without updated_at) of every
// checkpoint, or with bySource of the source bound to parameter 1.
func SelectCheckpoints(d Dialect, bySource bool) string {
	s := "SELECT " + strings.Join(CheckpointColumns[:len(CheckpointColumns)-1], ", ") + " FROM " + QuoteIdent(CheckpointsTable)
	if bySource {
		s += " WHERE source = " + d.Param(1)
	}
	return s + " ORDER BY source, partition"
}

// TableRegistryColumns are the merged-table registry's columns.
var TableRegistryColumns = []string{"table_name", "source_schema", "source_table", "match_schema", "created_at"}

// ColumnRegistryColumns are the column registry's columns.
var ColumnRegistryColumns = []string{"table_name", "column_name", "column_type", "pinned", "ordinal", "updated_at"}

// InsertTable registers a merged table; parameters are TableRegistryColumns.
func InsertTable(d Dialect) string {
	return upsertValues(d, TablesTable, TableRegistryColumns, 1)
}

// UpsertColumn registers a column or its new type; parameters are
// ColumnRegistryColumns.
func UpsertColumn(d Dialect) string {
	return upsertValues(d, ColumnsTable, ColumnRegistryColumns, 2)
}

// SelectTables reads the merged-table registry (without created_at).
func SelectTables(_ Dialect) string {
	return "SELECT " + strings.Join(TableRegistryColumns[:4], ", ") + " FROM " + QuoteIdent(TablesTable) + " ORDER BY table_name"
}

// SelectColumns reads the column registry (without updated_at) in table and
// ordinal order.
func SelectColumns(_ Dialect) string {
	return "SELECT " + strings.Join(ColumnRegistryColumns[:5], ", ") + " FROM " + QuoteIdent(ColumnsTable) + " ORDER BY table_name, ordinal"
}

// upsertValues is INSERT ... VALUES (params) ON CONFLICT (first nkeys
// columns) DO UPDATE SET the others.
func upsertValues(d Dialect, table string, cols []string, nkeys int) string {
	params := make([]string, len(cols))
	for i := range cols {
		params[i] = d.Param(i + 1)
	}
	set := make([]string, 0, len(cols)-nkeys)
	for _, c := range cols[nkeys:] {
		set = append(set, c+" = excluded."+c)
	}
	return "INSERT INTO " + QuoteIdent(table) + " (" + strings.Join(cols, ", ") + ") VALUES (" + strings.Join(params, ", ") +
		") ON CONFLICT (" + strings.Join(cols[:nkeys], ", ") + ") DO UPDATE SET " + strings.Join(set, ", ")
}

// Chunk ids of reassembled DSQL records (sink.ChunkStore). seq comes from a
// sequence, so rows can be read incrementally. A PostgreSQL writer takes an
// advisory lock before inserting, so that, with several writers, seq order
// is commit order and an incremental reader never skips a row.

// ChunksKept is how many chunk ids PruneChunks keeps: ten times what a
// decoder remembers (decode/dsql's recent set).
const ChunksKept = 1_000_000

const chunksSeq = ChunksTable + "_seq"

// ChunksDDL creates the chunk-id table and its sequence, and, where keys
// are indexed, the parked-pieces table (PostgreSQL: several processes share
// it, see sink.PieceStore) and a unique index on chunk_id, which makes
// storing a reassembled event a claim: its chunk id goes in at most once.
func ChunksDDL(d Dialect) []string {
	text := d.TypeName(TVarchar)
	ddl := []string{
		"CREATE SEQUENCE IF NOT EXISTS " + QuoteIdent(chunksSeq),
		createTable(d, ChunksTable, []string{
			"seq " + d.TypeName(TBigInt) + " NOT NULL DEFAULT nextval(" + QuoteLiteral(QuoteIdent(chunksSeq)) + ")",
			"chunk_id " + text + " NOT NULL",
			"stream_position " + text,
			"created_at " + d.TypeName(Type{Kind: TimestampTZ}) + " NOT NULL",
			"PRIMARY KEY (seq)",
		}[:keyedDefs(d, 5)]),
	}
	if !d.KeyIndexes() {
		return ddl
	}
	integer := d.TypeName(Type{Kind: Integer})
	return append(ddl,
		"CREATE UNIQUE INDEX IF NOT EXISTS "+QuoteIdent(ChunksTable+"_chunk_id")+" ON "+QuoteIdent(ChunksTable)+" (chunk_id)",
		createTable(d, PiecesTable, []string{
			"chunk_id " + text + " NOT NULL",
			"idx " + integer + " NOT NULL",
			"fragments " + integer + " NOT NULL",
			"stream_source " + text + " NOT NULL",
			"stream_partition " + text + " NOT NULL",
			"stream_offset " + text + " NOT NULL",
			"stream_index " + d.TypeName(TBigInt) + " NOT NULL",
			"stream_indexed " + d.TypeName(TBoolean) + " NOT NULL",
			"raw " + d.BlobType() + " NOT NULL",
			"created_at " + d.TypeName(Type{Kind: TimestampTZ}) + " NOT NULL",
			"PRIMARY KEY (chunk_id, idx)",
		}))
}

// InsertChunk stores one chunk id: parameters chunk_id, stream_position,
// created_at.
func InsertChunk(d Dialect) string {
	return "INSERT INTO " + QuoteIdent(ChunksTable) + " (chunk_id, stream_position, created_at) VALUES (" +
		d.Param(1) + ", " + d.Param(2) + ", " + d.Param(3) + ")"
}

// SelectChunks reads seq and chunk_id of at most parameter 2 of the newest
// rows whose seq is greater than parameter 1, newest first.
func SelectChunks(d Dialect) string {
	return "SELECT seq, chunk_id FROM " + QuoteIdent(ChunksTable) + " WHERE seq > " + d.Param(1) +
		" ORDER BY seq DESC LIMIT " + d.Param(2)
}

// PruneChunks deletes all but the newest ChunksKept rows.
func PruneChunks(d Dialect) string {
	t := QuoteIdent(ChunksTable)
	return "DELETE FROM " + t + " WHERE seq <= (SELECT max(seq) FROM " + t + ") - " + fmt.Sprint(ChunksKept)
}
