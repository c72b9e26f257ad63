package testgen

import "fmt"

// Type is a column's logical type. Values of every type are stored the way
// encoding/json decodes them with UseNumber: json.Number, string, bool, nil,
// map[string]any and []any.
type Type int

// The column types.
const (
	BigInt          Type = iota + 1 // 64-bit integer, json.Number
	Int                             // 32-bit integer, json.Number
	Decimal                         // fixed point with Column.Scale fraction digits, json.Number ("12.50")
	Text                            // string
	Bool                            // bool
	Timestamp                       // timestamptz as an RFC 3339 UTC string (Debezium ZonedTimestamp)
	TimestampMicros                 // timestamp without time zone as an RFC 3339 UTC string; Debezium with schema sends it as MicroTimestamp
	JSON                            // nested JSON object (map[string]any)
	TextSet                         // array of distinct strings ([]any); DynamoDB SS when not empty
)

var typeNames = map[Type]string{
	BigInt: "bigint", Int: "int", Decimal: "decimal", Text: "text", Bool: "bool",
	Timestamp: "timestamptz", TimestampMicros: "timestamp", JSON: "jsonb", TextSet: "text[]",
}

// String returns the PostgreSQL-like name of t.
func (t Type) String() string {
	if s, ok := typeNames[t]; ok {
		return s
	}
	return fmt.Sprintf("Type(%d)", int(t))
}

// Column is one column of a Table.
type Column struct {
	Name     string
	Type     Type
	Scale    int  // fraction digits of a Decimal column
	Nullable bool // the column may hold NULL
}

// Table is a source table: its columns in order and its key columns.
type Table struct {
	Schema  string   // source schema, "public"
	Name    string   // table name without schema
	Columns []Column // in row order
	Key     []string // key columns, in key order

	keyIdx []int
	colIdx map[string]int
}

// NewTable builds a table and checks that every key column exists and is not
// nullable.
func NewTable(schema, name string, key []string, cols ...Column) (*Table, error) {
	t := &Table{Schema: schema, Name: name, Columns: cols, Key: key, colIdx: make(map[string]int, len(cols))}
	for i, c := range cols {
		if _, dup := t.colIdx[c.Name]; dup {
			return nil, fmt.Errorf("table %s: duplicate column %q", name, c.Name)
		}
		t.colIdx[c.Name] = i
	}
	if len(key) == 0 {
		return nil, fmt.Errorf("table %s: no key columns", name)
	}
	for _, k := range key {
		i, ok := t.colIdx[k]
		if !ok {
			return nil, fmt.Errorf("table %s: key column %q is not a column", name, k)
		}
		if cols[i].Nullable {
			return nil, fmt.Errorf("table %s: key column %q is nullable", name, k)
		}
		t.keyIdx = append(t.keyIdx, i)
	}
	return t, nil
}

func mustTable(schema, name string, key []string, cols ...Column) *Table {
	t, err := NewTable(schema, name, key, cols...)
	if err != nil {
		panic(err)
	}
	return t
}

// Index returns the position of column name, or -1.
func (t *Table) Index(name string) int {
	if i, ok := t.colIdx[name]; ok {
		return i
	}
	return -1
}

// KeyIndexes returns the positions of the key columns, in key order.
func (t *Table) KeyIndexes() []int { return t.keyIdx }

// Qualified returns schema.name.
func (t *Table) Qualified() string { return t.Schema + "." + t.Name }

// KeyOf returns the key values of row, in key order.
func (t *Table) KeyOf(row []any) []any {
	k := make([]any, len(t.keyIdx))
	for i, c := range t.keyIdx {
		k[i] = row[c]
	}
	return k
}

// RecordID returns the project's record_id for key values: a single string
// unquoted, a single number as written, several values as a compact JSON
// array.
func RecordID(key []any) string {
	if len(key) == 1 {
		if s, ok := key[0].(string); ok {
			return s
		}
		return string(appendValue(nil, key[0]))
	}
	b := []byte{'['}
	for i, v := range key {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendValue(b, v)
	}
	return string(append(b, ']'))
}

// Table names of the generated schema.
const (
	TableCustomers  = "customers"
	TableOrders     = "orders"
	TableOrderItems = "order_items"
	TableWide       = "wide_metrics"
)

// DefaultKeys returns the key columns of the generated tables, as a
// configuration would list them (change.Keys.Tables).
func DefaultKeys() map[string][]string {
	return map[string][]string{
		TableCustomers:  {"id"},
		TableOrders:     {"order_id"},
		TableOrderItems: {"order_id", "line_no"},
		TableWide:       {"id"},
	}
}

// defaultTables returns the generated schema. wide < 0 drops wide_metrics.
func defaultTables(wide int) []*Table {
	ts := []*Table{
		mustTable("public", TableCustomers, []string{"id"},
			Column{Name: "id", Type: Text},
			Column{Name: "name", Type: Text},
			Column{Name: "email", Type: Text, Nullable: true},
			Column{Name: "vip", Type: Bool},
			Column{Name: "balance", Type: Decimal, Scale: 2},
			Column{Name: "created_at", Type: Timestamp},
			Column{Name: "updated_at", Type: Timestamp},
			Column{Name: "profile", Type: JSON, Nullable: true},
			Column{Name: "tags", Type: TextSet},
			Column{Name: "notes", Type: Text, Nullable: true},
		),
		mustTable("public", TableOrders, []string{"order_id"},
			Column{Name: "order_id", Type: BigInt},
			Column{Name: "customer_id", Type: Text},
			Column{Name: "status", Type: Text},
			Column{Name: "total", Type: Decimal, Scale: 2},
			Column{Name: "quantity", Type: Int},
			Column{Name: "paid", Type: Bool},
			Column{Name: "external_ref", Type: BigInt, Nullable: true},
			Column{Name: "discount", Type: Decimal, Scale: 2, Nullable: true},
			Column{Name: "created_at", Type: Timestamp},
			Column{Name: "updated_at", Type: Timestamp},
			Column{Name: "shipping", Type: JSON},
			Column{Name: "note", Type: Text, Nullable: true},
		),
		mustTable("public", TableOrderItems, []string{"order_id", "line_no"},
			Column{Name: "order_id", Type: BigInt},
			Column{Name: "line_no", Type: Int},
			Column{Name: "sku", Type: Text},
			Column{Name: "qty", Type: Int},
			Column{Name: "unit_price", Type: Decimal, Scale: 2},
			Column{Name: "gift", Type: Bool},
			Column{Name: "attrs", Type: JSON, Nullable: true},
			Column{Name: "updated_at", Type: Timestamp},
		),
	}
	if wide >= 0 {
		cols := []Column{{Name: "id", Type: BigInt}}
		for i := 1; i <= wide; i++ {
			cols = append(cols, Column{Name: fmt.Sprintf("c%03d", i), Type: wideTypes[i%len(wideTypes)], Scale: 2, Nullable: i%len(wideTypes) == 0 || i%7 == 0})
		}
		cols = append(cols, Column{Name: "updated_at", Type: Timestamp})
		ts = append(ts, mustTable("public", TableWide, []string{"id"}, cols...))
	}
	return ts
}

var wideTypes = []Type{Int, BigInt, Decimal, Text, Bool, Timestamp}
