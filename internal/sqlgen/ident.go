package sqlgen

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// MaxIdentLen is the longest identifier accepted, in bytes. PostgreSQL and
// Redshift silently truncate longer names, which could merge two tables.
const MaxIdentLen = 63

// ReservedPrefix starts every bookkeeping name (tables and columns) the sinks
// create; stream names must not use it.
const ReservedPrefix = "_cdc_"

// ViewSuffix is appended to a merged table's name to name its current-state view.
const ViewSuffix = "_current"

// Names of the tables every warehouse sink creates.
const (
	EventsTable      = "cdc_events"
	DeadLettersTable = "cdc_dead_letters"
	CheckpointsTable = "_cdc_checkpoints"
	TombstonesTable  = "_cdc_tombstones"
	ColumnsTable     = "_cdc_columns"
	TablesTable      = "_cdc_tables"
	ChunksTable      = "_cdc_chunks"
	PiecesTable      = "_cdc_pieces"
)

// Bookkeeping columns of a merged table.
const (
	ColRecordID        = "_cdc_record_id"
	ColCommitOrder     = "_cdc_commit_order"
	ColCommitTimestamp = "_cdc_commit_timestamp"
	ColOp              = "_cdc_op"
	ColDeleted         = "_deleted" // only when the table soft-deletes
)

// QuoteIdent quotes name as an SQL identifier: wrapped in double quotes, with
// embedded double quotes doubled. It is the same in every supported dialect.
// Callers validate names from the stream with ValidateIdent first.
func QuoteIdent(name string) string {
	return `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
}

// QuoteLiteral quotes s as an SQL string literal with embedded single quotes
// doubled (standard strings: backslashes are not special). It is only used
// for names inside DDL (view filters, JSON keys), never for row values,
// which are always bound as parameters or appended.
func QuoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// ValidateIdent reports whether name may be used as a table or column name
// taken from the stream: non-empty, valid UTF-8, at most MaxIdentLen bytes,
// no control characters (NUL included), not starting with ReservedPrefix.
func ValidateIdent(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("identifier is empty")
	case len(name) > MaxIdentLen:
		return fmt.Errorf("identifier %q is %d bytes, longer than %d", name, len(name), MaxIdentLen)
	case !utf8.ValidString(name):
		return fmt.Errorf("identifier %q is not valid UTF-8", name)
	case strings.HasPrefix(strings.ToLower(name), ReservedPrefix):
		return fmt.Errorf("identifier %q starts with the reserved prefix %s", name, ReservedPrefix)
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return fmt.Errorf("identifier %q contains control character %U", name, r)
		}
	}
	return nil
}

// ValidateTable validates a merged table name: ValidateIdent, short enough to
// leave room for ViewSuffix, and not one of the sink's own tables.
func ValidateTable(name string) error {
	if err := ValidateIdent(name); err != nil {
		return err
	}
	if len(name)+len(ViewSuffix) > MaxIdentLen {
		return fmt.Errorf("table name %q is %d bytes; with %s it exceeds %d", name, len(name), ViewSuffix, MaxIdentLen)
	}
	switch strings.ToLower(name) {
	case EventsTable, DeadLettersTable, EventsTable + ViewSuffix, DeadLettersTable + ViewSuffix:
		return fmt.Errorf("table name %q is reserved", name)
	}
	return nil
}
