package sqlgen

import (
	"fmt"
	"sort"
	"strings"
)

// TableSpec is a configured source table, for printing its DDL ahead of time.
type TableSpec struct {
	Name       string            // merged table name
	Schema     string            // when set, the view keeps only events of this source schema
	Source     string            // the source table its events carry; Name when ""
	Key        []string          // key columns, listed first
	Columns    map[string]string // column -> type (ParseType syntax)
	SoftDelete bool
}

// DDL prints the full DDL of a warehouse in the given dialect: the base
// tables (BaseDDL) and, for each configured table, its merged table, its
// current-state view and its rows in the table and column registries.
// Statements end with ";" and are separated by blank lines. It is what a sink
// would create, so users can review it or run it ahead of the sink, which
// then adopts the tables (their columns count as pinned).
func DDL(dialect string, tables []TableSpec) (string, error) {
	if strings.EqualFold(dialect, "redshift") {
		return RedshiftDDL(tables) // its own layout: see redshift.go
	}
	d, err := ForName(dialect)
	if err != nil {
		return "", err
	}
	stmts := BaseDDL(d)
	specs := append([]TableSpec(nil), tables...)
	sort.Slice(specs, func(i, j int) bool { return specs[i].Name < specs[j].Name })
	seen := map[string]bool{}
	for _, ts := range specs {
		if err := ValidateTable(ts.Name); err != nil {
			return "", fmt.Errorf("table %q: %w", ts.Name, err)
		}
		if seen[d.Fold(ts.Name)] {
			return "", fmt.Errorf("table %q: listed twice", ts.Name)
		}
		seen[d.Fold(ts.Name)] = true
		cols, err := specColumns(d, ts)
		if err != nil {
			return "", fmt.Errorf("table %q: %w", ts.Name, err)
		}
		src := ts.Source
		if src == "" {
			src = ts.Name
		}
		create := CreateMergedTable(d, ts.Name, cols, ts.SoftDelete)
		if untyped := untypedKeys(ts); len(untyped) > 0 {
			create = fmt.Sprintf("-- Key column(s) %s have no type under tables.%s.columns: the sink adds them\n-- with an inferred type when their first value arrives.\n", strings.Join(untyped, ", "), ts.Name) + create
		}
		stmts = append(stmts,
			create,
			CreateView(d, View{Table: ts.Name, SourceTable: src, SourceSchema: ts.Schema, MatchSchema: ts.Schema != "", Columns: cols}))
		stmts = append(stmts, registryInserts(ts.Name, ts.Schema, src, cols)...)
	}
	return strings.Join(stmts, ";\n\n") + ";\n", nil
}

// registryInserts registers a pre-created table and its columns (pinned:
// their types were chosen by configuration) so a sink opened later adopts
// them instead of creating them again. Re-running them changes nothing.
func registryInserts(table, schema, source string, cols []Column) []string {
	sch := "NULL"
	if schema != "" {
		sch = QuoteLiteral(schema)
	}
	out := []string{fmt.Sprintf("INSERT INTO %s (%s) VALUES (%s, %s, %s, %t, CURRENT_TIMESTAMP) ON CONFLICT DO NOTHING",
		QuoteIdent(TablesTable), strings.Join(TableRegistryColumns, ", "), QuoteLiteral(table), sch, QuoteLiteral(source), schema != "")}
	if len(cols) == 0 {
		return out
	}
	rows := make([]string, len(cols))
	for i, c := range cols {
		rows[i] = fmt.Sprintf("(%s, %s, %s, true, %d, CURRENT_TIMESTAMP)", QuoteLiteral(table), QuoteLiteral(c.Name), QuoteLiteral(c.Type.String()), i)
	}
	return append(out, fmt.Sprintf("INSERT INTO %s (%s) VALUES\n  %s\nON CONFLICT DO NOTHING",
		QuoteIdent(ColumnsTable), strings.Join(ColumnRegistryColumns, ", "), strings.Join(rows, ",\n  ")))
}

// untypedKeys lists the key columns a spec gives no type.
func untypedKeys(ts TableSpec) []string {
	var out []string
	for _, k := range ts.Key {
		if _, ok := ts.Columns[k]; !ok {
			out = append(out, k)
		}
	}
	return out
}

// specColumns orders a spec's columns: key columns first, then by name.
func specColumns(d Dialect, ts TableSpec) ([]Column, error) {
	names := make([]string, 0, len(ts.Columns))
	for n := range ts.Columns {
		names = append(names, n)
	}
	sort.Strings(names)
	isKey := map[string]bool{}
	order := make([]string, 0, len(names))
	for _, k := range ts.Key {
		if _, ok := ts.Columns[k]; !ok {
			continue // typed by inference when the first value arrives
		}
		isKey[k] = true
		order = append(order, k)
	}
	for _, n := range names {
		if !isKey[n] {
			order = append(order, n)
		}
	}
	cols := make([]Column, 0, len(order))
	seen := map[string]bool{}
	for _, n := range order {
		if err := ValidateIdent(n); err != nil {
			return nil, fmt.Errorf("column: %w", err)
		}
		if seen[d.Fold(n)] {
			return nil, fmt.Errorf("column %q: listed twice", n)
		}
		seen[d.Fold(n)] = true
		t, err := ParseType(ts.Columns[n])
		if err != nil {
			return nil, fmt.Errorf("column %q: %w", n, err)
		}
		cols = append(cols, Column{Name: n, Type: t})
	}
	return cols, nil
}
