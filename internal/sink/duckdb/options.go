package duckdb

import (
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/cdcflow/cdcflow/internal/sqlgen"
)

// Table naming schemes (Options.TableNaming).
const (
	NamingTable       = "table"        // merged table named after the source table
	NamingSchemaTable = "schema_table" // <schema>_<table>; just <table> when the event has no schema
)

// Options configures a DuckDB sink.
type Options struct {
	// Path is the database file; "" opens a private in-memory database.
	Path string
	// TableNaming is NamingTable (default) or NamingSchemaTable.
	TableNaming string
	// SoftDelete keeps deleted rows in merged tables with _deleted = true
	// instead of removing them. Tables[...].SoftDelete overrides it.
	SoftDelete bool
	// Tables holds per-table options, keyed by merged table name.
	Tables map[string]TableOptions
	// DeadLetterTable stores dead letters (the batch's and the rows this sink
	// rejects) in cdc_dead_letters in the same transaction. Without it, the
	// batch's dead letters are not stored (the caller routes them), and a
	// row this sink would reject fails Apply with an error wrapping
	// sink.ErrPermanent so the pipeline isolates and dead-letters it.
	DeadLetterTable bool
	// LogOnly writes the event log, views, dead letters and checkpoints but
	// no merged tables (no tombstones, no merge reads): the fastest mode.
	LogOnly bool

	// MemoryLimit caps DuckDB's buffer manager (its memory_limit setting:
	// cached blocks, rows not yet checkpointed, query state), e.g. "256MB"
	// or "1GiB"; beyond it DuckDB evicts cached blocks or spills to
	// temporary files next to the database. "" means DefaultMemoryLimit.
	// A load needs about 160 MB more (the Go pipeline and its batches, the
	// DuckDB library, what DuckDB allocates outside its buffer manager).
	MemoryLimit string
	// Threads is the number of threads DuckDB runs queries and checkpoints
	// with (its threads setting); 0 means DefaultThreads. The sink's work
	// is many small statements, for which extra threads mostly spin.
	Threads int
	// CheckpointThreshold is the write-ahead-log size after which the sink
	// checkpoints (writes the committed rows into the database file and
	// empties the WAL), e.g. "64MB"; "" means DefaultCheckpointThreshold.
	// It must be at most 2/3 of MemoryLimit: the rows not yet checkpointed
	// live in DuckDB's memory, and a checkpoint that cannot get the memory
	// it needs invalidates the database. The sink also checkpoints every
	// CheckpointRows logged events (see docs/sinks.md).
	CheckpointThreshold string
}

// Defaults of the DuckDB settings in Options; docs/sinks.md has the
// measurements behind them.
const (
	DefaultMemoryLimit         = "112MB"
	DefaultThreads             = 1
	DefaultCheckpointThreshold = "64MB"
)

// CheckpointRows is how many logged events, at most, the sink lets
// accumulate before it checkpoints. DuckDB stores a table in row groups of
// 122,880 rows and, at each checkpoint, merges adjacent row groups that fit
// into fewer, rewriting them: checkpointing every 61,440 to 122,880 log rows
// writes each log row group once. A checkpoint forced earlier by
// CheckpointThreshold (wide rows) costs rewrites, never correctness.
const CheckpointRows = 100_000

// sizeRE is what MemoryLimit and CheckpointThreshold accept: a number and
// an optional unit, with DuckDB's meaning (KB = 1000 bytes, KiB = 1024).
var sizeRE = regexp.MustCompile(`(?i)^([0-9]+(?:\.[0-9]+)?)\s*(b|bytes|kb|mb|gb|tb|kib|mib|gib|tib)?$`)

var sizeUnits = map[string]float64{
	"": 1, "b": 1, "bytes": 1,
	"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
	"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
}

// parseSize parses a MemoryLimit or CheckpointThreshold value to bytes.
func parseSize(s string) (int64, bool) {
	m := sizeRE.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return 0, false
	}
	f, err := strconv.ParseFloat(m[1], 64)
	if err != nil || f <= 0 {
		return 0, false
	}
	return int64(f * sizeUnits[strings.ToLower(m[2])]), true
}

// dsn is the database path with the DuckDB settings as DSN parameters, so
// they apply from the moment the database opens (WAL replay included).
// DuckDB's own checkpoint threshold is twice the sink's: a safety net, the
// sink checkpoints first (see maybeCheckpoint).
func (o *Options) dsn(walLimit int64) string {
	v := url.Values{}
	v.Set("memory_limit", o.MemoryLimit)
	v.Set("threads", strconv.Itoa(o.Threads))
	v.Set("checkpoint_threshold", strconv.FormatInt(2*walLimit, 10)+"B")
	return o.Path + "?" + v.Encode()
}

// TableOptions configures one merged table.
type TableOptions struct {
	// SoftDelete overrides Options.SoftDelete for this table when set.
	SoftDelete *bool
	// Columns pins column types (BIGINT, INTEGER, DOUBLE, DECIMAL(p,s),
	// VARCHAR, BOOLEAN, TIMESTAMP, TIMESTAMPTZ, DATE, JSON). A pinned column
	// never widens: a value it cannot hold dead-letters its row with reason
	// "type_conflict".
	Columns map[string]string
}

// tableConfig is TableOptions resolved against Options.
type tableConfig struct {
	soft   bool
	pinned map[string]pinnedCol // by folded column name
}

type pinnedCol struct {
	name string
	typ  sqlgen.Type
}

// resolve validates the options and indexes the per-table settings by folded name.
func (o *Options) resolve() (map[string]tableConfig, error) {
	switch o.TableNaming {
	case "":
		o.TableNaming = NamingTable
	case NamingTable, NamingSchemaTable:
	default:
		return nil, fmt.Errorf("table_naming: %q is not %q or %q", o.TableNaming, NamingTable, NamingSchemaTable)
	}
	if strings.ContainsAny(o.Path, "?") {
		return nil, fmt.Errorf("path %q: must not contain '?' (DuckDB settings are Options fields)", o.Path)
	}
	if o.MemoryLimit == "" {
		o.MemoryLimit = DefaultMemoryLimit
	}
	if o.CheckpointThreshold == "" {
		o.CheckpointThreshold = DefaultCheckpointThreshold
	}
	if o.Threads == 0 {
		o.Threads = DefaultThreads
	}
	mem, ok := parseSize(o.MemoryLimit)
	if !ok {
		return nil, fmt.Errorf("memory_limit: %q is not a size like 256MB or 1GiB", o.MemoryLimit)
	}
	wal, ok := parseSize(o.CheckpointThreshold)
	if !ok {
		return nil, fmt.Errorf("checkpoint_threshold: %q is not a size like 64MB or 1GiB", o.CheckpointThreshold)
	}
	if wal > mem*2/3 {
		return nil, fmt.Errorf("checkpoint_threshold: %s is more than 2/3 of memory_limit %s; DuckDB must hold the rows of a checkpoint in memory",
			o.CheckpointThreshold, o.MemoryLimit)
	}
	if o.Threads < 0 {
		return nil, fmt.Errorf("threads: %d is negative", o.Threads)
	}
	d := sqlgen.DuckDB
	out := make(map[string]tableConfig, len(o.Tables))
	for name, to := range o.Tables {
		if err := sqlgen.ValidateTable(name); err != nil {
			return nil, fmt.Errorf("tables.%s: %w", name, err)
		}
		key := d.Fold(name)
		if _, dup := out[key]; dup {
			return nil, fmt.Errorf("tables.%s: listed twice (names are case-insensitive)", name)
		}
		tc := tableConfig{soft: o.SoftDelete, pinned: map[string]pinnedCol{}}
		if to.SoftDelete != nil {
			tc.soft = *to.SoftDelete
		}
		for col, typ := range to.Columns {
			if err := sqlgen.ValidateIdent(col); err != nil {
				return nil, fmt.Errorf("tables.%s.columns.%s: %w", name, col, err)
			}
			if tc.soft && strings.EqualFold(col, sqlgen.ColDeleted) {
				return nil, fmt.Errorf("tables.%s.columns.%s: reserved for soft deletes", name, col)
			}
			t, err := sqlgen.ParseType(typ)
			if err != nil {
				return nil, fmt.Errorf("tables.%s.columns.%s: %w", name, col, err)
			}
			if _, dup := tc.pinned[d.Fold(col)]; dup {
				return nil, fmt.Errorf("tables.%s.columns.%s: listed twice (names are case-insensitive)", name, col)
			}
			tc.pinned[d.Fold(col)] = pinnedCol{name: col, typ: t}
		}
		out[key] = tc
	}
	return out, nil
}
