package testgen

import (
	"fmt"
	"time"

	"github.com/cdcflow/cdcflow/internal/change"
)

// Kind says why a change happened; Op is what a CDC stream calls it.
type Kind uint8

// The change kinds.
const (
	KindInsert    Kind = iota + 1 // a key that never existed
	KindUpdate                    // a live row changes
	KindDelete                    // a live row is removed
	KindReinsert                  // a key that was deleted is inserted again
	KindKeyDelete                 // primary-key change: the old key is removed ...
	KindKeyInsert                 // ... and the new key inserted, in the same transaction
	KindSnapshot                  // a row read by the initial snapshot
)

var kindNames = [...]string{"", "insert", "update", "delete", "reinsert", "key_delete", "key_insert", "snapshot"}

// AllKinds lists every Kind.
var AllKinds = []Kind{KindInsert, KindUpdate, KindDelete, KindReinsert, KindKeyDelete, KindKeyInsert, KindSnapshot}

// String returns the kind's name ("insert", "key_delete", ...).
func (k Kind) String() string {
	if int(k) < len(kindNames) && k != 0 {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Op returns the operation a CDC stream reports for k.
func (k Kind) Op() change.Op {
	switch k {
	case KindUpdate:
		return change.Update
	case KindDelete, KindKeyDelete:
		return change.Delete
	case KindSnapshot:
		return change.Read
	}
	return change.Insert
}

// Event is one row change of a History.
//
// Rows are slices aligned with Table.Columns holding JSON-decoded values
// (json.Number, string, bool, nil, map[string]any, []any). Rows are shared
// between events (an update's Before is the previous event's After) and must
// not be modified.
type Event struct {
	Table    *Table
	Kind     Kind
	Op       change.Op // Kind.Op()
	Key      []any     // key values, in Table.Key order
	RecordID string    // the project's record_id of Key
	Before   []any     // the row before the change; nil for inserts and snapshot reads
	After    []any     // the row after the change; nil for deletes
	Tx       int64     // transaction number, from 1, increasing in commit order
	TxIndex  int       // position inside the transaction, from 0
	TxSize   int       // events in the transaction
	CommitNS int64     // commit time of the transaction, ns since the Unix epoch
	Seq      int64     // global change number, from 1, increasing in commit order
}

// Image returns After, or Before for deletes.
func (e *Event) Image() []any {
	if e.After == nil {
		return e.Before
	}
	return e.After
}

// BeforeMap returns Before as a column map, nil when there is none.
func (e *Event) BeforeMap() map[string]any { return rowMap(e.Table, e.Before) }

// AfterMap returns After as a column map, nil when there is none.
func (e *Event) AfterMap() map[string]any { return rowMap(e.Table, e.After) }

// KeyColumns returns the key column names.
func (e *Event) KeyColumns() []string { return e.Table.Key }

// Commit returns the commit time.
func (e *Event) Commit() time.Time { return time.Unix(0, e.CommitNS).UTC() }

func rowMap(t *Table, row []any) map[string]any {
	if row == nil {
		return nil
	}
	m := make(map[string]any, len(row))
	for i, c := range t.Columns {
		m[c.Name] = row[i]
	}
	return m
}

// State is a set of table contents: table -> record_id -> column -> value,
// values as encoding/json decodes them with UseNumber.
type State map[string]map[string]map[string]any

// Apply changes s as e does: upsert After, or remove the key for deletes.
func (s State) Apply(e *Event) {
	if e.After == nil {
		if rows := s[e.Table.Name]; rows != nil {
			delete(rows, e.RecordID)
			if len(rows) == 0 {
				delete(s, e.Table.Name)
			}
		}
		return
	}
	rows := s[e.Table.Name]
	if rows == nil {
		rows = map[string]map[string]any{}
		s[e.Table.Name] = rows
	}
	rows[e.RecordID] = e.AfterMap()
}

// Rows returns the number of rows in s.
func (s State) Rows() int {
	n := 0
	for _, rows := range s {
		n += len(rows)
	}
	return n
}

// History is a generated sequence of committed transactions over a set of
// tables, with the state they leave behind.
type History struct {
	Seed    int64
	Options Options // with defaults filled in
	Tables  []*Table
	events  []Event
}

// Events returns every change in commit order (the slice is shared; do not
// modify it).
func (h *History) Events() []Event { return h.events }

// Table returns the table called name, or nil.
func (h *History) Table(name string) *Table {
	for _, t := range h.Tables {
		if t.Name == name {
			return t
		}
	}
	return nil
}

// Final returns the state the history leaves: every live row by table and
// record_id. Tables without live rows are absent. The result is a fresh copy.
func (h *History) Final() State {
	s := State{}
	for i := range h.events {
		s.Apply(&h.events[i])
	}
	return s
}

// Transactions returns the number of transactions.
func (h *History) Transactions() int {
	if len(h.events) == 0 {
		return 0
	}
	return int(h.events[len(h.events)-1].Tx)
}

// Change is one row change given to a Builder.
type Change struct {
	Table string
	Op    change.Op      // Insert, Update, Delete or Read (snapshot)
	Row   map[string]any // Insert/Read: the full row; Update: the key and the changed columns; Delete: the key
}

// Builder scripts a History by hand, for example data and focused tests.
type Builder struct {
	h    *History
	live map[string]map[string][]any // table -> record_id -> row
	seen map[string]map[string]bool  // keys that existed once
	last int64
	seq  int64
	tx   int64
	err  error
}

// NewBuilder starts an empty history over tables.
func NewBuilder(tables ...*Table) *Builder {
	return &Builder{
		h:    &History{Tables: tables},
		live: map[string]map[string][]any{},
		seen: map[string]map[string]bool{},
	}
}

// Tx commits one transaction at time at. Commit times must increase. Values
// in rows must be JSON-decoded values (use json.Number for numbers).
func (b *Builder) Tx(at time.Time, changes ...Change) error {
	if b.err != nil {
		return b.err
	}
	ns := at.UnixNano()
	if ns <= b.last {
		return fmt.Errorf("tx at %s: commit time not after the previous transaction", at.Format(time.RFC3339Nano))
	}
	b.last = ns
	b.tx++
	start := len(b.h.events)
	for i, c := range changes {
		e, err := b.change(c)
		if err != nil {
			b.h.events = b.h.events[:start]
			b.err = fmt.Errorf("tx %d change %d (%s): %w", b.tx, i, c.Table, err)
			return b.err
		}
		b.seq++
		e.Tx, e.TxIndex, e.TxSize, e.CommitNS, e.Seq = b.tx, i, len(changes), ns, b.seq
		b.h.events = append(b.h.events, e)
	}
	return nil
}

func (b *Builder) change(c Change) (Event, error) {
	t := b.h.Table(c.Table)
	if t == nil {
		return Event{}, fmt.Errorf("unknown table")
	}
	key := make([]any, len(t.Key))
	for i, k := range t.Key {
		v, ok := c.Row[k]
		if !ok || v == nil {
			return Event{}, fmt.Errorf("key column %s missing", k)
		}
		key[i] = v
	}
	for col := range c.Row {
		if t.Index(col) < 0 {
			return Event{}, fmt.Errorf("unknown column %s", col)
		}
	}
	id := RecordID(key)
	if b.live[t.Name] == nil {
		b.live[t.Name], b.seen[t.Name] = map[string][]any{}, map[string]bool{}
	}
	old, isLive := b.live[t.Name][id]
	e := Event{Table: t, Key: key, RecordID: id}
	switch c.Op {
	case change.Insert, change.Read:
		if isLive {
			return e, fmt.Errorf("insert of live key %s", id)
		}
		row := make([]any, len(t.Columns))
		for i, col := range t.Columns {
			v, ok := c.Row[col.Name]
			if !ok && !col.Nullable {
				return e, fmt.Errorf("column %s missing", col.Name)
			}
			row[i] = v
		}
		e.After, e.Kind = row, KindInsert
		if c.Op == change.Read {
			e.Kind = KindSnapshot
		} else if b.seen[t.Name][id] {
			e.Kind = KindReinsert
		}
	case change.Update:
		if !isLive {
			return e, fmt.Errorf("update of absent key %s", id)
		}
		row := append([]any(nil), old...)
		for col, v := range c.Row {
			row[t.Index(col)] = v
		}
		e.Before, e.After, e.Kind = old, row, KindUpdate
	case change.Delete:
		if !isLive {
			return e, fmt.Errorf("delete of absent key %s", id)
		}
		e.Before, e.Kind = old, KindDelete
	default:
		return e, fmt.Errorf("invalid op %q", c.Op)
	}
	e.Op = e.Kind.Op()
	if e.After == nil {
		delete(b.live[t.Name], id)
	} else {
		b.live[t.Name][id] = e.After
	}
	b.seen[t.Name][id] = true
	return e, nil
}

// History returns the built history, or the first error of Tx.
func (b *Builder) History() (*History, error) {
	if b.err != nil {
		return nil, b.err
	}
	h := *b.h
	h.events = append([]Event(nil), b.h.events...)
	h.Tables = append([]*Table(nil), b.h.Tables...)
	return &h, nil
}

// MarshalJSON writes s as {"table":{"record_id":{…row…}}} with members in
// sorted order, so equal states give equal bytes.
func (s State) MarshalJSON() ([]byte, error) {
	m := make(map[string]any, len(s))
	for t, rows := range s {
		r := make(map[string]any, len(rows))
		for id, row := range rows {
			r[id] = row
		}
		m[t] = r
	}
	return appendValue(nil, m), nil
}
