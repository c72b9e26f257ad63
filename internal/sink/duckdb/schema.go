package duckdb

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/cdcflow/cdcflow/internal/sqlgen"
)

var dialect = sqlgen.DuckDB

// colState is one data column of a merged table.
type colState struct {
	name   string
	typ    sqlgen.Type
	pinned bool
	index  int // position among the table's data columns (0-based)

	// set while planning a batch
	added   bool // new in this batch
	retyped bool // type changed in this batch
	reg     bool // registry row changed (pinned flag) in this batch
	mark    int  // the last event (of this batch) that set it; finds duplicate names
}

// tableState is what the sink knows of one merged table.
type tableState struct {
	name         string // merged table name, as registered
	sourceSchema string
	sourceTable  string
	matchSchema  bool
	cols         []*colState
	exact        map[string]*colState // by exact name
	folded       map[string]*colState // by dialect.Fold(name)
	hasDeleted   bool                 // the merged table has ColDeleted
	recent       []*colState          // columns of the last image, in its member order (a lookup shortcut)
	merged       bool                 // the merged table exists

	// set while planning a batch
	registered bool // in the registry before this batch
	viewDirty  bool
}

func newTableState(name string) *tableState {
	return &tableState{name: name, exact: map[string]*colState{}, folded: map[string]*colState{}}
}

// clone deep-copies t so a batch can change it and be rolled back.
func (t *tableState) clone() *tableState {
	c := *t
	c.cols = make([]*colState, len(t.cols))
	c.recent = nil
	c.exact = make(map[string]*colState, len(t.exact))
	c.folded = make(map[string]*colState, len(t.folded))
	for i, col := range t.cols {
		cc := *col
		c.cols[i] = &cc
		c.folded[dialect.Fold(cc.name)] = &cc
	}
	for name, col := range t.exact {
		c.exact[name] = c.folded[dialect.Fold(col.name)]
	}
	return &c
}

// settle marks the planned state as the stored state, after a commit.
func (t *tableState) settle() {
	t.registered, t.viewDirty = true, false
	for _, c := range t.cols {
		c.added, c.retyped, c.reg, c.mark = false, false, false, 0
	}
}

func (t *tableState) addColumn(name string, typ sqlgen.Type, pinned bool) *colState {
	c := &colState{name: name, typ: typ, pinned: pinned, index: len(t.cols), added: true}
	t.cols = append(t.cols, c)
	t.exact[name] = c
	t.folded[dialect.Fold(name)] = c
	t.viewDirty = true
	return c
}

// lookupAt finds the column of the i-th member of an image: images of one
// table usually list the same members in the same order, so the column of the
// previous image's i-th member is tried first.
func (t *tableState) lookupAt(i int, name string) *colState {
	if i < len(t.recent) && t.recent[i] != nil && t.recent[i].name == name {
		return t.recent[i]
	}
	c := t.lookup(name)
	if c != nil && c.name == name {
		for len(t.recent) <= i {
			t.recent = append(t.recent, nil)
		}
		t.recent[i] = c
	}
	return c
}

// lookup finds a column by exact name, then by folded name (DuckDB treats
// names differing only in ASCII case as the same column).
func (t *tableState) lookup(name string) *colState {
	if c, ok := t.exact[name]; ok {
		return c
	}
	if c, ok := t.folded[dialect.Fold(name)]; ok {
		t.exact[name] = c
		return c
	}
	return nil
}

func (t *tableState) columns() []sqlgen.Column {
	out := make([]sqlgen.Column, len(t.cols))
	for i, c := range t.cols {
		out[i] = sqlgen.Column{Name: c.name, Type: c.typ}
	}
	return out
}

func (t *tableState) view() sqlgen.View {
	return sqlgen.View{Table: t.name, SourceTable: t.sourceTable, SourceSchema: t.sourceSchema, MatchSchema: t.matchSchema, Columns: t.columns()}
}

// loadRegistry reads the registries of merged tables and columns.
func loadRegistry(ctx context.Context, q queryer) (map[string]*tableState, error) {
	tables := map[string]*tableState{}
	rows, err := q.QueryContext(ctx, sqlgen.SelectTables(dialect))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", sqlgen.TablesTable, err)
	}
	for rows.Next() {
		var name, source string
		var schema sql.NullString
		var match bool
		if err := rows.Scan(&name, &schema, &source, &match); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read %s: %w", sqlgen.TablesTable, err)
		}
		t := newTableState(name)
		t.sourceSchema, t.sourceTable, t.matchSchema, t.registered = schema.String, source, match, true
		tables[dialect.Fold(name)] = t
	}
	if err := closeRows(rows); err != nil {
		return nil, fmt.Errorf("read %s: %w", sqlgen.TablesTable, err)
	}

	rows, err = q.QueryContext(ctx, sqlgen.SelectColumns(dialect))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", sqlgen.ColumnsTable, err)
	}
	for rows.Next() {
		var table, col, typ string
		var pinned bool
		var ordinal int
		if err := rows.Scan(&table, &col, &typ, &pinned, &ordinal); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read %s: %w", sqlgen.ColumnsTable, err)
		}
		t := tables[dialect.Fold(table)]
		if t == nil {
			rows.Close()
			return nil, fmt.Errorf("read %s: column %s.%s of an unregistered table", sqlgen.ColumnsTable, table, col)
		}
		ty, err := sqlgen.ParseType(typ)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("read %s: column %s.%s: %w", sqlgen.ColumnsTable, table, col, err)
		}
		c := t.addColumn(col, ty, pinned)
		c.added = false
	}
	if err := closeRows(rows); err != nil {
		return nil, fmt.Errorf("read %s: %w", sqlgen.ColumnsTable, err)
	}

	// Which merged tables exist, and which have ColDeleted.
	rows, err = q.QueryContext(ctx, `SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = current_schema() AND column_name IN ($1, $2)`, sqlgen.ColRecordID, sqlgen.ColDeleted)
	if err != nil {
		return nil, fmt.Errorf("read information_schema.columns: %w", err)
	}
	for rows.Next() {
		var table, col string
		if err := rows.Scan(&table, &col); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read information_schema.columns: %w", err)
		}
		t := tables[dialect.Fold(table)]
		if t == nil || t.name != table {
			continue
		}
		if col == sqlgen.ColDeleted {
			t.hasDeleted = true
		} else {
			t.merged = true
		}
	}
	if err := closeRows(rows); err != nil {
		return nil, fmt.Errorf("read information_schema.columns: %w", err)
	}
	for _, t := range tables {
		t.viewDirty = false
	}
	return tables, nil
}

func closeRows(rows *sql.Rows) error {
	err := rows.Err()
	if cerr := rows.Close(); err == nil {
		err = cerr
	}
	return err
}

type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// schemaDDL returns the statements (with arguments) that bring the database
// to the planned state of t: registry rows, merged table, columns, view.
func schemaDDL(t *tableState, logOnly bool, soft bool, now time.Time) []stmt {
	var out []stmt
	if !t.registered {
		var schema any
		if t.matchSchema {
			schema = t.sourceSchema
		}
		out = append(out, stmt{sqlgen.InsertTable(dialect), []any{t.name, schema, t.sourceTable, t.matchSchema, now}})
	}
	if !logOnly {
		switch {
		case !t.merged:
			out = append(out, stmt{sqlgen.CreateMergedTable(dialect, t.name, t.columns(), soft), nil})
			t.merged, t.hasDeleted = true, soft
		default:
			for _, c := range t.cols {
				switch {
				case c.added:
					out = append(out, stmt{sqlgen.AddColumn(dialect, t.name, sqlgen.Column{Name: c.name, Type: c.typ}), nil})
				case c.retyped:
					out = append(out, stmt{dialect.AlterType(t.name, c.name, c.typ), nil})
				}
			}
			if soft && !t.hasDeleted {
				out = append(out, stmt{sqlgen.AddDeletedColumn(dialect, t.name), nil})
				t.hasDeleted = true
			}
		}
	}
	for _, c := range t.cols {
		if c.added || c.retyped || c.reg {
			out = append(out, stmt{sqlgen.UpsertColumn(dialect), []any{t.name, c.name, c.typ.String(), c.pinned, c.index, now}})
		}
	}
	if t.viewDirty || !t.registered {
		out = append(out, stmt{sqlgen.CreateView(dialect, t.view()), nil})
	}
	return out
}

type stmt struct {
	sql  string
	args []any
}
