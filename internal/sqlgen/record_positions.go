package sqlgen

import (
	"strconv"
	"time"

	"github.com/cdcflow/cdcflow/internal/change"
)

// Record positions of batches with change.Batch.DedupePositions (DynamoDB
// Streams records, whose events carry no shard id and so no checkpoint):
// one row per stored record, written in the batch's transaction, so a
// redelivered record is recognised and dropped. Rows older than
// RecordPositionsRetention are pruned as batches are applied.

// RecordPositionsTable holds the positions of the records stored from
// batches with change.Batch.DedupePositions.
const RecordPositionsTable = "_cdc_record_positions"

// RecordPositionsRetention is how long a stored record position is kept.
// DynamoDB Streams keep a record for 24 hours, so no redelivery comes later;
// twice that leaves a margin for clock skew and a stalled event source
// mapping.
const RecordPositionsRetention = 48 * time.Hour

// RecordPositionsDDL creates the record-position table. Dialects with key
// indexes (KeyIndexes) give it its primary key (source, position), which
// ClaimRecordPositions relies on, and an index on created_at for pruning;
// DuckDB's sink, the only writer of its file, looks positions up with
// SelectRecordPositions instead, and prunes by created_at through the
// table's zone maps (rows are appended in time order).
func RecordPositionsDDL(d Dialect) []string {
	text, ts := d.TypeName(TVarchar), d.TypeName(Type{Kind: TimestampTZ})
	stmts := []string{createTable(d, RecordPositionsTable, []string{
		"source " + text + " NOT NULL",
		"position " + text + " NOT NULL",
		"created_at " + ts + " NOT NULL",
		"PRIMARY KEY (source, position)",
	}[:keyedDefs(d, 4)])}
	if d.KeyIndexes() {
		stmts = append(stmts, "CREATE INDEX IF NOT EXISTS "+QuoteIdent(RecordPositionsTable+"_created_at")+
			" ON "+QuoteIdent(RecordPositionsTable)+" (created_at)")
	}
	return stmts
}

// RecordPosition returns the key under which the position of a record is
// stored: its stream source, and the rest of the position ("[partition]@"
// when there is a partition, the offset, "#index" inside an envelope). ok is
// false when p has no offset: such a record has no identity to deduplicate
// by, and is stored every time it is delivered.
func RecordPosition(p change.Position) (source, position string, ok bool) {
	if p.Offset == "" {
		return "", "", false
	}
	position = p.Offset
	if p.Partition != "" {
		position = "[" + p.Partition + "]@" + position
	}
	if p.Indexed {
		position += "#" + strconv.Itoa(p.Index)
	}
	return p.Source, position, true
}

// unnestPositions is a relation of (source, position) pairs from the two
// parallel lists bound to parameters 1 and 2.
func unnestPositions(d Dialect) string {
	list := d.TypeName(TVarchar) + "[]"
	return "unnest(CAST(" + d.Param(1) + " AS " + list + ")), unnest(CAST(" + d.Param(2) + " AS " + list + "))"
}

// ClaimRecordPositions stores the (source, position) pairs given as two
// parallel lists (parameters 1 and 2), with created_at parameter 3, skipping
// pairs stored already, and returns the pairs it stored: the records not
// seen before. One statement for the whole batch; it needs the primary key
// (KeyIndexes dialects). A concurrent transaction claiming the same pair
// makes it wait and then skip the pair once that transaction commits.
func ClaimRecordPositions(d Dialect) string {
	return "INSERT INTO " + QuoteIdent(RecordPositionsTable) + " (source, position, created_at)\nSELECT " +
		unnestPositions(d) + ", " + d.Param(3) + "\nON CONFLICT (source, position) DO NOTHING\nRETURNING source, position"
}

// SelectRecordPositions returns which of the (source, position) pairs given
// as two parallel lists (parameters 1 and 2) are stored.
func SelectRecordPositions(d Dialect) string {
	t := QuoteIdent(RecordPositionsTable)
	return "SELECT r.source, r.position FROM " + t + " AS r\nJOIN (SELECT " + unnestPositions(d) +
		") AS b (source, position) ON r.source = b.source AND r.position = b.position"
}

// InsertRecordPositions stores the (source, position) pairs given as two
// parallel lists (parameters 1 and 2) with created_at parameter 3. The
// caller has dropped the pairs stored already (SelectRecordPositions).
func InsertRecordPositions(d Dialect) string {
	return "INSERT INTO " + QuoteIdent(RecordPositionsTable) + " (source, position, created_at)\nSELECT " +
		unnestPositions(d) + ", " + d.Param(3)
}

// PruneRecordPositions deletes the positions stored before parameter 1.
func PruneRecordPositions(d Dialect) string {
	return "DELETE FROM " + QuoteIdent(RecordPositionsTable) + " WHERE created_at < " + d.Param(1)
}

// PostgresPruneRecordPositions deletes at most $2 of the positions stored
// before $1, oldest first, skipping rows another transaction is pruning:
// each Apply prunes a bounded amount (the first batch after a long pause
// does not delete two days of rows at once), and writers of different
// streams never wait for each other here.
func PostgresPruneRecordPositions() string {
	t := QuoteIdent(RecordPositionsTable)
	return "DELETE FROM " + t + " WHERE ctid = ANY(ARRAY(SELECT ctid FROM " + t +
		" WHERE created_at < $1 ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED))"
}
