package sqlgen

import (
	"fmt"
	"strconv"
	"strings"
)

// Dialect is what differs between SQL engines. Everything else (table
// layouts, view shape, statement order) is built by this package's functions
// from these few primitives, so a new dialect (redshift.go) implements only
// this interface and registers itself in ForName.
//
// Every method returns SQL text; arguments named col, table or key are raw
// names that the method quotes itself (QuoteIdent, QuoteLiteral), and expr
// arguments are SQL expressions used as given.
type Dialect interface {
	// Name is the dialect's name as accepted by ForName.
	Name() string
	// TypeName spells a column type.
	TypeName(t Type) string
	// OrderType is the type of the ordering columns (commit_order,
	// stream_order): text that compares bytewise, whatever the database's
	// default collation.
	OrderType() string
	// BlobType is the type of raw record bytes.
	BlobType() string
	// KeyIndexes reports whether merged and tombstone tables get a PRIMARY
	// KEY. DuckDB's are not worth it: an ART index costs work proportional
	// to the table at every checkpoint, and the sink, the only writer, keeps
	// keys unique itself (see internal/sink/duckdb/doc.go).
	KeyIndexes() bool
	// Fold maps an identifier to the form under which the engine considers
	// two names equal (DuckDB: ASCII case-insensitive; PostgreSQL quoted
	// names: exact).
	Fold(name string) string
	// Param is the placeholder of the n-th (1-based) statement parameter.
	Param(n int) string
	// InList is a condition true when expr is one of the strings in the list
	// bound to parameter n (a Go []string).
	InList(expr string, n int) string
	// JSONField reads member key of the JSON expression expr: as text when
	// text is true (strings unquoted, other values as JSON text), else as JSON.
	JSONField(expr, key string, text bool) string
	// CastText converts the text expression expr to t; where the engine can,
	// a value that does not convert becomes NULL instead of an error.
	CastText(expr string, t Type) string
	// AlterType is the statement changing column col of table to type to
	// (always a widening, see Widen).
	AlterType(table, col string, to Type) string
	// Upsert is the statement that merges the rows of the relation src into
	// table: rows whose keys are new are inserted; an existing row is
	// overwritten with the columns in update only when src's order column is
	// greater than the stored one (always when order is ""). cols lists the
	// columns inserted, which src provides under the same names. src holds
	// each key at most once.
	Upsert(table string, keys []string, order string, cols, update []string, src string) string
}

// ForName returns the dialect called name ("duckdb", "postgres").
func ForName(name string) (Dialect, error) {
	switch strings.ToLower(name) {
	case "duckdb":
		return DuckDB, nil
	case "postgres", "postgresql":
		return Postgres, nil
	}
	return nil, fmt.Errorf("unknown SQL dialect %q (want duckdb or postgres)", name)
}

// The built-in dialects.
var (
	DuckDB   Dialect = duckDB{}
	Postgres Dialect = postgres{}
)

// jsonPointer renders key as a JSON pointer ("/a~1b" for "a/b"), which DuckDB
// reads as one member name whatever characters it holds.
func jsonPointer(key string) string {
	return "/" + strings.NewReplacer("~", "~0", "/", "~1").Replace(key)
}

// onConflictUpsert is INSERT ... SELECT ... ON CONFLICT DO UPDATE ... WHERE,
// shared by DuckDB and PostgreSQL.
func onConflictUpsert(table string, keys []string, order string, cols, update []string, src string) string {
	var b strings.Builder
	qt := QuoteIdent(table)
	list := quoteList(cols)
	fmt.Fprintf(&b, "INSERT INTO %s (%s)\nSELECT %s FROM %s\nON CONFLICT (%s) DO ", qt, list, list, src, quoteList(keys))
	if len(update) == 0 {
		b.WriteString("NOTHING")
		return b.String()
	}
	b.WriteString("UPDATE SET ")
	for i, c := range update {
		if i > 0 {
			b.WriteString(", ")
		}
		q := QuoteIdent(c)
		b.WriteString(q + " = excluded." + q)
	}
	if order != "" {
		qo := QuoteIdent(order)
		fmt.Fprintf(&b, "\nWHERE excluded.%s > %s.%s", qo, qt, qo)
	}
	return b.String()
}

func quoteList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = QuoteIdent(n)
	}
	return strings.Join(q, ", ")
}

type duckDB struct{}

func (duckDB) Name() string           { return "duckdb" }
func (duckDB) TypeName(t Type) string { return t.String() }
func (duckDB) OrderType() string      { return "VARCHAR" }
func (duckDB) BlobType() string       { return "BLOB" }
func (duckDB) KeyIndexes() bool       { return false }
func (duckDB) Param(n int) string     { return "$" + strconv.Itoa(n) }

func (duckDB) Fold(name string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'A' && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return r
	}, name)
}

func (d duckDB) InList(expr string, n int) string {
	return expr + " IN (SELECT unnest(CAST(" + d.Param(n) + " AS VARCHAR[])))"
}

func (duckDB) JSONField(expr, key string, text bool) string {
	op := "->"
	if text {
		op = "->>"
	}
	return "(" + expr + " " + op + " " + QuoteLiteral(jsonPointer(key)) + ")"
}

func (d duckDB) CastText(expr string, t Type) string {
	switch t.Kind {
	case Varchar:
		return expr
	case Timestamp:
		return "timezone('UTC', TRY_CAST(" + expr + " AS TIMESTAMPTZ))"
	case Date:
		return "COALESCE(TRY_CAST(" + expr + " AS DATE), CAST(timezone('UTC', TRY_CAST(" + expr + " AS TIMESTAMPTZ)) AS DATE))"
	}
	return "TRY_CAST(" + expr + " AS " + d.TypeName(t) + ")"
}

func (d duckDB) AlterType(table, col string, to Type) string {
	q := QuoteIdent(col)
	s := "ALTER TABLE " + QuoteIdent(table) + " ALTER COLUMN " + q + " TYPE " + d.TypeName(to)
	if to.Kind == JSON {
		s += " USING to_json(" + q + ")"
	}
	return s
}

func (duckDB) Upsert(table string, keys []string, order string, cols, update []string, src string) string {
	return onConflictUpsert(table, keys, order, cols, update, src)
}

type postgres struct{}

func (postgres) Name() string         { return "postgres" }
func (postgres) OrderType() string    { return `TEXT COLLATE "C"` }
func (postgres) BlobType() string     { return "BYTEA" }
func (postgres) KeyIndexes() bool     { return true }
func (postgres) Fold(s string) string { return s }
func (postgres) Param(n int) string   { return "$" + strconv.Itoa(n) }

func (postgres) TypeName(t Type) string {
	switch t.Kind {
	case Decimal:
		return "NUMERIC(" + strconv.Itoa(t.Precision) + "," + strconv.Itoa(t.Scale) + ")"
	case Double:
		return "DOUBLE PRECISION"
	case Varchar:
		return "TEXT"
	case JSON:
		return "JSONB"
	}
	return t.String()
}

func (p postgres) InList(expr string, n int) string {
	return expr + " = ANY(CAST(" + p.Param(n) + " AS TEXT[]))"
}

func (postgres) JSONField(expr, key string, text bool) string {
	op := "->"
	if text {
		op = "->>"
	}
	return "(" + expr + " " + op + " " + QuoteLiteral(key) + ")"
}

func (p postgres) CastText(expr string, t Type) string {
	switch t.Kind {
	case Varchar:
		return expr
	case BigInt, Integer:
		// Through NUMERIC, so every text a pinned integer column converts
		// leniently ("5.0", "1e2") casts: PostgreSQL has no TRY_CAST, and one
		// logged value that does not cast would fail every query of the view.
		return "CAST(CAST(" + expr + " AS NUMERIC) AS " + p.TypeName(t) + ")"
	case Timestamp:
		return "(CAST(" + expr + " AS TIMESTAMPTZ) AT TIME ZONE 'UTC')"
	}
	return "CAST(" + expr + " AS " + p.TypeName(t) + ")"
}

func (p postgres) AlterType(table, col string, to Type) string {
	q := QuoteIdent(col)
	s := "ALTER TABLE " + QuoteIdent(table) + " ALTER COLUMN " + q + " TYPE " + p.TypeName(to)
	switch to.Kind {
	case JSON:
		s += " USING to_jsonb(" + q + ")"
	default:
		s += " USING CAST(" + q + " AS " + p.TypeName(to) + ")"
	}
	return s
}

func (postgres) Upsert(table string, keys []string, order string, cols, update []string, src string) string {
	return onConflictUpsert(table, keys, order, cols, update, src)
}
