package postgres

import (
	"fmt"
	"log/slog"
	"strings"

	"github.com/cdcflow/cdcflow/internal/sqlgen"
)

// Table naming schemes (Options.TableNaming).
const (
	NamingTable       = "table"        // merged table named after the source table
	NamingSchemaTable = "schema_table" // <schema>_<table>; just <table> when the event has no schema
)

// DefaultSchema is the schema the sink writes to when Options.Schema is "".
const DefaultSchema = "public"

// Options configures a PostgreSQL sink.
type Options struct {
	// URL is a postgres:// URL or a key=value connection string. It is a
	// secret: it never appears in errors, logs or String output.
	URL string
	// Schema holds every object the sink creates; created if absent.
	// DefaultSchema when "".
	Schema string
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
	// CanResume reports whether positions of the named stream source identify
	// the same records across runs, so that Apply may drop events and dead
	// letters at or before the stored checkpoint of their partition (see the
	// package doc). nil means every source except "-" (standard input, whose
	// next run is a different stream). Pass the source's CanResume method.
	CanResume func(source string) bool
	// Logger receives reconnects and skipped redeliveries; nil discards.
	Logger *slog.Logger
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

// String describes the options without the URL.
func (o Options) String() string {
	return fmt.Sprintf("postgres sink (schema %q, table_naming %q, soft_delete %t, dead_letter_table %t, log_only %t)",
		o.Schema, o.TableNaming, o.SoftDelete, o.DeadLetterTable, o.LogOnly)
}

// GoString describes the options without the URL, for %#v.
func (o Options) GoString() string { return o.String() }

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
	if o.Schema == "" {
		o.Schema = DefaultSchema
	}
	if err := sqlgen.ValidateIdent(o.Schema); err != nil {
		return nil, fmt.Errorf("schema: %w", err)
	}
	if strings.HasPrefix(strings.ToLower(o.Schema), "pg_") {
		return nil, fmt.Errorf("schema: %q is reserved by PostgreSQL", o.Schema)
	}
	if o.URL == "" {
		return nil, fmt.Errorf("url: must be set")
	}
	if o.CanResume == nil {
		o.CanResume = func(source string) bool { return source != "-" }
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	d := dialect
	out := make(map[string]tableConfig, len(o.Tables))
	for name, to := range o.Tables {
		if err := sqlgen.ValidateTable(name); err != nil {
			return nil, fmt.Errorf("tables.%s: %w", name, err)
		}
		key := d.Fold(name)
		if _, dup := out[key]; dup {
			return nil, fmt.Errorf("tables.%s: listed twice", name)
		}
		tc := tableConfig{soft: o.SoftDelete, pinned: map[string]pinnedCol{}}
		if to.SoftDelete != nil {
			tc.soft = *to.SoftDelete
		}
		for col, typ := range to.Columns {
			if err := sqlgen.ValidateIdent(col); err != nil {
				return nil, fmt.Errorf("tables.%s.columns.%s: %w", name, col, err)
			}
			if tc.soft && col == sqlgen.ColDeleted {
				return nil, fmt.Errorf("tables.%s.columns.%s: reserved for soft deletes", name, col)
			}
			t, err := sqlgen.ParseType(typ)
			if err != nil {
				return nil, fmt.Errorf("tables.%s.columns.%s: %w", name, col, err)
			}
			if _, dup := tc.pinned[d.Fold(col)]; dup {
				return nil, fmt.Errorf("tables.%s.columns.%s: listed twice", name, col)
			}
			tc.pinned[d.Fold(col)] = pinnedCol{name: col, typ: t}
		}
		out[key] = tc
	}
	return out, nil
}
