package duckdb

import (
	"strings"

	"github.com/cdcflow/cdcflow/internal/sqlgen"
)

// DuckDB-specific statements. The shared ones (event log, views, registries,
// checkpoints) come from sqlgen; these exist because DuckDB is a column
// store whose UPDATE (and so INSERT ... ON CONFLICT DO UPDATE) and ART
// indexes cost work proportional to the table at every checkpoint: a
// merged row is replaced by DELETE + append instead. (The merged and
// tombstone tables have no PRIMARY KEY either: sqlgen's DuckDB dialect
// reports KeyIndexes false; see doc.go.)

func quoteList(prefix string, names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = prefix + sqlgen.QuoteIdent(n)
	}
	return strings.Join(q, ", ")
}

// insertRows appends the staged rows of src (columns cols) to table.
func insertRows(table string, cols []string, src string) string {
	list := quoteList("", cols)
	return "INSERT INTO " + sqlgen.QuoteIdent(table) + " (" + list + ")\nSELECT " + list + " FROM " + src
}

// deleteOlder removes the rows of table whose key columns equal those of a
// row of src and whose order column is older than that row's: the guard
// repeats, in SQL, the decision made in Go.
func deleteOlder(table string, keys []string, order, src string) string {
	t := sqlgen.QuoteIdent(table)
	var b strings.Builder
	b.WriteString("DELETE FROM " + t + " USING " + src + " WHERE ")
	for _, k := range keys {
		q := sqlgen.QuoteIdent(k)
		b.WriteString(t + "." + q + " = " + src + "." + q + " AND ")
	}
	o := sqlgen.QuoteIdent(order)
	b.WriteString(t + "." + o + " < " + src + "." + o)
	return b.String()
}

// carryRows inserts, for each staged soft delete of src (the bookkeeping
// columns, ColDeleted true) whose key has an older stored row in table, a
// row with the staged bookkeeping and the stored row's data columns. The
// older row is then removed with deleteOlder.
func carryRows(table string, data []string, src string) string {
	bk := sqlgen.BookkeepingColumns(true)
	cols := append(append([]string(nil), bk...), data...)
	k, o := sqlgen.QuoteIdent(sqlgen.ColRecordID), sqlgen.QuoteIdent(sqlgen.ColCommitOrder)
	sel := quoteList("s.", bk)
	if len(data) > 0 {
		sel += ", " + quoteList("o.", data)
	}
	return "INSERT INTO " + sqlgen.QuoteIdent(table) + " (" + quoteList("", cols) + ")\nSELECT " + sel +
		" FROM " + sqlgen.QuoteIdent(table) + " o JOIN " + src + " s ON o." + k + " = s." + k + " WHERE o." + o + " < s." + o
}

// keysTable is a temporary table (private to the sink's connection) that
// holds the keys of the batch being merged, by merged table name.
const keysTable = "_cdc_batch_keys"

var keysRelation = "temp.main." + sqlgen.QuoteIdent(keysTable)

// createKeysTable creates keysTable on the connection.
func createKeysTable() string {
	return "CREATE TEMP TABLE IF NOT EXISTS " + sqlgen.QuoteIdent(keysTable) + " (table_name VARCHAR NOT NULL, record_id VARCHAR NOT NULL)"
}

// selectStored reads (table_name, record_id, commit order) of the rows of
// table whose key is staged in keysTable for the table named by parameter 1.
func selectStored(table string) string {
	k, o := sqlgen.QuoteIdent(sqlgen.ColRecordID), sqlgen.QuoteIdent(sqlgen.ColCommitOrder)
	return "SELECT b.table_name, t." + k + ", t." + o + " FROM " + sqlgen.QuoteIdent(table) + " t JOIN " + keysRelation +
		" b ON t." + k + " = b.record_id WHERE b.table_name = $1"
}

// selectTombstones reads (table_name, record_id, commit_order) of the
// tombstones of the keys staged in keysTable.
func selectTombstones() string {
	return "SELECT t.table_name, t.record_id, t.commit_order FROM " + sqlgen.QuoteIdent(sqlgen.TombstonesTable) + " t JOIN " + keysRelation +
		" b ON t.table_name = b.table_name AND t.record_id = b.record_id"
}
